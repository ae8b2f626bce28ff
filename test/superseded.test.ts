import t from 'tap'
import type { AuditEvent, AuditHookName } from '../lib/index.js'
import { buildApp, login, refresh } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

/** An app whose audit hooks record every event, by hook. */
async function audited (t: Parameters<typeof buildApp>[0], redisUrl: string, options: Record<string, unknown> = {}) {
  const events: Array<[AuditHookName, AuditEvent]> = []
  const hook = (name: AuditHookName) => (event: AuditEvent) => { events.push([name, event]) }
  const app = await buildApp(t, {
    redis: redisUrl,
    onLogin: hook('onLogin'),
    onRefresh: hook('onRefresh'),
    onLogout: hook('onLogout'),
    onSessionRevoked: hook('onSessionRevoked'),
    onReuseDetected: hook('onReuseDetected'),
    ...options
  })
  return { app, events }
}

t.test('a superseded refresh token is reuse wherever it is presented', async (t) => {
  const redis = await startRedis(t)

  t.test('logout-all with a rotated refresh token: 401 reuse and the alarm, not every session ended', async (t) => {
    const { app, events } = await audited(t, redis.url, { reuseGrace: 0 })
    const stolen = await login(app, 'victim-all')
    const other = await login(app, 'victim-all')
    t.equal((await refresh(app, stolen.refreshToken)).statusCode, 200, 'the owner refreshed: the stolen copy is superseded')
    events.length = 0
    const response = await app.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: stolen.refreshToken } })
    t.equal(response.statusCode, 401)
    t.equal(response.json().code, 'FTS_TOKEN_REUSED')
    t.same(events.map(([name, event]) => [name, event.reason]), [['onReuseDetected', 'reuse'], ['onSessionRevoked', 'reuse']])
    t.equal((await refresh(app, other.refreshToken)).statusCode, 200, 'the user\'s other sessions were not ended by a thief\'s copy')
  })

  t.test('logout with a rotated refresh token: 401 reuse, the session revoked, the alarm', async (t) => {
    const { app, events } = await audited(t, redis.url, { reuseGrace: 0 })
    const stolen = await login(app, 'victim-one')
    const current = (await refresh(app, stolen.refreshToken)).json()
    events.length = 0
    const response = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: stolen.refreshToken } })
    t.equal(response.json().code, 'FTS_TOKEN_REUSED')
    t.same(events.map(([name]) => name), ['onReuseDetected', 'onSessionRevoked'])
    t.equal((await refresh(app, current.refreshToken)).json().code, 'FTS_SESSION_REVOKED', 'the session is over, as after reuse on refresh')
  })

  t.test('within the grace window the previous token still logs out, without alarm', async (t) => {
    const { app, events } = await audited(t, redis.url)
    const tokens = await login(app, 'racing-tabs')
    await refresh(app, tokens.refreshToken)
    events.length = 0
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })).statusCode, 204)
    t.same(events.map(([name]) => name), ['onLogout', 'onSessionRevoked'])
  })
})

t.test('a replay within the grace window is told to the hooks', async (t) => {
  const redis = await startRedis(t)
  const { app, events } = await audited(t, redis.url)
  const tokens = await login(app, 'replayer')
  events.length = 0
  await refresh(app, tokens.refreshToken)
  await refresh(app, tokens.refreshToken)
  t.same(events.map(([name, event]) => [name, event.replay]), [['onRefresh', false], ['onRefresh', true]])
})

t.test('replayRequiresSameUserAgent: a replay from another user agent is reuse', async (t) => {
  const redis = await startRedis(t)
  const { app, events } = await audited(t, redis.url, { replayRequiresSameUserAgent: true })
  const refreshAs = async (token: string, agent: string) => await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: token }, headers: { 'user-agent': agent } })
  const tokens = (await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'agent' }, headers: { 'x-token-transport': 'body', 'user-agent': 'Phone/1' } })).json()
  t.equal((await refreshAs(tokens.refreshToken, 'Phone/1')).statusCode, 200)
  t.equal((await refreshAs(tokens.refreshToken, 'Phone/1')).statusCode, 200, 'the same agent may replay within grace')
  events.length = 0
  const stolen = await refreshAs(tokens.refreshToken, 'Thief/9')
  t.equal(stolen.json().code, 'FTS_TOKEN_REUSED', 'another agent may not')
  t.same(events.map(([name]) => name), ['onReuseDetected', 'onSessionRevoked'])
  const second = (await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'agent-out' }, headers: { 'x-token-transport': 'body', 'user-agent': 'Phone/1' } })).json()
  t.equal((await refreshAs(second.refreshToken, 'Phone/1')).statusCode, 200)
  const logout = async (agent: string) => await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: second.refreshToken }, headers: { 'user-agent': agent } })
  t.equal((await logout('Thief/9')).json().code, 'FTS_TOKEN_REUSED', 'a logout with the previous token from another agent is reuse too')
  t.equal((await refreshAs(second.refreshToken, 'Phone/1')).json().code, 'FTS_SESSION_REVOKED')
  const api = await app.tokenSessions.issue('agent-api')
  await app.tokenSessions.refresh(api.refreshToken)
  t.equal((await app.tokenSessions.refresh(api.refreshToken)).sessionId, api.sessionId, 'app code (no request, no agent) may replay its own rotation')
  await t.rejects(buildApp(t, { replayRequiresSameUserAgent: true, clientInfo: { userAgent: false } }),
    { code: 'FTS_INVALID_OPTION', message: /replayRequiresSameUserAgent.*clientInfo\.userAgent/ })
  await t.rejects(buildApp(t, { replayRequiresSameUserAgent: 'yes' as never }), { code: 'FTS_INVALID_OPTION' })
})
