// Claims that follow the user: the `claims` hook, asked at every refresh (and at a login
// given no claims) before the store is touched; what it returns replaces the claims, a
// failure spends nothing, and it may end the session everywhere.
import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { MAX_CLAIMS_BYTES, type AuditEvent, type ClaimsContext, type ClaimsHook, type TokenSessionsOptions } from '../lib/index.js'
import { buildApp, login, refresh } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

/** What the app knows of its users now, and every call the hook got. */
function directory (): { roles: Map<string, string>, calls: Array<{ userId: string, context: ClaimsContext }>, hook: ClaimsHook } {
  const roles = new Map<string, string>()
  const calls: Array<{ userId: string, context: ClaimsContext }> = []
  const hook: ClaimsHook = async (userId, context) => {
    calls.push({ userId, context })
    const role = roles.get(userId)
    if (role === 'disabled') return context.endSession('user-disabled')
    return role === undefined ? {} : { role }
  }
  return { roles, calls, hook }
}

function assertError (t: Test, response: LightMyRequestResponse, status: number, code: string, message: string): void {
  t.equal(response.statusCode, status, `${message}: status ${status}`)
  t.equal(response.json().code, code, `${message}: ${code}`)
}

async function me (app: FastifyInstance, accessToken: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
}

async function tokenGrant (app: FastifyInstance, refreshToken: string): Promise<LightMyRequestResponse> {
  return await app.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString()
  })
}

t.test('a role change reaches the next refresh: the hook\'s answer replaces the claims, on every refresh path', async (t) => {
  const users = directory()
  const app = await buildApp(t, { claims: users.hook })
  users.roles.set('ann', 'admin')
  const tokens = await login(app, 'ann', { role: 'admin', tenant: 'acme' })
  t.equal(users.calls.length, 0, 'a login given claims does not ask the hook')
  t.match((await me(app, tokens.accessToken)).json(), { role: 'admin', tenant: 'acme' })
  t.notOk('clm' in payloadOf(tokens.refreshToken), 'the refresh token carries no claims: each refresh asks')

  users.roles.set('ann', 'user')
  const first = await refresh(app, tokens.refreshToken)
  t.equal(first.statusCode, 200)
  const user = (await me(app, first.json().accessToken)).json()
  t.equal(user.role, 'user', '<prefix>/refresh: the new role')
  t.notOk('tenant' in user, 'replaced, not merged: a claim the hook no longer gives is gone')
  t.match(users.calls[0], { userId: 'ann', context: { sessionId: payloadOf(tokens.accessToken).sid, event: 'refresh' } })
  t.ok(users.calls[0]?.context.request !== undefined, 'with the request')

  users.roles.set('ann', 'auditor')
  const second = await tokenGrant(app, first.json().refreshToken)
  t.equal(second.statusCode, 200)
  t.equal(payloadOf(second.json().access_token).role, 'auditor', '<prefix>/token: the new role')

  users.roles.set('ann', 'owner')
  const third = await app.tokenSessions.refresh(second.json().refresh_token)
  t.equal(payloadOf(third.accessToken).role, 'owner', 'tokenSessions.refresh(): the new role')
  t.equal(users.calls[2]?.context.request, undefined, 'without a request there')
  t.equal(users.calls.length, 3, 'asked once per refresh')
})

t.test('a login given no claims asks the hook; given claims, it does not', async (t) => {
  const users = directory()
  const app = await buildApp(t, { claims: users.hook })
  users.roles.set('bob', 'editor')
  const tokens = await login(app, 'bob')
  t.equal(payloadOf(tokens.accessToken).role, 'editor')
  t.match(users.calls, [{ userId: 'bob', context: { event: 'login', sessionId: payloadOf(tokens.accessToken).sid } }])
})

t.test('without the option nothing changes: the refresh token carries the login\'s claims, and they stay', async (t) => {
  const app = await buildApp(t)
  const tokens = await login(app, 'cy', { role: 'admin' })
  t.same(payloadOf(tokens.refreshToken).clm, { role: 'admin' })
  const refreshed = (await refresh(app, tokens.refreshToken)).json()
  t.equal(payloadOf(refreshed.accessToken).role, 'admin', 'the claims of the login')
})

