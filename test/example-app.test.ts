import t, { type Test } from 'tap'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { MemoryStore } from 'fastify-token-sessions'
import { buildApp } from '../example-app/src/app.js'
import { loadConfig } from '../example-app/src/config.js'
import { LogCapture, SECRET } from './helpers/app.js'
import { freePort, startRedis } from './helpers/redis.js'

/**
 * The example app, black-box: real HTTP through fetch, a private Redis, and only what a
 * client or an operator can see (status, headers, bodies, cookies, log lines).
 */

const redis = await startRedis(t)
/** Short enough to wait out in a test, long enough for the replay to land inside it. */
const GRACE_SECONDS = 1
const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'battery staple horse'
let appCount = 0

interface Running {
  app: FastifyInstance
  url: string
  logs: LogCapture
  keyPrefix: string
}

/** Starts the app from an environment (as the server does) on a free port; closed at teardown. */
async function startApp (t: Test, env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const keyPrefix = `example${++appCount}:`
  const logs = new LogCapture()
  const config = loadConfig({
    REDIS_URL: redis.url,
    JWT_SECRET: SECRET,
    KEY_PREFIX: keyPrefix,
    REFRESH_REUSE_GRACE: String(GRACE_SECONDS),
    LOG_LEVEL: 'debug',
    ...env
  })
  const app = await buildApp(config, { logStream: logs })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { app, url: `http://127.0.0.1:${port}`, logs, keyPrefix }
}

interface Call {
  status: number
  headers: Headers
  body: any
  cookies: Map<string, SetCookie>
}

interface SetCookie {
  value: string
  /** Attribute names in lower case; flags map to true. */
  attributes: Map<string, string | true>
}

/** The cookies a response sets, by name, with their attributes. */
function cookiesOf (response: Response): Map<string, SetCookie> {
  const cookies = new Map<string, SetCookie>()
  for (const line of response.headers.getSetCookie()) {
    const [pair = '', ...parts] = line.split(';').map((part) => part.trim())
    const eq = pair.indexOf('=')
    const attributes = new Map<string, string | true>()
    for (const part of parts) {
      const at = part.indexOf('=')
      if (at === -1) attributes.set(part.toLowerCase(), true)
      else attributes.set(part.slice(0, at).toLowerCase(), part.slice(at + 1))
    }
    cookies.set(pair.slice(0, eq), { value: pair.slice(eq + 1), attributes })
  }
  return cookies
}

/** One request; `json` is sent as a JSON body, `body` as is (with whatever type it implies). */
async function call (
  base: string, method: string, path: string,
  options: { json?: unknown, body?: RequestInit['body'], headers?: Record<string, string> } = {}
): Promise<Call> {
  const headers: Record<string, string> = { ...options.headers }
  let body = options.body
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(options.json)
  }
  const response = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) })
  const text = await response.text()
  const isJson = (response.headers.get('content-type') ?? '').startsWith('application/json')
  return { status: response.status, headers: response.headers, body: isJson ? JSON.parse(text) : text, cookies: cookiesOf(response) }
}

/** Every error has the same four fields and a stable code. */
function assertError (t: Test, response: Call, status: number, code: string, label: string): void {
  t.equal(response.status, status, `${label}: status ${status}`)
  t.same(Object.keys(response.body ?? {}).sort(), ['code', 'error', 'message', 'statusCode'], `${label}: error shape`)
  t.equal(response.body?.code, code, `${label}: code ${code}`)
  t.equal(response.body?.statusCode, status, `${label}: statusCode in body`)
  t.type(response.body?.error, 'string', `${label}: error text`)
  t.type(response.body?.message, 'string', `${label}: message`)
}

/**
 * The `Cookie` header of the named cookies, and of the session cookie, which (Path=/, set
 * with the tokens) a browser sends with every request.
 */
function cookieHeader (cookies: Map<string, SetCookie>, ...names: string[]): string {
  const binding = cookies.get('session_binding')
  const pairs = names.map((name) => `${name}=${cookies.get(name)?.value ?? ''}`)
  return (binding === undefined ? pairs : [...pairs, `session_binding=${binding.value}`]).join('; ')
}

/** The cookie was cleared: empty value and an immediate or past expiry. */
function assertCleared (t: Test, cookie: SetCookie | undefined, path: string, label: string): void {
  t.ok(cookie, `${label} is set`)
  t.equal(cookie?.value, '', `${label} is emptied`)
  const maxAge = cookie?.attributes.get('max-age')
  const expires = cookie?.attributes.get('expires')
  const expired = maxAge === '0' || (typeof expires === 'string' && Date.parse(expires) <= Date.now())
  t.ok(expired, `${label} expires now (Max-Age=${String(maxAge)}, Expires=${String(expires)})`)
  t.equal(cookie?.attributes.get('path'), path, `${label} keeps Path=${path}, or the browser keeps the old cookie`)
}

async function register (base: string, username: string): Promise<{ id: string, username: string }> {
  const response = await call(base, 'POST', '/auth/register', { json: { username, password: PASSWORD } })
  if (response.status !== 201) throw new Error(`register ${username}: ${response.status}`)
  return response.body
}

async function loginWithCookies (base: string, username: string): Promise<Call> {
  const response = await call(base, 'POST', '/auth/login', { json: { username, password: PASSWORD } })
  if (response.status !== 200) throw new Error(`login ${username}: ${response.status}`)
  return response
}

interface NativeTokens {
  accessToken: string
  refreshToken: string
  refreshExpiresIn: number
}

async function loginNative (base: string, username: string, userAgent?: string): Promise<NativeTokens> {
  const response = await call(base, 'POST', '/auth/login', {
    json: { username, password: PASSWORD },
    headers: { 'x-token-transport': 'body', ...(userAgent === undefined ? {} : { 'user-agent': userAgent }) }
  })
  if (response.status !== 200) throw new Error(`native login ${username}: ${response.status}`)
  return response.body
}

function bearer (accessToken: string): Record<string, string> {
  return { authorization: `Bearer ${accessToken}` }
}

/** The session id of an access token, as the app shows it. */
async function sessionIdOf (base: string, accessToken: string): Promise<string> {
  const me = await call(base, 'GET', '/me', { headers: bearer(accessToken) })
  if (me.status !== 200) throw new Error(`GET /me: ${me.status}`)
  return me.body.sessionId
}

async function refreshNative (base: string, refreshToken: string): Promise<Call> {
  return await call(base, 'POST', '/auth/refresh', { json: { refreshToken } })
}

/** The log lines of the app's audit hooks. */
function auditLines (logs: LogCapture): Array<Record<string, unknown>> {
  return logs.entries().filter((entry) => 'audit' in entry)
}

/** No log line may hold a token, a cookie value or a password. */
function assertLogsClean (t: Test, logs: LogCapture, secrets: string[]): void {
  t.ok(logs.lines.length > 0, 'the app logged something')
  for (const secret of secrets) {
    t.notOk(logs.text.includes(secret), `logs do not contain ${secret.slice(0, 12)}…`)
  }
}

