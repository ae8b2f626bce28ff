// Step-up authentication (RFC 9470): access tokens say when and how the user last proved
// who they are (auth_time, acr, amr), a refresh never renews it, and a route may require
// a recent or a stronger one, with a challenge a standard client parses.
import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { DPoP, WWWAuthenticateChallengeError, allowInsecureRequests, protectedResourceRequest, type CryptoKeyPair, type WWWAuthenticateChallenge } from 'oauth4webapi'
import { tokenResponse, type TokenSessionsOptions } from '../lib/index.js'
import { buildApp, login, refresh } from './helpers/app.js'
import { KEYS, craft, payloadOf } from './helpers/jwt.js'

const RT = { alg: 'HS256', typ: 'rt+jwt' }
const AT = { alg: 'HS256', typ: 'JWT' }

/** An app with routes that require a recent login, a strong one, or either of two classes, and a login that says how. */
async function stepUpApp (t: Test, options: Partial<TokenSessionsOptions> = {}): Promise<{ app: FastifyInstance, served: string[] }> {
  const served: string[] = []
  const app = await buildApp(t, options, {
    setup: (app) => {
      app.post<{ Body: { userId: string, acr?: string, amr?: string[], authenticatedAt?: number } }>('/login-as', async (request, reply) => {
        const { userId, ...how } = request.body
        return tokenResponse(await reply.issueTokens(userId, { ...how, transport: 'body' }))
      })
      app.post<{ Body: { acr?: string, amr?: string[], authenticatedAt?: number } | undefined }>('/reauthenticate', { onRequest: app.authenticate }, async (request, reply) => {
        return tokenResponse(await reply.stepUp(request.body ?? {}))
      })
      // A route that forgot authenticate: the app's bug, said at once.
      app.post('/reauthenticate-unauthenticated', async (_request, reply) => {
        try {
          return await reply.stepUp({})
        } catch (error) {
          return { name: (error as Error).name, message: (error as Error).message }
        }
      })
      /** A step-up after the app changed request.user: the token decides, not what the app set. */
      const changedUser = (path: string, change: Record<string, unknown>): void => {
        app.post(path, {
          onRequest: app.authenticate,
          preHandler: async (request) => { Object.assign(request.user as unknown as Record<string, unknown>, change) }
        }, async (_request, reply) => tokenResponse(await reply.stepUp({})))
      }
      // Another session's user put on the request.
      changedUser('/reauthenticate-swapped', { sessionId: 'another-session' })
      // A claim added for this one request (a preHandler's permissions).
      changedUser('/reauthenticate-decorated', { permissions: ['all'] })
      // A session ended between authenticate and the step-up (another device's logout-all).
      app.post('/reauthenticate-ended', { onRequest: app.authenticate }, async (request, reply) => {
        const { id, sessionId } = request.user as { id: string, sessionId: string }
        await app.tokenSessions.revokeSession(id, sessionId)
        return tokenResponse(await reply.stepUp({}))
      })
      app.get('/recent', { onRequest: app.authenticate.require({ maxAge: 300 }) }, async (request) => { served.push('recent'); return request.user })
      app.get('/strong', { onRequest: app.authenticate.require({ acr: 'mfa' }) }, async () => { served.push('strong'); return {} })
      app.get('/either', { onRequest: app.authenticate.require({ maxAge: 60, acr: ['mfa', 'hwk'] }) }, async () => { served.push('either'); return {} })
    }
  })
  return { app, served }
}

