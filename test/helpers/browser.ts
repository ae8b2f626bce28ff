import { existsSync, readdirSync, statSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core'
import type { Test } from 'tap'
import { buildApp } from '../../example-app/src/app.js'
import { loadConfig } from '../../example-app/src/config.js'
import { LogCapture, SECRET } from './common.js'
import { startRedis, type RedisServer } from './redis.mjs'

type Teardown = { teardown: (fn: () => unknown) => void }

/** Debian's chromium: the browser tests drive it and never download one. */
export const CHROMIUM = '/usr/bin/chromium'
/** Why the browser tests skip on a machine without it. */
export const NO_CHROMIUM = 'chromium is not installed; .ci/run installs it'

/**
 * Whether the browser tests can run: undefined when they can, else the reason they skip.
 * Throws instead when `REQUIRE_BROWSER=1` (CI), so that a missing browser fails the run.
 */
export function browserSkipReason (): string | undefined {
  if (existsSync(CHROMIUM)) return undefined
  if (process.env.REQUIRE_BROWSER === '1') {
    throw new Error(`REQUIRE_BROWSER=1 but ${CHROMIUM} does not exist: install it (Debian/Ubuntu: apt-get install -y chromium)`)
  }
  return NO_CHROMIUM
}

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run']

/** One headless chromium for a test file, closed at teardown. */
export async function launchBrowser (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS })
  t.teardown(() => browser.close())
  return browser
}

/**
 * A headless chromium on a profile kept in `directory`, as a browser installed on a
 * computer is: closing it and launching it again on the same directory is a browser
 * restart (it keeps what a browser keeps: persistent cookies, storage). Closed at teardown.
 */
export async function launchProfile (t: Teardown, directory: string): Promise<BrowserContext> {
  const context = await chromium.launchPersistentContext(directory, { executablePath: CHROMIUM, args: CHROMIUM_FLAGS })
  t.teardown(() => context.close())
  return context
}

/** A browser profile of its own (cookies, storage): one device. Closed at teardown. */
export async function newDevice (t: Teardown, browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  return context
}

const CLIENT_SOURCE = new URL('../../client/', import.meta.url)
const CLIENT_BUILT = new URL('../../dist/client/index.js', import.meta.url)

/**
 * The page runs the browser client as the package ships it, built: `npm test` builds
 * first. A test run without that build (or after an edit of client/) stops here rather
 * than test an old client.
 */
function checkClientBuilt (): void {
  const built = existsSync(CLIENT_BUILT) ? statSync(CLIENT_BUILT).mtimeMs : 0
  const stale = readdirSync(CLIENT_SOURCE).filter((name) => statSync(new URL(name, CLIENT_SOURCE)).mtimeMs > built)
  if (stale.length > 0) throw new Error(`dist/client is older than client/${stale.join(', client/')}: run npm run build`)
}

export interface RunningApp {
  app: FastifyInstance
  url: string
  logs: LogCapture
}

/**
 * The example app on a free loopback port, configured from an environment as the server
 * is, on the test's private Redis (never the default one). Closed at teardown.
 */
export async function startExampleApp (t: Teardown, redisUrl: string, env: NodeJS.ProcessEnv = {}): Promise<RunningApp> {
  checkClientBuilt()
  const logs = new LogCapture()
  const config = loadConfig({ REDIS_URL: redisUrl, JWT_SECRET: SECRET, LOG_LEVEL: 'info', ...env })
  const app = await buildApp(config, { logStream: logs })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { app, url: `http://127.0.0.1:${port}`, logs }
}

export interface BrowserSuite {
  browser: Browser
  redis: RedisServer
  /**
   * The example app on the suite's Redis (or `redis`, one a test stops and starts), under a
   * key prefix of its own, with rate limits no test reaches; `env` adds to its environment
   * or overrides it.
   */
  startApp: (t: Test, env: NodeJS.ProcessEnv, redis?: RedisServer) => Promise<RunningApp>
  /**
   * The same app with strict reuse detection (no grace window, so that any refresh token
   * presented twice sets off the alarm), on the suite's Redis.
   */
  startStrictApp: (t: Test, env: NodeJS.ProcessEnv) => Promise<RunningApp>
}

