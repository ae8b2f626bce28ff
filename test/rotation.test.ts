import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { AuditEvent } from '../lib/index.js'
import { LogCapture, buildApp, cookiesOf, login, refresh } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

t.test('rotation', async (t) => {
  const redis = await startRedis(t)

  t.test('every refresh returns a new pair and the presented token stops working', async (t) => {
    const app = await buildApp(t, { redis: redis.url, reuseGrace: 0 })
    const first = await login(app, 'rot-1')
    const response = await refresh(app, first.refreshToken)
    t.equal(response.statusCode, 200)
    t.equal(response.headers['cache-control'], 'no-store')
    const second = response.json()
    t.match(second, { tokenType: 'Bearer', expiresIn: 900, refreshExpiresIn: 86400 })
    t.not(second.refreshToken, first.refreshToken)
    t.not(payloadOf(second.refreshToken).jti, payloadOf(first.refreshToken).jti)
    t.equal(payloadOf(second.accessToken).sid, payloadOf(first.accessToken).sid, 'same session')
    t.equal((await refresh(app, second.refreshToken)).statusCode, 200, 'the successor works')
  })

  t.test('50 parallel refreshes of one token within the grace all succeed on one chain', async (t) => {
    const app = await buildApp(t, { redis: redis.url, reuseGrace: 10 })
    const first = await login(app, 'race-grace')
    const responses = await Promise.all(Array.from({ length: 50 }, async () => await refresh(app, first.refreshToken)))
    t.same(responses.map((r) => r.statusCode), Array(50).fill(200))
    const jtis = new Set(responses.map((r) => payloadOf(r.json().refreshToken).jti))
    t.equal(jtis.size, 1, 'every racer got the same successor: exactly one live chain')
    const successor = responses[0]?.json().refreshToken as string
    t.equal((await refresh(app, successor)).statusCode, 200, 'the chain continues')
  })

  t.test('50 parallel refreshes of one token with reuseGrace 0: at most one wins, and theft is assumed', async (t) => {
    const app = await buildApp(t, { redis: redis.url, reuseGrace: 0 })
    const first = await login(app, 'race-strict')
    const responses = await Promise.all(Array.from({ length: 50 }, async () => await refresh(app, first.refreshToken)))
    const winners = responses.filter((r) => r.statusCode === 200)
    t.ok(winners.length <= 1, `${winners.length} winner(s)`)
    const codes = responses.filter((r) => r.statusCode === 401).map((r) => r.json().code as string)
    t.equal(codes.length, 50 - winners.length)
    t.ok(codes.includes('FTS_TOKEN_REUSED'), 'the second racer is taken for a thief')
    t.ok(codes.every((code) => code === 'FTS_TOKEN_REUSED' || code === 'FTS_SESSION_REVOKED'), 'later racers find the session gone')
    for (const winner of winners) {
      t.equal((await refresh(app, winner.json().refreshToken)).statusCode, 401, 'the racers revoked the session')
    }
  })

  t.test('a retry after a lost response within the grace gets a working successor', async (t) => {
    const app = await buildApp(t, { redis: redis.url, reuseGrace: 5 })
    const first = await login(app, 'retry')
    await refresh(app, first.refreshToken) // the response is "lost"
    const retry = await refresh(app, first.refreshToken)
    t.equal(retry.statusCode, 200)
    t.equal((await refresh(app, retry.json().refreshToken)).statusCode, 200)
  })

  t.test('reuse after the grace window revokes the whole session, alerts and logs without tokens', async (t) => {
    const logs = new LogCapture()
    const events: AuditEvent[] = []
    const app = await buildApp(t, { redis: redis.url, reuseGrace: 0.2, onReuseDetected: (event) => { events.push(event) } }, { logs })
    const first = await login(app, 'reuse')
    const second = (await refresh(app, first.refreshToken)).json()
    await sleep(400)
    const replay = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: first.refreshToken }, headers: { 'user-agent': 'thief/1.0' } })
    t.equal(replay.statusCode, 401)
    t.equal(replay.json().code, 'FTS_TOKEN_REUSED')
    const newest = await refresh(app, second.refreshToken)
    t.equal(newest.statusCode, 401, 'the newest refresh token is dead too')
    t.equal(newest.json().code, 'FTS_SESSION_REVOKED')
    t.same(events, [{ userId: 'reuse', sessionId: payloadOf(first.refreshToken).sid, reason: 'reuse', replay: false, allSessions: false, ip: '127.0.0.1', userAgent: 'thief/1.0' }])
    const warning = logs.entries().find((entry) => entry.msg === 'refresh token reuse detected: session revoked')
    t.match(warning, { level: 40, userId: 'reuse' })
    for (const token of [first.refreshToken, second.refreshToken, second.accessToken]) t.notOk(logs.text.includes(token))
  })

  t.test('a failing reuse hook is logged and the answer is still 401', async (t) => {
    const logs = new LogCapture()
    const app = await buildApp(t, { redis: redis.url, reuseGrace: 0, onReuseDetected: async () => { throw new Error('pager down') } }, { logs })
    const first = await login(app, 'hook-fails')
    await refresh(app, first.refreshToken)
    const replay = await refresh(app, first.refreshToken)
    t.equal(replay.statusCode, 401)
    t.ok(logs.entries().some((entry) => entry.msg === 'onReuseDetected hook failed' && entry.level === 50))
  })

  t.test('refresh through cookies rotates both cookies and keeps the refresh token out of the body', async (t) => {
    const app = await buildApp(t, { redis: redis.url })
    const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'cookie-user' } })
    t.notOk('refreshToken' in loginResponse.json(), 'a browser login never sees the refresh token')
    const issued = cookiesOf(loginResponse)
    const response = await app.inject({
      method: 'POST',
      url: '/auth/refresh',
      headers: { 'x-requested-with': 'fetch' },
      cookies: { refresh_token: issued.get('refresh_token')?.value ?? '', session_binding: issued.get('session_binding')?.value ?? '' }
    })
    t.equal(response.statusCode, 200)
    t.notOk('refreshToken' in response.json())
    const rotated = cookiesOf(response)
    t.not(rotated.get('refresh_token')?.value, issued.get('refresh_token')?.value)
    t.match(rotated.get('refresh_token'), { path: '/auth', httpOnly: true, sameSite: 'Strict', maxAge: 86400 })
    t.match(rotated.get('access_token'), { path: '/', httpOnly: true, sameSite: 'Strict', maxAge: 900 })
    t.equal(response.json().accessToken, rotated.get('access_token')?.value)
  })

  t.test('a refresh cookie that fails clears the cookies', async (t) => {
    const app = await buildApp(t, { redis: redis.url })
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { 'x-requested-with': '1' }, cookies: { refresh_token: 'junk' } })
    t.equal(response.statusCode, 401)
    const cleared = cookiesOf(response)
    t.equal(cleared.get('refresh_token')?.value, '')
    t.equal(cleared.get('refresh_token')?.path, '/auth')
    t.equal(cleared.get('access_token')?.value, '')
  })

  t.test('a session stays alive through rotations past its first refresh lifetime', async (t) => {
    const app = await buildApp(t, { redis: redis.url, accessTokenTtl: 1, refreshTokenTtl: 3, reuseGrace: 0 })
    let tokens = await login(app, 'sliding')
    for (let i = 0; i < 3; i++) {
      await sleep(1100)
      const response = await refresh(app, tokens.refreshToken)
      t.equal(response.statusCode, 200, `rotation ${i + 1}`)
      tokens = response.json()
    }
    await sleep(3100)
    const late = await refresh(app, tokens.refreshToken)
    t.equal(late.statusCode, 401, 'idle past the refresh lifetime')
    t.equal(late.json().code, 'FTS_TOKEN_EXPIRED')
  })
})