t.test('POST /auth/register', async (t) => {
  // Registration is rate-limited as login is; this test registers more than the default allows.
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '100' })

  const created = await call(url, 'POST', '/auth/register', { json: { username: 'alice', password: PASSWORD } })
  t.equal(created.status, 201)
  t.same(Object.keys(created.body).sort(), ['id', 'username'], 'only id and username, never the hash')
  t.match(created.body, { id: /^[0-9a-f-]{36}$/, username: 'alice' })

  const taken = await call(url, 'POST', '/auth/register', { json: { username: 'alice', password: 'another password' } })
  assertError(t, taken, 409, 'USERNAME_TAKEN', 'duplicate username')

  const invalid: Array<[string, unknown]> = [
    ['a number as username', { username: 12345678, password: PASSWORD }],
    ['a number as password', { username: 'numeric', password: 1234567890 }],
    ['missing password', { username: 'nopass' }],
    ['missing username', { password: PASSWORD }],
    ['an extra field', { username: 'bob', password: PASSWORD, admin: true }],
    ['a 2-character username', { username: 'ab', password: PASSWORD }],
    ['a 65-character username', { username: 'a'.repeat(65), password: PASSWORD }],
    ['a username with a space', { username: 'bad name', password: PASSWORD }],
    ['a 7-character password', { username: 'shortpw', password: '1234567' }],
    ['a 257-character password', { username: 'longpw', password: 'x'.repeat(257) }],
    ['an array body', [{ username: 'arr', password: PASSWORD }]],
    ['a null body', null]
  ]
  for (const [label, json] of invalid) {
    assertError(t, await call(url, 'POST', '/auth/register', { json }), 400, 'FST_ERR_VALIDATION', label)
  }

  // Had the number been coerced or the extra field been stripped, these names would be taken.
  t.equal((await call(url, 'POST', '/auth/register', { json: { username: '12345678', password: PASSWORD } })).status, 201,
    'the rejected numeric username was not stored as a string')
  t.equal((await call(url, 'POST', '/auth/register', { json: { username: 'bob', password: PASSWORD } })).status, 201,
    'the request with an extra field created nobody')
  const edge = await call(url, 'POST', '/auth/register', { json: { username: 'a.b_c-1', password: 'x'.repeat(256) } })
  t.equal(edge.status, 201, 'every allowed character and the longest password are accepted')
})

t.test('bad requests get 4xx in the same shape, never a 500, with Fastify\'s codes and no echo of the body', async (t) => {
  const { url } = await startApp(t)
  const malformed = await call(url, 'POST', '/auth/register', {
    body: '{"username": "echoed-name",', headers: { 'content-type': 'application/json' }
  })
  assertError(t, malformed, 400, 'FST_ERR_CTP_INVALID_JSON_BODY', 'malformed JSON')
  t.equal(malformed.body.message, 'The request is malformed', 'a fixed message, not the parser\'s')
  assertError(t, await call(url, 'POST', '/auth/login', {
    body: '', headers: { 'content-type': 'application/json' }
  }), 400, 'FST_ERR_CTP_EMPTY_JSON_BODY', 'empty JSON body')
  assertError(t, await call(url, 'POST', '/auth/register', {
    body: 'username=alice', headers: { 'content-type': 'text/plain' }
  }), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'text/plain body')
  assertError(t, await call(url, 'POST', '/auth/login', {
    body: 'username=alice', headers: { 'content-type': 'application/x-www-form-urlencoded' }
  }), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'form body')
  const invalid = await call(url, 'POST', '/auth/register', { json: { username: 'ab', password: PASSWORD } })
  assertError(t, invalid, 400, 'FST_ERR_VALIDATION', 'schema validation')
  t.match(invalid.body.message, /username/, 'a validation message names the field')
  assertError(t, await call(url, 'GET', '/nowhere'), 404, 'NOT_FOUND', 'unknown route')
  assertError(t, await call(url, 'POST', '/auth/refresh', {
    body: 'x', headers: { 'content-type': 'text/plain' }
  }), 415, 'FTS_UNSUPPORTED_MEDIA_TYPE', 'plugin route, text/plain body')
  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 42 } }),
    400, 'FTS_BAD_REQUEST', 'plugin route, refreshToken of the wrong type')
})

t.test('POST /auth/login', async (t) => {
  const { url, keyPrefix } = await startApp(t, { ACCESS_TOKEN_TTL: '600', REFRESH_TOKEN_TTL: '7200' })
  await register(url, 'alice')

  const ok = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })
  t.equal(ok.status, 200)
  t.same(Object.keys(ok.body).sort(), ['accessToken', 'expiresIn', 'tokenType'], 'a browser never sees the refresh token')
  t.equal(ok.body.tokenType, 'Bearer')
  t.equal(ok.body.expiresIn, 600, 'ACCESS_TOKEN_TTL reaches the plugin')
  t.equal(ok.headers.get('cache-control'), 'no-store')

  const access = ok.cookies.get('access_token')
  const refresh = ok.cookies.get('refresh_token')
  t.equal(access?.value, ok.body.accessToken, 'the access cookie holds the access token')
  t.equal(access?.attributes.get('httponly'), true, 'access cookie HttpOnly')
  t.equal(access?.attributes.get('samesite'), 'Strict', 'access cookie SameSite=Strict')
  t.equal(access?.attributes.get('path'), '/', 'access cookie Path=/')
  t.equal(access?.attributes.get('max-age'), '600', 'access cookie lives as long as the token')
  t.ok(refresh !== undefined && refresh.value.length > 0, 'a refresh cookie is set')
  t.equal(refresh?.attributes.get('httponly'), true, 'refresh cookie HttpOnly')
  t.equal(refresh?.attributes.get('samesite'), 'Strict', 'refresh cookie SameSite=Strict')
  t.equal(refresh?.attributes.get('path'), '/auth', 'refresh cookie only goes to /auth')
  t.equal(refresh?.attributes.get('max-age'), '7200', 'REFRESH_TOKEN_TTL reaches the plugin')

  const client = redis.client()
  t.teardown(() => client.quit())
  t.ok((await client.keys(`${keyPrefix}*`)).length > 0, 'the session is in Redis, under KEY_PREFIX')

  const wrong = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: 'wrong password' } })
  assertError(t, wrong, 401, 'INVALID_CREDENTIALS', 'wrong password')
  t.equal(wrong.headers.getSetCookie().length, 0, 'a failed login sets no cookie')
  const unknown = await call(url, 'POST', '/auth/login', { json: { username: 'mallory', password: PASSWORD } })
  assertError(t, unknown, 401, 'INVALID_CREDENTIALS', 'unknown user')
  t.same(unknown.body, wrong.body, 'an unknown user and a wrong password look the same')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice' } }), 400, 'FST_ERR_VALIDATION', 'login without password')
})

