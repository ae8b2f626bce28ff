import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../example-app/src/config.js'
import {
  GRACE_SECONDS, NEW_PASSWORD, PASSWORD, appStarter, assertCleared, assertError, assertLogsClean, auditLines, bearer, call, cookieHeader, loginNative, loginWithCookies, refreshNative, register, sessionIdOf, type Call
} from './helpers/example-app.js'
import { startRedis } from './helpers/redis.mjs'

// The example app's accounts and sessions: registration, login, tokens, refresh, logout, the session list, password changes and lifetimes.
const redis = await startRedis(t)
const startApp = appStarter(redis)

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
  }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'plugin route (docs/troubleshooting.md documents this code)')
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
    t.same(Object.keys(session).sort(), ['createdAt', 'current', 'expiresAt', 'ip', 'lastUsedAt', 'remembered', 'sessionId', 'userAgent'])
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
  const laptop = await loginNative(url, 'alice')

  // Redis stops answering (users live there too) for longer than a command may wait.
  const admin = outage.client()
  t.teardown(() => admin.quit())
  await admin.call('CLIENT', 'PAUSE', '2500', 'ALL')
  const body = { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }
  const failed = await call(url, 'POST', '/auth/change-password', { json: body, headers: bearer(phone.accessToken) })
  assertError(t, failed, 503, 'FTS_STORE_UNAVAILABLE', 'the password cannot be checked nor the other sessions ended')
  t.equal(failed.headers.get('retry-after'), '1', 'with a hint when to retry')
  const logged = logs.entries().filter((entry) => entry.msg === 'session store unavailable' && entry.level === 50)
  t.ok(logged.length > 0, 'the failure is logged')
  t.ok(logged.every((entry) => !JSON.stringify(entry).includes('"args"')), 'without the Redis command\'s arguments')
  await new Promise((resolve) => setTimeout(resolve, 2600))
  assertError(t, await call(url, 'POST', '/auth/change-password', {
    json: { currentPassword: NEW_PASSWORD, newPassword: 'a third password' }, headers: bearer(phone.accessToken)
  }), 401, 'INVALID_CREDENTIALS', 'the new password did not stay')
  t.equal((await refreshNative(url, laptop.refreshToken)).status, 200, 'the other session lives on')
  const retried = await call(url, 'POST', '/auth/change-password', { json: body, headers: bearer(phone.accessToken) })
  t.equal(retried.status, 204, 'the old password is still current: the same request, retried, works')
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

t.test('"remember me": a login without it sets session cookies, lives BROWSER_SESSION_MAX_LIFETIME at most, and the list says so', async (t) => {
  t.equal(loadConfig({}).browserSessionMaxLifetime, undefined, 'unset: the plugin\'s default')
  t.equal(loadConfig({ BROWSER_SESSION_MAX_LIFETIME: '3600' }).browserSessionMaxLifetime, 3600)
  t.throws(() => loadConfig({ BROWSER_SESSION_MAX_LIFETIME: '900' }), { name: 'ConfigError', message: /^BROWSER_SESSION_MAX_LIFETIME \(900\) must be greater than ACCESS_TOKEN_TTL \(900\)/ })
  t.throws(() => loadConfig({ SESSION_MAX_LIFETIME: '3600', BROWSER_SESSION_MAX_LIFETIME: '3601' }), { name: 'ConfigError', message: /^BROWSER_SESSION_MAX_LIFETIME \(3601\) must not exceed SESSION_MAX_LIFETIME \(3600\)/ })
  t.throws(() => loadConfig({ BROWSER_SESSION_MAX_LIFETIME: '12h' }), { name: 'ConfigError', message: /^BROWSER_SESSION_MAX_LIFETIME must be a whole number/ })
  const { url } = await startApp(t, { BROWSER_SESSION_MAX_LIFETIME: '3600' })
  await register(url, 'brief')
  const remembered = await loginWithCookies(url, 'brief')
  const brief = await call(url, 'POST', '/auth/login', { json: { username: 'brief', password: PASSWORD, remember: false } })
  t.equal(brief.status, 200)
  for (const name of ['access_token', 'refresh_token', 'session_binding']) {
    const attributes = brief.cookies.get(name)?.attributes
    t.ok(attributes !== undefined && !attributes.has('max-age') && !attributes.has('expires'), `${name}: a session cookie`)
    t.ok(remembered.cookies.get(name)?.attributes.has('max-age'), `${name}: persistent when remembered`)
  }
  const native = await call(url, 'POST', '/auth/login', { json: { username: 'brief', password: PASSWORD, remember: false }, headers: { 'x-token-transport': 'body' } })
  t.equal(native.body.refreshExpiresIn, 3600, 'its refresh token lives no longer than the session may')
  const list = await call(url, 'GET', '/auth/sessions', { headers: bearer(native.body.accessToken) })
  t.same(list.body.sessions.map((session: { remembered: boolean }) => session.remembered), [false, false, true], 'newest first')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'brief', password: PASSWORD, remember: 'yes' } }), 400, 'FST_ERR_VALIDATION', 'remember is a boolean')
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
