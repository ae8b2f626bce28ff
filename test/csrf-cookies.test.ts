import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { LogCapture, buildApp, login } from './helpers/app.js'
import { Transport, domainMatches } from '../lib/transport.js'
import { startRedis } from './helpers/redis.mjs'

/** A browser-like client over real HTTP: one cookie jar, honouring Path and deletions. */
class Browser {
  readonly jar = new Map<string, { value: string, path: string }>()
  constructor (readonly base: string) {}

  async fetch (path: string, init: RequestInit = {}): Promise<Response> {
    const cookie = [...this.jar].filter(([, c]) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map(([name, c]) => `${name}=${c.value}`).join('; ')
    const headers = new Headers(init.headers)
    if (cookie !== '') headers.set('cookie', cookie)
    const response = await fetch(this.base + path, { ...init, headers })
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
      const [name = '', value = ''] = pair.split('=')
      const pathAttribute = attributes.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/'
      const expired = attributes.some((a) => /^max-age=0$/i.test(a) || (a.toLowerCase().startsWith('expires=') && Date.parse(a.slice(8)) < Date.now()))
      if (expired || value === '') this.jar.delete(name)
      else this.jar.set(name, { value, path: pathAttribute })
    }
    return response
  }
}

async function listen (app: FastifyInstance): Promise<string> {
  return await app.listen({ port: 0, host: '127.0.0.1' })
}

t.test('cookies over real HTTP', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const browser = new Browser(await listen(app))

  const loginResponse = await browser.fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'browser' }) })
  t.equal(loginResponse.status, 200)
  t.equal(loginResponse.headers.get('cache-control'), 'no-store')
  const setCookies = loginResponse.headers.getSetCookie()
  t.match(setCookies.find((c) => c.startsWith('access_token=')), /; Max-Age=900; Path=\/; HttpOnly; SameSite=Strict$/)
  t.match(setCookies.find((c) => c.startsWith('refresh_token=')), /; Max-Age=86400; Path=\/auth; HttpOnly; SameSite=Strict$/)
  t.notMatch(setCookies.join('\n'), /Secure/, 'not Secure outside production by default')

  t.equal((await browser.fetch('/me')).status, 200, 'the access cookie authenticates a GET')
  const unsafe = await browser.fetch('/me', { method: 'POST' })
  t.equal(unsafe.status, 403, 'a cookie-authenticated POST without the anti-CSRF header is refused')
  t.equal((await unsafe.json() as { code: string }).code, 'FTS_CSRF_REJECTED')
  t.equal((await browser.fetch('/me', { method: 'POST', headers: { 'x-requested-with': 'fetch' } })).status, 200)

  const before = browser.jar.get('refresh_token')?.value
  t.equal((await browser.fetch('/auth/refresh', { method: 'POST' })).status, 403, 'refresh by cookie needs the header')
  t.equal(browser.jar.get('refresh_token')?.value, before, 'and changed nothing')
  const refreshed = await browser.fetch('/auth/refresh', { method: 'POST', headers: { 'x-requested-with': 'fetch' } })
  t.equal(refreshed.status, 200)
  t.not(browser.jar.get('refresh_token')?.value, before, 'the browser holds the rotated cookie')

  const out = await browser.fetch('/auth/logout', { method: 'POST', headers: { 'x-requested-with': 'fetch' } })
  t.equal(out.status, 204)
  t.equal(browser.jar.size, 0, 'both cookies are gone from the jar')
  t.equal((await browser.fetch('/me')).status, 401)
})

t.test('cross-site requests change nothing', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'victim' } })
  const cookies = Object.fromEntries(loginResponse.cookies.map((c: { name: string, value: string }) => [c.name, c.value]))
  const snapshot = async (): Promise<Record<string, string>> => {
    const keys = (await inspect.keys('*{victim}*:s:*'))
    return await inspect.hgetall(keys[0] ?? 'none')
  }
  const before = await snapshot()
  for (const url of ['/auth/refresh', '/auth/logout', '/auth/logout-all']) {
    const noHeader = await app.inject({ method: 'POST', url, cookies })
    t.equal(noHeader.statusCode, 403, `${url} without the header`)
    t.equal(noHeader.headers['set-cookie'], undefined, `${url} leaves the cookies alone`)
    const crossSite = await app.inject({ method: 'POST', url, cookies, headers: { 'x-requested-with': 'x', 'sec-fetch-site': 'cross-site' } })
    t.equal(crossSite.statusCode, 403, `${url} from another site, even with the header`)
    const shouting = await app.inject({ method: 'POST', url, cookies, headers: { 'x-requested-with': 'x', 'sec-fetch-site': 'Cross-Site' } })
    t.equal(shouting.statusCode, 403, `${url}: Sec-Fetch-Site is compared without case`)
    const emptyHeader = await app.inject({ method: 'POST', url, cookies, headers: { 'x-requested-with': '' } })
    t.equal(emptyHeader.statusCode, 403, `${url} with an empty header`)
  }
  t.same(await snapshot(), before, 'nothing changed in Redis')
  const sameOrigin = await app.inject({ method: 'POST', url: '/auth/refresh', cookies, headers: { 'x-requested-with': 'x', 'sec-fetch-site': 'same-origin' } })
  t.equal(sameOrigin.statusCode, 200)
})