t.test('GET /me', async (t) => {
  const { url, logs } = await startApp(t)
  const alice = await register(url, 'alice')
  const login = await loginWithCookies(url, 'alice')
  const accessToken: string = login.body.accessToken

  const bearer = await call(url, 'GET', '/me', { headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(bearer.status, 200, 'Bearer token accepted')
  t.same(Object.keys(bearer.body).sort(), ['expiresAt', 'id', 'sessionId', 'username'])
  t.equal(bearer.body.id, alice.id)
  t.equal(bearer.body.username, 'alice', 'the username claim travels in the token')
  t.match(bearer.body.sessionId, /^[A-Za-z0-9_-]{22}$/)

  const cookie = await call(url, 'GET', '/me', { headers: { cookie: cookieHeader(login.cookies, 'access_token') } })
  t.equal(cookie.status, 200, 'access cookie accepted')
  t.same(cookie.body, bearer.body, 'the same user and session either way')

  const none = await call(url, 'GET', '/me')
  assertError(t, none, 401, 'FTS_TOKEN_MISSING', 'no token')
  t.match(none.headers.get('www-authenticate'), /^Bearer/, 'a 401 carries a Bearer challenge')
  assertError(t, await call(url, 'GET', '/me', { headers: { authorization: 'Bearer not.a.jwt' } }),
    401, 'FTS_TOKEN_INVALID', 'garbage token')
  assertError(t, await call(url, 'GET', '/me', { headers: { authorization: `Bearer ${accessToken}x` } }),
    401, 'FTS_TOKEN_INVALID', 'tampered token')
  assertLogsClean(t, logs, [accessToken, login.cookies.get('refresh_token')?.value ?? 'missing', PASSWORD])
})

t.test('refresh with the cookie rotates it; the old token dies after the grace', async (t) => {
  const { url, logs } = await startApp(t)
  const alice = await register(url, 'alice')
  const login = await loginWithCookies(url, 'alice')
  const oldCookies = cookieHeader(login.cookies, 'refresh_token')

  assertError(t, await call(url, 'POST', '/auth/refresh', { headers: { cookie: oldCookies } }),
    403, 'FTS_CSRF_REJECTED', 'cookie refresh without x-requested-with')

  const rotated = await call(url, 'POST', '/auth/refresh', { headers: { cookie: oldCookies, 'x-requested-with': '1' } })
  t.equal(rotated.status, 200)
  t.same(Object.keys(rotated.body).sort(), ['accessToken', 'expiresIn', 'tokenType'], 'no refresh token in the body')
  const newAccess = rotated.cookies.get('access_token')
  const newRefresh = rotated.cookies.get('refresh_token')
  // Not compared with the old one: access tokens carry no id, so within one second they are equal.
  t.ok(newAccess !== undefined && newAccess.value.length > 0, 'an access cookie is set')
  t.ok(newRefresh !== undefined && newRefresh.value !== login.cookies.get('refresh_token')?.value, 'a new refresh cookie')
  t.equal(newRefresh?.attributes.get('path'), '/auth', 'the new refresh cookie keeps Path=/auth')
  t.equal(newAccess?.value, rotated.body.accessToken)
  t.equal(rotated.headers.get('cache-control'), 'no-store')
  const me = await call(url, 'GET', '/me', { headers: { authorization: `Bearer ${rotated.body.accessToken}` } })
  t.equal(me.status, 200, 'the new access token works')
  t.equal(me.body.username, 'alice', 'claims survive rotation')

  const replay = await call(url, 'POST', '/auth/refresh', { headers: { cookie: oldCookies, 'x-requested-with': '1' } })
  t.equal(replay.status, 200, 'within the grace the old token may come back (racing tabs)')

  await sleep(GRACE_SECONDS * 1000 + 500)
  const reused = await call(url, 'POST', '/auth/refresh', { headers: { cookie: oldCookies, 'x-requested-with': '1' } })
  assertError(t, reused, 401, 'FTS_TOKEN_REUSED', 'old refresh token after the grace')
  assertCleared(t, reused.cookies.get('refresh_token'), '/auth', 'refresh cookie after reuse')

  const current = await call(url, 'POST', '/auth/refresh', {
    headers: { cookie: cookieHeader(rotated.cookies, 'refresh_token'), 'x-requested-with': '1' }
  })
  assertError(t, current, 401, 'FTS_SESSION_REVOKED', 'the current token of the revoked session')

  const alerts = logs.entries().filter((entry) => entry.msg === 'security: refresh token reused, session revoked')
  t.equal(alerts.length, 1, 'one alert line for the one onReuseDetected call')
  const alert = alerts[0]
  t.equal(alert?.level, 40, 'as a warning')
  t.equal(alert?.audit, 'onReuseDetected', 'it is the audit line of the hook, not a second line')
  t.equal(alert?.userId, alice.id)
  t.equal(alert?.sessionId, me.body.sessionId)
  t.equal(alert?.reason, 'reuse')
  t.equal(alert?.ip, '127.0.0.1')
  t.notOk(alert !== undefined && 'userAgent' in alert, 'no user agent')
  t.equal(auditLines(logs).filter((entry) => entry.audit === 'onReuseDetected').length, 1, 'no other line for the hook')
  const ended = auditLines(logs).filter((entry) => entry.audit === 'onSessionRevoked')
  t.same(ended.map((entry) => [entry.sessionId, entry.reason, entry.level]), [[me.body.sessionId, 'reuse', 30]],
    'onSessionRevoked: one info line for the revoked session')
  assertLogsClean(t, logs, [
    login.cookies.get('refresh_token')?.value ?? 'missing', newRefresh?.value ?? 'missing', rotated.body.accessToken, PASSWORD
  ])
})

t.test('native client: tokens in the body from login to logout', async (t) => {
  const { url, logs } = await startApp(t, { REFRESH_TOKEN_TTL: '5000' })
  await register(url, 'alice')
  const login = await call(url, 'POST', '/auth/login', {
    json: { username: 'alice', password: PASSWORD }, headers: { 'x-token-transport': 'body' }
  })
  t.equal(login.status, 200)
  t.same(Object.keys(login.body).sort(), ['accessToken', 'expiresIn', 'refreshExpiresIn', 'refreshToken', 'tokenType'])
  t.equal(login.body.refreshExpiresIn, 5000)
  t.equal(login.headers.getSetCookie().length, 0, 'no cookies for a native client')

  const me = await call(url, 'GET', '/me', { headers: { authorization: `Bearer ${login.body.accessToken}` } })
  t.equal(me.status, 200)
  t.equal(me.body.username, 'alice')
  assertError(t, await call(url, 'GET', '/me', { headers: { authorization: `Bearer ${login.body.refreshToken}` } }),
    401, 'FTS_TOKEN_INVALID', 'a refresh token is no access token')

  const refreshed = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: login.body.refreshToken } })
  t.equal(refreshed.status, 200, 'refresh with the JSON body needs no CSRF header')
  t.type(refreshed.body.refreshToken, 'string')
  t.not(refreshed.body.refreshToken, login.body.refreshToken, 'a new refresh token')
  t.equal(refreshed.headers.getSetCookie().length, 0, 'still no cookies')
  const again = await call(url, 'GET', '/me', { headers: { authorization: `Bearer ${refreshed.body.accessToken}` } })
  t.equal(again.body.sessionId, me.body.sessionId, 'the same session')

  const logout = await call(url, 'POST', '/auth/logout', { json: { refreshToken: refreshed.body.refreshToken } })
  t.equal(logout.status, 204)
  t.equal(logout.body, '', 'no body')
  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: refreshed.body.refreshToken } }),
    401, 'FTS_SESSION_REVOKED', 'refresh after logout')
  assertLogsClean(t, logs, [login.body.accessToken, login.body.refreshToken, refreshed.body.refreshToken, PASSWORD])
})

t.test('POST /auth/logout clears both cookies', async (t) => {
  const { url } = await startApp(t)
  await register(url, 'alice')
  const login = await loginWithCookies(url, 'alice')
  const cookies = cookieHeader(login.cookies, 'access_token', 'refresh_token')

  const logout = await call(url, 'POST', '/auth/logout', { headers: { cookie: cookies, 'x-requested-with': '1' } })
  t.equal(logout.status, 204)
  assertCleared(t, logout.cookies.get('access_token'), '/', 'access cookie')
  assertCleared(t, logout.cookies.get('refresh_token'), '/auth', 'refresh cookie')

  assertError(t, await call(url, 'POST', '/auth/refresh', { headers: { cookie: cookies, 'x-requested-with': '1' } }),
    401, 'FTS_SESSION_REVOKED', 'the logged-out refresh cookie')
})

t.test('POST /auth/logout-all ends every session of the user, and only hers', async (t) => {
  const { url } = await startApp(t)
  await register(url, 'alice')
  await register(url, 'bob')
  const browser = await loginWithCookies(url, 'alice')
  const phone = await loginNative(url, 'alice')
  const bob = await loginNative(url, 'bob')

  const all = await call(url, 'POST', '/auth/logout-all', { headers: { authorization: `Bearer ${phone.accessToken}` } })
  t.equal(all.status, 204)

  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: phone.refreshToken } }),
    401, 'FTS_SESSION_REVOKED', 'the calling session')
  assertError(t, await call(url, 'POST', '/auth/refresh', {
    headers: { cookie: cookieHeader(browser.cookies, 'refresh_token'), 'x-requested-with': '1' }
  }), 401, 'FTS_SESSION_REVOKED', 'the other session of the user')
  const other = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: bob.refreshToken } })
  t.equal(other.status, 200, 'another user keeps his session')

  assertError(t, await call(url, 'POST', '/auth/logout-all', { headers: { authorization: `Bearer ${phone.accessToken}` } }),
    401, 'FTS_SESSION_REVOKED', 'logout-all from an ended session')
})

