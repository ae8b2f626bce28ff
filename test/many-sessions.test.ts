import t from 'tap'
import Fastify from 'fastify'
import tokenSessions, { MemoryStore, tokenResponse, type AuditEvent } from '../lib/index.js'
import { SECRET, buildApp, login, memoryStore, refresh } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

t.test('maxSessionsPerUser: a login beyond it revokes the least recently used session like any other', async (t) => {
  const redis = await startRedis(t)
  const revoked: AuditEvent[] = []
  const app = await buildApp(t, { redis: redis.url, maxSessionsPerUser: 2, onSessionRevoked: (event) => { revoked.push(event) } })
  const first = await login(app, 'capped')
  const second = await login(app, 'capped')
  const used = (await refresh(app, first.refreshToken)).json()
  const third = await login(app, 'capped')
  t.same(revoked.map((event) => [event.sessionId, event.reason]), [[app.tokenSessions.verifyAccessToken(second.accessToken).sessionId, 'limit']],
    'the second session (least recently used) ended, reason limit')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(second.accessToken) })).json().code, 'FTS_SESSION_REVOKED', 'its access token is rejected at once')
  t.equal((await refresh(app, second.refreshToken)).json().code, 'FTS_SESSION_REVOKED')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(used.accessToken) })).statusCode, 200, 'the session used since lives')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(third.accessToken) })).statusCode, 200, 'the new one lives')
  t.equal((await app.tokenSessions.listSessions('capped')).sessions.length, 2)
})

t.test('maxSessionsPerUser is checked at registration', async (t) => {
  for (const value of [0, 1.5, -1, '100', 2_000_000]) {
    await t.rejects(buildApp(t, { maxSessionsPerUser: value as number }), { code: 'FTS_INVALID_OPTION', message: /maxSessionsPerUser/ }, String(value))
  }
})

t.test('GET /auth/sessions is paged: newest first, an opaque cursor, a hard maximum', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const logins = []
  for (let n = 0; n < 5; n++) logins.push(await login(app, 'pager'))
  const newest = logins.at(-1) as { accessToken: string }
  const page = async (query: string): Promise<{ statusCode: number, body: { sessions?: Array<{ sessionId: string, current: boolean }>, nextCursor?: string | null, code?: string } }> => {
    const response = await app.inject({ method: 'GET', url: `/auth/sessions${query}`, headers: bearer(newest.accessToken) })
    return { statusCode: response.statusCode, body: response.json() }
  }
  const ids = logins.map((tokens) => app.tokenSessions.verifyAccessToken(tokens.accessToken).sessionId)
  const first = await page('?limit=2')
  t.same(first.body.sessions?.map((s) => s.sessionId), [ids[4], ids[3]])
  t.equal(first.body.sessions?.[0]?.current, true, 'the caller\'s own session is flagged')
  t.type(first.body.nextCursor, 'string')
  // A refresh of an older session does not move it between pages.
  t.equal((await refresh(app, logins[0]?.refreshToken as string)).statusCode, 200)
  const second = await page(`?limit=2&cursor=${first.body.nextCursor}`)
  t.same(second.body.sessions?.map((s) => s.sessionId), [ids[2], ids[1]])
  const last = await page(`?limit=2&cursor=${second.body.nextCursor}`)
  t.same(last.body.sessions?.map((s) => s.sessionId), [ids[0]])
  t.equal(last.body.nextCursor, null, 'null after the last page')
  t.equal((await page('')).body.sessions?.length, 5, 'the default page holds them all')
  for (const query of ['?limit=0', '?limit=101', '?limit=abc', '?limit=1.5', '?cursor=not*base64', '?cursor=' + Buffer.from('12abc').toString('base64url'), '?cursor=' + 'A'.repeat(40)]) {
    t.same(await page(query), { statusCode: 400, body: { statusCode: 400, code: 'FTS_BAD_REQUEST', error: 'Bad Request', message: 'The request is malformed' } }, query)
  }
  const api = await app.tokenSessions.listSessions('pager', { limit: 3 })
  t.equal(api.sessions.length, 3)
  t.same((await app.tokenSessions.listSessions('pager', { cursor: api.nextCursor as string })).sessions.map((s) => s.sessionId), [ids[1], ids[0]], 'the API takes the same cursor')
  await t.rejects(app.tokenSessions.listSessions('pager', { limit: 500 }), { code: 'FTS_BAD_REQUEST' })
})

t.test('logout-all then a login in the same second: the new session lives', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  for (let round = 0; round < 5; round++) {
    const old = await login(app, 'same-second')
    t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: old.refreshToken } })).statusCode, 204)
    const fresh = await login(app, 'same-second')
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(fresh.accessToken) })).statusCode, 200, `round ${round}: the new access token works`)
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(old.accessToken) })).json().code, 'FTS_SESSION_REVOKED', `round ${round}: the old one does not`)
    t.equal((await refresh(app, fresh.refreshToken)).statusCode, 200)
  }
})

