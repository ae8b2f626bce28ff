// The example app's page in a real browser while refreshes fail for a while: the session
// store down (and back), and the refresh rate limit reached. The user stays logged in.
import t from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  browserSuite, clickAndSettle, loggedInDevice, LONG_TTL, messageOf, PASSWORD, waitForMessage, watchRefreshes, type BrowserSuite
} from './helpers/browser.js'
import { startRedis } from './helpers/redis.mjs'

await browserSuite(t, 'outage', run)

function run ({ browser, startApp }: BrowserSuite): void {
  t.test('while the session store is down or refreshes are rate-limited, the page keeps the user logged in', async (t) => {
    // A Redis of its own to crash and restart (keeping its data on disk), and a refresh
    // limit (counted in the app, so during the outage too) low enough to reach.
    const own = await startRedis(t, ['--appendonly', 'yes', '--appendfsync', 'always'])
    // The default reuse grace: it is what lets a refresh retried after an outage through.
    const running = await startApp(t, { ...LONG_TTL, RATE_LIMIT_REFRESH: '25' }, own)
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
    const limitedApp = await startApp(t, { ...LONG_TTL, RATE_LIMIT_REFRESH: '3' }, own)
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
}