t.test('a 413 keeps Fastify\'s code FST_ERR_CTP_BODY_TOO_LARGE, on the app\'s routes and the plugin\'s', async (t) => {
  const { url } = await startApp(t)
  assertError(t, await call(url, 'POST', '/auth/register', {
    json: { username: 'big', password: 'x'.repeat(32 * 1024) }
  }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'app route')
  assertError(t, await call(url, 'POST', '/auth/refresh', {
    json: { refreshToken: 'x'.repeat(32 * 1024) }
  }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'plugin route (its README documents this code)')
})

t.test('GET /auth/sessions lists the caller\'s sessions and flags the current one', async (t) => {
  const { url } = await startApp(t)
  await register(url, 'alice')
  await register(url, 'bob')
  const laptop = await loginNative(url, 'alice', 'Laptop/1.0')
  const phone = await loginNative(url, 'alice', 'Phone/2.0')
  await loginNative(url, 'bob', 'Bob/3.0')
  const laptopId = await sessionIdOf(url, laptop.accessToken)
  const phoneId = await sessionIdOf(url, phone.accessToken)

  const before = Date.now()
  const list = await call(url, 'GET', '/auth/sessions', { headers: bearer(phone.accessToken) })
  t.equal(list.status, 200)
  t.equal(list.headers.get('cache-control'), 'no-store')
  t.same(Object.keys(list.body), ['sessions', 'nextCursor'])
  t.equal(list.body.nextCursor, null, 'one page')
  const sessions: Array<Record<string, unknown>> = list.body.sessions
  t.same(sessions.map((session) => session.sessionId), [phoneId, laptopId], 'both of her sessions, newest first, none of bob\'s')
  t.same(sessions.map((session) => session.current), [true, false], 'current: the phone, which asked')
  t.same(sessions.map((session) => session.userAgent), ['Phone/2.0', 'Laptop/1.0'], 'each with its user agent')
  for (const session of sessions) {
    t.same(Object.keys(session).sort(), ['createdAt', 'current', 'expiresAt', 'ip', 'lastUsedAt', 'sessionId', 'userAgent'])
    t.equal(session.ip, '127.0.0.1')
    const { createdAt, lastUsedAt, expiresAt } = session as Record<string, number>
    t.ok(createdAt <= lastUsedAt && lastUsedAt <= before, 'created, then last used, in the past')
    t.ok(Math.abs(expiresAt - (lastUsedAt + 86_400_000)) < 5000, 'expires a refresh-token lifetime after its last use')
  }

  const fromLaptop = await call(url, 'GET', '/auth/sessions', { headers: bearer(laptop.accessToken) })
  t.same(fromLaptop.body.sessions.map((session: { current: boolean }) => session.current), [false, true], 'asked from the laptop, the flag moves')
  assertError(t, await call(url, 'GET', '/auth/sessions'), 401, 'FTS_TOKEN_MISSING', 'without a token')
})

t.test('DELETE /auth/sessions/:id ends one of the caller\'s sessions; another user\'s is a 404', async (t) => {
  const { url } = await startApp(t)
  await register(url, 'alice')
  await register(url, 'bob')
  const laptop = await loginNative(url, 'alice', 'Laptop/1.0')
  const phone = await loginNative(url, 'alice', 'Phone/2.0')
  const browser = await loginWithCookies(url, 'alice')
  const bob = await loginNative(url, 'bob')
  const laptopId = await sessionIdOf(url, laptop.accessToken)
  const phoneId = await sessionIdOf(url, phone.accessToken)
  const bobId = await sessionIdOf(url, bob.accessToken)

  assertError(t, await call(url, 'DELETE', `/auth/sessions/${laptopId}`, {
    headers: { cookie: cookieHeader(browser.cookies, 'access_token') }
  }), 403, 'FTS_CSRF_REJECTED', 'with the access cookie but no x-requested-with')

  const ended = await call(url, 'DELETE', `/auth/sessions/${laptopId}`, { headers: bearer(phone.accessToken) })
  t.equal(ended.status, 204)
  t.equal(ended.body, '', 'no body')
  assertError(t, await refreshNative(url, laptop.refreshToken), 401, 'FTS_SESSION_REVOKED', 'the ended session\'s refresh token')
  const stillPhone = await refreshNative(url, phone.refreshToken)
  t.equal(stillPhone.status, 200, 'the caller\'s own session goes on')
  const list = await call(url, 'GET', '/auth/sessions', { headers: bearer(phone.accessToken) })
  t.notOk(list.body.sessions.some((session: { sessionId: string }) => session.sessionId === laptopId), 'the list no longer shows it')
  t.ok(list.body.sessions.some((session: { sessionId: string }) => session.sessionId === phoneId), 'but still the caller\'s')

  assertError(t, await call(url, 'DELETE', `/auth/sessions/${bobId}`, { headers: bearer(phone.accessToken) }),
    404, 'FTS_SESSION_NOT_FOUND', 'another user\'s session id')
  const bobRefresh = await refreshNative(url, bob.refreshToken)
  t.equal(bobRefresh.status, 200, 'bob\'s session is untouched')
  const bobList = await call(url, 'GET', '/auth/sessions', { headers: bearer(bob.accessToken) })
  t.same(bobList.body.sessions.map((session: { sessionId: string }) => session.sessionId), [bobId], 'and still listed for him')
  assertError(t, await call(url, 'DELETE', `/auth/sessions/${laptopId}`, { headers: bearer(phone.accessToken) }),
    404, 'FTS_SESSION_NOT_FOUND', 'a session already ended')
  assertError(t, await call(url, 'DELETE', '/auth/sessions/not-a-session', { headers: bearer(phone.accessToken) }),
    404, 'FTS_SESSION_NOT_FOUND', 'an id that is no session id')
  assertError(t, await call(url, 'DELETE', `/auth/sessions/${phoneId}`), 401, 'FTS_TOKEN_MISSING', 'without a token')
})

t.test('POST /auth/change-password ends every other session and keeps the current one', async (t) => {
  const { url } = await startApp(t)
  const alice = await register(url, 'alice')
  await register(url, 'bob')
  const laptop = await loginNative(url, 'alice', 'Laptop/1.0')
  const phone = await loginNative(url, 'alice', 'Phone/2.0')
  const browser = await loginWithCookies(url, 'alice')
  const bob = await loginNative(url, 'bob')
  const phoneId = await sessionIdOf(url, phone.accessToken)
  const change = (body: unknown, headers: Record<string, string> = bearer(phone.accessToken)): Promise<Call> =>
    call(url, 'POST', '/auth/change-password', { json: body, headers })

  assertError(t, await call(url, 'POST', '/auth/change-password', { json: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD } }),
    401, 'FTS_TOKEN_MISSING', 'without a token')
  assertError(t, await change({ currentPassword: PASSWORD, newPassword: 'csrf-made-this' }, { cookie: cookieHeader(browser.cookies, 'access_token') }),
    403, 'FTS_CSRF_REJECTED', 'with the access cookie but no x-requested-with')
  const wrong = await change({ currentPassword: 'not the password', newPassword: NEW_PASSWORD })
  assertError(t, wrong, 401, 'INVALID_CREDENTIALS', 'a wrong current password')
  const invalid: Array<[string, unknown]> = [
    ['a 7-character new password', { currentPassword: PASSWORD, newPassword: '1234567' }],
    ['a 257-character new password', { currentPassword: PASSWORD, newPassword: 'x'.repeat(257) }],
    ['no current password', { newPassword: NEW_PASSWORD }],
    ['an empty current password', { currentPassword: '', newPassword: NEW_PASSWORD }],
    ['a number as new password', { currentPassword: PASSWORD, newPassword: 1234567890 }],
    ['an extra field', { currentPassword: PASSWORD, newPassword: NEW_PASSWORD, userId: alice.id }]
  ]
  for (const [label, body] of invalid) assertError(t, await change(body), 400, 'FST_ERR_VALIDATION', label)
  const laptopAfterFailures = await refreshNative(url, laptop.refreshToken)
  t.equal(laptopAfterFailures.status, 200, 'failed attempts end no session')

  const changed = await change({ currentPassword: PASSWORD, newPassword: NEW_PASSWORD })
  t.equal(changed.status, 204, 'the right current password: changed')
  t.equal(changed.body, '', 'no body')

  assertError(t, await refreshNative(url, laptopAfterFailures.body.refreshToken), 401, 'FTS_SESSION_REVOKED', 'another native session')
  assertError(t, await call(url, 'POST', '/auth/refresh', {
    headers: { cookie: cookieHeader(browser.cookies, 'refresh_token'), 'x-requested-with': '1' }
  }), 401, 'FTS_SESSION_REVOKED', 'another browser session')
  const current = await refreshNative(url, phone.refreshToken)
  t.equal(current.status, 200, 'the session that changed the password still refreshes')
  t.equal(await sessionIdOf(url, current.body.accessToken), phoneId, 'as the same session')
  t.equal((await refreshNative(url, bob.refreshToken)).status, 200, 'another user keeps his session')

  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } }),
    401, 'INVALID_CREDENTIALS', 'login with the old password')
  const withNew = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: NEW_PASSWORD } })
  t.equal(withNew.status, 200, 'login with the new password')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: 'csrf-made-this' } }),
    401, 'INVALID_CREDENTIALS', 'the change refused for CSRF did not happen')
})

