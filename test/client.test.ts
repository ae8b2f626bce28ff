// The browser client's state machine, in Node on a fake clock and fake browser globals,
// against a scripted server (./helpers/fake-browser.ts). The same client against the real
// plugin, in real Chromium tabs, is in the browser-client-*.test.ts files; its codes against
// the plugin's, in client-codes.test.ts.
import t, { type Test } from 'tap'
import { createSessionClient, type SessionClientOptions, type SessionEndReason } from '../client/index.js'
import { installFakeBrowser, settle, type FakeBrowser } from './helpers/fake-browser.js'

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } })

const expired = (): Response => json(401, { statusCode: 401, code: 'FTS_TOKEN_EXPIRED', error: 'Unauthorized', message: 'The token has expired' })
const failure = (status: number, code: string, headers: Record<string, string> = {}): Response => json(status, { statusCode: status, code, message: code }, headers)

interface Sent { path: string, method: string, headers: Headers, body: unknown }

/**
 * A server as the client sees it: API routes answer 401 FTS_TOKEN_EXPIRED while the
 * access token has expired, and the refresh route renews it. `onRefresh` and `onApi`
 * script other answers.
 */
class Server {
  accessExpired = false
  refreshes = 0
  readonly sent: Sent[] = []
  onRefresh: (count: number) => Response | Promise<Response> = () => json(200, { accessToken: 'x', tokenType: 'Bearer', expiresIn: 900 })
  onApi: (request: Sent) => Response | undefined = () => undefined

  fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const path = input instanceof Request ? new URL(input.url).pathname : String(input)
    const method = init.method ?? (input instanceof Request ? input.method : 'GET')
    const body = init.body ?? (input instanceof Request && input.body !== null ? await input.text() : undefined)
    const request = { path, method, headers: new Headers(init.headers), body }
    this.sent.push(request)
    await settle(1)
    if (path === '/auth/refresh') {
      this.refreshes++
      const answer = await this.onRefresh(this.refreshes)
      if (answer.ok) this.accessExpired = false
      return answer
    }
    if (path === '/auth/logout') return new Response(null, { status: 204 })
    return this.onApi(request) ?? (this.accessExpired ? expired() : json(200, { ok: true, path }))
  }

  sentTo (path: string): Sent[] {
    return this.sent.filter((request) => request.path === path)
  }
}

interface Setup {
  browser: FakeBrowser
  server: Server
  client: ReturnType<typeof createSessionClient>
  ends: Array<{ reason: SessionEndReason, code: string | undefined, otherTab: boolean }>
  refreshed: Array<{ expiresAt: number, otherTab: boolean, started: boolean }>
}

/** A page with a client, logged in (`started`) unless `loggedIn: false`. */
function setup (t: Test, options: Partial<SessionClientOptions> & { locks?: boolean, channel?: boolean, loggedIn?: boolean } = {}): Setup {
  const { locks, channel, loggedIn, ...clientOptions } = options
  const browser = installFakeBrowser(t, { ...(locks === undefined ? {} : { locks }), ...(channel === undefined ? {} : { channel }) })
  const server = new Server()
  const ends: Setup['ends'] = []
  const refreshed: Setup['refreshed'] = []
  const client = createSessionClient({
    refreshPath: '/auth/refresh',
    logoutPath: '/auth/logout',
    fetch: async (input, init) => await server.fetch(input, init),
    name: `test-${Math.random()}`,
    onSessionEnd: (reason, detail) => ends.push({ reason, ...detail }),
    onRefresh: (detail) => refreshed.push(detail),
    ...clientOptions
  })
  t.teardown(() => client.close())
  if (loggedIn !== false) client.started({ expiresIn: 900 })
  return { browser, server, client, ends, refreshed }
}

t.test('a 401 for an expired access token refreshes once and sends the request again', async (t) => {
  const { server, client, refreshed } = setup(t)
  server.accessExpired = true
  const generation = client.generation
  const response = await client.fetch('/me')
  t.equal(response.status, 200)
  t.same(await response.json(), { ok: true, path: '/me' })
  t.equal(server.refreshes, 1)
  t.equal(server.sentTo('/me').length, 2)
  t.equal(client.generation, generation + 1)
  t.equal(refreshed.length, 1)
  t.equal(refreshed[0]?.otherTab, false)
  t.equal(client.active, true)
})

t.test('requests failing at once share one refresh', async (t) => {
  const { server, client } = setup(t)
  server.accessExpired = true
  const responses = await Promise.all(Array.from({ length: 10 }, async (_, i) => await client.fetch(`/item/${i}`)))
  t.same(responses.map((response) => response.status), Array(10).fill(200))
  t.equal(server.refreshes, 1)
  t.equal(server.sent.length, 1 + 20, 'each request sent twice, one refresh')
})

t.test('a request that failed with a token older than the current one retries without another refresh', async (t) => {
  const { server, client } = setup(t)
  server.accessExpired = true
  // The slow request is sent with the old token; its 401 arrives after the refresh.
  let releaseSlow = (): void => {}
  const slowAnswer = new Promise<Response>((resolve) => { releaseSlow = () => resolve(expired()) })
  const realFetch = server.fetch
  server.fetch = async (input, init) => {
    if (String(input) !== '/slow' || server.sentTo('/slow').length > 0) return await realFetch(input, init)
    server.sent.push({ path: '/slow', method: 'GET', headers: new Headers(), body: undefined })
    return await slowAnswer
  }
  const slow = client.fetch('/slow')
  await settle()
  t.equal((await client.fetch('/fast')).status, 200)
  t.equal(server.refreshes, 1)
  releaseSlow()
  t.equal((await slow).status, 200)
  t.equal(server.refreshes, 1, 'no second refresh for the straggler')
  t.equal(server.sentTo('/slow').length, 2)
})

