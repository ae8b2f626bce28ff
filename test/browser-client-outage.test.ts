// The browser client (fastify-token-sessions/client) in real Chromium tabs of two devices
// against the example app, its Redis down for 5 s and back: nobody is logged out. (The
// page's own messages during an outage are in browser-outage.test.ts.)
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, loggedInDevice, LONG_TTL, PASSWORD, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'
import { startRedis } from './helpers/redis.mjs'

await browserSuite(t, 'client-outage', run)

function run ({ browser, startApp }: BrowserSuite): void {
  t.test('Redis down for 5 s and back: nobody is logged out', async (t) => {
    // A Redis of its own to stop and start again, keeping its data on disk.
    const own = await startRedis(t, ['--appendonly', 'yes', '--appendfsync', 'always'])
    const running = await startApp(t, LONG_TTL, own)
    const laptop = await loggedInDevice(t, browser, running.url, 'sam', PASSWORD, 3)
    const phone = await loggedInDevice(t, browser, running.url, 'tess', PASSWORD)
    const tabs = [...laptop.tabs, ...phone.tabs]
    const refreshes = tabs.map((tab) => watchRefreshes(tab))

    await own.stop()
    // Every tab needs a refresh while the store is down.
    await laptop.context.clearCookies({ name: 'access_token' })
    await phone.context.clearCookies({ name: 'access_token' })
    const clicks = Promise.all(tabs.map(async (tab) => await clickAndSettle(tab, 'reload-me')))
    await sleep(5000)
    t.ok(refreshes.flat().length > 0 && refreshes.flat().every((status) => status === 503), 'while it is down, refreshes get 503')
    await own.start()
    await clicks

    for (const [i, tab] of tabs.entries()) {
      t.equal(await tab.locator('main').getAttribute('data-state'), 'signed-in', `tab ${i + 1} is still logged in`)
      t.equal(await tab.getByTestId('who').textContent(), i < 3 ? 'sam' : 'tess', `and still shows its user (${refreshes[i]?.join(', ')})`)
    }
    t.ok(refreshes.some((statuses) => statuses.includes(200)), 'a refresh retried after the outage went through')
    t.same(audits(running, 'onReuseDetected'), [], 'no refresh was taken for theft')
    // Both sessions live on.
    for (const { context, tabs: [tab] } of [laptop, phone]) {
      await context.clearCookies({ name: 'access_token' })
      const meCalls = watchStatuses(tab as Page, '/me')
      await clickAndSettle(tab as Page, 'reload-me')
      t.same(meCalls, [401, 200], 'a refresh after the outage works')
    }
  })
}