t.test('a store outage during a password change changes nothing', async (t) => {
  const outage = await startRedis(t)
  const { url, logs } = await startApp(t, { REDIS_URL: outage.url })
  await register(url, 'alice')
  const phone = await loginNative(url, 'alice')

  await outage.stop()
  const body = { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }
  const failed = await call(url, 'POST', '/auth/change-password', { json: body, headers: bearer(phone.accessToken) })
  assertError(t, failed, 503, 'FTS_STORE_UNAVAILABLE', 'the other sessions cannot be ended')
  t.equal(failed.headers.get('retry-after'), '1', 'with a hint when to retry')
  t.ok(logs.entries().some((entry) => entry.msg === 'session store unavailable' && entry.level === 50), 'the failure is logged')
  assertError(t, await call(url, 'POST', '/auth/change-password', {
    json: { currentPassword: NEW_PASSWORD, newPassword: 'a third password' }, headers: bearer(phone.accessToken)
  }), 401, 'INVALID_CREDENTIALS', 'the new password did not stay')
  assertError(t, await call(url, 'POST', '/auth/change-password', { json: body, headers: bearer(phone.accessToken) }),
    503, 'FTS_STORE_UNAVAILABLE', 'the old password is still current: the same request can be retried')
})

t.test('SESSION_MAX_LIFETIME caps a session however often it refreshes', async (t) => {
  const { url } = await startApp(t, { ACCESS_TOKEN_TTL: '600', REFRESH_TOKEN_TTL: '7200', SESSION_MAX_LIFETIME: '1200' })
  await register(url, 'alice')
  const login = await loginNative(url, 'alice')
  t.equal(login.refreshExpiresIn, 1200, 'the refresh token lives no longer than the session may')
  const refreshed = await refreshNative(url, login.refreshToken)
  t.ok(refreshed.body.refreshExpiresIn <= 1200 && refreshed.body.refreshExpiresIn >= 1195, 'a refresh does not extend it')
  const list = await call(url, 'GET', '/auth/sessions', { headers: bearer(login.accessToken) })
  const [session] = list.body.sessions
  t.ok(Math.abs(session.expiresAt - session.createdAt - 1_200_000) < 5000, 'the session ends 1200 s after it started')
})

t.test('audit hooks: one structured line per call, never a token', async (t) => {
  const { url, logs } = await startApp(t)
  const alice = await register(url, 'alice')
  const laptop = await loginNative(url, 'alice', 'Laptop/1.0')
  const phone = await loginNative(url, 'alice', 'Phone/2.0')
  const tablet = await loginNative(url, 'alice', 'Tablet/3.0')
  const [laptopId, phoneId, tabletId] = await Promise.all([laptop, phone, tablet].map((tokens) => sessionIdOf(url, tokens.accessToken)))

  const refreshed = await refreshNative(url, phone.refreshToken)
  t.equal(refreshed.status, 200)
  t.equal((await call(url, 'POST', '/auth/logout', { json: { refreshToken: refreshed.body.refreshToken } })).status, 204)
  const changed = await call(url, 'POST', '/auth/change-password', {
    json: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }, headers: bearer(tablet.accessToken)
  })
  t.equal(changed.status, 204)

  const lines = auditLines(logs)
  const summary = lines.map((entry) => [entry.audit, entry.sessionId, entry.reason])
  t.same(summary, [
    ['onLogin', laptopId, 'login'],
    ['onLogin', phoneId, 'login'],
    ['onLogin', tabletId, 'login'],
    ['onRefresh', phoneId, 'refresh'],
    ['onLogout', phoneId, 'logout'],
    ['onSessionRevoked', phoneId, 'logout'],
    ['onSessionRevoked', undefined, 'password-change']
  ], 'login, refresh, logout and the password change\'s revocation, each once')
  t.match(lines[6], { allSessions: true, except: tabletId }, 'the password change ended every session but the one that asked, in one event')
  for (const entry of lines) {
    t.equal(entry.userId, alice.id, `${String(entry.audit)}: the user`)
    t.equal(entry.level, 30, `${String(entry.audit)}: at info`)
    t.notOk('userAgent' in entry, `${String(entry.audit)}: no user agent`)
  }
  t.same(lines.slice(0, 6).map((entry) => entry.ip), Array(6).fill('127.0.0.1'), 'the client\'s IP when a request caused it')
  t.same(lines.slice(0, 6).map((entry) => typeof entry.reqId), Array(6).fill('string'), 'on the request\'s logger')
  assertLogsClean(t, logs, [
    laptop.accessToken, laptop.refreshToken, phone.accessToken, phone.refreshToken, tablet.accessToken, tablet.refreshToken,
    refreshed.body.accessToken, refreshed.body.refreshToken, PASSWORD, NEW_PASSWORD
  ])
})

t.test('a token in the query string stays out of the log', async (t) => {
  const { url, logs } = await startApp(t)
  await register(url, 'alice')
  const login = await loginNative(url, 'alice')
  const query = `?access_token=${login.accessToken}&refresh_token=${login.refreshToken}`

  t.equal((await call(url, 'GET', `/me${query}`, { headers: bearer(login.accessToken) })).status, 200)
  assertError(t, await call(url, 'GET', `/nowhere${query}`), 404, 'NOT_FOUND', 'an unknown route')
  assertError(t, await call(url, 'POST', `/auth/refresh${query}`, { json: {} }), 401, 'FTS_TOKEN_MISSING', 'a plugin route')
  const urls = logs.entries().filter((entry) => entry.msg === 'incoming request').map((entry) => (entry.req as { url?: string }).url)
  t.same(urls.slice(-3), ['/me', '/nowhere', '/auth/refresh'], 'requests are logged by path')
  t.notOk(logs.text.includes('access_token='), 'no query string in any line')
  assertLogsClean(t, logs, [login.accessToken, login.refreshToken, PASSWORD])
})

t.test('a request body that never finishes is cut off in seconds, not minutes', async (t) => {
  const { url } = await startApp(t)
  const port = Number(new URL(url).port)
  // One client stops sending; the other sends a byte a second, so the connection is never silent.
  const [stalled, trickling] = await Promise.all([partialRequest(port, false), partialRequest(port, true)])
  t.ok(stalled.ms < 13_000, `a stalled body: closed after ${stalled.ms} ms`)
  t.ok(trickling.ms < 13_000, `a trickling body: closed after ${trickling.ms} ms`)
  t.match(trickling.response, /^HTTP\/1\.1 408 /, 'with a 408')
})