t.test('a hook that fails spends nothing: 503 FTS_CLAIMS_UNAVAILABLE with Retry-After, and the same token refreshes after', async (t) => {
  const events: AuditEvent[] = []
  let failure: 'throws' | 'hangs' | 'reserved' | 'too large' | 'bad reason' | 'not an object' | 'nothing' | undefined
  const hook: ClaimsHook = async (_userId, { endSession }) => {
    if (failure === 'throws') throw new Error('users database down')
    if (failure === 'hangs') return await new Promise<never>(() => {})
    if (failure === 'reserved') return { sub: 'root' } as unknown as Record<string, never>
    if (failure === 'too large') return { blob: 'x'.repeat(MAX_CLAIMS_BYTES) } as unknown as Record<string, never>
    if (failure === 'bad reason') return endSession('')
    if (failure === 'not an object') return 'admin' as unknown as Record<string, never>
    if (failure === 'nothing') return undefined as unknown as Record<string, never>
    return { role: 'user' } as unknown as Record<string, never>
  }
  const app = await buildApp(t, { claims: hook, storeTimeout: 300, reuseGrace: 0, onRefresh: (event) => { events.push(event) } })
  const tokens = await login(app, 'dee', { role: 'user' })
  for (const kind of ['throws', 'hangs', 'reserved', 'too large', 'bad reason', 'not an object', 'nothing'] as const) {
    failure = kind
    const started = Date.now()
    const answer = await refresh(app, tokens.refreshToken)
    assertError(t, answer, 503, 'FTS_CLAIMS_UNAVAILABLE', `a hook that ${kind === 'throws' || kind === 'hangs' ? kind : `answers ${kind}`}`)
    t.equal(answer.headers['retry-after'], '1', 'with Retry-After')
    t.notMatch(answer.body, /database|root|reserved|bytes|printable|nothing/, 'no internal detail')
    if (kind === 'hangs') t.ok(Date.now() - started < 3000, `bounded by storeTimeout (${Date.now() - started} ms)`)
    const oauth = await tokenGrant(app, tokens.refreshToken)
    t.equal(oauth.statusCode, 503)
    t.match(oauth.json(), { error: 'temporarily_unavailable', error_description: /FTS_CLAIMS_UNAVAILABLE/ }, 'the token endpoint in OAuth\'s words')
    t.equal(oauth.headers['retry-after'], '1')
  }
  t.equal(events.length, 0, 'nothing rotated')
  failure = undefined
  const after = await refresh(app, tokens.refreshToken)
  t.equal(after.statusCode, 200, 'the same refresh token, not spent (reuseGrace 0: a spent one would be reuse)')
  t.equal(events.length, 1, 'one rotation')
  await t.rejects(app.tokenSessions.refresh(tokens.refreshToken), { code: 'FTS_TOKEN_REUSED' }, 'and now it is spent: presented again, reuse')
})

t.test('a login whose hook fails or ends the session starts none', async (t) => {
  const users = directory()
  let fail = true
  const app = await buildApp(t, { claims: async (userId, context) => { if (fail) throw new Error('down'); return await users.hook(userId, context) } })
  const failed = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: 'eve' } })
  assertError(t, failed, 503, 'FTS_CLAIMS_UNAVAILABLE', 'a failing hook at login')
  t.equal(failed.headers['retry-after'], '1')
  fail = false
  users.roles.set('eve', 'disabled')
  const ended = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: 'eve' } })
  assertError(t, ended, 401, 'FTS_SESSION_REVOKED', 'a hook that ends the session at login')
  t.same((await app.tokenSessions.listSessions('eve')).sessions, [], 'no session was started')
})

