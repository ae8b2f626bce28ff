import t from 'tap'
import { buildApp, cookiesOf, login, refresh } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

t.test('logout', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const inspect = redis.client()
  t.teardown(() => inspect.quit())

  t.test('with a refresh token in the body: 204, the session keys are gone, the token is dead', async (t) => {
    const tokens = await login(app, 'out-body')
    t.equal((await inspect.keys('*{out-body}*')).length, 2)
    const response = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })
    t.equal(response.statusCode, 204)
    t.equal(response.body, '')
    const left = await inspect.keys('*{out-body}*')
    t.equal(left.length, 1, 'revoked by deleting its keys')
    t.match(left[0], /^tsess:\{out-body\}:w:[\w.-]+$/, 'but the logout\'s outcome, for a resend of it')
    t.ok(await inspect.pttl(left[0] as string) <= 1100, 'kept until the logout\'s deadline (storeTimeout, and the instance\'s estimate of the Redis clock)')
    const after = await refresh(app, tokens.refreshToken)
    t.equal(after.statusCode, 401)
    t.equal(after.json().code, 'FTS_SESSION_REVOKED')
  })

  t.test('with cookies and the anti-CSRF header: both cookies are cleared with their Path', async (t) => {
    const loginResponse = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'out-cookie' } })
    const issued = cookiesOf(loginResponse)
    const response = await app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { 'x-requested-with': 'XMLHttpRequest' },
      cookies: {
        access_token: issued.get('access_token')?.value ?? '',
        refresh_token: issued.get('refresh_token')?.value ?? '',
        session_binding: issued.get('session_binding')?.value ?? ''
      }
    })
    t.equal(response.statusCode, 204)
    const cleared = cookiesOf(response)
    t.match(cleared.get('access_token'), { value: '', path: '/', httpOnly: true })
    t.match(cleared.get('refresh_token'), { value: '', path: '/auth', httpOnly: true })
    t.match(cleared.get('session_binding'), { value: '', path: '/', httpOnly: true })
    t.ok((cleared.get('refresh_token')?.expires?.getTime() ?? Infinity) < Date.now(), 'expired in the past')
    t.same((await inspect.keys('*{out-cookie}*')).filter((key) => !key.includes(':w:')), [], 'the session\'s keys are gone (the logout\'s outcome aside)')
  })

  t.test('with only an access token (Bearer): the session it names is revoked', async (t) => {
    const tokens = await login(app, 'out-bearer')
    const response = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${tokens.accessToken}` } })
    t.equal(response.statusCode, 204)
    t.equal((await refresh(app, tokens.refreshToken)).statusCode, 401)
  })

  t.test('a bad refresh token in the body falls back to a good access token', async (t) => {
    const tokens = await login(app, 'out-fallback')
    const response = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: 'junk' }, headers: { authorization: `Bearer ${tokens.accessToken}` } })
    t.equal(response.statusCode, 204)
    t.equal((await refresh(app, tokens.refreshToken)).statusCode, 401)
  })

  t.test('is idempotent: unknown, expired, forged or absent tokens still get 204 and cleared cookies', async (t) => {
    const tokens = await login(app, 'out-twice')
    for (const payload of [{ refreshToken: tokens.refreshToken }, { refreshToken: tokens.refreshToken }, { refreshToken: 'junk' }, {}]) {
      const response = await app.inject({ method: 'POST', url: '/auth/logout', payload })
      t.equal(response.statusCode, 204)
      t.equal(cookiesOf(response).get('refresh_token')?.value, '')
    }
  })

  t.test('a malformed body is a 400', async (t) => {
    const response = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: 7 } })
    t.equal(response.statusCode, 400)
    t.equal(response.json().code, 'FTS_BAD_REQUEST')
  })
})

t.test('logout-all', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const inspect = redis.client()
  t.teardown(() => inspect.quit())

  t.test('ends every session of the user and no one else\'s', async (t) => {
    const sessions = [await login(app, 'all-1'), await login(app, 'all-1'), await login(app, 'all-1')]
    const bystander = await login(app, 'all-2')
    const response = await app.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${sessions[0]?.accessToken}` } })
    t.equal(response.statusCode, 204)
    for (const session of sessions) t.equal((await refresh(app, session.refreshToken)).statusCode, 401)
    t.same((await inspect.keys('*{all-1}*')).map((key) => key.replace(/:w:[\w.-]+$/, ':w:<write>')).sort(), ['tsess:{all-1}:st', 'tsess:{all-1}:w:<write>'],
      'only the stamp is left (the refreshes swept the stale session hashes), and the outcome of the logout-all for a resend of it')
    t.equal((await refresh(app, bystander.refreshToken)).statusCode, 200)
  })

  t.test('with a refresh token in the body', async (t) => {
    const a = await login(app, 'all-3')
    const b = await login(app, 'all-3')
    const response = await app.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: a.refreshToken } })
    t.equal(response.statusCode, 204)
    t.equal((await refresh(app, b.refreshToken)).statusCode, 401)
  })

  t.test('needs a valid token: 401 without one', async (t) => {
    const none = await app.inject({ method: 'POST', url: '/auth/logout-all' })
    t.equal(none.statusCode, 401)
    t.equal(none.json().code, 'FTS_TOKEN_MISSING')
    const junk = await app.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: 'junk' } })
    t.equal(junk.statusCode, 401)
    t.equal(junk.json().code, 'FTS_TOKEN_INVALID')
  })

  t.test('a leftover access token of an ended session cannot end the user\'s other sessions', async (t) => {
    const old = await login(app, 'all-4')
    const current = await login(app, 'all-4')
    await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: old.refreshToken } })
    const response = await app.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${old.accessToken}` } })
    t.equal(response.statusCode, 401)
    t.equal(response.json().code, 'FTS_SESSION_REVOKED')
    t.equal((await refresh(app, current.refreshToken)).statusCode, 200, 'the live session survives')
  })
})

t.test('the app API', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })

  t.test('issue, refresh, verify, revoke and revokeAll without HTTP', async (t) => {
    const tokens = await app.tokenSessions.issue('api-user', { claims: { plan: 'pro' } })
    t.equal(tokens.transport, 'body')
    t.match(app.tokenSessions.verifyAccessToken(tokens.accessToken), { id: 'api-user', sessionId: tokens.sessionId, plan: 'pro' })
    const next = await app.tokenSessions.refresh(tokens.refreshToken)
    t.equal(next.sessionId, tokens.sessionId)
    t.equal(await app.tokenSessions.revokeSession('api-user', tokens.sessionId), true)
    t.equal(await app.tokenSessions.revokeSession('api-user', tokens.sessionId), false)
    const a = await app.tokenSessions.issue('api-user')
    await app.tokenSessions.issue('api-user')
    await app.tokenSessions.revokeAllSessions('api-user')
    t.same((await app.tokenSessions.listSessions('api-user')).sessions, [])
    await t.rejects(app.tokenSessions.refresh(a.refreshToken), { code: 'FTS_SESSION_REVOKED' })
    await t.rejects(app.tokenSessions.refresh(next.refreshToken), { code: 'FTS_SESSION_REVOKED', statusCode: 401 })
    t.throws(() => app.tokenSessions.verifyAccessToken('junk'), { code: 'FTS_TOKEN_INVALID' })
  })

  t.test('issueTokens refuses cookie transport when cookies are off', async (t) => {
    const bodyOnly = await buildApp(t, { redis: redis.url, cookies: false }, {
      setup: (app) => app.get('/force-cookie', async (_request, reply) => await reply.issueTokens('x', { transport: 'cookie' }))
    })
    const forced = await bodyOnly.inject({ method: 'GET', url: '/force-cookie' })
    t.equal(forced.statusCode, 500, 'a bug in the app, reported as one')
    const loginResponse = await bodyOnly.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'no-cookies' } })
    t.equal(loginResponse.headers['set-cookie'], undefined)
    const tokens = loginResponse.json()
    t.type(tokens.refreshToken, 'string', 'without cookies, tokens travel in the body')
    const cookies = { access_token: tokens.accessToken, refresh_token: tokens.refreshToken }
    const me = await bodyOnly.inject({ method: 'GET', url: '/me', cookies })
    t.equal(me.json().code, 'FTS_TOKEN_MISSING', 'cookies are ignored when cookies are off')
    const refreshed = await bodyOnly.inject({ method: 'POST', url: '/auth/refresh', cookies, headers: { 'x-requested-with': '1' } })
    t.equal(refreshed.json().code, 'FTS_TOKEN_MISSING')
  })
})
