import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, clickFor, loggedInDevice, messageOf, newDevice, openPage, registerUser, shownExpiry,
  submitLogin, waitForMessage, waitForState, watchPage, watchRefreshes, watchStatuses, type BrowserSuite, type RunningApp
} from './helpers/browser.js'
import { startRedis } from './helpers/redis.mjs'

/**
 * The example app's page in a real browser: login, the silent refresh (ahead of expiry,
 * and when the access cookie is gone), the ways a session ends, and what the page must
 * never do (expose a token to scripts, break its CSP). The browser client's own cases
 * (many tabs, lost answers, frozen tabs, outages) are in browser-client.test.ts.
 */

const PASSWORD = 'correct horse battery'
/** Short enough to wait out; the tests that wait use it. */
const SHORT_TTL = { ACCESS_TOKEN_TTL: '4' }
/** A session that ends soon, however often it is refreshed: its lifetime is 6 s. */
const SHORT_SESSION = { ACCESS_TOKEN_TTL: '2', REFRESH_TOKEN_TTL: '4', SESSION_MAX_LIFETIME: '6' }
/** Long enough that no token expires during a test that is not about expiry. */
const LONG_TTL = { ACCESS_TOKEN_TTL: '300' }
/** Where the screenshot goes (ignored by git). */
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

await browserSuite(t, 'browser', run)