t.test('an app\'s own 401, and a 401 without a JSON code, pass through untouched', async (t) => {
  const { server, client, ends } = setup(t)
  server.onApi = (request) => request.path === '/auth/change-password'
    ? failure(401, 'INVALID_CREDENTIALS')
    : request.path === '/plain'
      ? new Response('no', { status: 401 })
      : request.path === '/no-code' ? json(401, { message: 'who are you' }) : undefined
  const wrong = await client.fetch('/auth/change-password', { method: 'POST', body: '{}' })
  t.equal(wrong.status, 401)
  t.equal((await wrong.json()).code, 'INVALID_CREDENTIALS', 'the body is still the caller\'s to read')
  t.equal((await client.fetch('/plain')).status, 401)
  t.equal((await client.fetch('/no-code')).status, 401)
  t.equal(server.refreshes, 0)
  t.same(ends, [])
  t.equal(client.active, true)
  t.equal(server.sent.length, 3, 'never sent again')
})

t.test('a 401 that says the session is over ends it, once, with its reason, and no refresh follows', async (t) => {
  const { server, client, ends } = setup(t)
  server.onApi = () => failure(401, 'FTS_SESSION_REVOKED')
  const response = await client.fetch('/me')
  t.equal(response.status, 401)
  t.same(ends, [{ reason: 'revoked', code: 'FTS_SESSION_REVOKED', otherTab: false }])
  t.equal(client.active, false)
  server.onApi = () => undefined
  server.accessExpired = true
  t.equal((await client.fetch('/me')).status, 401, 'no session: a 401 is the caller\'s')
  t.equal(server.refreshes, 0)
  t.equal(ends.length, 1)
})

t.test('a refresh that answers why the session is over ends it with that reason', async (t) => {
  const cases: Array<[string, SessionEndReason]> = [
    ['FTS_TOKEN_REUSED', 'reuse-detected'],
    ['FTS_SESSION_REVOKED', 'revoked'],
    ['FTS_SESSION_EXPIRED', 'expired'],
    ['FTS_TOKEN_EXPIRED', 'expired'],
    ['FTS_TOKEN_MISSING', 'expired'],
    ['FTS_TOKEN_INVALID', 'invalid'],
    ['SOMETHING_ELSE', 'invalid'],
    ['', 'invalid']
  ]
  for (const [code, reason] of cases) {
    await t.test(code === '' ? 'no code' : code, async (t) => {
      const { server, client, ends } = setup(t)
      server.accessExpired = true
      server.onRefresh = () => code === '' ? new Response('Unauthorized', { status: 401 }) : failure(401, code)
      const response = await client.fetch('/me')
      t.equal(response.status, 401)
      t.equal((await response.json()).code, 'FTS_TOKEN_EXPIRED', 'the request\'s own answer')
      t.same(ends, [{ reason, code: code === '' ? undefined : code, otherTab: false }])
      t.equal(client.active, false)
    })
  }
})

