import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { Browser, Page, Response } from 'playwright-core'
import {
  browserSkipReason, launchBrowser, messageOf, newDevice, openPage, registerUser, shownExpiry, startExampleApp,
  submitLogin, waitForMessage, waitForState, waitPastExpiry, watchPage, watchRefreshes, watchStatuses, type RunningApp
} from './helpers/browser.js'
import { startRedis, type RedisServer } from './helpers/redis.mjs'

/**
 * The example app's page in a real browser: login, the silent refresh when the access
 * token has expired, tabs sharing one refresh, the ways a session ends, and what the page
 * must never do (expose a token to scripts, break its CSP).
 */

const PASSWORD = 'correct horse battery'
/** Short enough to wait out; the tests that wait use it. */
const SHORT_TTL = { ACCESS_TOKEN_TTL: '3' }
/**
 * A session that expires soon: the refresh cookie's Max-Age is the session's idle
 * timeout, so the browser drops it 4 s after the last login or refresh.
 */
const SHORT_SESSION = { ACCESS_TOKEN_TTL: '2', REFRESH_TOKEN_TTL: '4' }
/** Long enough that no token expires during a test that is not about expiry. */
const LONG_TTL = { ACCESS_TOKEN_TTL: '300' }
/** Where the screenshot goes (ignored by git). */
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

const skipReason = browserSkipReason()
if (skipReason !== undefined) {
  t.plan(0, skipReason)
} else {
  const redis = await startRedis(t)
  const browser = await launchBrowser(t)
  run(redis, browser)
}

