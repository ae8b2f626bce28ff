// The browser client (fastify-token-sessions/client) in real Chromium tabs against the
// example app on a private Redis, where a failure must not end the session: a refresh whose
// answer is lost on the way, and the app's own 401 for a wrong current password.
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, loggedInDevice, LONG_TTL, messageOf, PASSWORD, waitForMessage, waitForState, watchRefreshes, watchStatuses,
  type BrowserSuite
} from './helpers/browser.js'

await browserSuite(t, 'client-recovery', run)

function run ({ browser, startApp }: BrowserSuite): void {
  t.test('a refresh whose answer is lost on the way (the server rotated, the tab never heard) recovers without a logout', async (t) => {
    const running = await startApp(t, LONG_TTL)
    // The page talks to the app through a proxy that, once, lets a refresh reach the app
    // and then keeps its answer.
    let refreshRequests = 0
    let lose = 1
    const proxy = createServer((incoming, outgoing) => {
      const target = new URL(running.url)
      if (incoming.url === '/auth/refresh') refreshRequests++
      const upstream = request({ host: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers: incoming.headers }, (answer) => {
        if (incoming.url === '/auth/refresh' && answer.statusCode === 200 && lose-- > 0) {
          // The answer never comes: the client gives up after its refreshTimeout. (A
          // connection that breaks instead is not the page's to handle: the browser itself
          // sends the request again.)
          answer.resume()
          return
        }
        outgoing.writeHead(answer.statusCode ?? 502, answer.rawHeaders)
        answer.pipe(outgoing)
      })
      incoming.pipe(upstream)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    t.teardown(async () => await new Promise((resolve) => proxy.close(resolve)))
    proxy.on('connection', (socket) => t.teardown(() => socket.destroy()))
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`

    const { context, tabs: [page] } = await loggedInDevice(t, browser, url, 'quinn', PASSWORD) as { context: BrowserContext, tabs: [Page] }
    const meCalls = watchStatuses(page, '/me')
    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')

    t.equal(lose, -1, 'the first refresh\'s answer was lost')
    t.equal(refreshRequests, 2, 'the client sent the refresh again, once')
    t.same(meCalls, [401, 200], 'the call went through after it')
    t.equal(await page.locator('main').getAttribute('data-state'), 'signed-in', 'still logged in')
    t.equal((await messageOf(page)).text, '', 'and nothing to say about it')
    t.ok(audits(running, 'onRefresh').length >= 1, 'the server had rotated')
    t.same(audits(running, 'onReuseDetected'), [], 'the rotated token came back within the grace window (10 s; the client gave up after 5 s): no theft')
    // The session lives on: the next refresh, from the cookies the recovery left, works.
    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')
    t.same(meCalls.slice(-2), [401, 200], 'a later refresh works too')
  })

  t.test('a wrong current password (the app\'s own 401) does not end the session', async (t) => {
    const running = await startApp(t, LONG_TTL)
    const { context, tabs: [page, other] } = await loggedInDevice(t, browser, running.url, 'uma', PASSWORD, 2) as { context: BrowserContext, tabs: [Page, Page] }
    const changes = watchStatuses(page, '/auth/change-password', 'POST')
    const refreshes = watchRefreshes(page)
    // Its access cookie gone too: the first answer is the plugin's 401, the retry's the app's.
    await context.clearCookies({ name: 'access_token' })
    await page.getByLabel('Current password').fill('not my password')
    await page.getByLabel('New password').fill('a brand new password')
    await clickAndSettle(page, 'change-password')

    t.same(changes, [401, 401], 'refused for the expired token, then for the password')
    t.same(refreshes, [200], 'one refresh between the two')
    const message = await waitForMessage(page, 'INVALID_CREDENTIALS')
    t.match(message.text, /current password is wrong/, 'the page says the password was wrong')
    for (const tab of [page, other]) t.equal(await tab.locator('main').getAttribute('data-state'), 'signed-in', 'and every tab is still logged in')
    t.equal(await page.getByTestId('who').textContent(), 'uma')

    await page.getByLabel('Current password').fill(PASSWORD)
    await clickAndSettle(page, 'change-password')
    t.equal(changes.at(-1), 204, 'the right password changes it')
    await waitForMessage(page, 'PASSWORD_CHANGED')
    await waitForState(page, 'signed-in')
  })
}
