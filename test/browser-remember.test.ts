// The example app's page in real Chromium: "Remember me" unticked gives session cookies
// (no expiry: they go when the browser closes), ticked gives persistent ones, a refresh
// keeps each kind, and the session list says which is which. The browser is closed and
// launched again on the same profile, as a user's is.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  browserSuite, clickAndSettle, launchProfile, LONG_TTL, openPage, PASSWORD, registerUser, submitLogin, waitForState, watchRefreshes, type BrowserSuite
} from './helpers/browser.js'

await browserSuite(t, 'remember', run)

const TOKEN_COOKIES = ['access_token', 'refresh_token', 'session_binding']

/** The token cookies of a profile, and whether each outlives the browser (has an expiry). */
async function persistence (context: BrowserContext): Promise<Record<string, boolean>> {
  const cookies = (await context.cookies()).filter((cookie) => TOKEN_COOKIES.includes(cookie.name))
  return Object.fromEntries(cookies.map((cookie) => [cookie.name, cookie.expires !== -1]))
}

const ALL = (persists: boolean): Record<string, boolean> => Object.fromEntries(TOKEN_COOKIES.map((name) => [name, persists]))

/** A browser profile of its own on disk, removed when the test ends. */
async function profile (t: Test): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'fts-profile-'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  return directory
}

/** The browser on `directory`, its first tab. */
async function opened (t: Test, directory: string): Promise<{ context: BrowserContext, page: Page }> {
  const context = await launchProfile(t, directory)
  return { context, page: context.pages()[0] ?? await context.newPage() }
}

/** A user logged in through the page, with "Remember me" as given, then a refresh; the cookies checked after each. */
async function loggedIn (t: Test, url: string, directory: string, username: string, remember: boolean): Promise<BrowserContext> {
  await registerUser(url, username, PASSWORD)
  const { context, page } = await opened(t, directory)
  await openPage(page, url, 'signed-out')
  t.equal(await page.getByLabel('Remember me').isChecked(), false, 'not remembered unless the user asks')
  await submitLogin(page, username, PASSWORD, 'login', remember)
  t.same(await persistence(context), ALL(remember), remember ? 'each token cookie has an expiry' : 'no token cookie has an expiry')
  t.equal(await page.getByTestId('remembered').textContent(), remember ? 'Yes' : 'No: ends when the browser closes', 'the session list says so')

  const refreshes = watchRefreshes(page)
  await context.clearCookies({ name: 'access_token' })
  await clickAndSettle(page, 'reload-me')
  t.same(refreshes, [200], 'refreshed')
  t.same(await persistence(context), ALL(remember), 'the refresh set cookies of the same kind')
  return context
}

function run ({ startApp }: BrowserSuite): void {
  t.test('unticked: session cookies, kept so by a refresh; the browser closes and the user is signed out', async (t) => {
    const running = await startApp(t, LONG_TTL)
    const directory = await profile(t)
    await (await loggedIn(t, running.url, directory, 'tess', false)).close()

    const { context, page } = await opened(t, directory)
    t.same(await persistence(context), {}, 'the browser kept no token cookie')
    await openPage(page, running.url, 'signed-out')
    t.pass('the page asks for a login')
  })

  t.test('ticked: persistent cookies, kept so by a refresh; the browser closes and the user is still signed in', async (t) => {
    const running = await startApp(t, LONG_TTL)
    const directory = await profile(t)
    await (await loggedIn(t, running.url, directory, 'rem', true)).close()

    const { context, page } = await opened(t, directory)
    t.same(await persistence(context), ALL(true), 'the browser kept the token cookies')
    await openPage(page, running.url, 'signed-in')
    await page.getByTestId('who').filter({ hasText: 'rem' }).waitFor()
    await waitForState(page, 'signed-in')
    t.pass('signed in, as the same user')
  })
}