/**
 * Sends headers that announce a 1000-byte body and only part of it; resolves when the
 * server closes the connection, or after 20 s (ms is then Infinity).
 */
async function partialRequest (port: number, trickle: boolean): Promise<{ ms: number, response: string }> {
  return await new Promise((resolve) => {
    const started = Date.now()
    let response = ''
    let done = false
    const socket = connect(port, '127.0.0.1')
    const ticker = trickle ? setInterval(() => socket.write('a'), 1000) : undefined
    const giveUp = setTimeout(() => finish(Number.POSITIVE_INFINITY), 20_000)
    function finish (ms: number): void {
      if (done) return
      done = true
      clearInterval(ticker)
      clearTimeout(giveUp)
      socket.destroy()
      resolve({ ms, response })
    }
    socket.on('data', (chunk) => { response += chunk.toString() })
    socket.on('error', () => {})
    socket.on('close', () => finish(Date.now() - started))
    socket.write('POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"username":"')
  })
}

t.test('config', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), { name: 'ConfigError', message: /JWT_SECRET is required/ },
    'production without JWT_SECRET refuses')
  t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: '' }), { message: /JWT_SECRET is required/ },
    'an empty JWT_SECRET counts as missing')
  let shortSecretMessage = ''
  try {
    loadConfig({ JWT_SECRET: 'hunter2-hunter2' })
  } catch (error) {
    shortSecretMessage = (error as Error).message
  }
  t.match(shortSecretMessage, /JWT_SECRET is 15 bytes/, 'a short secret refuses')
  t.notOk(shortSecretMessage.includes('hunter2'), 'the message does not repeat the secret')

  for (const bad of ['abc', '15m', '-1', '0', '1.5', ' 900', '1e3', '0x10']) {
    t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: bad }), { name: 'ConfigError', message: /^ACCESS_TOKEN_TTL must be a whole number/ },
      `ACCESS_TOKEN_TTL=${JSON.stringify(bad)} refuses`)
  }
  t.throws(() => loadConfig({ PORT: '70000' }), { message: /^PORT/ }, 'a port out of range refuses')
  t.throws(() => loadConfig({ REFRESH_REUSE_GRACE: 'soon' }), { message: /^REFRESH_REUSE_GRACE/ }, 'a grace that is no number refuses')
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: '900', REFRESH_TOKEN_TTL: '900' }), { message: /REFRESH_TOKEN_TTL .* greater than ACCESS_TOKEN_TTL/ },
    'a refresh token that dies with its access token refuses')
  for (const bad of ['abc', '30d', '0', '-1', '1.5', '31536001']) {
    t.throws(() => loadConfig({ SESSION_MAX_LIFETIME: bad }),
      { name: 'ConfigError', message: /^SESSION_MAX_LIFETIME must be a whole number from 1 to 31536000/ },
      `SESSION_MAX_LIFETIME=${JSON.stringify(bad)} refuses`)
  }
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: '900', SESSION_MAX_LIFETIME: '900' }),
    { name: 'ConfigError', message: /^SESSION_MAX_LIFETIME \(900\) must be greater than ACCESS_TOKEN_TTL \(900\)$/ },
    'a session that ends with its first access token refuses')
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: '2592000', REFRESH_TOKEN_TTL: '2600000' }),
    { name: 'ConfigError', message: /^SESSION_MAX_LIFETIME \(2592000, the default\) must be greater than ACCESS_TOKEN_TTL \(2592000\)$/ },
    'so does the default, against a long ACCESS_TOKEN_TTL, naming the variable')
  t.equal(loadConfig({ ACCESS_TOKEN_TTL: '900', SESSION_MAX_LIFETIME: '901' }).sessionMaxLifetime, 901, 'one second more is enough')
  t.equal(loadConfig({ SESSION_MAX_LIFETIME: '' }).sessionMaxLifetime, 2_592_000, 'empty counts as unset')
  t.throws(() => loadConfig({ LOG_LEVEL: 'verbose' }), { message: /^LOG_LEVEL/ }, 'an unknown log level refuses')
  t.throws(() => loadConfig({ REDIS_URL: 'http://redis:6379' }), { message: /^REDIS_URL/ }, 'a URL that is not redis:// refuses')
  t.throws(() => loadConfig({ KEY_PREFIX: 'a{b}' }), { message: /^KEY_PREFIX/ }, 'a key prefix with a hash tag refuses')

  const defaults = loadConfig({})
  t.match(defaults, {
    production: false,
    port: 3000,
    host: '127.0.0.1',
    redisUrl: 'redis://127.0.0.1:6379',
    accessTokenTtl: 900,
    refreshTokenTtl: 86_400,
    sessionMaxLifetime: 2_592_000,
    reuseGrace: undefined,
    keyPrefix: undefined,
    logLevel: 'info',
    jwtSecretGenerated: true
  }, 'defaults')
  t.equal(Buffer.from(defaults.jwtSecret, 'base64url').length, 48, 'a generated secret has 48 random bytes')
  t.not(loadConfig({}).jwtSecret, defaults.jwtSecret, 'a new one per process')

  const given = loadConfig({
    NODE_ENV: 'production',
    JWT_SECRET: SECRET,
    PORT: '8080',
    HOST: '0.0.0.0',
    REDIS_URL: 'redis://redis:6379',
    ACCESS_TOKEN_TTL: '60',
    REFRESH_TOKEN_TTL: '3600',
    SESSION_MAX_LIFETIME: '7200',
    REFRESH_REUSE_GRACE: '0',
    KEY_PREFIX: 'app:',
    LOG_LEVEL: 'warn'
  })
  t.match(given, {
    production: true,
    port: 8080,
    host: '0.0.0.0',
    redisUrl: 'redis://redis:6379',
    accessTokenTtl: 60,
    refreshTokenTtl: 3600,
    sessionMaxLifetime: 7200,
    reuseGrace: 0,
    keyPrefix: 'app:',
    logLevel: 'warn',
    jwtSecret: SECRET,
    jwtSecretGenerated: false
  }, 'every variable is read')
})

t.test('without Redis, development falls back to MemoryStore', async (t) => {
  const closedPort = await freePort()
  const { app, url, logs } = await startApp(t, { REDIS_URL: `redis://127.0.0.1:${closedPort}`, JWT_SECRET: '' })
  t.ok(app.tokenSessions.store instanceof MemoryStore, 'sessions live in memory')
  const warnings = logs.entries().filter((entry) => entry.level === 40).map((entry) => String(entry.msg))
  t.ok(warnings.some((msg) => msg.includes('IN MEMORY')), 'a loud warning says so')
  t.ok(warnings.some((msg) => msg.includes('JWT_SECRET is not set')), 'and one about the generated secret')

  await register(url, 'alice')
  const login = await loginNative(url, 'alice')
  const refreshed = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: login.refreshToken } })
  t.equal(refreshed.status, 200, 'sessions work on the memory store')
  const logout = await call(url, 'POST', '/auth/logout', { json: { refreshToken: refreshed.body.refreshToken } })
  t.equal(logout.status, 204)
  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: refreshed.body.refreshToken } }),
    401, 'FTS_SESSION_REVOKED', 'logout ends the in-memory session')
})

t.test('without Redis, production refuses to start', async (t) => {
  const closedPort = await freePort()
  const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, REDIS_URL: `redis://user:pa55word@127.0.0.1:${closedPort}` })
  const logs = new LogCapture()
  let failure: Error | undefined
  try {
    const app = await buildApp(config, { logStream: logs })
    t.teardown(() => app.close())
  } catch (error) {
    failure = error as Error
  }
  t.equal(failure?.name, 'StartupError', 'buildApp rejects')
  t.match(failure?.message, new RegExp(`127\\.0\\.0\\.1:${closedPort} \\(REDIS_URL\\) is not reachable`), 'naming where it looked')
  t.notOk(failure?.message.includes('pa55word'), 'without the password in REDIS_URL')
  t.notOk(logs.text.includes('pa55word'), 'nor in the log')
})