t.test('a refresh refused with 403 ends the session as refused, warns once with the fix, and is not tried again', async (t) => {
  const { browser, server, client, ends } = setup(t)
  server.accessExpired = true
  server.onRefresh = () => failure(403, 'FTS_CSRF_REJECTED')
  const response = await client.fetch('/me')
  t.equal(response.status, 401)
  t.equal((await response.json()).code, 'FTS_TOKEN_EXPIRED', 'the request\'s own answer')
  t.same(ends, [{ reason: 'refused', code: 'FTS_CSRF_REJECTED', otherTab: false }], 'ended, with a reason of its own')
  t.equal(client.active, false)
  t.equal(browser.warnings.length, 1)
  t.match(browser.warnings[0], /refused \(403 FTS_CSRF_REJECTED\).*publicOrigin and allowedOrigins.*csrfHeader.*docs\/troubleshooting\.md#fts_csrf_rejected/)
  t.equal((await client.fetch('/me')).status, 401)
  t.equal(await client.refresh(), false)
  t.equal(server.refreshes, 1, 'no refresh on every call')
  // Signed in again (the page fixed nothing): refused again, ended again, no second warning.
  client.started({ expiresIn: 900 })
  await client.fetch('/me')
  t.equal(server.refreshes, 2)
  t.same(ends.map((end) => end.reason), ['refused', 'refused'])
  t.equal(browser.warnings.length, 1, 'the console told once')
})

t.test('a 403 to the refresh that is not the plugin\'s refusal (a proxy\'s bot challenge) ends nothing: the caller gets it', async (t) => {
  const answers: Array<[string, () => Response]> = [
    ['an HTML page', () => new Response('<html><body>Checking your browser…</body></html>', { status: 403, headers: { 'content-type': 'text/html' } })],
    ['another code', () => failure(403, 'WAF_BLOCKED')]
  ]
  for (const [name, answer] of answers) {
    await t.test(name, async (t) => {
      const { browser, server, client, ends } = setup(t)
      server.accessExpired = true
      server.onRefresh = answer
      const response = await client.fetch('/me')
      t.equal(response.status, 403, 'the refresh\'s answer, as before the refused reason existed')
      t.equal(server.refreshes, 1, 'not retried')
      t.same(ends, [], 'no session end')
      t.equal(client.active, true, 'the session goes on')
      t.same(browser.warnings, [], 'no warning')
      // Passed: the next call refreshes as usual.
      server.onRefresh = () => json(200, { accessToken: 'x', tokenType: 'Bearer', expiresIn: 900 })
      t.equal((await client.fetch('/me')).status, 200)
      t.equal(server.refreshes, 2)
    })
  }
})

t.test('the refresh waits out a 503 with Retry-After, and the session goes on', async (t) => {
  const { browser, server, client, ends } = setup(t)
  server.accessExpired = true
  server.onRefresh = (count) => count < 3 ? failure(503, 'FTS_STORE_UNAVAILABLE', { 'retry-after': '2' }) : json(200, { expiresIn: 900 })
  const pending = client.fetch('/me')
  await browser.clock.advance(1999)
  t.equal(server.refreshes, 1, 'not before Retry-After')
  await browser.clock.advance(1)
  t.equal(server.refreshes, 2)
  await browser.clock.advance(2000)
  t.equal((await pending).status, 200)
  t.equal(server.refreshes, 3)
  t.same(ends, [])
})

t.test('a refresh still failing after its retries: the request gets the 503, the user stays logged in', async (t) => {
  const { browser, server, client, ends } = setup(t, { retries: 2 })
  server.accessExpired = true
  server.onRefresh = () => failure(503, 'FTS_STORE_UNAVAILABLE', { 'retry-after': '1' })
  const pending = client.fetch('/me')
  await browser.clock.advance(5000)
  const response = await pending
  t.equal(response.status, 503)
  t.equal((await response.json()).code, 'FTS_STORE_UNAVAILABLE')
  t.equal(server.refreshes, 3, 'first try and two retries')
  t.same(ends, [])
  t.equal(client.active, true)
  // Back: the next request refreshes.
  server.onRefresh = () => json(200, { expiresIn: 900 })
  t.equal((await client.fetch('/me')).status, 200)
})

t.test('a Retry-After longer than maxRetryAfter is not waited for', async (t) => {
  const { server, client } = setup(t, { maxRetryAfter: 5 })
  server.accessExpired = true
  server.onRefresh = () => failure(429, 'RATE_LIMITED', { 'retry-after': '60' })
  const response = await client.fetch('/me')
  t.equal(response.status, 429)
  t.equal(server.refreshes, 1)
  t.equal(client.active, true)
})

t.test('429 and 503 are retried for idempotent requests only', async (t) => {
  const { browser, server, client } = setup(t)
  let answered = 0
  server.onApi = () => answered++ === 0 ? failure(503, 'FTS_STORE_UNAVAILABLE', { 'retry-after': '1' }) : undefined
  const get = client.fetch('/items')
  await browser.clock.advance(1000)
  t.equal((await get).status, 200)
  t.equal(server.sentTo('/items').length, 2)

  answered = 0
  const post = await client.fetch('/items', { method: 'POST', body: '{}' })
  t.equal(post.status, 503, 'a POST may have had its effect: the caller decides')
  t.equal(server.sentTo('/items').length, 3)

  answered = 0
  server.onApi = () => answered++ === 0 ? failure(429, 'RATE_LIMITED', { 'retry-after': 'Thu, 03 Dec 2026 12:00:03 GMT' }) : undefined
  const put = client.fetch('/items/1', { method: 'PUT', body: '{}' })
  await browser.clock.advance(3000)
  t.equal((await put).status, 200, 'an HTTP-date Retry-After')
})

t.test('a body that cannot be sent again is never sent again; the session is still refreshed', async (t) => {
  const { server, client } = setup(t)
  server.accessExpired = true
  const body = new ReadableStream({ start (controller) { controller.enqueue(new TextEncoder().encode('data')); controller.close() } })
  const response = await client.fetch('/upload', { method: 'POST', body, duplex: 'half' } as RequestInit)
  t.equal(response.status, 401)
  t.equal(server.sentTo('/upload').length, 1)
  t.equal(server.refreshes, 1, 'so that the app\'s next try goes through')
  t.equal((await client.fetch('/upload', { method: 'POST', body: 'data' })).status, 200)
})

t.test('a Request with a body is sent again from a copy', async (t) => {
  const { server, client } = setup(t)
  server.accessExpired = true
  const response = await client.fetch(new Request('http://app.test/items', { method: 'POST', body: '{"a":1}' }))
  t.equal(response.status, 200)
  t.same(server.sentTo('/items').map((request) => request.body), ['{"a":1}', '{"a":1}'])
  t.equal(server.sentTo('/items')[1]?.headers.get('x-requested-with'), 'fetch')
})

t.test('a refresh whose answer was lost is sent again at once, and the session goes on', async (t) => {
  const { browser, server, client, ends } = setup(t)
  server.accessExpired = true
  server.onRefresh = (count) => {
    if (count === 1) throw new TypeError('Failed to fetch')
    return json(200, { expiresIn: 900 })
  }
  const pending = client.fetch('/me')
  await browser.clock.advance(250)
  t.equal((await pending).status, 200)
  t.equal(server.refreshes, 2)
  t.same(ends, [])
})

t.test('a refresh that never gets an answer: the request fails as fetch does, the session stays', async (t) => {
  const { browser, server, client, ends } = setup(t, { retries: 1 })
  server.accessExpired = true
  server.onRefresh = () => { throw new TypeError('Failed to fetch') }
  const pending = client.fetch('/me')
  const outcome = t.rejects(pending, TypeError)
  await browser.clock.advance(250)
  await outcome
  t.same(ends, [])
  t.equal(client.active, true)
})

t.test('the anti-CSRF header goes with state changes and the refresh, not with reads', async (t) => {
  const { server, client } = setup(t, { csrfHeader: 'X-CSRF' })
  await client.fetch('/a')
  await client.fetch('/b', { method: 'delete' })
  await client.fetch('/c', { method: 'POST', headers: { 'x-csrf': 'mine' } })
  t.equal(server.sentTo('/a')[0]?.headers.get('x-csrf'), null)
  t.equal(server.sentTo('/b')[0]?.headers.get('x-csrf'), 'fetch')
  t.equal(server.sentTo('/c')[0]?.headers.get('x-csrf'), 'mine', 'the caller\'s own value stays')
  t.same(client.headers('PATCH'), { 'X-CSRF': 'fetch' })
  t.same(client.headers('get'), {})
  await client.refresh()
  t.equal(server.sentTo('/auth/refresh')[0]?.headers.get('x-csrf'), 'fetch')
})

t.test('proactive refresh: shortly before expiry, only while the page is visible', async (t) => {
  const { browser, server, client } = setup(t)
  // 900 s: refreshed 60 s before it expires.
  await browser.clock.advance(839_000)
  t.equal(server.refreshes, 0)
  await browser.clock.advance(1000)
  t.equal(server.refreshes, 1)
  t.equal(client.expiresAt, browser.clock.now + 900_000)

  browser.setVisible(false)
  await browser.clock.advance(2 * 900_000)
  t.equal(server.refreshes, 1, 'a hidden page does not refresh ahead')
  browser.setVisible(true)
  await browser.clock.advance(0)
  t.equal(server.refreshes, 1, 'not at once: other tabs\' news comes first')
  await browser.clock.advance(1000)
  t.equal(server.refreshes, 2, 'visible again after expiry: one refresh, within a second')
  await browser.clock.advance(60_000)
  t.equal(server.refreshes, 2)
})

t.test('a short-lived token is refreshed a quarter of its lifetime ahead', async (t) => {
  const { browser, server, client } = setup(t, { loggedIn: false })
  client.started({ expiresIn: 40 })
  await browser.clock.advance(29_999)
  t.equal(server.refreshes, 0)
  await browser.clock.advance(1)
  t.equal(server.refreshes, 1)
})

t.test('after a sleep (or a frozen tab, or a back/forward cache restore): one refresh, no burst', async (t) => {
  for (const wake of ['timer', 'visibilitychange', 'resume', 'pageshow'] as const) {
    await t.test(wake, async (t) => {
      const { browser, server, client } = setup(t)
      server.accessExpired = false
      browser.clock.sleep(6 * 3600_000)
      if (wake === 'visibilitychange') browser.document.dispatchEvent(new Event('visibilitychange'))
      if (wake === 'resume') browser.document.dispatchEvent(new Event('resume'))
      if (wake === 'pageshow') browser.window.dispatchEvent(new Event('pageshow'))
      // The late timer fires too, and the page's requests fail at once: all share one refresh.
      server.accessExpired = true
      const requests = Promise.all([client.fetch('/a'), client.fetch('/b'), client.fetch('/c')])
      await browser.clock.advance(0)
      t.same((await requests).map((response) => response.status), [200, 200, 200])
      await browser.clock.advance(10_000)
      t.equal(server.refreshes, 1)
      t.equal(client.expiresAt > browser.clock.now, true)
    })
  }
})

t.test('a proactive refresh that fails does not loop', async (t) => {
  const { browser, server, client, ends } = setup(t, { retries: 0 })
  server.onRefresh = () => failure(503, 'FTS_STORE_UNAVAILABLE', { 'retry-after': '1' })
  await browser.clock.advance(840_000)
  t.equal(server.refreshes, 1)
  await browser.clock.advance(4_999)
  t.equal(server.refreshes, 1, 'paused after a failure')
  await browser.clock.advance(1)
  t.equal(server.refreshes, 2)
  t.same(ends, [])
  t.equal(client.active, true)
})

t.test('another tab\'s refresh, login and logout reach this one (channel and storage event)', async (t) => {
  const name = `tabs-${Math.random()}`
  const { browser, server, client, ends, refreshed } = setup(t, { name })
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  const generation = client.generation
  other.postMessage({ s: generation + 1, a: true, e: browser.clock.now + 300_000, l: 300_000 })
  await settle(20)
  t.same(refreshed.at(-1), { expiresAt: browser.clock.now + 300_000, otherTab: true, started: false })
  t.equal(client.generation, generation + 1)
  // Rescheduled from the other tab's expiry: 60 s before it.
  await browser.clock.advance(239_000)
  t.equal(server.refreshes, 0)

  // Without a channel message: the note in storage and its event.
  const ended = JSON.stringify({ s: generation + 2, a: false, e: 0, l: 0, r: 'logged-out' })
  browser.storage.setItem(`${name}:session`, ended)
  browser.window.dispatchEvent(Object.assign(new Event('storage'), { key: `${name}:session`, newValue: ended }))
  t.same(ends, [{ reason: 'logged-out', code: undefined, otherTab: true }])
  t.equal(client.active, false)
  // The channel brings the same note again: heard once.
  other.postMessage(JSON.parse(ended))
  await settle(20)
  t.equal(ends.length, 1)

  other.postMessage({ s: generation + 3, a: true, e: browser.clock.now + 900_000, l: 900_000 })
  await settle(20)
  t.same(refreshed.at(-1), { expiresAt: browser.clock.now + 900_000, otherTab: true, started: true })
  t.equal(client.active, true)
})

t.test('garbage in storage or on the channel is ignored', async (t) => {
  const name = `garbage-${Math.random()}`
  const { browser, client, ends } = setup(t, { name })
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  other.postMessage('nonsense')
  other.postMessage({ s: 'x', a: false })
  browser.window.dispatchEvent(Object.assign(new Event('storage'), { key: `${name}:session`, newValue: '{' }))
  await settle(20)
  t.equal(client.active, true)
  t.same(ends, [])
})

t.test('a page that opens after a login elsewhere knows the session from storage, silently', async (t) => {
  const name = `later-${Math.random()}`
  const { browser, server, client, refreshed } = setup(t, { name })
  const expiresAt = client.expiresAt
  const later = createSessionClient({ refreshPath: '/auth/refresh', fetch: server.fetch, name, onRefresh: (detail) => refreshed.push(detail) })
  t.teardown(() => later.close())
  t.equal(later.active, true)
  t.equal(later.expiresAt, expiresAt)
  t.equal(refreshed.length, 0)
  // Both pages visible: at the proactive moment, the two tabs take turns and one refreshes.
  await browser.clock.advance(840_000)
  await browser.clock.advance(10_000)
  t.equal(server.refreshes, 1)
})

t.test('while another tab holds the refresh lock, this tab waits and sends its request again without refreshing', async (t) => {
  const name = `lock-${Math.random()}`
  const { browser, server, client } = setup(t, { name })
  server.accessExpired = true
  let release = (): void => {}
  const held = browser.locks.request(`${name}:refresh`, {}, async () => await new Promise<void>((resolve) => { release = resolve }))
  const pending = client.fetch('/me')
  await settle(20)
  t.equal(server.refreshes, 0, 'waiting')
  // The other tab's refresh renewed the cookies; its note has not arrived yet.
  server.accessExpired = false
  release()
  await held
  t.equal((await pending).status, 200)
  t.equal(server.refreshes, 0)
  t.equal(server.sentTo('/me').length, 2)
})

t.test('when the tab holding the lock hangs, this one refreshes after lockTimeout, without stealing', async (t) => {
  const name = `hang-${Math.random()}`
  const { browser, server, client } = setup(t, { name, lockTimeout: 50 })
  server.accessExpired = true
  browser.locks.request(`${name}:refresh`, {}, async () => await new Promise<void>(() => {})).catch(() => {})
  const response = await client.fetch('/me')
  t.equal(response.status, 200)
  t.equal(server.refreshes, 1)
  t.equal(browser.locks.isHeld(`${name}:refresh`), true, 'the hung tab keeps its lock')
})

t.test('without Web Locks: a warning that names reuseGrace, and the refresh still works', async (t) => {
  const { browser, server, client } = setup(t, { locks: false })
  server.accessExpired = true
  t.equal((await client.fetch('/a')).status, 200)
  server.accessExpired = true
  t.equal((await client.fetch('/b')).status, 200)
  t.equal(server.refreshes, 2)
  t.equal(browser.warnings.length, 1, 'once')
  t.match(browser.warnings[0], /reuseGrace 0/)
})

t.test('logout ends the session here and tells the other tabs; a 5xx leaves it on', async (t) => {
  const name = `logout-${Math.random()}`
  const { server, client, ends } = setup(t, { name })
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  const heard: unknown[] = []
  other.onmessage = (event) => heard.push(event.data)

  const realFetch = server.fetch
  server.fetch = async (input, init) => String(input) === '/auth/logout' ? failure(503, 'FTS_STORE_UNAVAILABLE') : await realFetch(input, init)
  t.equal((await client.logout()).status, 503)
  t.equal(client.active, true)
  server.fetch = realFetch

  const response = await client.logout()
  t.equal(response.status, 204)
  t.equal(server.sentTo('/auth/logout')[0]?.headers.get('x-requested-with'), 'fetch')
  t.same(ends, [{ reason: 'logged-out', code: undefined, otherTab: false }])
  await settle(20)
  t.match(heard.at(-1), { a: false, r: 'logged-out' })
  const noPath = createSessionClient({ refreshPath: '/r', name: `no-path-${Math.random()}` })
  t.teardown(() => noPath.close())
  await t.rejects(noPath.logout(), TypeError)
})

t.test('a page that does not know of a session tries one refresh, then stops asking', async (t) => {
  const { server, client } = setup(t, { loggedIn: false })
  server.accessExpired = true
  server.onRefresh = () => failure(401, 'FTS_TOKEN_MISSING')
  t.equal((await client.fetch('/me')).status, 401)
  t.equal((await client.fetch('/me')).status, 401)
  t.equal(server.refreshes, 1)
})

t.test('recover(), for wrapping other clients', async (t) => {
  const { server, client } = setup(t)
  server.accessExpired = true
  const generation = client.generation
  t.equal(await client.recover({ method: 'GET', status: 401, code: 'FTS_TOKEN_EXPIRED', generation, attempt: 0 }), true)
  t.equal(server.refreshes, 1)
  t.equal(await client.recover({ method: 'GET', status: 401, code: 'FTS_TOKEN_EXPIRED', generation, attempt: 0 }), true, 'an older generation: retry, no refresh')
  t.equal(server.refreshes, 1)
  t.equal(await client.recover({ method: 'GET', status: 401, code: 'FTS_TOKEN_EXPIRED', generation: client.generation, attempt: 2 }), false, 'tried twice')
  t.equal(await client.recover({ method: 'GET', status: 500, generation: client.generation, attempt: 0 }), false)
  t.equal(await client.recover({ method: 'GET', status: 401, code: 'MINE', generation: client.generation, attempt: 0 }), false)
})

t.test('close() removes the timers and listeners', async (t) => {
  const { browser, server, client } = setup(t)
  client.close()
  await browser.clock.advance(3600_000)
  browser.document.dispatchEvent(new Event('visibilitychange'))
  await settle()
  t.equal(server.refreshes, 0)
  t.same(browser.clock.pending(), [])
})

t.test('Retry-After: none waits a second, a date in the past not at all, garbage is not retried', async (t) => {
  const { browser, server, client } = setup(t)
  const answers: Array<Record<string, string>> = [{}, { 'retry-after': 'Wed, 02 Dec 2026 12:00:00 GMT' }, { 'retry-after': 'soon' }]
  let count = 0
  server.onApi = () => count < answers.length ? failure(503, 'BUSY', answers[count++]) : undefined
  const pending = client.fetch('/items')
  await browser.clock.advance(999)
  t.equal(server.sentTo('/items').length, 1)
  await browser.clock.advance(1)
  t.equal(server.sentTo('/items').length, 3, 'after a second, then at once')
  t.equal((await pending).status, 503, 'garbage: the answer is the caller\'s')
})

t.test('the page\'s own fetch is used by default, looked up at each call', async (t) => {
  const server = new Server()
  installFakeBrowser(t, { fetch: async (input, init) => await server.fetch(input, init) })
  const client = createSessionClient({ refreshPath: '/auth/refresh' })
  t.teardown(() => client.close())
  client.started({ expiresIn: 900 })
  server.accessExpired = true
  t.equal((await client.fetch('/me')).status, 200)
  t.equal(server.refreshes, 1)
  t.equal(server.sentTo('/auth/refresh')[0]?.headers.get('x-requested-with'), 'fetch')
})

t.test('another tab refreshed and left its note, its message not here yet: the request is sent again, no refresh', async (t) => {
  const name = `late-${Math.random()}`
  const { browser, server, client } = setup(t, { name })
  const note = { s: client.generation + 1, a: true, e: browser.clock.now + 900_000, l: 900_000 }
  browser.storage.setItem(`${name}:session`, JSON.stringify(note))
  server.accessExpired = true
  server.onApi = (request) => server.sentTo(request.path).length > 1 ? json(200, { ok: true }) : undefined
  t.equal((await client.fetch('/me')).status, 200)
  t.equal(server.refreshes, 0)
  t.equal(client.generation, note.s)
})

t.test('a logout in another tab whose message is late: the refresh\'s 401 says logged out, not expired', async (t) => {
  const name = `late-logout-${Math.random()}`
  const { browser, server, client, ends } = setup(t, { name })
  browser.storage.setItem(`${name}:session`, JSON.stringify({ s: client.generation + 1, a: false, e: 0, l: 0, r: 'logged-out' }))
  server.accessExpired = true
  server.onRefresh = () => failure(401, 'FTS_TOKEN_MISSING')
  t.equal((await client.fetch('/me')).status, 401)
  t.same(ends, [{ reason: 'logged-out', code: undefined, otherTab: true }])
})

t.test('a note that ends the session without a reason reads as a logout', async (t) => {
  const name = `no-reason-${Math.random()}`
  const { browser, client, ends } = setup(t, { name })
  const note = JSON.stringify({ s: client.generation + 1, a: false, e: 0, l: 0 })
  browser.window.dispatchEvent(Object.assign(new Event('storage'), { key: 'another-key', newValue: note }))
  t.same(ends, [], 'another key is not ours')
  browser.window.dispatchEvent(Object.assign(new Event('storage'), { key: `${name}:session`, newValue: note }))
  t.same(ends, [{ reason: 'logged-out', code: undefined, otherTab: true }])
})

t.test('after waiting for another tab\'s refresh', async (t) => {
  await t.test('that ended the session: the request\'s 401 is the answer', async (t) => {
    const name = `wait-end-${Math.random()}`
    const { browser, server, client } = setup(t, { name })
    server.accessExpired = true
    let release = (): void => {}
    const held = browser.locks.request(`${name}:refresh`, {}, async () => await new Promise<void>((resolve) => { release = resolve }))
    const pending = client.fetch('/me')
    await settle(20)
    browser.storage.setItem(`${name}:session`, JSON.stringify({ s: client.generation + 1, a: false, e: 0, l: 0, r: 'reuse-detected' }))
    release()
    await held
    t.equal((await pending).status, 401)
    t.equal(server.sentTo('/me').length, 1)
    t.equal(server.refreshes, 0)
  })
  await t.test('in a page that knew of no session: sent again', async (t) => {
    const name = `wait-unknown-${Math.random()}`
    const { browser, server, client } = setup(t, { name, loggedIn: false })
    server.accessExpired = true
    let release = (): void => {}
    const held = browser.locks.request(`${name}:refresh`, {}, async () => await new Promise<void>((resolve) => { release = resolve }))
    const pending = client.fetch('/me')
    await settle(20)
    server.accessExpired = false
    release()
    await held
    t.equal((await pending).status, 200)
    t.equal(server.refreshes, 0)
  })
})

t.test('refresh() on demand', async (t) => {
  const { server, client } = setup(t, { loggedIn: false })
  t.equal(await client.refresh(), true, 'a page that knows of no session asks the server')
  t.equal(client.active, true)
  server.onRefresh = () => failure(401, 'FTS_SESSION_REVOKED')
  t.equal(await client.refresh(), false)
  t.equal(await client.refresh(), false)
  t.equal(server.refreshes, 2, 'no session: not asked again')
})

t.test('without BroadcastChannel the tabs hear each other through storage events', async (t) => {
  const name = `no-channel-${Math.random()}`
  const { browser, client, refreshed } = setup(t, { name, channel: false })
  await client.refresh()
  t.equal(JSON.parse(browser.storage.getItem(`${name}:session`) ?? '{}').s, client.generation, 'the note is left in storage')
  const note = JSON.stringify({ s: client.generation + 1, a: true, e: browser.clock.now + 1000, l: 1000 })
  browser.window.dispatchEvent(Object.assign(new Event('storage'), { key: `${name}:session`, newValue: note }))
  t.equal(refreshed.at(-1)?.otherTab, true)
})

t.test('with storage off (it throws), a page still refreshes and tells the open tabs', async (t) => {
  const name = `blocked-${Math.random()}`
  const { browser, server, client } = setup(t, { name, loggedIn: false })
  browser.storage.blocked = true
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  const heard: unknown[] = []
  other.onmessage = (event) => heard.push(event.data)
  client.started({ expiresIn: 900 })
  server.accessExpired = true
  t.equal((await client.fetch('/me')).status, 200)
  await settle(20)
  t.equal(heard.length, 2)
  t.equal(client.active, true)
})

t.test('a refresh answered without a body: the session goes on, with no proactive refresh', async (t) => {
  const { browser, server, client } = setup(t)
  server.accessExpired = true
  server.onRefresh = () => new Response(null, { status: 204 })
  t.equal((await client.fetch('/me')).status, 200)
  t.equal(client.active, true)
  t.equal(client.expiresAt, 0)
  await browser.clock.advance(3600_000)
  t.equal(server.refreshes, 1)
})

t.test('the proactive timer finds another tab\'s newer note (its message late): no refresh, a new time', async (t) => {
  const name = `timer-note-${Math.random()}`
  const { browser, server, client } = setup(t, { name })
  await browser.clock.advance(800_000)
  const note = { s: client.generation + 1, a: true, e: browser.clock.now + 900_000, l: 900_000 }
  browser.storage.setItem(`${name}:session`, JSON.stringify(note))
  await browser.clock.advance(40_000)
  t.equal(server.refreshes, 0)
  t.equal(client.expiresAt, note.e)
  t.same(browser.clock.pending(), [note.e - 60_000 - browser.clock.now])
})

t.test('ended() ends the session here and in every tab, once', async (t) => {
  const { client, ends } = setup(t)
  client.ended()
  client.ended('revoked')
  t.same(ends, [{ reason: 'logged-out', code: undefined, otherTab: false }])
  t.equal(client.active, false)
})

t.test('a timer that fires late (the machine slept) waits for the other tabs\' news, then refreshes once', async (t) => {
  const name = `late-timer-${Math.random()}`
  const { browser, server, client } = setup(t, { name })
  browser.clock.sleep(2 * 3600_000)
  await browser.clock.advance(0)
  t.equal(server.refreshes, 0, 'not at once')
  await browser.clock.advance(1000)
  t.equal(server.refreshes, 1)
  t.ok(client.expiresAt > browser.clock.now + 899_000, 'renewed')

  // Again, but another tab refreshed while this one slept, and its news arrives meanwhile.
  browser.clock.sleep(2 * 3600_000)
  await browser.clock.advance(0)
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  other.postMessage({ s: client.generation + 1, a: true, e: browser.clock.now + 900_000, l: 900_000 })
  await settle(20)
  await browser.clock.advance(1000)
  t.equal(server.refreshes, 1, 'that tab\'s refresh serves this one')
})

t.test('with a DPoP prover: each refresh carries a proof for its URL, and a nonce asked for is learnt and the refresh sent again', async (t) => {
  const seen: number[] = []
  let proofs = 0
  const dpop = {
    proof: async (method: string, url: string) => `proof-${++proofs}:${method}:${url}`,
    seen: (response: Response) => { seen.push(response.status) }
  }
  const { server, client } = setup(t, { dpop })
  server.onRefresh = (count) => count === 1
    ? failure(400, 'FTS_DPOP_NONCE_REQUIRED', { 'dpop-nonce': 'n1' })
    : json(200, { accessToken: 'x', tokenType: 'Bearer', expiresIn: 900 })
  server.accessExpired = true
  const response = await client.fetch('/api/things')
  t.equal(response.status, 200, 'the request went through')
  t.same(server.sentTo('/auth/refresh').map((request) => request.headers.get('dpop')), [
    'proof-1:POST:https://app.example/auth/refresh', 'proof-2:POST:https://app.example/auth/refresh'
  ], 'a fresh proof for each try, for the refresh route\'s absolute URL')
  t.same(seen, [400, 200], 'the prover saw each answer (the nonce came with the first)')
  t.equal(server.sentTo('/api/things')[0]?.headers.get('dpop'), null, 'an API request carries no proof: the access cookie is not bound')
  const realFetch = server.fetch
  server.fetch = async (input, init) => {
    const answer = await realFetch(input, init)
    return String(input) === '/auth/logout' && proofs === 3 ? failure(400, 'FTS_DPOP_NONCE_REQUIRED', { 'dpop-nonce': 'n2' }) : answer
  }
  t.equal((await client.logout()).status, 204)
  t.same(server.sentTo('/auth/logout').map((request) => request.headers.get('dpop')), [
    'proof-3:POST:https://app.example/auth/logout', 'proof-4:POST:https://app.example/auth/logout'
  ], 'the logout carries a proof (a bound session\'s refresh cookie ends it only with one), and is sent again for a nonce')
  t.same(seen.slice(2), [400, 204], 'the prover learnt the nonce from the logout\'s answer')
  t.equal(client.active, false)
})

t.test('a DPoP proof refused on the refresh is the caller\'s answer: the session is not ended by it', async (t) => {
  const dpop = { proof: async () => 'proof', seen: () => {} }
  const { server, client, ends } = setup(t, { dpop })
  server.onRefresh = () => failure(400, 'FTS_DPOP_PROOF_INVALID')
  server.accessExpired = true
  const response = await client.fetch('/api/things')
  t.equal(response.status, 400)
  t.equal((await response.json()).code, 'FTS_DPOP_PROOF_INVALID')
  t.equal(server.refreshes, 1, 'not retried')
  t.same(ends, [], 'no session end: another tab\'s key may still be good')
})

/** The 401 of a route that needs a more recent login, with its RFC 9470 challenge. */
const stepUpNeeded = (challenge = 'Bearer error="insufficient_user_authentication", error_description="A login at most 300 seconds old is required", max_age=300, acr_values="mfa hwk"'): Response =>
  failure(401, 'FTS_STEP_UP_REQUIRED', { 'www-authenticate': challenge })

/** A server whose `/change` needs a step-up until `stepped`; `onStepUp` steps up and counts. */
function stepUpServer (t: Test, options: Partial<SessionClientOptions> & { answer?: () => { expiresIn?: unknown } | false } = {}): Setup & { asked: Array<{ maxAge: number | undefined, acrValues: string[] }>, state: { stepped: boolean } } {
  const asked: Array<{ maxAge: number | undefined, acrValues: string[] }> = []
  const state = { stepped: false }
  const { answer = () => { state.stepped = true; return { expiresIn: 600 } }, ...rest } = options
  const setUp = setup(t, {
    onStepUp: async (detail) => {
      asked.push(detail)
      await settle(5)
      return answer()
    },
    ...rest
  })
  setUp.server.onApi = (request) => request.path === '/change' && !state.stepped ? stepUpNeeded() : undefined
  return { ...setUp, asked, state }
}

t.test('step-up: no refresh; onStepUp hears what the route asks, then the request is sent again, once', async (t) => {
  const { server, client, asked, browser, refreshed } = stepUpServer(t)
  const generation = client.generation
  const response = await client.fetch('/change', { method: 'POST', body: '{}' })
  t.equal(response.status, 200)
  t.same(asked, [{ maxAge: 300, acrValues: ['mfa', 'hwk'] }], 'max_age and acr_values, from the challenge')
  t.equal(server.refreshes, 0, 'a refresh cannot satisfy it: none is made')
  t.equal(server.sentTo('/change').length, 2)
  t.equal(server.sentTo('/change')[1]?.body, '{}', 'the same body again')
  t.equal(client.generation, generation + 1, 'the re-authentication is a change every tab hears')
  t.equal(client.expiresAt, browser.clock.now + 600_000, 'with the new access token\'s expiry')
  t.equal(refreshed.length, 0, 'not reported as a refresh')
  t.equal(client.active, true)
})

t.test('step-up: a user who gives up gets the 401 back; nothing else happens', async (t) => {
  const { server, client, asked, ends } = stepUpServer(t, { answer: () => false })
  const generation = client.generation
  const response = await client.fetch('/change', { method: 'POST' })
  t.equal(response.status, 401)
  t.equal((await response.json()).code, 'FTS_STEP_UP_REQUIRED', 'the caller reads the answer')
  t.equal(asked.length, 1)
  t.equal(server.sentTo('/change').length, 1, 'not sent again')
  t.equal(server.refreshes, 0)
  t.equal(client.generation, generation)
  t.same(ends, [], 'the session goes on')
})

t.test('step-up: a retry that still falls short (another class asked) is handed back, not asked again', async (t) => {
  const { server, client, asked } = stepUpServer(t, { answer: () => ({ expiresIn: 600 }) })
  const response = await client.fetch('/change', { method: 'POST' })
  t.equal(response.status, 401)
  t.equal(asked.length, 1, 'asked once')
  t.equal(server.sentTo('/change').length, 2, 'sent again once')
  // A later request (its login got old again): asked again.
  t.equal((await client.fetch('/change', { method: 'POST' })).status, 401)
  t.equal(asked.length, 2)
})

t.test('step-up: requests falling short at once share one re-authentication', async (t) => {
  const { server, client, asked } = stepUpServer(t)
  const responses = await Promise.all(Array.from({ length: 5 }, async () => await client.fetch('/change', { method: 'POST' })))
  t.same(responses.map((r) => r.status), Array(5).fill(200))
  t.equal(asked.length, 1)
  t.equal(server.sentTo('/change').length, 10)
})

t.test('step-up: an expired access token is refreshed first, then the route asks for the step-up', async (t) => {
  const { server, client, asked } = stepUpServer(t)
  server.accessExpired = true
  const onApi = server.onApi
  server.onApi = (request) => server.accessExpired ? undefined : onApi(request)
  t.equal((await client.fetch('/change', { method: 'POST' })).status, 200)
  t.equal(server.refreshes, 1)
  t.equal(asked.length, 1)
  t.equal(server.sentTo('/change').length, 3, 'expired, then step-up, then through')
})

t.test('step-up: while another tab re-authenticates, this one waits and sends its request again without asking', async (t) => {
  const name = `step-${Math.random()}`
  const { browser, server, client, asked, state } = stepUpServer(t, { name })
  let release = (): void => {}
  const held = browser.locks.request(`${name}:step-up`, {}, async () => await new Promise<void>((resolve) => { release = resolve }))
  const pending = client.fetch('/change', { method: 'POST' })
  await settle(20)
  t.equal(server.sentTo('/change').length, 1, 'waiting')
  // The other tab's user re-authenticated: its note arrives, and it lets go of the lock.
  state.stepped = true
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  other.postMessage({ s: client.generation + 1, a: true, e: browser.clock.now + 600_000, l: 600_000 })
  await settle(20)
  release()
  await held
  t.equal((await pending).status, 200)
  t.equal(asked.length, 0, 'this tab did not ask')
  t.equal(server.sentTo('/change').length, 2)
})

t.test('step-up: a request sent before another tab\'s re-authentication is sent again without asking', async (t) => {
  const name = `stepped-${Math.random()}`
  const { browser, client, asked } = stepUpServer(t, { name })
  const generation = client.generation
  const other = new BroadcastChannel(name)
  t.teardown(() => other.close())
  other.postMessage({ s: generation + 1, a: true, e: browser.clock.now + 600_000, l: 600_000 })
  await settle(20)
  t.equal(await client.recover({ method: 'POST', status: 401, code: 'FTS_STEP_UP_REQUIRED', generation, attempt: 0 }), true)
  t.equal(asked.length, 0)
})

t.test('step-up without onStepUp, or with a body that cannot be sent again: the 401 is the caller\'s', async (t) => {
  const { server, client } = setup(t)
  server.onApi = (request) => request.path === '/change' ? stepUpNeeded() : undefined
  t.equal((await client.fetch('/change', { method: 'POST' })).status, 401)
  t.equal(server.refreshes, 0, 'no refresh either')
  t.equal(server.sentTo('/change').length, 1)
  const { client: asking, asked } = stepUpServer(t)
  const stream = new ReadableStream({ start: (controller) => { controller.enqueue(new Uint8Array([1])); controller.close() } })
  t.equal((await asking.fetch('/change', { method: 'POST', body: stream, duplex: 'half' } as RequestInit)).status, 401)
  t.equal(asked.length, 0, 'not asked for a request that cannot be retried')
})

t.test('step-up through recover(): the challenge is read from the outcome', async (t) => {
  const { client, asked } = stepUpServer(t)
  const generation = client.generation
  t.equal(await client.recover({ method: 'POST', status: 401, code: 'FTS_STEP_UP_REQUIRED', challenge: 'DPoP error="insufficient_user_authentication", max_age="60"', generation, attempt: 0 }), true)
  t.same(asked, [{ maxAge: 60, acrValues: [] }])
  t.equal(await client.recover({ method: 'POST', status: 401, code: 'FTS_STEP_UP_REQUIRED', generation: client.generation, attempt: 1 }), false, 'the retry fell short: handed back')
})

t.test('step-up without a challenge (a proxy dropped the header): onStepUp hears nothing asked, and still steps up', async (t) => {
  const { server, client, asked, state } = stepUpServer(t)
  server.onApi = (request) => request.path === '/change' && !state.stepped ? failure(401, 'FTS_STEP_UP_REQUIRED') : undefined
  t.equal((await client.fetch('/change', { method: 'POST' })).status, 200)
  t.same(asked, [{ maxAge: undefined, acrValues: [] }])
})

t.test('step-up: another tab\'s note found once this tab holds the lock (its message late): sent again without asking', async (t) => {
  const name = `late-note-${Math.random()}`
  const { browser, client, asked } = stepUpServer(t, { name })
  const generation = client.generation
  browser.storage.setItem(`${name}:session`, JSON.stringify({ s: generation + 1, a: true, e: browser.clock.now + 600_000, l: 600_000 }))
  t.equal(await client.recover({ method: 'POST', status: 401, code: 'FTS_STEP_UP_REQUIRED', generation, attempt: 0 }), true)
  t.equal(asked.length, 0)
})