/** The password of the accounts the browser tests create. */
export const PASSWORD = 'correct horse battery'
/** Long enough that no token expires during a test that is not about expiry. */
export const LONG_TTL = { ACCESS_TOKEN_TTL: '300' }

/**
 * A browser test file: one private Redis and one Chromium for its tests, or the file
 * skipped, saying why, where Chromium is missing (which fails it under REQUIRE_BROWSER=1).
 */
export async function browserSuite (t: Test, keyPrefix: string, tests: (suite: BrowserSuite) => void): Promise<void> {
  const skipReason = browserSkipReason()
  if (skipReason !== undefined) {
    t.plan(0, skipReason)
    return
  }
  const redis = await startRedis(t)
  const browser = await launchBrowser(t)
  let apps = 0
  const startApp: BrowserSuite['startApp'] = async (t, env, own = redis) => await startExampleApp(t, own.url, {
    KEY_PREFIX: `${keyPrefix}${++apps}:`,
    RATE_LIMIT_LOGIN: '1000000',
    RATE_LIMIT_REFRESH: '1000000',
    ...env
  })
  tests({
    browser,
    redis,
    startApp,
    startStrictApp: async (t, env) => await startApp(t, { REFRESH_REUSE_GRACE: '0', ...env })
  })
}

/**
 * An account created through the API, and `count` tabs of one browser profile (a device):
 * the first logged in through the page, the others opened after it.
 */
export async function loggedInDevice (t: Teardown, browser: Browser, url: string, username: string, password: string, count = 1): Promise<{ context: BrowserContext, tabs: Page[] }> {
  await registerUser(url, username, password)
  const context = await newDevice(t, browser)
  const first = await context.newPage()
  await openPage(first, url, 'signed-out')
  await submitLogin(first, username, password)
  const tabs = [first]
  for (let i = 1; i < count; i++) {
    const tab = await context.newPage()
    await openPage(tab, url, 'signed-in')
    tabs.push(tab)
  }
  return { context, tabs }
}

