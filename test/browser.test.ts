// The example app's page in a real browser, its main path: register and log in, the silent
// refresh (ahead of expiry, and when the access cookie is gone), a logout that reaches every
// tab, an account that cannot be loaded at first, and what the page must never do (expose
// a token to scripts, break its CSP). The other ways a session ends are in
// browser-session-end.test.ts, a store outage and the rate limit in browser-outage.test.ts,
// the browser client's own cases (many tabs, lost answers, frozen tabs) in the
// browser-client-*.test.ts files.
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, clickFor, LONG_TTL, messageOf, newDevice, openPage, PASSWORD, registerUser, shownExpiry,
  submitLogin, waitForMessage, waitForState, watchPage, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'
import { freePort } from './helpers/redis.mjs'

/** Short enough to wait out; the tests that wait use it. */
const SHORT_TTL = { ACCESS_TOKEN_TTL: '4' }
/** Where the screenshot goes (ignored by git). */
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

await browserSuite(t, 'browser', run)

function run ({ browser, startStrictApp: startApp }: BrowserSuite): void {
  t.test('register and log in through the page; the access token is renewed before it expires, and a lost one on demand', async (t) => {
    const running = await startApp(t, SHORT_TTL)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    const problems = await watchPage(page)
    await openPage(page, running.url, 'signed-out')

    const refreshes = watchRefreshes(page)
    const refreshHeaders: Array<Record<string, string>> = []
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/auth/refresh') refreshHeaders.push(request.headers())
    })
    const meCalls = watchStatuses(page, '/me')
    const proactive = page.waitForResponse((response) => new URL(response.url()).pathname === '/auth/refresh', { timeout: 10_000 })
    await submitLogin(page, 'alice', PASSWORD, 'register')
    const loggedInAt = Date.now()
    t.equal(await page.getByTestId('who').textContent(), 'alice', 'the user is shown')
    const firstExpiry = await shownExpiry(page)
    t.ok(firstExpiry > Date.now() && firstExpiry <= Date.now() + 4000, 'the expiry shown is the short access token\'s')
    t.match(await page.getByTestId('token-remaining').textContent(), /^expires in [1234] s$/, 'the remaining lifetime is shown')

    // A quarter of the 4 s lifetime before it ends, the page renews it on its own.
    const renewal = await proactive
    t.equal(renewal.status(), 200, 'refreshed ahead of expiry')
    // When the browser sent it (its own clock, this machine's): the moment under test, not
    // when this process, busy with other test files, got round to reading the answer.
    const sentAt = renewal.request().timing().startTime
    t.ok(sentAt >= loggedInAt + 1500 && sentAt < firstExpiry, 'shortly before the access token expired')
    await waitUntilAsync(async () => await shownExpiry(page) > firstExpiry)
    t.pass('the new access token\'s expiry is shown')
    t.equal(refreshHeaders[0]?.['x-requested-with'], 'fetch', 'the refresh carries the anti-CSRF header')
    t.equal(refreshHeaders[0]?.['content-type'], undefined, 'and no content type, having no body')
    t.notOk(meCalls.includes(401), 'no request failed on the way')

    // An access cookie gone (the browser dropped it): the next call renews it silently.
    await context.clearCookies({ name: 'access_token' })
    const before = refreshes.length
    await clickAndSettle(page, 'reload-me')
    t.same(meCalls.slice(-2), [401, 200], 'the call failed once, then its retry succeeded')
    t.same(refreshes.slice(before), [200], 'exactly one refresh for it, and it succeeded')
    t.equal(await page.getByTestId('who').textContent(), 'alice', 'the user is still shown')
    await waitForState(page, 'signed-in')
    t.equal((await messageOf(page)).text, '', 'no message: the refreshes were silent')

    const sessions = await clickFor(page, 'reload-sessions', 'GET', '/auth/sessions')
    t.equal(sessions.status(), 200, 'the sessions list loads')
    const rows = page.getByTestId('session-row')
    t.equal(await rows.count(), 1, 'one session, rotated rather than replaced')
    t.equal(await rows.first().getAttribute('data-current'), 'true')
    t.equal(await rows.first().getByTestId('this-device').textContent(), 'This device')
    t.match(await rows.first().textContent(), /Chrome.* on Linux.*127\.0\.0\.1/, 'device summarised and IP shown')
    t.equal(audits(running, 'onRefresh').length, refreshes.filter((status) => status === 200).length, 'the server rotated once per refresh')
    t.same(audits(running, 'onReuseDetected'), [], 'and saw no reuse')
    t.same(problems.pageErrors, [], 'no uncaught error in the page')
  })

  t.test('logout in one tab ends the other tabs\' sessions within a second, with no request of theirs', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'carol', PASSWORD)
    const context = await newDevice(t, browser)
    const tabA = await context.newPage()
    const others = [await context.newPage(), await context.newPage()]
    await openPage(tabA, running.url, 'signed-out')
    await submitLogin(tabA, 'carol', PASSWORD)
    for (const tab of others) await openPage(tab, running.url, 'signed-in')
    const requests: string[] = []
    for (const tab of others) tab.on('request', (request) => requests.push(new URL(request.url()).pathname))

    const logout = await clickFor(tabA, 'logout', 'POST', '/auth/logout')
    const loggedOutAt = Date.now()
    t.equal(logout.status(), 204, 'logged out')
    t.equal(logout.request().headers()['x-requested-with'], 'fetch', 'the logout carries the anti-CSRF header')
    t.equal(logout.request().headers()['content-type'], undefined, 'and no content type without a body')
    await waitForState(tabA, 'signed-out')
    t.match(await waitForMessage(tabA, 'LOGGED_OUT'), { text: /You have logged out/ })
    t.same(await context.cookies(), [], 'the logout cleared the cookies')

    for (const [i, tab] of others.entries()) {
      await waitForState(tab, 'signed-out')
      t.ok(Date.now() - loggedOutAt < 1000, `tab ${i + 2} shows the login form within a second`)
      const message = await waitForMessage(tab, 'LOGGED_OUT_ELSEWHERE')
      t.match(message.text, /You logged out/, 'it says the user logged out')
      t.notMatch(message.text, /expired/, 'and not that the session expired')
      t.equal(await tab.getByTestId('who').textContent(), '', 'the user is no longer shown')
    }
    t.same(requests, [], 'the other tabs learned it from the first one, not from a failed request')

    const reloaded = others[0] as Page
    await reloaded.reload()
    await waitForState(reloaded, 'signed-out')
    t.equal((await messageOf(reloaded)).text, '', 'a reload shows the login form, quietly')
  })

  t.test('when the account cannot be loaded as the page opens, the page says so and "Check who I am" loads it', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'lou', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    const problems = await watchPage(page)
    await openPage(page, running.url, 'signed-out')
    await submitLogin(page, 'lou', PASSWORD)

    // The first GET /me after the reload fails as if the network were down; later ones pass.
    let meRequests = 0
    await page.route('**/me', async (route) => {
      if (meRequests++ === 0) await route.abort('internetdisconnected')
      else await route.continue()
    })
    await page.reload()
    await waitForState(page, 'signed-in')
    const failed = await waitForMessage(page, 'NETWORK')
    t.match(failed.text, /Could not reach the server/, 'the page says the server could not be reached')
    t.ok(await page.getByTestId('load-failed').isVisible(), 'and that the account could not be loaded')
    t.equal(await page.locator('#signed-in-title').innerText(), 'Signed in', 'the heading names no one rather than an empty name')
    t.match(await page.getByTestId('token-remaining').textContent(), /^expires in \d+ min/, 'the token\'s lifetime is known all the same: the login left it in the tabs\' note')
    t.ok(await page.getByTestId('reload-me').isEnabled(), '"Check who I am" can be used')

    await clickAndSettle(page, 'reload-me')
    t.equal(meRequests, 2, 'it asked again, once')
    t.equal(await page.getByTestId('who').textContent(), 'lou', 'the retry shows the user')
    t.equal(await page.locator('#signed-in-title').innerText(), 'Signed in as lou')
    t.notOk(await page.getByTestId('load-failed').isVisible(), 'the "could not be loaded" text is gone')
    t.equal(await page.getByTestId('session-row').count(), 1, 'the sessions list is loaded too')
    t.same(await messageOf(page), { code: '', text: '' }, 'the success cleared the message')
    t.same(problems.pageErrors, [], 'no uncaught error in the page')
  })

  t.test('the tokens are httpOnly cookies that the page\'s scripts never see', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'erin', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    await openPage(page, running.url, 'signed-out')
    const login = await submitLogin(page, 'erin', PASSWORD)
    const { accessToken } = await login.json() as { accessToken: string }
    t.match(accessToken, /^eyJ/, 'the login answered with an access token')

    t.equal(await page.evaluate<string>('document.cookie'), '', 'document.cookie shows nothing')
    const cookies = new Map((await context.cookies()).map((cookie) => [cookie.name, cookie]))
    t.match(cookies.get('access_token'), { httpOnly: true, sameSite: 'Strict', path: '/' }, 'the access token cookie')
    t.match(cookies.get('refresh_token'), { httpOnly: true, sameSite: 'Strict', path: '/auth' }, 'the refresh token cookie')
    t.equal(cookies.get('access_token')?.value, accessToken, 'the cookie holds the token the login issued')

    const stored = await page.evaluate<string>('JSON.stringify([{ ...localStorage }, { ...sessionStorage }])')
    t.notOk(stored.includes(accessToken), 'the page keeps no token in storage')
    t.notOk(stored.includes(cookies.get('refresh_token')?.value ?? 'missing'), 'nor the refresh token')
    t.notOk((await page.content()).includes(accessToken), 'nor in the document')
  })

  t.test('the page says so when the server keeps sessions in memory (no Redis), and only then', async (t) => {
    const inMemory = await startApp(t, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
    const withRedis = await startApp(t, {})
    const page = await (await newDevice(t, browser)).newPage()
    await openPage(page, inMemory.url, 'signed-out')
    await page.getByTestId('in-memory').waitFor({ state: 'visible', timeout: 5000 })
    t.match(await page.getByTestId('in-memory').innerText(), /memory only/, 'without Redis: the notice shows')
    // The page reads readiness as it opens: wait for that answer, and a moment after it.
    const answered = page.waitForResponse((response) => response.url().endsWith('/health/ready'))
    await openPage(page, withRedis.url, 'signed-out')
    t.equal((await (await answered).json()).storage, 'redis')
    await page.waitForTimeout(200)
    t.equal(await page.getByTestId('in-memory').isVisible(), false, 'with Redis: no notice')
  })

  t.test('a screenshot of the logged-in page', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'frank', PASSWORD)
    const phone = await (await newDevice(t, browser)).newPage()
    await openPage(phone, running.url, 'signed-out')
    await submitLogin(phone, 'frank', PASSWORD)
    const page = await (await newDevice(t, browser)).newPage()
    await page.setViewportSize({ width: 1024, height: 720 })
    await openPage(page, running.url, 'signed-out')
    await submitLogin(page, 'frank', PASSWORD)
    t.equal(await page.getByTestId('session-row').count(), 2, 'two sessions on show')

    mkdirSync(ARTIFACTS, { recursive: true })
    const file = `${ARTIFACTS}logged-in.png`
    rmSync(file, { force: true })
    await page.screenshot({ path: file, fullPage: true })
    t.ok(statSync(file).size > 1000, 'the screenshot was written')
    const png = readFileSync(file)
    t.same(png.subarray(0, 8), PNG_SIGNATURE, 'it is a PNG')
    t.equal(png.readUInt32BE(16), 1024, 'as wide as the viewport')
  })

  t.test('the page loads and logs in without a CSP violation or a console error', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'grace', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    const problems = await watchPage(page)
    const assets: Array<[string, number]> = []
    page.on('response', (response) => {
      const path = new URL(response.url()).pathname
      if (/\.(js|css|svg)$/.test(path)) assets.push([path, response.status()])
    })

    await openPage(page, running.url, 'signed-out')
    await submitLogin(page, 'grace', PASSWORD)
    await page.reload()
    await waitForState(page, 'signed-in')
    await page.getByTestId('session-row').first().waitFor()

    t.same(problems, { consoleErrors: [], pageErrors: [], cspViolations: [] }, 'no console error, uncaught error or CSP violation')
    for (const asset of ['/app.js', '/app.css', '/client/index.js']) {
      t.ok(assets.some(([path, status]) => path === asset && status === 200), `${asset} loaded`)
    }
    t.equal(await page.evaluate<string>('getComputedStyle(document.getElementById("signed-in")).borderTopLeftRadius'), '8px',
      'the stylesheet is in effect')

    // The watch itself works: an inline script is refused and reported.
    await page.evaluate(`{
      const script = document.createElement('script')
      script.textContent = 'document.title = "inline"'
      document.head.append(script)
    }`)
    await t.resolves(waitUntil(() => problems.cspViolations.length > 0), 'a CSP violation would be seen')
    t.not(await page.title(), 'inline', 'and the inline script did not run')
  })
}

/** Polls an async `condition` every 50 ms for up to 5 s. */
async function waitUntilAsync (condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await condition()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('condition not met within 5 s')
}

/** Polls `condition` every 50 ms for up to 5 s. */
async function waitUntil (condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (condition()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('condition not met within 5 s')
}