t.test('malformed refresh requests', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const cases: Array<[string, Record<string, unknown>, number, string]> = [
    ['a numeric refreshToken', { payload: { refreshToken: 42 } }, 400, 'FTS_BAD_REQUEST'],
    ['an empty refreshToken', { payload: { refreshToken: '' } }, 400, 'FTS_BAD_REQUEST'],
    ['an object refreshToken', { payload: { refreshToken: { $ne: null } } }, 400, 'FTS_BAD_REQUEST'],
    ['an array body', { payload: [1, 2], headers: { 'content-type': 'application/json' } }, 400, 'FTS_BAD_REQUEST'],
    ['a string body', { payload: '"token"', headers: { 'content-type': 'application/json' } }, 400, 'FTS_BAD_REQUEST'],
    ['a text body', { payload: 'refreshToken=x', headers: { 'content-type': 'text/plain' } }, 415, 'FTS_UNSUPPORTED_MEDIA_TYPE'],
    ['a form body', { payload: 'refreshToken=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'FTS_UNSUPPORTED_MEDIA_TYPE'],
    ['broken JSON', { payload: '{"refreshToken":', headers: { 'content-type': 'application/json' } }, 400, 'FTS_BAD_REQUEST'],
    ['no token at all', {}, 401, 'FTS_TOKEN_MISSING'],
    ['a null body', { payload: 'null', headers: { 'content-type': 'application/json' } }, 400, 'FTS_BAD_REQUEST'],
    ['a body without a content type', { payload: '{"refreshToken":"x"}', headers: { 'content-type': undefined } }, 415, 'FTS_UNSUPPORTED_MEDIA_TYPE'],
    ['an oversized body', { payload: { refreshToken: 'x'.repeat(20_000) } }, 413, 'FST_ERR_CTP_BODY_TOO_LARGE']
  ]
  for (const [name, request, status, code] of cases) {
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', ...request })
    t.equal(response.statusCode, status, name)
    t.equal(response.json().code, code, name)
  }
  for (const type of ['text/plain', 'application/json']) {
    const empty = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { 'content-type': type, 'content-length': '0' } })
    t.equal(empty.statusCode, 401, `an empty ${type} body is no body`)
    t.equal(empty.json().code, 'FTS_TOKEN_MISSING')
  }
})