function run ({ browser, startApp: startSuiteApp }: BrowserSuite): void {
  /**
   * The app for one test: strict reuse detection (no grace window, so that any refresh
   * token presented twice sets off the alarm).
   */
  async function startApp (t: Test, env: NodeJS.ProcessEnv): Promise<RunningApp> {
    return await startSuiteApp(t, { REFRESH_REUSE_GRACE: '0', ...env })
  }

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

  t.test('ending another device\'s session from the sessions list logs that device out', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'dave', PASSWORD)
    const laptop = await (await newDevice(t, browser)).newPage()
    const phone = await (await newDevice(t, browser)).newPage()
    await openPage(laptop, running.url, 'signed-out')
    await submitLogin(laptop, 'dave', PASSWORD)
    await openPage(phone, running.url, 'signed-out')
    await submitLogin(phone, 'dave', PASSWORD)
    const phoneSession = await phone.locator('[data-testid="session-row"][data-current="true"]').getAttribute('data-session-id')

    await clickFor(laptop, 'reload-sessions', 'GET', '/auth/sessions')
    const rows = laptop.getByTestId('session-row')
    t.equal(await rows.count(), 2, 'the laptop sees both sessions')
    const other = laptop.locator('[data-testid="session-row"][data-current="false"]')
    t.equal(await other.getAttribute('data-session-id'), phoneSession, 'the other one is the phone\'s')
    // WCAG 2.5.3: the accessible name starts with the visible text; no time frozen in it.
    t.match(await other.getByTestId('end-session').getAttribute('aria-label'), /^End session: Chrome.* on Linux, 127\.0\.0\.1$/,
      'the End button\'s accessible name is its text, then the device and IP')
    t.match(await rows.and(laptop.locator('[data-current="true"]')).getByTestId('end-session').getAttribute('aria-label'),
      /^End \(log out here\): Chrome.* on Linux, 127\.0\.0\.1, this device$/, 'and for this device\'s row')

    const [ended] = await Promise.all([
      laptop.waitForResponse((response) => response.request().method() === 'DELETE'),
      other.getByTestId('end-session').click()
    ])
    t.equal(ended.status(), 204, 'the phone\'s session ended')
    t.equal(new URL(ended.url()).pathname, `/auth/sessions/${phoneSession}`, 'the row\'s session')
    t.equal(ended.request().headers()['x-requested-with'], 'fetch', 'the DELETE carries the anti-CSRF header')
    await waitForMessage(laptop, 'SESSION_ENDED')
    await laptop.locator('[data-testid="session-row"]:only-child[data-current="true"]').waitFor()
    t.equal(await rows.count(), 1, 'the list shows the laptop alone')

    const phoneRefreshes = watchRefreshes(phone)
    const me = await clickFor(phone, 'reload-me', 'GET', '/me')
    t.equal(me.status(), 401, 'the phone\'s next request is refused')
    t.equal((await me.json()).code, 'FTS_SESSION_REVOKED', 'the phone\'s unexpired access token is refused at once')
    await waitForState(phone, 'signed-out')
    const message = await waitForMessage(phone, 'FTS_SESSION_REVOKED')
    t.match(message.text, /session was ended: from another device or tab/, 'the phone says its session was ended elsewhere')
    t.match(message.text, /used twice/, 'or by reuse detection, as its owner sees it')
    t.same(phoneRefreshes, [], 'a revoked session is not refreshed')

    const still = await clickFor(laptop, 'reload-me', 'GET', '/me')
    t.equal(still.status(), 200, 'the laptop is still logged in')
    const everywhere = await clickFor(laptop, 'logout-all', 'POST', '/auth/logout-all')
    t.equal(everywhere.status(), 204, 'logged out everywhere')
    await waitForState(laptop, 'signed-out')
    t.match(await waitForMessage(laptop, 'LOGGED_OUT_ALL'), { text: /logged out on every device/ })
  })

  t.test('a refresh token used elsewhere first: the page signs out "for your security"', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'heidi', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    await openPage(page, running.url, 'signed-out')
    await submitLogin(page, 'heidi', PASSWORD)

    // A thief who copied the refresh cookie uses it first; the browser's copy is now stale.
    // The page bound the session to its DPoP key, so the thief needs a proof by it: script
    // running in the page (an XSS) can have one signed, though it cannot read the key.
    const stolen = (await context.cookies()).find((cookie) => cookie.name === 'refresh_token')?.value
    const proof = await page.evaluate('import("/client/dpop.js").then((dpop) => dpop.createDpopProver()).then((prover) => prover.proof("POST", location.origin + "/auth/refresh"))') as string
    const thief = await fetch(`${running.url}/auth/refresh`, {
      method: 'POST', headers: { 'content-type': 'application/json', dpop: proof }, body: JSON.stringify({ refreshToken: stolen })
    })
    t.equal(thief.status, 200, 'the thief rotated the token')
    // The page's access token is gone (as after its lifetime), so it has to refresh.
    await context.clearCookies({ name: 'access_token' })

    const refreshes = watchRefreshes(page)
    await clickAndSettle(page, 'reload-me')
    t.same(refreshes, [401], 'one refresh, refused')
    await waitForState(page, 'signed-out')
    const message = await waitForMessage(page, 'FTS_TOKEN_REUSED')
    t.match(message.text, /signed out for your security/, 'the page says why')
    t.equal(audits(running, 'onReuseDetected').length, 1, 'the server detected the reuse')
  })

  t.test('while the session store is down or refreshes are rate-limited, the page keeps the user logged in', async (t) => {
    // A Redis of its own to crash and restart (keeping its data on disk), and a refresh
    // limit (counted in the app, so during the outage too) low enough to reach.
    const own = await startRedis(t, ['--appendonly', 'yes', '--appendfsync', 'always'])
    // The default reuse grace: it is what lets a refresh retried after an outage through.
    const running = await startSuiteApp(t, { ...LONG_TTL, RATE_LIMIT_REFRESH: '25' }, own)
    const { context, tabs: [page] } = await loggedInDevice(t, browser, running.url, 'ivan', PASSWORD) as { context: BrowserContext, tabs: [Page] }
    const refreshes = watchRefreshes(page)

    await own.stop()
    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')
    t.ok(refreshes.length === 6 && refreshes.every((status) => status === 503), `the refresh could not reach the store, tried 6 times (${refreshes.join(', ')})`)
    const down = await waitForMessage(page, 'FTS_STORE_UNAVAILABLE')
    t.match(down.text, /try again shortly/, 'the page says to try again shortly')
    t.equal(await page.locator('main').getAttribute('data-state'), 'signed-in', 'the user stays logged in')
    t.equal(await page.getByTestId('who').textContent(), 'ivan', 'and is still shown')

    // Trying again once Redis is back (the client reconnects within a few seconds) works.
    await own.start()
    for (let attempt = 0; attempt < 40 && refreshes.at(-1) !== 200; attempt++) {
      await clickAndSettle(page, 'reload-me')
      if (refreshes.at(-1) !== 200) await new Promise((resolve) => setTimeout(resolve, 250))
    }
    t.equal(refreshes.at(-1), 200, 'a later try refreshes the same session')
    t.ok(refreshes.slice(6, -1).every((status) => status === 503), 'after nothing but 503s')
    t.equal(await page.locator('main').getAttribute('data-state'), 'signed-in', 'still logged in')
    t.same(await messageOf(page), { code: '', text: '' }, 'the successful try cleared the "briefly unavailable" message')

    // Refreshes until the minute's limit is used up, in a window of their own: a Retry-After
    // of 10 s or less (the outage above can take most of a minute on a loaded machine) is
    // waited out by the client, and this part is about one it does not wait for.
    const limitedApp = await startSuiteApp(t, { ...LONG_TTL, RATE_LIMIT_REFRESH: '3' }, own)
    const { context: limitedContext, tabs: [limitedPage] } = await loggedInDevice(t, browser, limitedApp.url, 'ivan', PASSWORD) as { context: BrowserContext, tabs: [Page] }
    const limitedRefreshes = watchRefreshes(limitedPage)
    for (let attempt = 0; attempt < 10 && limitedRefreshes.at(-1) !== 429; attempt++) {
      await limitedContext.clearCookies({ name: 'access_token' })
      await clickAndSettle(limitedPage, 'reload-me')
    }
    t.equal(limitedRefreshes.at(-1), 429, 'a refresh over the minute\'s limit is refused')
    const limited = await waitForMessage(limitedPage, 'RATE_LIMITED')
    t.match(limited.text, /Try again in \d+ s/, 'the page says when to try again')
    t.equal(await limitedPage.locator('main').getAttribute('data-state'), 'signed-in', 'the user stays logged in')
  })

  t.test('a refresh the server refuses as cross-site (a proxy that drops the anti-CSRF header): the page signs out once, and the console says what to fix', async (t) => {
    const running = await startApp(t, LONG_TTL)
    const { context, tabs: [page] } = await loggedInDevice(t, browser, running.url, 'judy', PASSWORD) as { context: BrowserContext, tabs: [Page] }
    const warnings: string[] = []
    page.on('console', (message) => {
      if (message.type() === 'warning') warnings.push(message.text())
    })
    // As a proxy that passes on only the headers it knows would.
    await page.route('**/auth/refresh', async (route) => {
      const { 'x-requested-with': _dropped, ...headers } = route.request().headers()
      await route.continue({ headers })
    })
    const refreshes = watchRefreshes(page)
    const meCalls = watchStatuses(page, '/me')

    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')
    t.same(refreshes, [403], 'one refresh, refused')
    await waitForState(page, 'signed-out')
    const ended = await waitForMessage(page, 'FTS_CSRF_REJECTED')
    t.match(ended.text, /refused to renew your session/, 'the page says the session ended, and why')
    t.equal(warnings.length, 1, 'one console warning')
    t.match(warnings[0], /403 FTS_CSRF_REJECTED.*publicOrigin and allowedOrigins.*csrfHeader.*troubleshooting\.md#fts_csrf_rejected/, 'with what to check')
    t.match(running.logs.entries().find((entry) => entry.code === 'FTS_CSRF_REJECTED'), { check: 'csrf-header', origin: running.url, option: 'csrfHeader' },
      'the server\'s log names the check that failed and the option')
    t.same(meCalls, [401], 'the call that asked for it got its own answer')
    t.equal(await page.locator('main').getAttribute('data-state'), 'signed-out', 'and the page stays signed out')
  })

  t.test('a session that reaches its lifetime says it expired, and not "you logged out"', async (t) => {
    const running = await startApp(t, SHORT_SESSION)
    await registerUser(running.url, 'kim', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    const problems = await watchPage(page)
    await openPage(page, running.url, 'signed-out')
    // A logout first: it must not colour how the next session's end is told.
    await submitLogin(page, 'kim', PASSWORD)
    await clickAndSettle(page, 'logout')
    await waitForMessage(page, 'LOGGED_OUT')
    const refreshes = watchRefreshes(page)
    await submitLogin(page, 'kim', PASSWORD)

    // The page renews the 2 s access token ahead of time until the session's 6 s lifetime
    // runs out: the browser drops the cookies when it does, or the server refuses the refresh.
    await page.locator('main[data-state="signed-out"]').waitFor({ state: 'attached', timeout: 15_000 })
    const message = await messageOf(page)
    t.ok(['FTS_TOKEN_MISSING', 'FTS_SESSION_EXPIRED'].includes(message.code), `ended by the lifetime (${message.code})`)
    t.match(message.text, /Your session has expired/, 'the page says the session expired')
    t.notMatch(message.text, /logged out/i, 'not that the user logged out')
    t.ok(refreshes.filter((status) => status === 200).length >= 2, `after refreshes ahead of expiry (${refreshes.join(', ')})`)
    t.equal(refreshes.at(-1), 401, 'the last refresh was refused')
    t.same(problems.pageErrors, [], 'no uncaught error in the page')
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
