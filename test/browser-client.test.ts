// The browser client (fastify-token-sessions/client) in real Chromium tabs against the
// example app on a private Redis: many tabs refreshing at once, a refresh answer lost on
// the way, frozen tabs, a store outage, an app's own 401, and the docs' fetch and axios
// recipes with the real axios. (A logout in one tab ending the others within a second is
// in browser.test.ts, with the page's other cases.)
import { readFileSync } from 'node:fs'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { transform } from 'esbuild'
import t, { type Test } from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import {
  audits, browserSuite, clickAndSettle, loggedInDevice, messageOf, newDevice, registerUser, shownExpiry, waitForMessage,
  waitForState,
  watchPage, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'
import { codeBlocks, section } from './helpers/docs.js'
import { startRedis } from './helpers/redis.mjs'

const PASSWORD = 'correct horse battery'
/** Long enough that no access token expires, nor is renewed ahead, during a test. */
const LONG_TTL = { ACCESS_TOKEN_TTL: '300' }
const ROOT = new URL('..', import.meta.url)

await browserSuite(t, 'client', run)

function run ({ browser, startApp }: BrowserSuite): void {
  /** `count` tabs of one device, logged in as `username` (an account of its own). */
  async function loggedInTabs (t: Test, url: string, username: string, count: number): Promise<{ context: BrowserContext, tabs: Page[] }> {
    return await loggedInDevice(t, browser, url, username, PASSWORD, count)
  }

  t.test('five tabs whose access tokens expired call the API at the same moment: the server sees exactly one refresh', async (t) => {
    // Strict reuse detection: a refresh token presented twice would end the session.
    const running = await startApp(t, { ...LONG_TTL, REFRESH_REUSE_GRACE: '0' })
    const { context, tabs } = await loggedInTabs(t, running.url, 'penny', 5)
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

    const { context, tabs: [page] } = await loggedInTabs(t, url, 'quinn', 1) as { context: BrowserContext, tabs: [Page] }
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

  t.test('tabs frozen past their token\'s expiry, then resumed: one refresh between them, no burst', async (t) => {
    const running = await startApp(t, { ACCESS_TOKEN_TTL: '4' })
    const { context, tabs } = await loggedInTabs(t, running.url, 'ruth', 2)
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

  t.test('Redis down for 5 s and back: nobody is logged out', async (t) => {
    // A Redis of its own to stop and start again, keeping its data on disk.
    const own = await startRedis(t, ['--appendonly', 'yes', '--appendfsync', 'always'])
    const running = await startApp(t, LONG_TTL, own)
    const laptop = await loggedInTabs(t, running.url, 'sam', 3)
    const phone = await loggedInTabs(t, running.url, 'tess', 1)
    const tabs = [...laptop.tabs, ...phone.tabs]
    const refreshes = tabs.map((tab) => watchRefreshes(tab))

    await own.stop()
    // Every tab needs a refresh while the store is down.
    await laptop.context.clearCookies({ name: 'access_token' })
    await phone.context.clearCookies({ name: 'access_token' })
    const clicks = Promise.all(tabs.map(async (tab) => await clickAndSettle(tab, 'reload-me')))
    await sleep(5000)
    t.ok(refreshes.flat().length > 0 && refreshes.flat().every((status) => status === 503), 'while it is down, refreshes get 503')
    await own.start()
    await clicks

    for (const [i, tab] of tabs.entries()) {
      t.equal(await tab.locator('main').getAttribute('data-state'), 'signed-in', `tab ${i + 1} is still logged in`)
      t.equal(await tab.getByTestId('who').textContent(), i < 3 ? 'sam' : 'tess', `and still shows its user (${refreshes[i]?.join(', ')})`)
    }
    t.ok(refreshes.some((statuses) => statuses.includes(200)), 'a refresh retried after the outage went through')
    t.same(audits(running, 'onReuseDetected'), [], 'no refresh was taken for theft')
    // Both sessions live on.
    for (const { context, tabs: [tab] } of [laptop, phone]) {
      await context.clearCookies({ name: 'access_token' })
      const meCalls = watchStatuses(tab as Page, '/me')
      await clickAndSettle(tab as Page, 'reload-me')
      t.same(meCalls, [401, 200], 'a refresh after the outage works')
    }
  })

  t.test('a wrong current password (the app\'s own 401) does not end the session', async (t) => {
    const running = await startApp(t, LONG_TTL)
    const { context, tabs: [page, other] } = await loggedInTabs(t, running.url, 'uma', 2) as { context: BrowserContext, tabs: [Page, Page] }
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

  t.test('the recipes of docs/browsers.md, as written: fetch, and axios (the real one)', async (t) => {
    const [fetchBlock, axiosBlock] = codeBlocks(section('docs/browsers.md', 'The browser client'))
    t.equal(fetchBlock?.language, 'js', 'the fetch recipe is JavaScript')
    t.equal(axiosBlock?.language, 'ts', 'the axios recipe is TypeScript: its types stripped, as a bundler strips them')
    const fetchRecipe = fetchBlock?.code
    const axiosRecipe = (await transform(axiosBlock?.code ?? '', { loader: 'ts', format: 'esm' })).code
    t.ok(fetchRecipe?.includes('session.fetch') && axiosRecipe.includes('axios.create'), 'the two recipes')
    const axiosModule = readFileSync(fileURLToPath(new URL('node_modules/axios/dist/esm/axios.js', ROOT)))

    for (const [name, recipe] of [['fetch', fetchRecipe], ['axios', axiosRecipe]] as const) {
      await t.test(name, async (t) => {
        const running = await startApp(t, { ...LONG_TTL, REFRESH_REUSE_GRACE: '0' })
        await registerUser(running.url, `recipe-${name}`, PASSWORD)
        const context = await newDevice(t, browser)
        // A page of the app's origin that runs the recipe as a module, bare imports mapped.
        await context.route(`${running.url}/recipe/**`, async (route) => {
          const path = new URL(route.request().url()).pathname
          if (path === '/recipe/axios.js') return await route.fulfill({ body: axiosModule, contentType: 'text/javascript' })
          if (path === '/recipe/recipe.js') return await route.fulfill({ body: recipe as string, contentType: 'text/javascript' })
          await route.fulfill({
            contentType: 'text/html',
            body: `<!doctype html><script type="importmap">{"imports":{"axios":"/recipe/axios.js","fastify-token-sessions/client":"/client/index.js"}}</script>
              <script>window.ended = []; window.showLoginForm = (reason) => window.ended.push(reason); window.showExpiry = () => {}</script>
              <script type="module">import * as recipe from '/recipe/recipe.js'; window.recipe = recipe; document.title = 'ready'</script>`
          })
        })
        const page = await context.newPage()
        const problems = await watchPage(page)
        await page.goto(`${running.url}/recipe/page.html`)
        await page.waitForFunction('document.title === "ready"')
        if (name === 'fetch') {
          t.equal(await page.evaluate(`recipe.logIn('recipe-fetch', ${JSON.stringify(PASSWORD)}).then((r) => r.status)`), 200, 'logged in')
        } else {
          // The axios recipe logs in as any page does, and tells its client.
          await page.evaluate(`fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'recipe-axios', password: ${JSON.stringify(PASSWORD)} }) })
            .then((r) => r.json()).then((answer) => recipe.session.started(answer))`)
        }
        const meCalls = watchStatuses(page, '/me')
        const refreshes = watchRefreshes(page)
        await context.clearCookies({ name: 'access_token' })
        const [first, second] = await page.evaluate('Promise.all([recipe.loadMe(), recipe.loadMe()])') as Array<{ username: string }>
        t.equal(first?.username, `recipe-${name}`, 'loadMe() answers after a silent refresh')
        t.equal(second?.username, `recipe-${name}`, 'and so does the call beside it')
        t.same(meCalls, [401, 401, 200, 200], 'both calls failed once, then went through')
        t.same(refreshes, [200], 'sharing one refresh')
        t.same(await page.evaluate('window.ended'), [], 'the session goes on')
        if (name === 'fetch') {
          t.equal(await page.evaluate('recipe.logOut().then((r) => r.status)'), 204, 'logged out')
          t.same(await page.evaluate('window.ended'), ['logged-out'], 'onSessionEnd heard it')
        }
        t.same(problems.pageErrors, [], 'no uncaught error')
      })
    }
  })
}