function run (redis: RedisServer, browser: Browser): void {
  let apps = 0

  /**
   * The app for one test, on the private Redis: strict reuse detection (no grace window,
   * so that any refresh token presented twice sets off the alarm) and rate limits no
   * test reaches.
   */
  async function startApp (t: Test, env: NodeJS.ProcessEnv): Promise<RunningApp> {
    return await startExampleApp(t, redis.url, {
      KEY_PREFIX: `browser${++apps}:`,
      REFRESH_REUSE_GRACE: '0',
      RATE_LIMIT_LOGIN: '1000000',
      RATE_LIMIT_REFRESH: '1000000',
      ...env
    })
  }

  /** The audit log lines of one hook. */
  function audits (running: RunningApp, hook: string): Array<Record<string, unknown>> {
    return running.logs.entries().filter((entry) => entry.audit === hook)
  }

  /**
   * Clicks a button and waits until what it started has finished: the button disables
   * itself while its requests run and the page shows their outcome.
   */
  async function clickAndSettle (page: Page, testId: string): Promise<void> {
    const button = page.getByTestId(testId)
    await button.click()
    await button.and(page.locator(':enabled')).waitFor({ state: 'attached' })
  }

  /** Clicks a button, waits until it has settled, and returns the answer to its request. */
  async function clickFor (page: Page, testId: string, method: string, path: string): Promise<Response> {
    const [response] = await Promise.all([
      page.waitForResponse((response) => response.request().method() === method && new URL(response.url()).pathname === path),
      clickAndSettle(page, testId)
    ])
    return response
  }

  t.test('register and log in through the page; a silent refresh keeps it working after the access token expires', async (t) => {
    const running = await startApp(t, SHORT_TTL)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    const problems = await watchPage(page)
    await openPage(page, running.url, 'signed-out')

    await submitLogin(page, 'alice', PASSWORD, 'register')
    t.equal(await page.getByTestId('who').textContent(), 'alice', 'the user is shown')
    const firstExpiry = await shownExpiry(page)
    t.ok(firstExpiry > Date.now() && firstExpiry <= Date.now() + 3000, 'the expiry shown is the short access token\'s')
    t.match(await page.getByTestId('token-remaining').textContent(), /^expires in [123] s$/, 'the remaining lifetime is shown')

    const refreshes = watchRefreshes(page)
    const refreshHeaders: Array<Record<string, string>> = []
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/auth/refresh') refreshHeaders.push(request.headers())
    })
    const meCalls = watchStatuses(page, '/me')
    await waitPastExpiry(page)
    await page.getByTestId('token-remaining').filter({ hasText: 'expired' }).waitFor()
    t.pass('the countdown reached zero and says so')

    await clickAndSettle(page, 'reload-me')
    t.same(meCalls, [401, 200], 'the expired call failed once, then its retry succeeded')
    t.same(refreshes, [200], 'exactly one refresh, and it succeeded')
    t.equal(refreshHeaders[0]?.['x-requested-with'], 'fetch', 'the refresh carries the anti-CSRF header')
    t.equal(refreshHeaders[0]?.['content-type'], undefined, 'and no content type, having no body')
    t.equal(await page.getByTestId('who').textContent(), 'alice', 'the user is still shown')
    await waitForState(page, 'signed-in')
    t.ok(await shownExpiry(page) > firstExpiry, 'the new access token\'s expiry is shown')
    t.match(await page.getByTestId('token-remaining').textContent(), /^expires in \d s$/, 'the countdown starts again')
    t.equal((await messageOf(page)).text, '', 'no message: the refresh was silent')

    const sessions = await clickFor(page, 'reload-sessions', 'GET', '/auth/sessions')
    t.equal(sessions.status(), 200, 'the sessions list loads')
    const rows = page.getByTestId('session-row')
    t.equal(await rows.count(), 1, 'one session, rotated rather than replaced')
    t.equal(await rows.first().getAttribute('data-current'), 'true')
    t.equal(await rows.first().getByTestId('this-device').textContent(), 'This device')
    t.match(await rows.first().textContent(), /Chrome.* on Linux.*127\.0\.0\.1/, 'device summarised and IP shown')
    t.equal(audits(running, 'onRefresh').length, 1, 'the server rotated once')
    t.same(problems.pageErrors, [], 'no uncaught error in the page')
  })

  t.test('two tabs whose access token expired share one refresh and stay logged in', async (t) => {
    const running = await startApp(t, SHORT_TTL)
    await registerUser(running.url, 'bob', PASSWORD)
    const context = await newDevice(t, browser)
    const tabA = await context.newPage()
    const tabB = await context.newPage()
    const problems = [await watchPage(tabA), await watchPage(tabB)]
    await openPage(tabA, running.url, 'signed-out')
    await submitLogin(tabA, 'bob', PASSWORD)
    await openPage(tabB, running.url, 'signed-in')
    t.equal(await tabB.getByTestId('who').textContent(), 'bob', 'the second tab picks up the session')

    const refreshes = [watchRefreshes(tabA), watchRefreshes(tabB)]
    const meCalls = [watchStatuses(tabA, '/me'), watchStatuses(tabB, '/me')]
    await waitPastExpiry(tabB)

    // Hold the first refresh until both tabs have had their 401: both need a refresh at
    // the same time, whatever the machine's speed. A second refresh is not held, so a
    // page that raced would present the same refresh token twice.
    let bothFailed: () => void = () => {}
    const failed = new Promise<void>((resolve) => { bothFailed = resolve })
    const onMe = (): void => {
      if (meCalls.every((calls) => calls.includes(401))) bothFailed()
    }
    tabA.on('response', onMe)
    tabB.on('response', onMe)
    let held = 0
    await context.route('**/auth/refresh', async (route) => {
      if (held++ === 0) await Promise.race([failed, new Promise((resolve) => setTimeout(resolve, 10_000))])
      await route.continue()
    })

    await Promise.all([clickAndSettle(tabA, 'reload-me'), clickAndSettle(tabB, 'reload-me')])
    await context.unroute('**/auth/refresh')

    // A tab that waited for the other's refresh may first ask GET /me whether the cookies
    // are new (when the other tab's note has not reached it yet): one more 200 at most.
    for (const [i, calls] of meCalls.entries()) {
      t.equal(calls[0], 401, `tab ${'AB'[i]} found the access token expired`)
      t.ok(calls.length >= 2 && calls.length <= 3 && calls.slice(1).every((status) => status === 200),
        `tab ${'AB'[i]} then succeeded, without a second failure (${calls.join(', ')})`)
    }
    const statuses = refreshes.flat()
    t.same(statuses, [200], 'one refresh for both tabs, and it succeeded (no FTS_TOKEN_REUSED)')
    t.same(audits(running, 'onReuseDetected'), [], 'the server saw no reuse')
    t.equal(audits(running, 'onRefresh').length, 1, 'the server rotated once')
    for (const [name, tab] of [['A', tabA], ['B', tabB]] as const) {
      t.equal(await tab.locator('main').getAttribute('data-state'), 'signed-in', `tab ${name} shows the signed-in view`)
      t.equal(await tab.getByTestId('who').textContent(), 'bob', `tab ${name} is still logged in`)
    }

    const sessions = await clickFor(tabB, 'reload-sessions', 'GET', '/auth/sessions')
    t.equal(sessions.status(), 200, 'the session is live after the race')
    t.equal((await sessions.json()).sessions.length, 1, 'one session')
    t.same(problems.flatMap((p) => p.pageErrors), [], 'no uncaught error in either tab')
  })

  t.test('logout in one tab ends the other tab\'s session on its next request', async (t) => {
    const running = await startApp(t, LONG_TTL)
    await registerUser(running.url, 'carol', PASSWORD)
    const context = await newDevice(t, browser)
    const tabA = await context.newPage()
    const tabB = await context.newPage()
    await openPage(tabA, running.url, 'signed-out')
    await submitLogin(tabA, 'carol', PASSWORD)
    await openPage(tabB, running.url, 'signed-in')
    const refreshesB = watchRefreshes(tabB)

    const logout = await clickFor(tabA, 'logout', 'POST', '/auth/logout')
    t.equal(logout.status(), 204, 'logged out')
    t.equal(logout.request().headers()['x-requested-with'], 'fetch', 'the logout carries the anti-CSRF header')
    t.equal(logout.request().headers()['content-type'], undefined, 'and no content type without a body')
    await waitForState(tabA, 'signed-out')
    t.match(await waitForMessage(tabA, 'LOGGED_OUT'), { text: /You have logged out/ })
    t.same(await context.cookies(), [], 'the logout cleared both cookies')

    t.equal(await tabB.locator('main').getAttribute('data-state'), 'signed-in', 'the other tab does not know yet')
    await tabB.getByTestId('reload-me').click()
    await waitForState(tabB, 'signed-out')
    const message = await waitForMessage(tabB, 'FTS_TOKEN_MISSING')
    t.match(message.text, /You logged out/, 'the other tab says the user logged out')
    t.notMatch(message.text, /expired/, 'and not that the session expired')
    t.same(refreshesB, [401], 'it tried one refresh, which failed, and did not loop')
    t.equal(await tabB.getByTestId('who').textContent(), '', 'the user is no longer shown')

    await tabB.reload()
    await waitForState(tabB, 'signed-out')
    t.equal((await messageOf(tabB)).text, '', 'a reload shows the login form, quietly')
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
    const stolen = (await context.cookies()).find((cookie) => cookie.name === 'refresh_token')?.value
    const thief = await fetch(`${running.url}/auth/refresh`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: stolen })
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
    const running = await startExampleApp(t, own.url, { ...LONG_TTL, RATE_LIMIT_REFRESH: '25', RATE_LIMIT_LOGIN: '1000000' })
    await registerUser(running.url, 'ivan', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    await openPage(page, running.url, 'signed-out')
    await submitLogin(page, 'ivan', PASSWORD)
    const refreshes = watchRefreshes(page)

    await own.stop()
    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')
    t.same(refreshes, [503], 'the refresh could not reach the store')
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
    t.ok(refreshes.slice(1, -1).every((status) => status === 503), 'after nothing but 503s')
    t.equal(await page.locator('main').getAttribute('data-state'), 'signed-in', 'still logged in')
    t.same(await messageOf(page), { code: '', text: '' }, 'the successful try cleared the "briefly unavailable" message')

    // Refreshes until the minute's limit is used up.
    for (let attempt = 0; attempt < 30 && refreshes.at(-1) !== 429; attempt++) {
      await context.clearCookies({ name: 'access_token' })
      await clickAndSettle(page, 'reload-me')
    }
    t.equal(refreshes.at(-1), 429, 'a refresh over the minute\'s limit is refused')
    const limited = await waitForMessage(page, 'RATE_LIMITED')
    t.match(limited.text, /Try again in \d+ s/, 'the page says when to try again')
    t.equal(await page.locator('main').getAttribute('data-state'), 'signed-in', 'the user stays logged in')
  })

  t.test('an expired session says so, and not "you logged out"', async (t) => {
    const running = await startApp(t, SHORT_SESSION)
    await registerUser(running.url, 'kim', PASSWORD)
    const context = await newDevice(t, browser)
    const page = await context.newPage()
    const problems = await watchPage(page)
    await openPage(page, running.url, 'signed-out')
    // A logout first: its note must not outlive the next login.
    await submitLogin(page, 'kim', PASSWORD)
    await clickAndSettle(page, 'logout')
    await waitForMessage(page, 'LOGGED_OUT')
    await submitLogin(page, 'kim', PASSWORD)

    // Past the refresh cookie's Max-Age (counted from the login, as the shown expiry is).
    const refreshTtlMs = Number(SHORT_SESSION.REFRESH_TOKEN_TTL) * 1000
    const accessTtlMs = Number(SHORT_SESSION.ACCESS_TOKEN_TTL) * 1000
    await sleep(Math.max(0, await shownExpiry(page) - accessTtlMs + refreshTtlMs + 1200 - Date.now()))
    t.same((await context.cookies()).map((cookie) => cookie.name), [], 'the browser dropped both cookies')

    const refreshes = watchRefreshes(page)
    await clickAndSettle(page, 'reload-me')
    t.same(refreshes, [401], 'one refresh, refused')
    await waitForState(page, 'signed-out')
    const message = await waitForMessage(page, 'FTS_TOKEN_MISSING')
    t.match(message.text, /Your session has expired/, 'the page says the session expired')
    t.notMatch(message.text, /logged out/i, 'not that the user logged out')
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
    t.equal(await page.getByTestId('token-remaining').textContent(), 'unknown', 'the token\'s lifetime is not known')
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
    for (const asset of ['/app.js', '/app.css']) {
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

/** Polls `condition` every 50 ms for up to 5 s. */
async function waitUntil (condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (condition()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('condition not met within 5 s')
}