t.test('a login whose credentials were checked before every session was revoked fails instead of surviving it', async (t) => {
  const redis = await startRedis(t)
  let release: () => void = () => {}
  const checked = new Promise<void>((resolve) => { release = resolve })
  const app = await buildApp(t, { redis: redis.url }, {
    setup: (app) => {
      // A login that checks the password (slowly), then starts the session.
      app.post<{ Body: { userId: string } }>('/slow-login', async (request, reply) => {
        await checked
        const tokens = await reply.issueTokens(request.body.userId, { transport: 'body' })
        return { accessToken: tokens.accessToken }
      })
    }
  })
  const racing = app.inject({ method: 'POST', url: '/slow-login', payload: { userId: 'changed' } })
  await new Promise((resolve) => setTimeout(resolve, 20))
  await app.tokenSessions.revokeAllSessions('changed', { reason: 'password-change' })
  release()
  const response = await racing
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, 'FTS_CREDENTIALS_STALE')
  t.same((await app.tokenSessions.listSessions('changed')).sessions, [], 'no session started')
  t.equal((await app.inject({ method: 'POST', url: '/slow-login', payload: { userId: 'changed' } })).statusCode, 200, 'a login that starts after it works')
  await t.rejects(app.tokenSessions.issue('changed', { authenticatedAt: Date.now() - 60_000 }), { code: 'FTS_CREDENTIALS_STALE' }, 'the API takes authenticatedAt')
})

t.test('issueTokens called before the plugin noted the request\'s arrival checks against now', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  // A hook of the app's, added before the plugin: it runs before the plugin's own.
  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/early-login') return await reply.send(tokenResponse(await reply.issueTokens('early', { transport: 'body' })))
  })
  await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
  app.get('/early-login', async () => 'not reached')
  const response = await app.inject({ method: 'GET', url: '/early-login' })
  t.equal(response.statusCode, 200)
  t.type(response.json().accessToken, 'string')
})

t.test('revoking every session and signing in again in the same request works (a password reset)', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url }, {
    setup: (app) => {
      app.post<{ Body: { userId: string } }>('/reset-password', async (request, reply) => {
        await app.tokenSessions.revokeAllSessions(request.body.userId, { reason: 'password-reset', request })
        return tokenResponse(await reply.issueTokens(request.body.userId, { transport: 'body' }))
      })
    }
  })
  const old = await login(app, 'resetter')
  const reset = await app.inject({ method: 'POST', url: '/reset-password', payload: { userId: 'resetter' } })
  t.equal(reset.statusCode, 200, 'the new session starts after the revocation this request made')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: bearer(reset.json().accessToken) })).statusCode, 200)
  t.equal((await refresh(app, old.refreshToken)).json().code, 'FTS_SESSION_REVOKED')
  const other = await app.inject({ method: 'POST', url: '/reset-password', payload: { userId: 'someone-else' } })
  t.equal(other.statusCode, 200)
})

t.test('"log out other devices" from two devices at once: neither survives the other\'s request on any instance', async (t) => {
  const redis = await startRedis(t)
  const shared = new MemoryStore()
  t.teardown(() => shared.close())
  // On a shared MemoryStore the announcement arrives before the revoking call returns.
  for (const [label, options] of [['Redis', { redis: redis.url }], ['a MemoryStore', { store: shared }]] as const) {
    const a = await buildApp(t, options)
    const b = await buildApp(t, options)
    const deviceA = await login(a, `both-${label}`)
    const deviceB = await login(b, `both-${label}`)
    const sidA = a.tokenSessions.verifyAccessToken(deviceA.accessToken).sessionId
    const sidB = b.tokenSessions.verifyAccessToken(deviceB.accessToken).sessionId
    // A ends every other session (B's); then B, authenticated just before, asks the same.
    await a.tokenSessions.revokeAllSessions(`both-${label}`, { except: sidA })
    await b.tokenSessions.revokeAllSessions(`both-${label}`, { except: sidB })
    for (const [name, app] of [['instance a', a], ['instance b', b]] as const) {
      for (const [device, tokens] of [['device A', deviceA], ['device B', deviceB]] as const) {
        let code: string | undefined
        for (let tries = 0; tries < 50 && code !== 'FTS_SESSION_REVOKED'; tries++) {
          code = (await app.inject({ method: 'GET', url: '/me', headers: bearer(tokens.accessToken) })).json().code
          if (code !== 'FTS_SESSION_REVOKED') await new Promise((resolve) => setTimeout(resolve, 20))
        }
        t.equal(code, 'FTS_SESSION_REVOKED', `${label}: ${device} on ${name}`)
      }
    }
  }
})
