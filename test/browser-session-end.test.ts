// How the example app's page, in a real browser, tells the ways a session ends that are not
// its own logout: ended from another device's sessions list, signed out after a refresh
// token was used elsewhere first, a refresh the server refuses as cross-site, and the
// session's lifetime reached.
import t from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, clickFor, loggedInDevice, LONG_TTL, messageOf, newDevice, openPage, PASSWORD, registerUser, submitLogin,
  waitForMessage, waitForState, watchPage, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'

/** A session that ends soon, however often it is refreshed: its lifetime is 6 s. */
const SHORT_SESSION = { ACCESS_TOKEN_TTL: '2', REFRESH_TOKEN_TTL: '4', SESSION_MAX_LIFETIME: '6' }

await browserSuite(t, 'session-end', run)

function run ({ browser, startApp: startPlainApp, startStrictApp: startApp }: BrowserSuite): void {
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

  t.test('a refresh the server refuses as cross-site (a proxy that drops the anti-CSRF header): the page signs out once, and the console says what to fix', async (t) => {
    const running = await startPlainApp(t, LONG_TTL)
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
}