t.test('a hook that ends the session: 401 FTS_SESSION_REVOKED, revoked on every instance, the reason for the audit hooks', async (t) => {
  const redis = await startRedis(t)
  const users = directory()
  const revoked: AuditEvent[] = []
  const options: Partial<TokenSessionsOptions> = { redis: redis.url, claims: users.hook, onSessionRevoked: (event) => { revoked.push(event) } }
  const one = await buildApp(t, options)
  const two = await buildApp(t, { redis: redis.url })
  const tokens = await login(one, 'fay', { role: 'admin' })
  t.equal((await me(two, tokens.accessToken)).statusCode, 200, 'the other instance accepts the access token')

  users.roles.set('fay', 'disabled')
  assertError(t, await refresh(one, tokens.refreshToken), 401, 'FTS_SESSION_REVOKED', 'the refresh of a disabled user')
  t.match(revoked, [{ userId: 'fay', sessionId: payloadOf(tokens.accessToken).sid, reason: 'user-disabled' }], 'the audit hooks see the reason')
  assertError(t, await me(one, tokens.accessToken), 401, 'FTS_SESSION_REVOKED', 'its access token, on this instance')
  let other = await me(two, tokens.accessToken)
  for (let i = 0; i < 100 && other.statusCode === 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    other = await me(two, tokens.accessToken)
  }
  assertError(t, other, 401, 'FTS_SESSION_REVOKED', 'and on the other instance')
  t.same((await one.tokenSessions.listSessions('fay')).sessions, [], 'the session is gone from the store')

  const [kept] = [await login(one, 'gus', { role: 'x' })]
  const bare = await buildApp(t, { redis: redis.url, claims: async (_userId, { endSession }) => endSession(), onSessionRevoked: (event) => { revoked.push(event) } })
  assertError(t, await refresh(bare, kept.refreshToken), 401, 'FTS_SESSION_REVOKED', 'endSession() with no reason')
  t.equal(revoked.at(-1)?.reason, 'claims', 'the default reason')
})

t.test('the claims cap: 1,024 bytes as JSON, so that a token at its longest still fits a cookie', async (t) => {
  const at = (size: number): Record<string, string> => ({ c: 'x'.repeat(size - '{"c":""}'.length) })
  const app = await buildApp(t)
  await t.resolves(app.tokenSessions.issue('hal', { claims: at(MAX_CLAIMS_BYTES) }), 'at the cap')
  await t.rejects(app.tokenSessions.issue('hal', { claims: at(MAX_CLAIMS_BYTES + 1) }), { name: 'TypeError', message: /at most 1024 bytes/ }, 'a byte over')
  await t.rejects(app.tokenSessions.issue('hal', { claims: { c: 'é'.repeat(520) } }), /at most 1024 bytes/, 'bytes, not characters')
  await t.rejects(app.tokenSessions.issue('hal', { claims: { n: 1n } as unknown as Record<string, never> }), /must be JSON/, 'a BigInt')
  for (const name of ['auth_time', 'acr', 'amr', 'sub', 'cnf', 'client_id', 'scope']) {
    await t.rejects(app.tokenSessions.issue('hal', { claims: { [name]: 'x' } }), /reserved/, `"${name}" is reserved`)
  }

  // Everything at its longest, a 4096-bit RSA signature, a scope of 300 characters, and the
  // claims step-up adds (auth_time, acr, amr) and a DPoP key's cnf, as their size.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 4096 })
  const long = 'l'.repeat(100)
  const big = await buildApp(t, {
    accessTokenKeys: [{ kid: 'k'.repeat(32), algorithm: 'RS256', key: privateKey }],
    issuer: `https://${long}`,
    audience: `https://${long}`,
    clientId: long
  })
  const issued = await big.tokenSessions.issue('u'.repeat(256), { claims: at(MAX_CLAIMS_BYTES), scope: 's'.repeat(300) })
  const stepUp = JSON.stringify({ auth_time: 1_800_000_000, acr: 'a'.repeat(64), amr: ['pwd', 'otp', 'hwk'], cnf: { jkt: 'j'.repeat(43) } })
  const cookie = `__Host-access_token=${issued.accessToken}`.length + Math.ceil(stepUp.length * 4 / 3)
  t.ok(cookie <= 4096, `the access cookie at its longest: ${cookie} bytes (browsers keep 4,096)`)
  t.ok(`__Host-refresh_token=${issued.refreshToken}`.length <= 4096, `the refresh cookie: ${`__Host-refresh_token=${issued.refreshToken}`.length} bytes`)
})

t.test('the claims option must be a function', async (t) => {
  await t.rejects(buildApp(t, { claims: { role: 'admin' } as unknown as ClaimsHook }), { code: 'FTS_INVALID_OPTION', message: /^Invalid option claims: must be a function/ })
})