async function loginAs (app: FastifyInstance, body: Record<string, unknown>): Promise<{ accessToken: string, refreshToken: string }> {
  const response = await app.inject({ method: 'POST', url: '/login-as', payload: body })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

async function get (app: FastifyInstance, url: string, accessToken: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${accessToken}` } })
}

t.test('access tokens carry auth_time, acr and amr; a refresh never renews them', async (t) => {
  const { app } = await stepUpApp(t)
  const before = Math.floor(Date.now() / 1000)
  const tokens = await loginAs(app, { userId: 'ada', acr: 'mfa', amr: ['pwd', 'otp'] })
  const access = payloadOf(tokens.accessToken)
  t.ok((access.auth_time as number) >= before && (access.auth_time as number) <= Math.ceil(Date.now() / 1000), 'auth_time: when the login\'s request arrived')
  t.match(access, { acr: 'mfa', amr: ['pwd', 'otp'] })
  const user = (await get(app, '/recent', tokens.accessToken)).json()
  t.match(user, { authenticatedAt: (access.auth_time as number) * 1000, acr: 'mfa', amr: ['pwd', 'otp'] }, 'request.user says so')

  await new Promise((resolve) => setTimeout(resolve, 1100))
  const refreshed = (await refresh(app, tokens.refreshToken)).json()
  t.match(payloadOf(refreshed.accessToken), { auth_time: access.auth_time, acr: 'mfa', amr: ['pwd', 'otp'] }, 'the refresh keeps them as they were')
  t.ok((payloadOf(refreshed.accessToken).iat as number) > (access.auth_time as number), 'while iat moved on')

  const plain = await login(app, 'bob')
  t.notOk('acr' in payloadOf(plain.accessToken) || 'amr' in payloadOf(plain.accessToken), 'none given: none written')
  const past = Date.now() - 3_600_000
  const provider = await loginAs(app, { userId: 'cyd', authenticatedAt: past })
  t.equal(payloadOf(provider.accessToken).auth_time, Math.floor(past / 1000), 'authenticatedAt (a provider\'s auth_time) is the auth_time')
  const api = await app.tokenSessions.issue('dee')
  t.equal(payloadOf(api.accessToken).auth_time, Math.floor((payloadOf(api.accessToken).sst as number) / 1000), 'without it, the session\'s start')
  for (const [how, bad] of [['acr', { acr: 'has space' }], ['acr', { acr: '' }], ['acr', { acr: 'q"uote' }], ['amr', { amr: [] }], ['amr', { amr: ['p w d'] }], ['amr', { amr: 'pwd' }]] as const) {
    await t.rejects(app.tokenSessions.issue('dee', bad as never), { name: 'TypeError', message: new RegExp(`^fastify-token-sessions: ${how} must be`) }, JSON.stringify(bad))
  }
})

t.test('tokens from before auth_time existed: the session\'s start stands for it', async (t) => {
  const { app } = await stepUpApp(t)
  const tokens = await login(app, 'eve')
  const { auth_time: _auth, ...legacy } = payloadOf(tokens.refreshToken)
  const refreshed = await refresh(app, craft(RT, legacy, KEYS.refresh))
  t.equal(refreshed.statusCode, 200)
  const access = payloadOf(refreshed.json().accessToken)
  t.equal(access.auth_time, Math.floor((access.sst as number) / 1000), 'a legacy refresh token: the session\'s start')
  const { auth_time: _time, ...old } = access
  const user = (await get(app, '/recent', craft(AT, old, KEYS.access))).json()
  t.equal(user.authenticatedAt, access.sst, 'a legacy access token: its sst')
  for (const [name, value] of [['auth_time', '1'], ['auth_time', -1], ['acr', 1], ['amr', 'pwd'], ['amr', [1]]] as const) {
    const bad = await refresh(app, craft(RT, { ...payloadOf(refreshed.json().refreshToken), [name]: value }, KEYS.refresh))
    t.equal(bad.json().code, 'FTS_TOKEN_INVALID', `a refresh token whose ${name} is ${JSON.stringify(value)}`)
  }
})

t.test('a route that requires a recent login: 401 FTS_STEP_UP_REQUIRED with the challenge, before the route runs', async (t) => {
  const { app, served } = await stepUpApp(t)
  const fresh = await loginAs(app, { userId: 'fay' })
  t.equal((await get(app, '/recent', fresh.accessToken)).statusCode, 200, 'a login just now')
  const old = await loginAs(app, { userId: 'fay', authenticatedAt: Date.now() - 301_000 })
  const refused = await get(app, '/recent', old.accessToken)
  t.equal(refused.statusCode, 401)
  t.match(refused.json(), { code: 'FTS_STEP_UP_REQUIRED', statusCode: 401 })
  t.equal(refused.headers['www-authenticate'], 'Bearer error="insufficient_user_authentication", error_description="The last authentication is older than 300 seconds", max_age=300')
  t.same(served, ['recent'], 'the refused request never reached the route')
  const renewed = (await refresh(app, old.refreshToken)).json()
  t.equal((await get(app, '/recent', renewed.accessToken)).json().code, 'FTS_STEP_UP_REQUIRED', 'a refresh cannot satisfy it')
  t.equal((await get(app, '/recent', 'not-a-token')).headers['www-authenticate'], 'Bearer error="invalid_token"', 'a bad token is a bad token first')
})

t.test('a route that requires a class of authentication', async (t) => {
  const { app } = await stepUpApp(t)
  const password = await loginAs(app, { userId: 'gus', acr: 'pwd' })
  const refused = await get(app, '/strong', password.accessToken)
  t.equal(refused.json().code, 'FTS_STEP_UP_REQUIRED')
  t.equal(refused.headers['www-authenticate'], 'Bearer error="insufficient_user_authentication", error_description="An authentication of class mfa is required", acr_values="mfa"')
  t.equal((await get(app, '/strong', (await loginAs(app, { userId: 'gus' })).accessToken)).statusCode, 401, 'no acr at all')
  t.equal((await get(app, '/strong', (await loginAs(app, { userId: 'gus', acr: 'mfa' })).accessToken)).statusCode, 200, 'the class asked for')
  t.equal((await get(app, '/either', (await loginAs(app, { userId: 'gus', acr: 'hwk' })).accessToken)).statusCode, 200, 'any class of the list')
  const both = await get(app, '/either', (await loginAs(app, { userId: 'gus', acr: 'pwd', authenticatedAt: Date.now() - 61_000 })).accessToken)
  t.equal(both.headers['www-authenticate'], 'Bearer error="insufficient_user_authentication", error_description="The last authentication is older than 60 seconds; an authentication of class mfa or hwk is required", max_age=60, acr_values="mfa hwk"')
})

t.test('a DPoP-bound token gets the challenge under the DPoP scheme, and oauth4webapi parses it', async (t) => {
  const { app } = await stepUpApp(t)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const key = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as unknown as CryptoKeyPair
  const dpop = DPoP({}, key)
  const headers = new Headers({ 'content-type': 'application/json' })
  await (dpop as unknown as { addProof: (url: URL, headers: Headers, htm: string) => Promise<void> }).addProof(new URL(`${url}/login-as`), headers, 'POST')
  const bound = await (await fetch(`${url}/login-as`, { method: 'POST', headers, body: JSON.stringify({ userId: 'hal', acr: 'pwd' }) })).json() as { accessToken: string, tokenType: string }
  t.equal(bound.tokenType, 'DPoP')
  const plain = await loginAs(app, { userId: 'hal', acr: 'pwd' })

  const challenges = async (accessToken: string, options: { DPoP?: typeof dpop }): Promise<WWWAuthenticateChallenge[]> => {
    try {
      await protectedResourceRequest(accessToken, 'GET', new URL(`${url}/either`), undefined, undefined, { [allowInsecureRequests]: true, ...options })
    } catch (error) {
      if (error instanceof WWWAuthenticateChallengeError) return error.cause
      throw error
    }
    throw new Error('no challenge')
  }
  const [bearer] = await challenges(plain.accessToken, {})
  t.match(bearer, { scheme: 'bearer', parameters: { error: 'insufficient_user_authentication', max_age: '60', acr_values: 'mfa hwk', error_description: /class mfa or hwk/ } }, 'Bearer, as oauth4webapi reads it')
  const [proofed] = await challenges(bound.accessToken, { DPoP: dpop })
  t.match(proofed, { scheme: 'dpop', parameters: { error: 'insufficient_user_authentication', max_age: '60', acr_values: 'mfa hwk', algs: /ES256/ } }, 'DPoP, with its algs')
})

t.test('authenticate.require refuses a requirement that makes no sense, when the route is declared', async (t) => {
  const { app } = await stepUpApp(t)
  for (const bad of [{}, { maxAge: -1 }, { maxAge: 0 }, { maxAge: 1.5 }, { maxAge: '300' }, { acr: '' }, { acr: [] }, { acr: ['a b'] }, { acr: 'q"' }, null]) {
    t.throws(() => app.authenticate.require(bad as never), TypeError, JSON.stringify(bad))
  }
  // auth_time counts whole seconds: maxAge 0 could never be met.
  t.type(app.authenticate.require({ maxAge: 1 }), 'function', 'maxAge 1: the shortest')
})

t.test('a re-authentication steps the same session up: a new pair, the old refresh token reuse even within grace', async (t) => {
  const { app } = await stepUpApp(t)
  const old = await loginAs(app, { userId: 'ivy', acr: 'mfa', authenticatedAt: Date.now() - 600_000 })
  t.equal((await get(app, '/recent', old.accessToken)).statusCode, 401, 'too old before')
  const answer = await app.inject({
    method: 'POST', url: '/reauthenticate', headers: { authorization: `Bearer ${old.accessToken}`, 'x-token-transport': 'body' }, payload: { acr: 'pwd', amr: ['pwd'] }
  })
  t.equal(answer.statusCode, 200)
  const stepped = answer.json()
  const access = payloadOf(stepped.accessToken)
  t.equal(access.sid, payloadOf(old.accessToken).sid, 'the same session')
  t.equal(access.sst, payloadOf(old.accessToken).sst, 'its start kept')
  t.ok(Math.abs((access.auth_time as number) - Date.now() / 1000) < 3, 'auth_time: now')
  t.match(access, { acr: 'pwd', amr: ['pwd'] }, 'acr and amr of this authentication: an older mfa does not carry over')
  t.equal((await get(app, '/recent', stepped.accessToken)).statusCode, 200, 'the route now lets it through')
  t.equal((await app.tokenSessions.listSessions('ivy')).sessions.length, 1, 'one entry in the session list')
  const rotated = (await refresh(app, stepped.refreshToken)).json()
  t.match(payloadOf(rotated.accessToken), { auth_time: access.auth_time, acr: 'pwd' }, 'the new refresh token carries the step-up on')
  const replayed = await refresh(app, old.refreshToken)
  t.equal(replayed.json().code, 'FTS_TOKEN_REUSED', 'the replaced refresh token, seconds later (reuseGrace 10 s): reuse')
  t.equal((await refresh(app, rotated.refreshToken)).json().code, 'FTS_SESSION_REVOKED', 'and the session is over')
})

t.test('a re-authentication over cookies sets the new cookies, and needs the anti-CSRF header', async (t) => {
  const { app } = await stepUpApp(t)
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'jo' } })
  const cookie = login.cookies.map((c: { name: string, value: string }) => `${c.name}=${c.value}`).join('; ')
  const answer = await app.inject({ method: 'POST', url: '/reauthenticate', headers: { cookie, 'x-requested-with': 'fetch' }, payload: {} })
  t.equal(answer.statusCode, 200)
  t.ok(answer.cookies.some((c: { name: string }) => c.name.endsWith('refresh_token')), 'a new refresh cookie')
  const refused = await app.inject({ method: 'POST', url: '/reauthenticate', headers: { cookie }, payload: {} })
  t.equal(refused.json().code, 'FTS_CSRF_REJECTED', 'without the anti-CSRF header, refused')
})

t.test('a DPoP-bound session steps up with a proof, and stays bound to the same key', async (t) => {
  const { app } = await stepUpApp(t)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const key = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as unknown as CryptoKeyPair
  const dpop = DPoP({}, key)
  const prove = async (path: string, headers = new Headers()): Promise<Headers> => {
    await (dpop as unknown as { addProof: (url: URL, headers: Headers, htm: string) => Promise<void> }).addProof(new URL(`${url}${path}`), headers, 'POST')
    return headers
  }
  const loginHeaders = await prove('/login-as', new Headers({ 'content-type': 'application/json' }))
  const bound = await (await fetch(`${url}/login-as`, { method: 'POST', headers: loginHeaders, body: JSON.stringify({ userId: 'kim', authenticatedAt: Date.now() - 600_000 }) })).json() as { accessToken: string, refreshToken: string }
  const jkt = (payloadOf(bound.accessToken).cnf as { jkt: string }).jkt

  const body = JSON.stringify({ amr: ['pwd'] })
  const unproven = await fetch(`${url}/reauthenticate`, { method: 'POST', headers: { authorization: `DPoP ${bound.accessToken}`, 'content-type': 'application/json' }, body })
  t.equal(unproven.status, 401, 'the bound access token without its proof: refused before any step-up')
  // oauth4webapi's resource request: the proof carries the access token's hash (ath).
  const answer = await protectedResourceRequest(bound.accessToken, 'POST', new URL(`${url}/reauthenticate`), new Headers({ 'content-type': 'application/json' }), body, { [allowInsecureRequests]: true, DPoP: dpop })
  t.equal(answer.status, 200)
  const stepped = await answer.json() as { accessToken: string, refreshToken: string, tokenType: string }
  t.equal(stepped.tokenType, 'DPoP', 'the new pair is DPoP-bound')
  t.equal((payloadOf(stepped.accessToken).cnf as { jkt: string }).jkt, jkt, 'to the same key')
  t.ok(Math.abs((payloadOf(stepped.accessToken).auth_time as number) - Date.now() / 1000) < 3, 'auth_time: now')

  const refreshWith = async (headers: Headers): Promise<Response> => {
    headers.set('content-type', 'application/json')
    return await fetch(`${url}/auth/refresh`, { method: 'POST', headers, body: JSON.stringify({ refreshToken: stepped.refreshToken }) })
  }
  const unprovenRefresh = await refreshWith(new Headers())
  t.equal(unprovenRefresh.status, 400, 'its refresh token without a proof: refused')
  t.equal((await unprovenRefresh.json() as { code: string }).code, 'FTS_DPOP_PROOF_INVALID')
  const renewed = await refreshWith(await prove('/auth/refresh'))
  t.equal(renewed.status, 200, 'with a proof by the key: renewed')
  t.equal((payloadOf((await renewed.json() as { accessToken: string }).accessToken).cnf as { jkt: string }).jkt, jkt)
})

t.test('a session that ended before the step-up reached the store: 401 FTS_SESSION_REVOKED, no tokens', async (t) => {
  const { app } = await stepUpApp(t)
  const old = await loginAs(app, { userId: 'lou' })
  const answer = await app.inject({ method: 'POST', url: '/reauthenticate-ended', headers: { authorization: `Bearer ${old.accessToken}`, 'x-token-transport': 'body' }, payload: {} })
  t.equal(answer.statusCode, 401)
  t.equal(answer.json().code, 'FTS_SESSION_REVOKED')
  t.notOk('accessToken' in answer.json(), 'no new pair')
  t.equal((await app.tokenSessions.listSessions('lou')).sessions.length, 0, 'and no session came back')
})

t.test('authenticatedAt must be a time that has come: a future one would pass every maxAge', async (t) => {
  const { app } = await stepUpApp(t)
  for (const bad of [Date.now() + 3_600_000, 'yesterday', Number.NaN, -1]) {
    await t.rejects(app.tokenSessions.issue('max', { authenticatedAt: bad as number }), { name: 'TypeError', message: /authenticatedAt must be when the credentials were checked/ }, String(bad))
  }
  t.equal(payloadOf((await app.tokenSessions.issue('max', { authenticatedAt: Date.now() + 5000 })).accessToken).sub, 'max', 'a few seconds ahead (another server\'s clock): taken')
})

t.test('a header-borne token steps up into the body; the claims come from the verified token, not from request.user', async (t) => {
  const { app } = await stepUpApp(t)
  const old = await loginAs(app, { userId: 'meg' })
  const plain = await app.inject({ method: 'POST', url: '/reauthenticate', headers: { authorization: `Bearer ${old.accessToken}` }, payload: {} })
  t.equal(plain.statusCode, 200)
  t.type(plain.json().refreshToken, 'string', 'without X-Token-Transport: the new refresh token in the body, where a Bearer client can keep it')
  const decorated = await app.inject({ method: 'POST', url: '/reauthenticate-decorated', headers: { authorization: `Bearer ${plain.json().accessToken as string}` }, payload: {} })
  t.equal(decorated.statusCode, 200)
  t.notOk('permissions' in payloadOf(decorated.json().accessToken), 'what the app set on request.user for one request stays out of the tokens')
  const names = Object.keys(payloadOf(decorated.json().accessToken))
  t.same(names.filter((name) => ['id', 'sessionId', 'sessionStartedAt', 'expiresAt', 'authenticatedAt'].includes(name)), [], 'nor do the fields the plugin puts on request.user')
})

t.test('reply.stepUp on a route that did not authenticate: a TypeError that says so', async (t) => {
  const { app } = await stepUpApp(t)
  const answer = await app.inject({ method: 'POST', url: '/reauthenticate-unauthenticated', payload: {} })
  t.match(answer.json(), { name: 'TypeError', message: /stepUp needs an authenticated request: run authenticate first/ })
})

t.test('a step-up asks the claims hook, as a refresh does, and keeps the grant\'s scope', async (t) => {
  let role = 'member'
  const { app } = await stepUpApp(t, { claims: async () => ({ role }) })
  const old = await app.tokenSessions.issue('nia', { scope: 'read write' })
  t.equal(payloadOf(old.accessToken).role, 'member')
  role = 'admin'
  const answer = await app.inject({ method: 'POST', url: '/reauthenticate', headers: { authorization: `Bearer ${old.accessToken}` }, payload: {} })
  t.equal(answer.statusCode, 200)
  const stepped = payloadOf(answer.json().accessToken)
  t.equal(stepped.role, 'admin', 'the claims as the hook says them now')
  t.equal(stepped.scope, 'read write', 'the scope kept')
})

t.test('the user on the request must be the access token\'s; the time of the check may be given', async (t) => {
  const { app } = await stepUpApp(t)
  const old = await loginAs(app, { userId: 'oz' })
  const swapped = await app.inject({ method: 'POST', url: '/reauthenticate-swapped', headers: { authorization: `Bearer ${old.accessToken}` }, payload: {} })
  t.equal(swapped.statusCode, 401)
  t.equal(swapped.json().code, 'FTS_TOKEN_INVALID', 'another session\'s user: refused, nothing stepped up')
  const at = Date.now() - 30_000
  const given = await app.inject({ method: 'POST', url: '/reauthenticate', headers: { authorization: `Bearer ${old.accessToken}` }, payload: { authenticatedAt: at } })
  t.equal(payloadOf(given.json().accessToken).auth_time, Math.floor(at / 1000), 'auth_time: when the app says it checked')
})