/** Creates an account through the API (the page's own registration is tested once). */
export async function registerUser (url: string, username: string, password: string): Promise<void> {
  const response = await fetch(`${url}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password })
  })
  if (response.status !== 201) throw new Error(`register ${username}: ${response.status} ${await response.text()}`)
}

/** What went wrong in a page: console errors (CSP violations among them), uncaught errors. */
export interface PageProblems {
  consoleErrors: string[]
  pageErrors: string[]
  cspViolations: string[]
}

/**
 * Starts collecting a page's problems; call before its first navigation. CSP violations
 * are collected from the page's own `securitypolicyviolation` events too, through a
 * script the browser runs before the page's (CSP does not apply to it).
 */
export async function watchPage (page: Page): Promise<PageProblems> {
  const problems: PageProblems = { consoleErrors: [], pageErrors: [], cspViolations: [] }
  page.on('console', (message) => {
    if (message.type() === 'error') problems.consoleErrors.push(message.text())
  })
  page.on('pageerror', (error) => problems.pageErrors.push(String(error)))
  await page.exposeFunction('reportCspViolation', (text: string) => problems.cspViolations.push(text))
  // A string: these tests type-check without the DOM's types.
  await page.addInitScript(`document.addEventListener('securitypolicyviolation', (event) => {
    window.reportCspViolation(event.violatedDirective + ' blocked ' + (event.blockedURI || 'inline') + ' (' + event.sourceFile + ':' + event.lineNumber + ')')
  })`)
  return problems
}

/** The page's state: `loading`, `signed-out` or `signed-in`. Waits until it is `state`. */
export async function waitForState (page: Page, state: 'signed-out' | 'signed-in'): Promise<void> {
  await page.locator(`main[data-state="${state}"]`).waitFor({ state: 'attached' })
}

/** Opens the page and waits until it has decided whether it is signed in. */
export async function openPage (page: Page, url: string, state: 'signed-out' | 'signed-in'): Promise<void> {
  await page.goto(url)
  await waitForState(page, state)
}

/**
 * Fills the form and presses a button: `login` or `register`. Returns the login's response.
 * "Remember me" is ticked unless `remember` is false: the tests not about it log in as a
 * user on their own computer, whose cookies expire with their tokens.
 */
export async function submitLogin (page: Page, username: string, password: string, button: 'login' | 'register' = 'login', remember = true): Promise<Response> {
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password', { exact: true }).fill(password)
  await page.getByLabel('Remember me').setChecked(remember)
  const [response] = await Promise.all([
    page.waitForResponse((response) => response.url().endsWith('/auth/login')),
    page.getByTestId(button).click()
  ])
  await waitForState(page, 'signed-in')
  // The user's name and the session list are loaded right after the login.
  await page.getByTestId('who').filter({ hasText: username }).waitFor()
  await page.getByTestId('session-row').first().waitFor()
  return response
}

/** The message the page shows (its live region): code and text. */
export async function messageOf (page: Page): Promise<{ code: string, text: string }> {
  const region = page.getByTestId('message')
  return { code: await region.getAttribute('data-code') ?? '', text: (await region.textContent() ?? '').trim() }
}

/** Waits until the page shows a message with this code. */
export async function waitForMessage (page: Page, code: string): Promise<{ code: string, text: string }> {
  await page.locator(`[data-testid="message"][data-code="${code}"]`).waitFor({ state: 'attached' })
  return await messageOf(page)
}

/** When the access token the page shows expires, in ms since the epoch. */
export async function shownExpiry (page: Page): Promise<number> {
  return Number(await page.getByTestId('token-remaining').getAttribute('data-expires-at'))
}

/**
 * Waits until the access token the page shows has expired and its cookie is gone (the
 * cookie's Max-Age is the token's lifetime, counted from a moment up to a second later
 * than the token's whole-second expiry). The one fixed wait of these tests.
 */
export async function waitPastExpiry (page: Page): Promise<void> {
  const expiry = await shownExpiry(page)
  if (!(expiry > 0)) throw new Error('the page shows no access-token expiry')
  await sleep(Math.max(0, expiry + 1200 - Date.now()))
}

/** The status of every response a page receives for `method` and `path`, in order. */
export function watchStatuses (page: Page, path: string, method = 'GET'): number[] {
  const statuses: number[] = []
  page.on('response', (response) => {
    if (response.request().method() === method && new URL(response.url()).pathname === path) statuses.push(response.status())
  })
  return statuses
}

/** The status of every response to `POST /auth/refresh` a page receives, in order. */
export function watchRefreshes (page: Page): number[] {
  return watchStatuses(page, '/auth/refresh', 'POST')
}

/** The audit log lines of one hook. */
export function audits (running: RunningApp, hook: string): Array<Record<string, unknown>> {
  return running.logs.entries().filter((entry) => entry.audit === hook)
}

/**
 * Clicks a button and waits until what it started has finished: the button disables
 * itself while its requests run and the page shows their outcome.
 */
export async function clickAndSettle (page: Page, testId: string): Promise<void> {
  const button = page.getByTestId(testId)
  await button.click()
  await button.and(page.locator(':enabled')).waitFor({ state: 'attached' })
}

/** Clicks a button, waits until it has settled, and returns the answer to its request. */
export async function clickFor (page: Page, testId: string, method: string, path: string): Promise<Response> {
  const [response] = await Promise.all([
    page.waitForResponse((response) => response.request().method() === method && new URL(response.url()).pathname === path),
    clickAndSettle(page, testId)
  ])
  return response
}