t.test('with Redis, the app uses it and quits its client on close', async (t) => {
  const client = redis.client()
  t.teardown(() => client.quit())
  const before = await clientCount(client)
  const { app } = await startApp(t)
  t.notOk(app.tokenSessions.store instanceof MemoryStore, 'not the memory store')
  t.equal(await clientCount(client), before + 2, 'the app holds two Redis connections: its probe, handed to the plugin, and the revocation feed')
  await app.close()
  // Redis sees the QUIT asynchronously.
  for (let i = 0; i < 50 && await clientCount(client) !== before; i++) await sleep(20)
  t.equal(await clientCount(client), before, 'closing the app quits both connections')
})

t.test('a Redis outage gives 503 in the same error shape, and the app still closes', async (t) => {
  const outage = await startRedis(t)
  const { app, url, logs } = await startApp(t, { REDIS_URL: outage.url })
  await register(url, 'alice')
  const login = await loginNative(url, 'alice')

  await outage.stop()
  const refresh = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: login.refreshToken } })
  assertError(t, refresh, 503, 'FTS_STORE_UNAVAILABLE', 'refresh without Redis')
  t.equal(refresh.headers.get('retry-after'), '1', 'with a hint when to retry')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } }),
    503, 'FTS_STORE_UNAVAILABLE', 'login without Redis')
  t.ok(logs.entries().some((entry) => entry.msg === 'redis connection error'), 'the drop is logged')

  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, 'close does not wait for Redis to come back')
})

async function clientCount (client: ReturnType<typeof redis.client>): Promise<number> {
  const list = await client.client('LIST') as string
  return list.trim().split('\n').length
}

/**
 * One request from another loopback address (all of 127/8 is local on Linux): a second
 * client with its own IP, over real HTTP, without trusting any forwarding header.
 */
async function callFrom (
  localAddress: string, base: string, method: string, path: string,
  options: { json?: unknown, headers?: Record<string, string> } = {}
): Promise<{ status: number, headers: IncomingHttpHeaders, body: any }> {
  const target = new URL(path, base)
  const payload = options.json === undefined ? undefined : JSON.stringify(options.json)
  const headers: Record<string, string> = { ...options.headers }
  if (payload !== undefined) headers['content-type'] = 'application/json'
  return await new Promise((resolve, reject) => {
    const request = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, method, headers, localAddress }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { text += chunk })
      response.on('end', () => {
        const isJson = (response.headers['content-type'] ?? '').startsWith('application/json')
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: isJson ? JSON.parse(text) : text })
      })
    })
    request.on('error', reject)
    request.end(payload)
  })
}

/** A 429 in the app's error shape, with the limiter's headers. */
function assertLimited (t: Test, response: Call, limit: number, label: string): void {
  assertError(t, response, 429, 'RATE_LIMITED', label)
  t.equal(response.body.message, 'Too many requests; retry later', `${label}: a fixed message`)
  const retryAfter = Number(response.headers.get('retry-after'))
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${label}: Retry-After in seconds within the minute (${String(response.headers.get('retry-after'))})`)
  t.equal(response.headers.get('x-ratelimit-limit'), String(limit), `${label}: the limit is announced`)
  t.equal(response.headers.get('x-ratelimit-remaining'), '0', `${label}: nothing remains`)
}

t.test('rate limit: a burst of bad refresh tokens from one IP gets 429 after RATE_LIMIT_REFRESH, counted in Redis', async (t) => {
  const { url, keyPrefix } = await startApp(t, { RATE_LIMIT_REFRESH: '5' })
  await register(url, 'alice')
  const alice = await loginNative(url, 'alice')
  const client = redis.client()
  t.teardown(() => client.quit())

  for (let i = 1; i <= 5; i++) {
    const guess = await refreshNative(url, `guess-${i}`)
    assertError(t, guess, 401, 'FTS_TOKEN_INVALID', `guess ${i} of 5 reaches the plugin`)
    t.equal(guess.headers.get('x-ratelimit-remaining'), String(5 - i), `guess ${i}: ${5 - i} left`)
  }
  assertLimited(t, await refreshNative(url, 'guess-6'), 5, 'the 6th guess')
  assertLimited(t, await refreshNative(url, alice.refreshToken), 5,
    'a real token from the same IP: the limit is per IP, whatever the token')
  assertLimited(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 'guess-7' }, headers: { 'x-forwarded-for': '203.0.113.9' } }), 5,
    'X-Forwarded-For buys no fresh limit: the app trusts no proxy')

  const key = `${keyPrefix}rate-limit:POST/auth/refresh-127.0.0.1`
  t.same((await client.keys(`${keyPrefix}rate-limit:*`)).sort(), [
    `${keyPrefix}rate-limit:POST/auth/login-127.0.0.1`, key, `${keyPrefix}rate-limit:POST/auth/register-127.0.0.1`
  ],
  'the counters are in the sessions\' Redis, under KEY_PREFIX, one per route and IP')
  t.equal(await client.get(key), '8', 'every attempt counted, the refused ones too')
  const ttl = await client.pttl(key)
  t.ok(ttl > 0 && ttl <= 60_000, `the counter expires with its one-minute window (PTTL ${ttl})`)

  const other = await callFrom('127.0.0.2', url, 'POST', '/auth/refresh', { json: { refreshToken: alice.refreshToken } })
  t.equal(other.status, 200, 'another IP is not limited, and the refused real token was never used')
  t.type(other.body.refreshToken, 'string')
  t.equal(await client.get(`${keyPrefix}rate-limit:POST/auth/refresh-127.0.0.2`), '1', 'it has a counter of its own')
  const login = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })
  t.equal(login.status, 200, 'the limited IP can still log in: each route counts apart')
})

t.test('rate limit: a burst of bad logins from one IP gets 429 after RATE_LIMIT_LOGIN, even with the right password', async (t) => {
  const { url, keyPrefix } = await startApp(t, { RATE_LIMIT_LOGIN: '3' })
  await register(url, 'alice')
  const client = redis.client()
  t.teardown(() => client.quit())

  const wrong = { username: 'alice', password: 'wrong password' }
  assertError(t, await call(url, 'POST', '/auth/login', { json: wrong }), 401, 'INVALID_CREDENTIALS', 'wrong password 1')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice' } }), 400, 'FST_ERR_VALIDATION', 'a malformed login counts too')
  assertError(t, await call(url, 'POST', '/auth/login', { json: wrong }), 401, 'INVALID_CREDENTIALS', 'wrong password 2')
  const limited = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })
  assertLimited(t, limited, 3, 'the right password after the limit')
  t.equal(limited.headers.getSetCookie().length, 0, 'no session started')
  t.equal(await client.get(`${keyPrefix}rate-limit:POST/auth/login-127.0.0.1`), '4', 'the login counter is in Redis')
  t.same((await client.keys(`${keyPrefix}{*`)), [], 'no session was created in Redis by any of them')

  const other = await callFrom('127.0.0.2', url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD }, headers: { 'x-token-transport': 'body' } })
  t.equal(other.status, 200, 'another IP logs in')
  t.type(other.body.accessToken, 'string')
  t.equal((await call(url, 'POST', '/auth/register', { json: { username: 'bob', password: PASSWORD } })).status, 201,
    'routes without a limit are not affected')
})

t.test('rate limit: without Redis the counters are in memory', async (t) => {
  const closedPort = await freePort()
  const { app, url, keyPrefix } = await startApp(t, { REDIS_URL: `redis://127.0.0.1:${closedPort}`, RATE_LIMIT_REFRESH: '2' })
  t.ok(app.tokenSessions.store instanceof MemoryStore, 'sessions live in memory')
  assertError(t, await refreshNative(url, 'guess-1'), 401, 'FTS_TOKEN_INVALID', 'guess 1')
  assertError(t, await refreshNative(url, 'guess-2'), 401, 'FTS_TOKEN_INVALID', 'guess 2')
  assertLimited(t, await refreshNative(url, 'guess-3'), 2, 'guess 3')
  const client = redis.client()
  t.teardown(() => client.quit())
  t.same(await client.keys(`${keyPrefix}*`), [], 'nothing in the test\'s Redis')
})

