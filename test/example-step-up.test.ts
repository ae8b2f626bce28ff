import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../example-app/src/config.js'
import {
  NEW_PASSWORD, PASSWORD, appStarter, assertError, bearer, call, cookieHeader, loginNative, loginWithCookies, refreshNative, register, sessionIdOf
} from './helpers/example-app.js'
import { startRedis } from './helpers/redis.mjs'

// The example app's step-up (RFC 9470): a password change needs a recent login, and
// POST /auth/reauthenticate makes the session's login recent again, in the same session.
const redis = await startRedis(t)
const startApp = appStarter(redis)

/** The payload of a JWT, as any holder can read it. */
const claimsOf = (token: string): Record<string, unknown> => JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString())

/** Past a two-second STEP_UP_MAX_AGE. auth_time counts whole seconds, so a login may look up to a second older: the tests that need it recent act within a second of it. */
const LOGIN_GETS_OLD_MS = 2100

t.test('STEP_UP_MAX_AGE: 300 by default, read and checked', async (t) => {
  t.equal(loadConfig({}).stepUpMaxAge, 300)
  t.equal(loadConfig({ STEP_UP_MAX_AGE: '60' }).stepUpMaxAge, 60)
  for (const bad of ['0', '-1', '1.5', 'five', '999999999999']) {
    t.throws(() => loadConfig({ STEP_UP_MAX_AGE: bad }), { name: 'ConfigError', message: /^STEP_UP_MAX_AGE must be a whole number from 1 to / }, `${JSON.stringify(bad)} refuses`)
  }
})

t.test('a password change needs a recent login; a re-authentication gives one, in the same session', async (t) => {
  const { url } = await startApp(t, { STEP_UP_MAX_AGE: '2' })
  await register(url, 'alice')
  const phone = await loginNative(url, 'alice')
  const sessionId = await sessionIdOf(url, phone.accessToken)
  t.match(claimsOf(phone.accessToken), { amr: ['pwd'] }, 'a login by password says so in amr')
  const fresh = await call(url, 'POST', '/auth/change-password', { json: { currentPassword: 'not the password', newPassword: NEW_PASSWORD }, headers: bearer(phone.accessToken) })
  assertError(t, fresh, 401, 'INVALID_CREDENTIALS', 'a fresh login reaches the route: its own check answers')
  await sleep(LOGIN_GETS_OLD_MS)

  const change = { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }
  const stale = await call(url, 'POST', '/auth/change-password', { json: change, headers: bearer(phone.accessToken) })
  assertError(t, stale, 401, 'FTS_STEP_UP_REQUIRED', 'an older login, with the right current password')
  t.match(stale.headers.get('www-authenticate'), /^Bearer error="insufficient_user_authentication", error_description="[^"]+", max_age=2$/, 'the RFC 9470 challenge')
  t.equal((await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })).status, 200, 'the password did not change')

  assertError(t, await call(url, 'POST', '/auth/reauthenticate', { json: { password: PASSWORD } }), 401, 'FTS_TOKEN_MISSING', 'a re-authentication needs the session')
  assertError(t, await call(url, 'POST', '/auth/reauthenticate', { json: { password: 'not the password' }, headers: bearer(phone.accessToken) }),
    401, 'INVALID_CREDENTIALS', 'a wrong password')
  for (const [label, json] of [['no password', {}], ['an empty password', { password: '' }], ['an extra field', { password: PASSWORD, acr: 'mfa' }], ['a number', { password: 12345678 }]] as const) {
    assertError(t, await call(url, 'POST', '/auth/reauthenticate', { json, headers: bearer(phone.accessToken) }), 400, 'FST_ERR_VALIDATION', label)
  }

  const before = Math.floor(Date.now() / 1000)
  const stepped = await call(url, 'POST', '/auth/reauthenticate', { json: { password: PASSWORD }, headers: { ...bearer(phone.accessToken), 'x-token-transport': 'body' } })
  t.equal(stepped.status, 200, 'the right password')
  t.match(stepped.body, { accessToken: String, refreshToken: String, tokenType: 'Bearer', expiresIn: Number }, 'a login\'s token response, in the body as asked')
  t.equal(await sessionIdOf(url, stepped.body.accessToken), sessionId, 'the same session')
  const claims = claimsOf(stepped.body.accessToken)
  t.ok(Number(claims.auth_time) >= before, 'auth_time is now')
  t.same(claims.amr, ['pwd'])

  const changed = await call(url, 'POST', '/auth/change-password', { json: change, headers: bearer(stepped.body.accessToken) })
  t.equal(changed.status, 204, 'the password change goes through')
  assertError(t, await refreshNative(url, phone.refreshToken), 401, 'FTS_TOKEN_REUSED', 'the refresh token the step-up replaced is dead, within the reuse grace too')
  assertError(t, await refreshNative(url, stepped.body.refreshToken), 401, 'FTS_SESSION_REVOKED', 'and presenting it ended the session')
})

t.test('over cookies: the anti-CSRF header, new cookies, and the refresh cookie replaced', async (t) => {
  const { url } = await startApp(t, { STEP_UP_MAX_AGE: '2' })
  await register(url, 'alice')
  const browser = await loginWithCookies(url, 'alice')
  const cookie = cookieHeader(browser.cookies, 'access_token', 'refresh_token')
  await sleep(LOGIN_GETS_OLD_MS)
  const change = { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }
  assertError(t, await call(url, 'POST', '/auth/change-password', { json: change, headers: { cookie, 'x-requested-with': '1' } }), 401, 'FTS_STEP_UP_REQUIRED', 'an older login')
  assertError(t, await call(url, 'POST', '/auth/reauthenticate', { json: { password: PASSWORD }, headers: { cookie } }),
    403, 'FTS_CSRF_REJECTED', 'without the anti-CSRF header: a cross-site form cannot step the session up')
  const stepped = await call(url, 'POST', '/auth/reauthenticate', { json: { password: PASSWORD }, headers: { cookie, 'x-requested-with': '1' } })
  t.equal(stepped.status, 200)
  t.notOk('refreshToken' in stepped.body, 'the refresh token stays in its httpOnly cookie')
  t.ok(stepped.cookies.get('access_token')?.value, 'a new access cookie')
  t.ok(stepped.cookies.get('refresh_token')?.value, 'a new refresh cookie')
  const next = cookieHeader(stepped.cookies, 'access_token', 'refresh_token')
  t.equal((await call(url, 'POST', '/auth/change-password', { json: change, headers: { cookie: next, 'x-requested-with': '1' } })).status, 204, 'the change goes through')
})

t.test('a re-authentication\'s password checks count against the account, as a login\'s', async (t) => {
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '3' })
  await register(url, 'alice')
  const phone = await loginNative(url, 'alice')
  for (let i = 0; i < 3; i++) {
    assertError(t, await call(url, 'POST', '/auth/reauthenticate', { json: { password: `guess ${i}` }, headers: bearer(phone.accessToken) }), 401, 'INVALID_CREDENTIALS', `guess ${i}`)
  }
  // The right password at login gave its check back; the guesses spent the account's three
  // this minute: a login from this network, which failed against the account, now waits
  // (the login route's own per-network limit is untouched).
  const login = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })
  assertError(t, login, 429, 'RATE_LIMITED', 'the account\'s checks are spent')
  t.ok(Number(login.headers.get('retry-after')) > 0, 'with Retry-After')
})
