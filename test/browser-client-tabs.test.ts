// The browser client (fastify-token-sessions/client) in real Chromium tabs against the
// example app on a private Redis, its tabs sharing one session: five tabs that need a
// refresh at the same moment, and tabs frozen past their token's expiry, then resumed. (A
// logout in one tab ending the others within a second is in browser.test.ts, with the
// page's other cases; the client's other cases are in the browser-client-*.test.ts files.)
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, loggedInDevice, LONG_TTL, PASSWORD, shownExpiry, watchPage, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'

await browserSuite(t, 'client-tabs', run)

function run ({ browser, startApp }: BrowserSuite): void {
  t.test('five tabs whose access tokens expired call the API at the same moment: the server sees exactly one refresh', async (t) => {
    // Strict reuse detection: a refresh token presented twice would end the session.
    const running = await startApp(t, { ...LONG_TTL, REFRESH_REUSE_GRACE: '0' })
    const { context, tabs } = await loggedInDevice(t, browser, running.url, 'penny', PASSWORD, 5)
    const problems = await Promise.all(tabs.map(async (tab) => await watchPage(tab)))
    const meCalls = tabs.map((tab) => watchStatuses(tab, '/me'))
    const refreshes = tabs.map((tab) => watchRefreshes(tab))

    // The access cookie's Max-Age is its token's lifetime: an expired token is a cookie gone.
    await context.clearCookies({ name: 'access_token' })
    // Hold the first refresh until every tab has had its 401, so that all five need a
    // refresh at the same time however fast the machine; a second refresh is not held.
    let allFailed: () => void = () => {}
    const failed = new Promise<void>((resolve) => { allFailed = resolve })
    for (const tab of tabs) {
      tab.on('response', () => {
        if (meCalls.every((calls) => calls.includes(401))) allFailed()
      })
    }
    let held = 0
    await context.route('**/auth/refresh', async (route) => {
      if (held++ === 0) await Promise.race([failed, sleep(10_000)])
      await route.continue()
    })
    await Promise.all(tabs.map(async (tab) => await clickAndSettle(tab, 'reload-me')))

    t.same(refreshes.flat(), [200], 'one refresh for five tabs, and it succeeded')
    t.equal(held, 1, 'the server was asked once')
    t.equal(audits(running, 'onRefresh').length, 1, 'the server rotated once')
    t.same(audits(running, 'onReuseDetected'), [], 'and saw no reuse')
    for (const [i, calls] of meCalls.entries()) {
      t.same(calls, [401, 200], `tab ${i + 1}: the call failed once, then its retry succeeded`)
      t.equal(await tabs[i]?.locator('main').getAttribute('data-state'), 'signed-in', `tab ${i + 1} is still logged in`)
    }
    // (Each tab's console shows its 401: Chromium logs every failed request there.)
    t.same(problems.flatMap((p) => p.pageErrors), [], 'no uncaught error in any tab')
  })

  t.test('tabs frozen past their token\'s expiry, then resumed: one refresh between them, no burst', async (t) => {
    const running = await startApp(t, { ACCESS_TOKEN_TTL: '4' })
    const { context, tabs } = await loggedInDevice(t, browser, running.url, 'ruth', PASSWORD, 2)
    const problems = await Promise.all(tabs.map(async (tab) => await watchPage(tab)))
    const expiry = await shownExpiry(tabs[0] as Page)
    // A frozen tab runs no script: no timer, no event. Headless Chromium does not freeze a
    // visible page (Page.setWebLifecycleState is ignored there), so the debugger halts each
    // tab's scripts instead, which is what freezing does to them.
    const debuggers = await Promise.all(tabs.map(async (tab) => {
      const cdp = await context.newCDPSession(tab)
      await cdp.send('Debugger.enable')
      const paused = new Promise((resolve) => cdp.once('Debugger.paused', resolve))
      await cdp.send('Debugger.pause')
      // It halts at the next script to run (the page's countdown ticks every second).
      await paused
      return cdp
    }))
    const rotatedBefore = audits(running, 'onRefresh').length
    await sleep(Math.max(0, expiry + 1500 - Date.now()))
    t.equal(audits(running, 'onRefresh').length, rotatedBefore, 'nothing refreshed while frozen')
    t.same((await context.cookies()).filter((cookie) => cookie.name === 'access_token'), [], 'the access token expired meanwhile')

    const refreshes = tabs.map((tab) => watchRefreshes(tab))
    const resumedAt = Date.now()
    for (const cdp of debuggers) {
      await cdp.send('Debugger.resume')
      await cdp.send('Debugger.disable')
    }
    // What an unfrozen tab hears, besides its late timers.
    await Promise.all(tabs.map(async (tab) => await tab.evaluate('document.dispatchEvent(new Event("resume"))')))
    await context.waitForEvent('response', { predicate: (response) => new URL(response.url()).pathname === '/auth/refresh', timeout: 5000 })
    // Within a second or so: a woken tab first lets the other tabs' news arrive (0.5-1 s).
    t.ok(Date.now() - resumedAt < 4000, `renewed soon after the resume (${Date.now() - resumedAt} ms)`)
    // Well before the new token's own proactive refresh (3 s after it was issued).
    await sleep(1000)
    t.same(refreshes.flat(), [200], 'one refresh for both tabs')
    for (const [i, tab] of tabs.entries()) {
      const meCalls = watchStatuses(tab, '/me')
      await clickAndSettle(tab, 'reload-me')
      t.same(meCalls, [200], `tab ${i + 1} calls the API with the new token at once`)
    }
    t.same(audits(running, 'onReuseDetected'), [], 'no reuse')
    t.same(problems.flatMap((p) => p.pageErrors), [], 'no uncaught error in either tab')
  })
}
