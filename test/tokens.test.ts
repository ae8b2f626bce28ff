import t, { type Test } from 'tap'
import { buildApp, login, refresh } from './helpers/app.js'
import { KEYS, craft, now, payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

const AT = { alg: 'HS256', typ: 'JWT' }
const RT = { alg: 'HS256', typ: 'rt+jwt' }
const SID = 'AAAAAAAAAAAAAAAAAAAAAA'
const JTI = 'A'.repeat(43)

function accessPayload (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { sub: 'alice', sid: SID, sst: Date.now(), iat: now(), exp: now() + 600, ...overrides }
}

/** Every way an attacker or a broken client can get an access token wrong, and the code it must get. */
function badAccessTokens (valid: string): Array<[string, string, string]> {
  const [h, p, s] = valid.split('.') as [string, string, string]
  return [
    ['garbage', 'not-a-jwt', 'FTS_TOKEN_INVALID'],
    ['three empty parts', '..', 'FTS_TOKEN_INVALID'],
    ['alg none, unsigned', craft({ alg: 'none', typ: 'JWT' }, accessPayload(), null), 'FTS_TOKEN_INVALID'],
    ['alg outside the allowlist (HS512 with the right key)', craft({ alg: 'HS512', typ: 'JWT' }, accessPayload(), KEYS.access, 'sha512'), 'FTS_TOKEN_INVALID'],
    ['alg RS256 with an HMAC signature', craft({ alg: 'RS256', typ: 'JWT' }, accessPayload(), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['signed with another key', craft(AT, accessPayload(), Buffer.alloc(32, 7)), 'FTS_TOKEN_INVALID'],
    ['signed with the refresh key', craft(AT, accessPayload(), KEYS.refresh), 'FTS_TOKEN_INVALID'],
    ['nbf in the future', craft(AT, accessPayload({ nbf: now() + 3600 }), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['exp as a string', craft(AT, accessPayload({ exp: String(now() + 600) }), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['exp missing', craft(AT, accessPayload({ exp: undefined }), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['an array payload', craft(AT, [accessPayload()], KEYS.access), 'FTS_TOKEN_INVALID'],
    ['a string payload', craft(AT, '"alice"', KEYS.access), 'FTS_TOKEN_INVALID'],
    ['an unknown crit header', craft({ ...AT, crit: ['x-policy'], 'x-policy': 1 }, accessPayload(), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['= appended to the signature', `${valid}=`, 'FTS_TOKEN_INVALID'],
    ['typ at+jwt without the RFC 9068 profile (the typ check fails)', craft({ alg: 'HS256', typ: 'at+jwt' }, accessPayload(), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['no typ', craft({ alg: 'HS256' }, accessPayload(), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['a refresh token (typ rt+jwt, refresh key)', craft(RT, { ...accessPayload(), jti: JTI }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
    ['typ rt+jwt signed with the access key', craft(RT, accessPayload(), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['a tampered payload under the old signature', `${h}.${Buffer.from(JSON.stringify({ ...payloadOf(valid), sub: 'mallory' })).toString('base64url')}.${s}`, 'FTS_TOKEN_INVALID'],
    ['a truncated signature', `${h}.${p}.${s.slice(0, -4)}`, 'FTS_TOKEN_INVALID'],
    ['a malformed session id', craft(AT, accessPayload({ sid: '../../x' }), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['a numeric subject', craft(AT, accessPayload({ sub: 42 }), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['an empty subject', craft(AT, accessPayload({ sub: '' }), KEYS.access), 'FTS_TOKEN_INVALID'],
    ['a header that is not JSON', `${Buffer.from('{alg').toString('base64url')}.${p}.${s}`, 'FTS_TOKEN_INVALID'],
    ['an oversized token', `${h}.${'A'.repeat(10_000)}.${s}`, 'FTS_TOKEN_INVALID'],
    ['expired', craft(AT, accessPayload({ iat: now() - 120, exp: now() - 60 }), KEYS.access), 'FTS_TOKEN_EXPIRED']
  ]
}

function assertRejected (t: Test, response: { statusCode: number, headers: Record<string, unknown>, body: string, json: () => any }, code: string): void {
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, code)
  t.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"')
  t.notMatch(response.body, /FAST_JWT|stack|at [A-Za-z]+ \(/, 'no internal detail')
}

t.test('access tokens', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const { accessToken } = await login(app, 'alice')

  t.test('a valid token passes, as Bearer and as cookie', async (t) => {
    const bearer = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
    t.equal(bearer.statusCode, 200)
    t.match(bearer.json(), { id: 'alice', sessionId: /^[\w-]{22}$/ })
    const cookie = await app.inject({ method: 'GET', url: '/me', cookies: { access_token: accessToken, session_binding: payloadOf(accessToken).sid as string } })
    t.equal(cookie.statusCode, 200)
    const lowercase = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `bearer ${accessToken}` } })
    t.equal(lowercase.statusCode, 200, 'the scheme is case-insensitive (RFC 7235)')
  })

  for (const [name, token, code] of badAccessTokens(accessToken)) {
    t.test(`rejects ${name}`, async (t) => {
      assertRejected(t, await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } }), code)
      assertRejected(t, await app.inject({ method: 'GET', url: '/me', cookies: { access_token: token } }), code)
    })
  }

  t.test('no token, or an Authorization header that is not Bearer, is a missing token', async (t) => {
    assertRejected(t, await app.inject({ method: 'GET', url: '/me' }), 'FTS_TOKEN_MISSING')
    assertRejected(t, await app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Basic YTpi' } }), 'FTS_TOKEN_MISSING')
    assertRejected(t, await app.inject({ method: 'GET', url: '/me', cookies: { access_token: '' } }), 'FTS_TOKEN_MISSING')
  })

  t.test('a Bearer header without a single token is invalid', async (t) => {
    for (const header of ['Bearer', 'Bearer ', `Bearer ${accessToken} extra`]) {
      assertRejected(t, await app.inject({ method: 'GET', url: '/me', headers: { authorization: header } }), 'FTS_TOKEN_INVALID')
    }
  })

  t.test('the Bearer header wins over the cookie', async (t) => {
    const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Bearer nope' }, cookies: { access_token: accessToken } })
    assertRejected(t, response, 'FTS_TOKEN_INVALID')
  })

  t.test('a token in the query string is ignored', async (t) => {
    assertRejected(t, await app.inject({ method: 'GET', url: `/me?access_token=${accessToken}` }), 'FTS_TOKEN_MISSING')
  })
})

t.test('refresh tokens', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })

  t.test('forged and confused refresh tokens are rejected and never touch the session', async (t) => {
    const tokens = await login(app, 'bob')
    const real = payloadOf(tokens.refreshToken)
    const named = { sub: real.sub, sid: real.sid, jti: JTI, iat: now(), exp: now() + 600, mx: now() + 3600 }
    const cases: Array<[string, string, string]> = [
      ['signed with another key', craft(RT, named, Buffer.alloc(32, 9)), 'FTS_TOKEN_INVALID'],
      ['signed with the access key', craft(RT, named, KEYS.access), 'FTS_TOKEN_INVALID'],
      ['an access token', tokens.accessToken, 'FTS_TOKEN_INVALID'],
      ['an access token\'s typ under the refresh key', craft(AT, named, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['alg none', craft({ alg: 'none', typ: 'rt+jwt' }, named, null), 'FTS_TOKEN_INVALID'],
      ['a malformed jti', craft(RT, { ...named, jti: 'short' }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['claims that are not an object', craft(RT, { ...named, clm: [1] }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['claims that are null', craft(RT, { ...named, clm: null }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['a client id that is not a string', craft(RT, { ...named, cid: 7 }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['a scope that is not a string', craft(RT, { ...named, scp: ['read'] }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['a tampered payload', tokens.refreshToken.replace(/\.[^.]+\./, `.${Buffer.from(JSON.stringify({ ...real, jti: JTI })).toString('base64url')}.`), 'FTS_TOKEN_INVALID'],
      ['= appended', `${tokens.refreshToken}=`, 'FTS_TOKEN_INVALID'],
      ['without the absolute lifetime claim', craft(RT, { ...named, mx: undefined }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['with a non-numeric absolute lifetime', craft(RT, { ...named, mx: 'soon' }, KEYS.refresh), 'FTS_TOKEN_INVALID'],
      ['expired', craft(RT, { ...named, iat: now() - 100, exp: now() - 50 }, KEYS.refresh), 'FTS_TOKEN_EXPIRED'],
      ['expired at the session\'s absolute end', craft(RT, { ...named, iat: now() - 100, exp: now() - 50, mx: now() - 50 }, KEYS.refresh), 'FTS_SESSION_EXPIRED']
    ]
    for (const [name, token, code] of cases) {
      const response = await refresh(app, token)
      t.equal(response.statusCode, 401, name)
      t.equal(response.json().code, code, name)
    }
    const after = await refresh(app, tokens.refreshToken)
    t.equal(after.statusCode, 200, 'the real refresh token still works: no forgery reached the session')
  })

  t.test('a well-signed token for a session that does not exist is a revoked session', async (t) => {
    const token = craft(RT, { sub: 'nobody', sid: SID, jti: JTI, iat: now(), exp: now() + 600, mx: now() + 3600 }, KEYS.refresh)
    const response = await refresh(app, token)
    t.equal(response.statusCode, 401)
    t.equal(response.json().code, 'FTS_SESSION_REVOKED')
  })
})

t.test('issuer and audience are written and required', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, issuer: 'https://id.example', audience: 'api' })
  const tokens = await login(app, 'carol')
  t.match(payloadOf(tokens.accessToken), { iss: 'https://id.example', aud: 'api' })
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })).statusCode, 200)
  const foreign = craft(AT, accessPayload({ iss: 'https://evil.example', aud: 'api' }), KEYS.access)
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${foreign}` } })).statusCode, 401)
  const noAudience = craft(AT, accessPayload({ iss: 'https://id.example' }), KEYS.access)
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${noAudience}` } })).statusCode, 401)
  t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200)
})

t.test('claims travel from login into every access token, and reserved names are refused', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url })
  const tokens = await login(app, 'dave', { role: 'admin' })
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })
  t.match(me.json(), { id: 'dave', role: 'admin' })
  const refreshed = (await refresh(app, tokens.refreshToken)).json()
  t.equal(payloadOf(refreshed.accessToken).role, 'admin', 'claims survive rotation')
  await t.rejects(app.tokenSessions.issue('dave', { claims: { sub: 'root' } }), /reserved/)
  await t.rejects(app.tokenSessions.issue('dave', { claims: [] as unknown as Record<string, unknown> }), /plain object/)
  await t.rejects(app.tokenSessions.issue('', {}), /user id/)
  await t.rejects(app.tokenSessions.issue(1.5, {}), /user id/)
  const numeric = await app.tokenSessions.issue(42)
  t.equal(payloadOf(numeric.accessToken).sub, '42', 'numeric ids become strings')
})