t.test('tokens in the body or Bearer need no anti-CSRF header', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const tokens = await login(app, 'native')
  t.equal((await app.inject({ method: 'POST', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: tokens.refreshToken } })).statusCode, 200)
})

t.test('cookie settings', async (t) => {
  const redis = await startRedis(t)

  t.test('custom names, domain, paths, Secure and a custom CSRF header', async (t) => {
    const app = await buildApp(t, {
      redis: redis.url,
      csrfHeader: 'x-csrf',
      cookies: { accessTokenName: 'at', refreshTokenName: 'rt', domain: 'example.test', path: '/api', refreshPath: '/auth/refresh', secure: true, sameSite: 'lax' }
    })
    const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'custom' } })
    const [access, refreshCookie, binding] = response.headers['set-cookie'] as string[]
    t.match(access, /^__Secure-at=.*; Max-Age=900; Domain=example\.test; Path=\/api; HttpOnly; Secure; SameSite=Lax$/)
    t.match(refreshCookie, /^__Secure-rt=.*; Max-Age=86400; Domain=example\.test; Path=\/auth\/refresh; HttpOnly; Secure; SameSite=Lax$/)
    t.match(binding, /^__Host-session_binding=[A-Za-z0-9_-]{22}; Max-Age=86400; Path=\/; HttpOnly; Secure; SameSite=Lax$/, 'host-only, on every path')
    const value = (name: string, from = response): string => from.cookies.find((c: { name: string }) => c.name === name)?.value as string
    const cookies = { '__Secure-rt': value('__Secure-rt'), '__Host-session_binding': value('__Host-session_binding') }
    t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', cookies, headers: { 'x-requested-with': '1' } })).statusCode, 403, 'the old header name no longer counts')
    const ok = await app.inject({ method: 'POST', url: '/auth/refresh', cookies, headers: { 'x-csrf': '1' } })
    t.equal(ok.statusCode, 200)
    const out = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { ...cookies, '__Secure-rt': value('__Secure-rt', ok) }, headers: { 'x-csrf': '1' } })
    const cleared = out.headers['set-cookie'] as string[]
    t.match(cleared[0], /^__Secure-at=; .*Domain=example\.test; Path=\/api;/)
    t.match(cleared[1], /^__Secure-rt=; .*Domain=example\.test; Path=\/auth\/refresh;/)
    t.match(cleared[2], /^__Host-session_binding=; .*Path=\/;/)
    t.notMatch(cleared[2], /Domain/)
  })

  t.test('Secure by default in production', async (t) => {
    const previous = process.env.NODE_ENV
    process.env.NODE_ENV = 'production'
    t.teardown(() => { process.env.NODE_ENV = previous })
    const app = await buildApp(t, { redis: redis.url })
    const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'prod' } })
    for (const cookie of response.headers['set-cookie'] as string[]) t.match(cookie, /; Secure;/)
  })

  t.test('the CSRF header check can be turned off; Sec-Fetch-Site still counts', async (t) => {
    const app = await buildApp(t, { redis: redis.url, csrfHeader: false })
    const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'no-csrf' } })
    const cookies = Object.fromEntries(response.cookies.map((c: { name: string, value: string }) => [c.name, c.value]))
    t.equal((await app.inject({ method: 'POST', url: '/me', cookies })).statusCode, 200)
    t.equal((await app.inject({ method: 'POST', url: '/me', cookies, headers: { 'sec-fetch-site': 'cross-site' } })).statusCode, 403)
  })
})