t.test('rate limit: while Redis is down, login fails closed before the password is checked', async (t) => {
  const outage = await startRedis(t)
  const { url, logs } = await startApp(t, { REDIS_URL: outage.url })
  await register(url, 'alice')
  await outage.stop()
  // Were the login run uncounted, a wrong password would answer 401 and the right one 503.
  const wrong = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: 'wrong password' } })
  assertError(t, wrong, 503, 'FTS_STORE_UNAVAILABLE', 'a wrong password while the limiter cannot count')
  t.equal(wrong.headers.get('retry-after'), '1', 'with a hint when to retry')
  t.equal(wrong.headers.get('x-ratelimit-limit'), null, 'the limiter did not count it')
  const logged = logs.entries().filter((entry) => entry.msg === 'session store unavailable')
  t.equal(logged.length, 1, 'the failure is logged once')
  t.equal(logged[0]?.level, 50, 'as an error')
  t.type((logged[0]?.err as { message?: unknown } | undefined)?.message, 'string', 'with its cause')
  assertError(t, await refreshNative(url, 'guess'), 503, 'FTS_STORE_UNAVAILABLE', 'a refresh while the limiter cannot count')
})

t.test('rate limit config', async (t) => {
  t.match(loadConfig({}), { rateLimitLogin: 10, rateLimitRefresh: 60 }, 'defaults: 10 logins and 60 refreshes per minute')
  t.match(loadConfig({ RATE_LIMIT_LOGIN: '1', RATE_LIMIT_REFRESH: '1000000' }), { rateLimitLogin: 1, rateLimitRefresh: 1_000_000 }, 'both read')
  for (const name of ['RATE_LIMIT_LOGIN', 'RATE_LIMIT_REFRESH']) {
    for (const bad of ['0', '-1', '1.5', 'ten', '1e3', '1000001']) {
      t.throws(() => loadConfig({ [name]: bad }), { name: 'ConfigError', message: new RegExp(`^${name} must be a whole number from 1 to 1000000`) },
        `${name}=${JSON.stringify(bad)} refuses`)
    }
  }
})

t.test('MAX_SESSIONS_PER_USER: read, checked, and a login beyond it ends the least recently used session', async (t) => {
  t.match(loadConfig({}), { maxSessionsPerUser: 100 }, 'default 100')
  t.match(loadConfig({ MAX_SESSIONS_PER_USER: '3' }), { maxSessionsPerUser: 3 })
  for (const bad of ['0', '1.5', 'many', '1000001']) {
    t.throws(() => loadConfig({ MAX_SESSIONS_PER_USER: bad }), { name: 'ConfigError', message: /^MAX_SESSIONS_PER_USER must be a whole number from 1 to 1000000/ }, bad)
  }
  const { url } = await startApp(t, { MAX_SESSIONS_PER_USER: '1' })
  await register(url, 'capped')
  const first = await loginNative(url, 'capped')
  const second = await loginNative(url, 'capped')
  assertError(t, await refreshNative(url, first.refreshToken), 401, 'FTS_SESSION_REVOKED', 'the first session ended')
  t.equal((await refreshNative(url, second.refreshToken)).status, 200, 'the newest lives')
})

t.test('GET /docs: Swagger UI and an OpenAPI document of every route the app answers', async (t) => {
  const { url } = await startApp(t)
  const spec = await call(url, 'GET', '/docs/json')
  t.equal(spec.status, 200)
  const operations = Object.entries(spec.body.paths as Record<string, Record<string, { summary?: string }>>)
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })))
  t.same(operations.map(({ route }) => route).sort(), [
    'DELETE /auth/sessions/{id}', 'GET /auth/sessions', 'GET /me', 'POST /auth/change-password', 'POST /auth/login',
    'POST /auth/logout', 'POST /auth/logout-all', 'POST /auth/refresh', 'POST /auth/register'
  ], 'every API route, and neither the page nor the docs themselves')
  for (const { route, operation } of operations) t.type(operation.summary, 'string', `${route} has a summary`)
  t.ok(spec.body.components.securitySchemes.bearerAuth, 'the Bearer scheme is declared')
  const paths = spec.body.paths
  t.equal(paths['/auth/refresh'].post.requestBody.required, false, 'refresh: the body is optional (browsers send a cookie)')
  t.equal(paths['/auth/logout'].post.requestBody.required, false, 'logout: the body is optional')
  t.equal(paths['/auth/register'].post.requestBody.required, true, 'register: the body is required')
  for (const [path, method] of [['/auth/sessions', 'get'], ['/auth/sessions/{id}', 'delete'], ['/auth/logout-all', 'post'], ['/me', 'get']]) {
    t.same(paths[path][method].security, [{ bearerAuth: [] }, { accessCookie: [] }], `${method.toUpperCase()} ${path} needs an access token`)
  }
  t.notOk(paths['/auth/refresh'].post.security, 'refresh needs no access token')
  const codes = (path: string, method: string): string[] => Object.keys(paths[path][method].responses).sort()
  t.same(codes('/auth/login', 'post'), ['200', '400', '401', '429', '503'], 'login: every answer it gives')
  t.same(codes('/auth/register', 'post'), ['201', '400', '409', '429', '503'], 'register: every answer it gives')
  t.same(codes('/auth/change-password', 'post'), ['204', '400', '401', '403', '503'], 'change-password: every answer it gives')
  t.same(codes('/me', 'get'), ['200', '401'], '/me: every answer it gives')

  const ui = await call(url, 'GET', '/docs/')
  t.equal(ui.status, 200)
  t.match(ui.headers.get('content-type'), /^text\/html/)
  t.match(ui.body, /swagger-ui-bundle\.js/, 'Swagger UI')
  const csp = ui.headers.get('content-security-policy') ?? ''
  t.match(csp, /script-src 'self'(;|$)/, 'the UI runs only its own scripts')
  t.match(csp, /frame-ancestors 'none'/)
})

t.test('the page and the API carry security headers', async (t) => {
  const { url } = await startApp(t)
  const page = await call(url, 'GET', '/')
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  const csp = page.headers.get('content-security-policy') ?? ''
  for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]) {
    t.ok(csp.split(';').includes(directive), `the page's CSP has ${directive}`)
  }
  t.notMatch(csp, /unsafe-inline|unsafe-eval/, 'no inline script or style on the page')
  t.equal(page.headers.get('x-content-type-options'), 'nosniff')
  t.equal(page.headers.get('referrer-policy'), 'no-referrer')
  t.equal(page.headers.get('cache-control'), 'no-cache', 'a new deployment is seen at once')

  const script = await call(url, 'GET', '/app.js')
  t.equal(script.status, 200, 'the page\'s module')
  t.match(script.headers.get('content-type'), /^text\/javascript/)
  const missing = await call(url, 'GET', '/secret.env')
  assertError(t, missing, 404, 'NOT_FOUND', 'a file that is not part of the page')
  const traversal = await call(url, 'GET', '/..%2fsrc%2fconfig.ts')
  t.equal(traversal.status, 404, 'no path from a request reaches the disk')

  const api = await call(url, 'GET', '/me')
  t.equal(api.status, 401)
  t.equal(api.headers.get('x-content-type-options'), 'nosniff', 'API answers carry the headers too')
  t.equal(api.headers.get('x-frame-options'), 'DENY')
})
