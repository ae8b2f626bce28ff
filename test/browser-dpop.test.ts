// A browser's cookie session bound to a DPoP key (fastify-token-sessions/client/dpop) in
// real Chromium: the page's login binds the session to a WebCrypto key kept in IndexedDB,
// non-extractable; each refresh proves it; the refresh cookie copied into another browser
// profile cannot refresh, while the access cookie stays a bearer token (as docs/browsers.md says);
// and the recipe for it there, as written.
import t, { type Test } from 'tap'
import type { Page, Request } from 'playwright-core'
import {
  browserSuite, clickAndSettle, loggedInDevice, messageOf, newDevice, openPage, registerUser, watchPage, type BrowserSuite
} from './helpers/browser.js'
import { codeBlocks, section } from './helpers/docs.js'

const PASSWORD = 'correct horse battery'

await browserSuite(t, 'dpop', run)

/** The DPoP headers of the refresh requests a page sends. */
function refreshProofs (page: Page): Array<string | undefined> {
  const proofs: Array<string | undefined> = []
  page.on('request', (request: Request) => {
    if (new URL(request.url()).pathname === '/auth/refresh') proofs.push(request.headers().dpop)
  })
  return proofs
}

function claimsOf (jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
}

function run ({ browser, startApp }: BrowserSuite): void {
  t.test('the page binds its session to a key only it holds; a copied refresh cookie cannot refresh', async (t: Test) => {
    const running = await startApp(t, { ACCESS_TOKEN_TTL: '300' })
    const { context, tabs } = await loggedInDevice(t, browser, running.url, 'quinn', PASSWORD)
    const page = tabs[0] as Page

    const key = await page.evaluate(async () => await new Promise<{ extractable: boolean, exported: string }>((resolve, reject) => {
      const open = indexedDB.open('fts-dpop')
      open.onerror = () => reject(open.error)
      open.onsuccess = () => {
        const get = open.result.transaction('keys').objectStore('keys').get('key')
        get.onsuccess = () => {
          const pair = get.result as CryptoKeyPair
          crypto.subtle.exportKey('jwk', pair.privateKey).then(() => 'exported', (error: Error) => error.name)
            .then((exported) => resolve({ extractable: pair.privateKey.extractable, exported }), reject)
        }
      }
    }))
    t.same(key, { extractable: false, exported: 'InvalidAccessError' }, 'the private key cannot be read out of the browser')

    const proofs = refreshProofs(page)
    await context.clearCookies({ name: 'access_token' })
    await clickAndSettle(page, 'reload-me')
    t.equal(proofs.length, 1, 'one refresh')
    t.match(claimsOf(proofs[0] as string), { htm: 'POST', htu: `${running.url}/auth/refresh` }, 'with a proof for it')

    // The thief copies the profile's cookies and local storage into a browser profile of
    // their own; IndexedDB, where the key is, stays behind (as with a cookie-stealing malware).
    const cookies = await context.cookies()
    const thief = await browser.newContext({ storageState: await context.storageState() })
    t.teardown(() => thief.close())
    const stolenPage = await thief.newPage()
    await openPage(stolenPage, running.url, 'signed-in')
    t.equal(await stolenPage.getByTestId('who').textContent(), 'quinn',
      'the access cookie alone works in the other profile until it expires: it is a bearer token')
    const refused = stolenPage.waitForResponse((response) => new URL(response.url()).pathname === '/auth/refresh')
    await thief.clearCookies({ name: 'access_token' })
    await clickAndSettle(stolenPage, 'reload-me')
    const answer = await refused
    t.equal(answer.status(), 400, 'the refresh with the thief\'s own key is refused')
    t.equal((await answer.json() as { code: string }).code, 'FTS_DPOP_PROOF_INVALID')
    const refresh = await fetch(`${running.url}/auth/refresh`, {
      method: 'POST',
      headers: { 'x-requested-with': 'fetch', cookie: cookies.map((cookie) => `${cookie.name}=${cookie.value}`).join('; ') }
    })
    t.equal(refresh.status, 400, 'and so is one without a proof')

    await context.clearCookies({ name: 'access_token' })
    await page.reload()
    await clickAndSettle(page, 'reload-me')
    t.equal(proofs.length, 2, 'after a reload the owner refreshes with the same key')
    t.notOk((await messageOf(page)).code.startsWith('FTS_'), 'and the session goes on')
  })

  t.test('the DPoP recipe of docs/browsers.md, as written: a bound login, then refreshes with proofs', async (t: Test) => {
    const recipe = codeBlocks(section('docs/browsers.md', 'Binding the session to this browser (DPoP)')).find((block) => block.language === 'js')?.code
    t.ok(recipe?.includes('createDpopProver'), 'the recipe')
    const running = await startApp(t, { ACCESS_TOKEN_TTL: '300', DPOP_NONCES: 'true' })
    await registerUser(running.url, 'rita', PASSWORD)
    const context = await newDevice(t, browser)
    await context.route(`${running.url}/recipe/**`, async (route) => {
      if (new URL(route.request().url()).pathname === '/recipe/recipe.js') return await route.fulfill({ body: recipe as string, contentType: 'text/javascript' })
      await route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><script type="importmap">{"imports":{"fastify-token-sessions/client":"/client/index.js","fastify-token-sessions/client/dpop":"/client/dpop.js"}}</script>
          <script type="module">import * as recipe from '/recipe/recipe.js'; window.recipe = recipe; document.title = 'ready'</script>`
      })
    })
    const page = await context.newPage()
    const problems = await watchPage(page)
    const proofs = refreshProofs(page)
    await page.goto(`${running.url}/recipe/page.html`)
    await page.waitForFunction('document.title === "ready"')
    // With server nonces on, the first login is refused and names the nonce, which the prover learns.
    t.equal(await page.evaluate(`recipe.logIn('rita', ${JSON.stringify(PASSWORD)}).then((r) => r.status)`), 400, 'the nonce asked for')
    t.equal(await page.evaluate(`recipe.logIn('rita', ${JSON.stringify(PASSWORD)}).then((r) => r.status)`), 200, 'logged in with it')
    const cookies = (await context.cookies()).map((cookie) => `${cookie.name}=${cookie.value}`).join('; ')
    const bare = await fetch(`${running.url}/auth/refresh`, { method: 'POST', headers: { 'x-requested-with': 'fetch', cookie: cookies } })
    t.equal(bare.status, 400, 'the session is bound: a refresh without a proof is refused')
    await context.clearCookies({ name: 'access_token' })
    t.equal(await page.evaluate('recipe.session.fetch("/me").then((r) => r.status)'), 200, 'a request refreshes silently, with a proof')
    t.equal(proofs.filter((proof) => proof !== undefined).length, 1, 'one refresh, with its proof')
    t.same(problems.pageErrors, [], 'no uncaught error')
  })
}
