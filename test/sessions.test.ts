import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { AuditEvent, AuditHookName } from '../lib/index.js'
import { LogCapture, buildApp, cookiesOf, login, refresh } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

function bearer (token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}

t.test('sessions a user can see and end', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url }, {
    setup: (app) => app.post<{ Body: { userId: string, label: string } }>('/auth/login-labelled', async (request, reply) =>
      await reply.issueTokens(request.body.userId, { label: request.body.label, transport: 'body' }))
  })

  t.test('GET /auth/sessions lists the caller\'s live sessions, the current one flagged', async (t) => {
    const phone = await app.inject({ method: 'POST', url: '/auth/login-labelled', payload: { userId: 'lister', label: 'Phone' }, headers: { 'user-agent': 'Phone/1.0' } })
    await sleep(5)
    const laptop = await login(app, 'lister')
    await login(app, 'someone-else')
    const response = await app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(laptop.accessToken) })
    t.equal(response.statusCode, 200)
    t.equal(response.headers['cache-control'], 'no-store')
    const { sessions } = response.json() as { sessions: Array<Record<string, unknown>> }
    t.equal(sessions.length, 2, 'only this user\'s sessions')
    t.match(sessions[1], { sessionId: phone.json().sessionId, label: 'Phone', userAgent: 'Phone/1.0', ip: '127.0.0.1', current: false })
    t.match(sessions[0], { sessionId: payloadOf(laptop.accessToken).sid, current: true, ip: '127.0.0.1' }, 'newest first')
    t.equal(response.json().nextCursor, null, 'one page holds them all')
    for (const session of sessions) {
      t.type(session.createdAt, 'number')
      t.type(session.lastUsedAt, 'number')
      t.type(session.expiresAt, 'number')
    }
    t.notMatch(response.body, /eyJ/, 'no token in the list')
  })

  t.test('listing needs a valid access token', async (t) => {
    const response = await app.inject({ method: 'GET', url: '/auth/sessions' })
    t.equal(response.statusCode, 401)
  })

  t.test('DELETE /auth/sessions/:id ends one of the caller\'s sessions', async (t) => {
    const a = await login(app, 'ender')
    const b = await login(app, 'ender')
    const response = await app.inject({ method: 'DELETE', url: `/auth/sessions/${payloadOf(b.accessToken).sid as string}`, headers: bearer(a.accessToken) })
    t.equal(response.statusCode, 204)
    t.equal(response.headers['set-cookie'], undefined, 'ending another session leaves this one\'s cookies')
    t.equal((await refresh(app, b.refreshToken)).statusCode, 401, 'that session is over')
    t.equal((await refresh(app, a.refreshToken)).statusCode, 200, 'this one lives')
  })

  t.test('ending the current session clears its cookies', async (t) => {
    const a = await login(app, 'self-ender')
    const response = await app.inject({ method: 'DELETE', url: `/auth/sessions/${payloadOf(a.accessToken).sid as string}`, headers: bearer(a.accessToken) })
    t.equal(response.statusCode, 204)
    t.equal(cookiesOf(response).get('refresh_token')?.value, '')
  })

  t.test('a session id that is not the caller\'s is a 404 and nothing changes', async (t) => {
    const mine = await login(app, 'owner-a')
    const theirs = await login(app, 'owner-b')
    for (const id of [payloadOf(theirs.accessToken).sid as string, 'AAAAAAAAAAAAAAAAAAAAAA', 'not-a-session-id', '..%2F..%2Fx']) {
      const response = await app.inject({ method: 'DELETE', url: `/auth/sessions/${id}`, headers: bearer(mine.accessToken) })
      t.equal(response.statusCode, 404, id)
      t.equal(response.json().code, 'FTS_SESSION_NOT_FOUND')
    }
    t.equal((await refresh(app, theirs.refreshToken)).statusCode, 200, 'the other user\'s session is untouched')
  })

  t.test('ending a session by cookie needs the anti-CSRF header', async (t) => {
    const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'csrf-ender' } })
    const access = cookiesOf(loginResponse).get('access_token')?.value ?? ''
    const sid = payloadOf(access).sid as string
    const cookies = { access_token: access, session_binding: sid }
    const refused = await app.inject({ method: 'DELETE', url: `/auth/sessions/${sid}`, cookies })
    t.equal(refused.statusCode, 403)
    const allowed = await app.inject({ method: 'DELETE', url: `/auth/sessions/${sid}`, cookies, headers: { 'x-requested-with': '1' } })
    t.equal(allowed.statusCode, 204)
  })

  t.test('the app API: list, revoke one, revoke all but one', async (t) => {
    const one = await app.tokenSessions.issue('api-lister', { label: 'one' })
    const two = await app.tokenSessions.issue('api-lister')
    const three = await app.tokenSessions.issue('api-lister')
    const ids = async (): Promise<string[]> => (await app.tokenSessions.listSessions('api-lister')).sessions.map((s) => s.sessionId)
    t.same(await ids(), [three.sessionId, two.sessionId, one.sessionId], 'newest first')
    t.equal(await app.tokenSessions.revokeSession('api-lister', one.sessionId), true)
    t.equal(await app.tokenSessions.revokeSession('api-lister', 'bad id'), false)
    await app.tokenSessions.revokeAllSessions('api-lister', { except: three.sessionId })
    t.same(await ids(), [three.sessionId])
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${two.accessToken}` } })).json().code, 'FTS_SESSION_REVOKED')
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${three.accessToken}` } })).statusCode, 200, 'the spared session')
    await app.tokenSessions.revokeAllSessions('api-lister')
    t.same(await ids(), [])
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${three.accessToken}` } })).json().code, 'FTS_SESSION_REVOKED')
  })
})

t.test('what a session records of its client is configurable', async (t) => {
  const redis = await startRedis(t)
  const none = await buildApp(t, { redis: redis.url, clientInfo: false })
  await none.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'private' }, headers: { 'user-agent': 'Secret/1.0' } })
  const [session] = (await none.tokenSessions.listSessions('private')).sessions
  t.notOk(session !== undefined && ('ip' in session || 'userAgent' in session), 'neither IP nor user agent')
  const ipOnly = await buildApp(t, { redis: redis.url, clientInfo: { userAgent: false } })
  await ipOnly.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'ip-only' }, headers: { 'user-agent': 'Secret/1.0' } })
  const [withIp] = (await ipOnly.tokenSessions.listSessions('ip-only')).sessions
  t.match(withIp, { ip: '127.0.0.1' })
  t.notOk(withIp !== undefined && 'userAgent' in withIp)
  await ipOnly.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'long-agent' }, headers: { 'user-agent': 'x'.repeat(1000) } })
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const full = await buildApp(t, { redis: redis.url })
  await full.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'long-agent' }, headers: { 'user-agent': 'x'.repeat(1000) } })
  const listed = (await full.tokenSessions.listSessions('long-agent')).sessions
  t.equal(listed.find((s) => s.userAgent !== undefined)?.userAgent, 'x'.repeat(128), 'a long user agent is cut, and comes back whole from its two halves')
  await full.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'odd-agent' }, headers: { 'user-agent': 'Caf\u00e9Browser/1.0 \u00e9' } })
  t.equal((await full.tokenSessions.listSessions('odd-agent')).sessions[0]?.userAgent, 'Caf?Browser/1.0 ?', 'non-ASCII becomes ?')
  for (const key of await inspect.keys('*{long-agent}:s:*')) {
    t.equal(await inspect.call('OBJECT', 'ENCODING', key), 'listpack', 'a session hash with the longest user agent stays a compact listpack')
  }
})

t.test('two lifetimes: sliding idle timeout, fixed absolute lifetime', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url, accessTokenTtl: 1, refreshTokenTtl: 60, sessionMaxLifetime: 4, reuseGrace: 0 })
  const first = await login(app, 'mortal')
  t.ok(first.refreshExpiresIn <= 4, `the refresh token lives no longer than the session (${first.refreshExpiresIn} s)`)
  const keys = await inspect.keys('*{mortal}*')
  for (const key of keys) t.ok(await inspect.pttl(key) <= 4000, `${key} expires with the absolute lifetime`)
  await sleep(1500)
  const second = await refresh(app, first.refreshToken)
  t.equal(second.statusCode, 200)
  const secondTokens = second.json()
  t.ok(secondTokens.refreshExpiresIn <= 3, `a rotation does not extend the session (${secondTokens.refreshExpiresIn} s)`)
  t.equal(payloadOf(secondTokens.refreshToken).mx, payloadOf(first.refreshToken).mx, 'the end stays fixed')
  await sleep(3000)
  const late = await refresh(app, secondTokens.refreshToken)
  t.equal(late.statusCode, 401)
  t.equal(late.json().code, 'FTS_SESSION_EXPIRED', 'past its absolute lifetime, its own code: log in again')
})

t.test('audit hooks', async (t) => {
  const redis = await startRedis(t)
  const events: Array<[AuditHookName, AuditEvent]> = []
  const record = (name: AuditHookName) => (event: AuditEvent) => { events.push([name, event]) }
  const logs = new LogCapture()
  const app = await buildApp(t, {
    redis: redis.url,
    reuseGrace: 0,
    onLogin: record('onLogin'),
    onRefresh: record('onRefresh'),
    onLogout: record('onLogout'),
    onSessionRevoked: record('onSessionRevoked'),
    onReuseDetected: record('onReuseDetected')
  }, { logs })
  const seen = (): string[] => events.map(([name, event]) => `${name}:${event.reason}`)
  const headers = { 'user-agent': 'Audit/1.0' }

  t.test('login, refresh, logout', async (t) => {
    events.length = 0
    const response = await app.inject({ method: 'POST', url: '/auth/login', headers: { ...headers, 'x-token-transport': 'body' }, payload: { userId: 'audited' } })
    const tokens = response.json()
    await app.inject({ method: 'POST', url: '/auth/refresh', headers, payload: { refreshToken: tokens.refreshToken } })
    await app.inject({ method: 'POST', url: '/auth/logout', headers: { ...headers, ...bearer(tokens.accessToken) } })
    t.same(seen(), ['onLogin:login', 'onRefresh:refresh', 'onLogout:logout', 'onSessionRevoked:logout'])
    const sid = payloadOf(tokens.accessToken).sid
    for (const [, event] of events) t.same(event, { userId: 'audited', sessionId: sid, reason: event.reason, replay: false, allSessions: false, ip: '127.0.0.1', userAgent: 'Audit/1.0' })
  })

  t.test('logout-all: the caller\'s session is a logout, and one revocation of every session', async (t) => {
    const a = await login(app, 'audited-all')
    await login(app, 'audited-all')
    events.length = 0
    await app.inject({ method: 'POST', url: '/auth/logout-all', headers: bearer(a.accessToken) })
    t.same(seen(), ['onLogout:logout-all', 'onSessionRevoked:logout-all'])
    t.match(events[1]?.[1], { userId: 'audited-all', sessionId: payloadOf(a.accessToken).sid, allSessions: true }, 'one event, whatever the number of sessions')
  })

  t.test('reuse, and app code with its own reason', async (t) => {
    const a = await login(app, 'audited-reuse')
    await refresh(app, a.refreshToken)
    events.length = 0
    await refresh(app, a.refreshToken)
    t.same(seen(), ['onReuseDetected:reuse', 'onSessionRevoked:reuse'])
    const c = await app.tokenSessions.issue('audited-api-reuse')
    await app.tokenSessions.refresh(c.refreshToken)
    await t.rejects(app.tokenSessions.refresh(c.refreshToken), { code: 'FTS_TOKEN_REUSED' })
    t.ok(logs.entries().some((entry) => entry.userId === 'audited-api-reuse' && entry.level === 40), 'reuse through the API is logged by the app logger')
    const b = await app.tokenSessions.issue('audited-api')
    events.length = 0
    await app.tokenSessions.revokeAllSessions('audited-api', { reason: 'password-change' })
    t.same(events, [['onSessionRevoked', { userId: 'audited-api', sessionId: undefined, reason: 'password-change', replay: false, allSessions: true, ip: undefined, userAgent: undefined }]])
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(b.accessToken) })).json().code, 'FTS_SESSION_REVOKED')
    const d = await app.tokenSessions.issue('audited-api')
    events.length = 0
    const request = { ip: '192.0.2.7', headers: { 'user-agent': 'Admin/2' }, log: app.log } as unknown as import('fastify').FastifyRequest
    await app.tokenSessions.revokeSession('audited-api', d.sessionId, { reason: 'admin', request })
    t.same(events, [['onSessionRevoked', { userId: 'audited-api', sessionId: d.sessionId, reason: 'admin', replay: false, allSessions: false, ip: '192.0.2.7', userAgent: 'Admin/2' }]],
      'the request app code passes reaches the hooks')
  })

  t.test('a logout of a session already gone calls no hook', async (t) => {
    const a = await login(app, 'audited-gone')
    await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: a.refreshToken } })
    events.length = 0
    await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: a.refreshToken } })
    t.same(events, [])
  })

  t.test('no event and no log holds a token', async (t) => {
    const text = JSON.stringify(events) + logs.text
    t.notMatch(text, /eyJ[\w-]+\.eyJ/)
  })
})

t.test('a failing audit hook is logged and the request goes on', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url, onLogin: async () => { throw new Error('audit sink down') } }, { logs })
  const tokens = await login(app, 'hook-down')
  t.type(tokens.accessToken, 'string')
  t.ok(logs.entries().some((entry) => entry.msg === 'onLogin hook failed' && entry.level === 50 && entry.hook === 'onLogin'))
  await app.tokenSessions.issue('hook-down')
  t.ok(logs.entries().filter((entry) => entry.msg === 'onLogin hook failed').length === 2, 'without a request, the app logger reports it')
})