t.test('cookie state changes from another Origin are rejected like cross-site ones', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url, allowedOrigins: ['https://admin.example.test'] })
  const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'origin' } })
  const cookies = Object.fromEntries(loginResponse.cookies.map((c: { name: string, value: string }) => [c.name, c.value]))
  const before = await inspect.keys('*{origin}*')
  for (const url of ['/auth/refresh', '/auth/logout', '/auth/logout-all', '/me']) {
    for (const origin of ['https://evil.example', 'null', 'http://localhost:8080', 'https://localhost:80']) {
      const response = await app.inject({ method: 'POST', url, cookies, headers: { 'x-requested-with': 'x', origin } })
      t.equal(response.json().code, 'FTS_CSRF_REJECTED', `${url} from Origin ${origin}`)
    }
  }
  t.same(await inspect.keys('*{origin}*'), before, 'nothing changed in Redis')
  // inject's requests are to http://localhost:80.
  t.equal((await app.inject({ method: 'POST', url: '/me', cookies, headers: { 'x-requested-with': 'x', origin: 'http://localhost:80' } })).statusCode, 200, 'the app\'s own origin')
  t.equal((await app.inject({ method: 'POST', url: '/me', cookies, headers: { 'x-requested-with': 'x', origin: 'HTTPS://ADMIN.example.test' } })).statusCode, 200, 'an allowed origin')
  t.equal((await app.inject({ method: 'POST', url: '/me', cookies, headers: { 'x-requested-with': 'x' } })).statusCode, 200, 'no Origin: the header still guards')
  const tokens = await login(app, 'origin-native')
  t.equal((await app.inject({ method: 'POST', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}`, origin: 'https://evil.example' } })).statusCode, 200,
    'a Bearer token is no cookie: no Origin check')

  const behindProxy = await buildApp(t, { redis: redis.url, publicOrigin: 'https://app.example.test' })
  const proxied = Object.fromEntries((await behindProxy.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'proxied' } })).cookies
    .map((c: { name: string, value: string }) => [c.name, c.value]))
  t.equal((await behindProxy.inject({ method: 'POST', url: '/me', cookies: proxied, headers: { 'x-requested-with': 'x', origin: 'https://app.example.test' } })).statusCode, 200,
    'publicOrigin: the origin browsers see behind a proxy')
  t.equal((await behindProxy.inject({ method: 'POST', url: '/me', cookies: proxied, headers: { 'x-requested-with': 'x', origin: 'http://localhost:80' } })).statusCode, 403,
    'and only it')
  for (const [options, message] of [
    [{ publicOrigin: 'https://app.example.test/' }, /publicOrigin/],
    [{ publicOrigin: 'app.example.test' }, /publicOrigin/],
    [{ allowedOrigins: ['https://ok.test', 'ftp://x'] }, /allowedOrigins\[1\]/],
    [{ allowedOrigins: 'https://ok.test' }, /allowedOrigins/]
  ] as const) {
    await t.rejects(buildApp(t, options as never), { code: 'FTS_INVALID_OPTION', message })
  }
})

t.test('Clear-Site-Data on logout, only when asked and only for cookie clients', async (t) => {
  const redis = await startRedis(t)
  const plain = await buildApp(t, { redis: redis.url })
  const clearing = await buildApp(t, { redis: redis.url, cookies: { clearSiteData: true } })
  const logout = async (app: typeof plain, url: string): Promise<unknown> => {
    const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'leaving' } })
    const cookies = Object.fromEntries(loginResponse.cookies.map((c: { name: string, value: string }) => [c.name, c.value]))
    const response = await app.inject({ method: 'POST', url, cookies, headers: { 'x-requested-with': 'x' } })
    t.equal(response.statusCode, 204)
    return response.headers['clear-site-data']
  }
  t.equal(await logout(clearing, '/auth/logout'), '"cookies"')
  t.equal(await logout(clearing, '/auth/logout-all'), '"cookies"')
  t.equal(await logout(plain, '/auth/logout'), undefined, 'off by default')
  const tokens = await login(clearing, 'native')
  const native = await clearing.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })
  t.equal(native.headers['clear-site-data'], undefined, 'a native client has no cookies to clear')
})

t.test('a CSRF refusal logs which check failed, the Origin seen, what was expected and the option that allows it; the client learns none of it', async (t) => {
  const logs = new LogCapture()
  const app = await buildApp(t, { allowedOrigins: ['https://admin.example.test'] }, { logs })
  const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'refused' } })
  const cookies = Object.fromEntries(loginResponse.cookies.map((c: { name: string, value: string }) => [c.name, c.value]))
  const refused = async (headers: Record<string, string>): Promise<void> => {
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', cookies, headers })
    t.same(response.json(), { statusCode: 403, code: 'FTS_CSRF_REJECTED', error: 'Forbidden', message: 'Cross-site request rejected' }, 'the answer tells nothing more')
  }
  const explained = (): Array<Record<string, unknown>> => logs.entries().filter((entry) => entry.code === 'FTS_CSRF_REJECTED')

  await refused({ origin: 'http://localhost:80' })
  t.match(explained(), [{ level: 30, check: 'csrf-header', origin: 'http://localhost:80', expected: 'a non-empty x-requested-with header', option: 'csrfHeader', msg: /anti-CSRF header is missing/ }])
  await refused({ 'x-requested-with': 'x', origin: 'http://127.0.0.1:5173' })
  t.match(explained()[1], {
    level: 30, check: 'origin', origin: 'http://127.0.0.1:5173', expected: ['http://localhost:80', 'https://admin.example.test'], option: 'allowedOrigins or publicOrigin', msg: /changeOrigin/
  }, 'a foreign Origin: the one seen and the ones expected')
  await refused({ 'x-requested-with': 'x', 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' })
  t.match(explained()[2], { check: 'sec-fetch-site', origin: 'https://evil.example', option: null, msg: /no option allows/ })

  await refused({ 'x-requested-with': 'x', origin: 'http://127.0.0.1:5173' })
  await refused({ 'x-requested-with': 'x', origin: 'http://127.0.0.1:5173' })
  t.equal(explained().length, 3, 'the same refusal again within the minute: not logged again')
  await refused({ 'x-requested-with': 'x', origin: 'http://127.0.0.1:5174' })
  t.equal(explained().length, 4, 'another Origin is another story')

  const long = `https://${'a'.repeat(5000)}.example`
  await refused({ 'x-requested-with': 'x', origin: long })
  t.equal((explained()[4]?.origin as string).length, 121, 'a long Origin is cut')
  const tokens = (loginResponse.json() as { accessToken: string }).accessToken
  for (const secret of [tokens, ...Object.values(cookies)]) t.notOk(logs.text.includes(secret), 'no token nor cookie value in the logs')
})

/** A Transport on a clock of the test's, and the refusal lines it logs. */
function refusals (t: Test): { refuse: (origin: string) => void, logged: Array<Record<string, unknown>>, clock: { now: number } } {
  const clock = { now: 1_000_000 }
  const transport = new Transport({ cookies: null, csrfHeader: 'x-requested-with', origins: { publicOrigin: 'https://app.test', allowed: new Set() } }, () => clock.now)
  const logged: Array<Record<string, unknown>> = []
  const request = (origin: string): never => ({ headers: { origin, 'x-requested-with': 'x' }, log: { info: (entry: Record<string, unknown>) => logged.push(entry) } }) as never
  const refuse = (origin: string): void => { t.throws(() => transport.checkCsrf(request(origin)), { code: 'FTS_CSRF_REJECTED' }) }
  return { refuse, logged, clock }
}

t.test('CSRF refusals are logged once per check and origin a minute, from a bounded memory', async (t) => {
  const { refuse, logged, clock } = refusals(t)
  refuse('https://a.test')
  clock.now += 59_999
  refuse('https://a.test')
  t.equal(logged.length, 1, 'once within the minute')
  clock.now += 1
  refuse('https://a.test')
  t.equal(logged.length, 2, 'again once the minute is over')
  // Past the overall cap, a refusal to tell is counted in the next line's `skipped`; one
  // told within the minute is not: `skipped` shows which refusals are remembered.
  for (let i = 0; i < 1000; i++) refuse(`https://${i}.test`)
  t.equal(logged.length, 11, 'the overall cap')
  refuse('https://999.test')
  refuse('https://a.test')
  clock.now += 60_000
  refuse('https://next.test')
  t.equal(logged.length, 12)
  t.match(logged[11], { origin: 'https://next.test', skipped: 991 + 1 },
    'the 991 new origins left out, and a.test, told at the same instant but forgotten (at most 1,000 remembered); not 999.test, the newest, still remembered')
})

t.test('a stream of made-up Origins is at most 10 refusal lines a minute, the next line counting those left out', async (t) => {
  const { refuse, logged, clock } = refusals(t)
  for (let i = 0; i < 2000; i++) refuse(`https://${i}.attacker.test`)
  t.equal(logged.length, 10, '2,000 distinct origins in a minute: 10 lines')
  t.same(logged.map((entry) => entry.skipped), Array(10).fill(0), 'each of the first ten told in full')
  t.match(logged[9], { origin: 'https://9.attacker.test', check: 'origin' })
  clock.now += 59_999
  refuse('https://late.attacker.test')
  t.equal(logged.length, 10, 'still the same minute')
  clock.now += 1
  refuse('https://app.example.test')
  t.match(logged, { length: 11, 10: { origin: 'https://app.example.test', skipped: 1991 } }, 'the next minute: told again, with the number left out')
})

t.test('a cookies.domain the host cannot match is warned about once per host, at the first answer whose cookies the browser would drop', async (t) => {
  const logs = new LogCapture()
  const app = await buildApp(t, { cookies: { domain: 'localhost' } }, { logs })
  const warnings = (): Array<Record<string, unknown>> => logs.entries().filter((entry) => entry.level === 40 && /cookies\.domain/.test(entry.msg as string))
  const loginAt = async (host: string): Promise<number> =>
    (await app.inject({ method: 'POST', url: '/auth/login', headers: { host }, payload: { userId: 'domain' } })).statusCode

  t.equal(await loginAt('localhost:3000'), 200)
  t.same(warnings(), [], 'the domain itself: nothing to say')
  t.equal(await loginAt('127.0.0.1:3000'), 200, 'the login answers as before')
  t.match(warnings(), [{ domain: 'localhost', host: '127.0.0.1', msg: /RFC 6265.*publicOrigin/ }], 'the warning names the domain and the host, and publicOrigin for a proxy')
  t.equal(await loginAt('127.0.0.1:3000'), 200)
  t.equal(warnings().length, 1, 'once for that host')
  t.equal(await loginAt('example.test'), 200)
  t.match(warnings(), [{ host: '127.0.0.1' }, { host: 'example.test' }], 'a first mismatch (a curl to the pod\'s address) does not silence another host\'s')
  for (let i = 0; i < 40; i++) await loginAt(`10.0.0.${i}`)
  t.equal(warnings().length, 8, 'the first 8 hosts only: a stream of forged Host headers is no log flood')

  const plain = new LogCapture()
  const hostOnly = await buildApp(t, {}, { logs: plain })
  await hostOnly.inject({ method: 'POST', url: '/auth/login', headers: { host: '127.0.0.1:3000' }, payload: { userId: 'domain' } })
  t.notOk(plain.text.includes('cookies.domain'), 'no domain, no warning')
  const native = new LogCapture()
  const bodyOnly = await buildApp(t, { cookies: { domain: 'localhost' } }, { logs: native })
  await bodyOnly.inject({ method: 'POST', url: '/auth/login', headers: { host: '127.0.0.1:3000', 'x-token-transport': 'body' }, payload: { userId: 'domain' } })
  t.notOk(native.text.includes('cookies.domain'), 'no cookies set, no warning')
})

t.test('behind a proxy that rewrites Host, publicOrigin is the host checked against cookies.domain: no false warning', async (t) => {
  const logs = new LogCapture()
  const app = await buildApp(t, { cookies: { domain: 'example.com' }, publicOrigin: 'https://app.example.com' }, { logs })
  const login = await app.inject({ method: 'POST', url: '/auth/login', headers: { host: 'app:3000' }, payload: { userId: 'proxied' } })
  t.equal(login.statusCode, 200)
  t.match(login.headers['set-cookie'], /Domain=example\.com/, 'cookies for the domain')
  t.notOk(logs.text.includes('cookies.domain'), 'the browser sees app.example.com, which the domain matches')
})

t.test('domain-match (RFC 6265 §5.1.3)', async (t) => {
  for (const [host, domain, matches] of [
    ['example.test', 'example.test', true],
    ['example.test', 'EXAMPLE.test', true],
    ['app.example.test', 'example.test', true],
    ['app.example.test', '.example.test', true],
    ['badexample.test', 'example.test', false],
    ['example.test', 'app.example.test', false],
    ['127.0.0.1', 'localhost', false],
    ['127.0.0.1', '127.0.0.1', true],
    ['1.127.0.0.1', '127.0.0.1', true],
    ['10.0.0.1', '0.0.1', false]
  ] as const) {
    t.equal(domainMatches(host, domain), matches, `${host} ${matches ? 'matches' : 'does not match'} ${domain}`)
  }
})
