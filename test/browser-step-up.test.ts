// The example app's page in real Chromium against a private Redis: a password change that
// needs a recent login (STEP_UP_MAX_AGE) asks for the password in a dialog, re-authenticates
// in the same session (DPoP-bound, as the page binds it), and the change goes through.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  browserSuite, clickAndSettle, loggedInDevice, LONG_TTL, PASSWORD, waitForMessage, waitForState, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'

await browserSuite(t, 'step-up', run)

/** Past a two-second STEP_UP_MAX_AGE. auth_time counts whole seconds, so a login may look up to a second older: the tests that need it recent act within a second of it. */
const LOGIN_GETS_OLD_MS = 2100

function run ({ browser, startApp }: BrowserSuite): void {
  t.test('an old login: the page asks for the password, once, and the change goes through in the same session', async (t) => {
    const running = await startApp(t, { ...LONG_TTL, STEP_UP_MAX_AGE: '2' })
    const { context, tabs: [page, other] } = await loggedInDevice(t, browser, running.url, 'stella', PASSWORD, 2) as { context: BrowserContext, tabs: [Page, Page] }
    const sessionId = await page.getByTestId('session-row').getAttribute('data-session-id')
    const changes = watchStatuses(page, '/auth/change-password', 'POST')
    const reauthentications = watchStatuses(page, '/auth/reauthenticate', 'POST')
    await sleep(LOGIN_GETS_OLD_MS)

    await page.getByLabel('Current password').fill(PASSWORD)
    await page.getByLabel('New password').fill('a brand new password')
    await page.getByTestId('change-password').click()
    const dialog = page.getByTestId('reauth-dialog')
    await dialog.waitFor({ state: 'visible' })
    t.same(changes, [401], 'the change was refused for the old login')
    t.match(await dialog.textContent(), /login from the last 2 s/, 'the dialog says how recent a login is needed')
    t.equal(await other.getByTestId('reauth-dialog').isVisible(), false, 'the other tab asks nothing')

    await page.getByTestId('reauth-password').fill('not my password')
    await page.getByTestId('reauth-confirm').click()
    await page.getByTestId('reauth-error').filter({ hasText: 'Wrong password.' }).waitFor()
    t.ok(await dialog.isVisible(), 'a wrong password: the dialog stays, and says so')

    await page.getByTestId('reauth-password').fill(PASSWORD)
    await page.getByTestId('reauth-confirm').click()
    await waitForMessage(page, 'PASSWORD_CHANGED')
    t.equal(await dialog.isVisible(), false, 'the dialog closed')
    t.same(reauthentications, [401, 200], 'the wrong password, then the right one')
    t.same(changes, [401, 204], 'the change, sent again, went through')
    t.equal(await page.getByTestId('session-row').getAttribute('data-session-id'), sessionId, 'the same session')
    for (const tab of [page, other]) await waitForState(tab, 'signed-in')

    // The stepped-up session is still bound to this browser's key: a refresh proves it.
    const refreshes = watchRefreshes(page)
    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')
    t.same(refreshes, [200], 'the stepped-up session refreshes')
    t.equal(await page.getByTestId('who').textContent(), 'stella')
  })

  t.test('a user who cancels the prompt stays logged in, and the page says the change needs the password', async (t) => {
    const running = await startApp(t, { ...LONG_TTL, STEP_UP_MAX_AGE: '2' })
    const { tabs: [page] } = await loggedInDevice(t, browser, running.url, 'carl', PASSWORD) as { context: BrowserContext, tabs: [Page] }
    const reauthentications = watchStatuses(page, '/auth/reauthenticate', 'POST')
    await sleep(LOGIN_GETS_OLD_MS)
    await page.getByLabel('Current password').fill(PASSWORD)
    await page.getByLabel('New password').fill('a brand new password')
    await page.getByTestId('change-password').click()
    await page.getByTestId('reauth-dialog').waitFor({ state: 'visible' })
    await page.getByTestId('reauth-cancel').click()
    const message = await waitForMessage(page, 'FTS_STEP_UP_REQUIRED')
    t.match(message.text, /confirm your password/)
    t.same(reauthentications, [], 'nothing was sent')
    await waitForState(page, 'signed-in')
  })
}
