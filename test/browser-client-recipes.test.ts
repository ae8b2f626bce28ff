// The browser client recipes of docs/browsers.md, as written, in a real Chromium page
// against the example app on a private Redis: the fetch recipe, and the axios recipe with
// the real axios. Each also steps up for a password change that needs a recent login.
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { transform } from 'esbuild'
import t from 'tap'
import {
  browserSuite, LONG_TTL, newDevice, PASSWORD, registerUser, watchPage, watchRefreshes, watchStatuses, type BrowserSuite
} from './helpers/browser.js'
import { codeBlocks, section } from './helpers/docs.js'

const ROOT = new URL('..', import.meta.url)

await browserSuite(t, 'client-recipes', run)

function run ({ browser, startApp }: BrowserSuite): void {
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
        const running = await startApp(t, { ...LONG_TTL, REFRESH_REUSE_GRACE: '0', STEP_UP_MAX_AGE: '2' })
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
              <script>window.ended = []; window.showLoginForm = (reason) => window.ended.push(reason); window.showExpiry = () => {}
                window.asked = []; window.askPassword = async (maxAge) => { window.asked.push(maxAge); return ${JSON.stringify(PASSWORD)} }</script>
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

        // The login is now older than STEP_UP_MAX_AGE (2 s): the password change asks for a
        // step-up, the recipe's onStepUp re-authenticates, and the change goes through.
        await sleep(2100)
        const changes = watchStatuses(page, '/auth/change-password', 'POST')
        const reauthentications = watchStatuses(page, '/auth/reauthenticate', 'POST')
        const change = JSON.stringify({ currentPassword: PASSWORD, newPassword: `${PASSWORD} changed` })
        const changed = name === 'fetch'
          ? await page.evaluate(`recipe.session.fetch('/auth/change-password', { method: 'POST', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(change)} }).then((r) => r.status)`)
          : await page.evaluate(`recipe.api.post('/auth/change-password', ${change}).then((r) => r.status)`)
        t.equal(changed, 204, 'the password change went through')
        t.same(changes, [401, 204], 'refused for the old login, then sent again')
        t.same(reauthentications, [200], 'after one re-authentication')
        t.same(await page.evaluate('window.asked'), [2], 'onStepUp asked, with the route\'s max_age')
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
