// The OAuth endpoints as a native app uses them, through oauth4webapi, unmodified: the
// refresh grant (RFC 6749 §6), revocation (RFC 7009) and DPoP (RFC 9449), with its nonces,
// against a real Redis; then the attacks: stolen tokens, stolen proofs, confused clients.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import {
  DPoP, None, allowInsecureRequests, isDPoPNonceError, processRefreshTokenResponse, processRevocationResponse, protectedResourceRequest,
  refreshTokenGrantRequest, revocationRequest, type AuthorizationServer, type Client, type CryptoKeyPair, type DPoPHandle
} from 'oauth4webapi'
import type { AuditEvent, AuditHookName } from '../lib/index.js'
import { buildApp, untilUp } from './helpers/app.js'
import { athOf, craftedProof, dpopKey } from './helpers/dpop.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

const CLIENT: Client = { client_id: 'native-app', token_endpoint_auth_method: 'none' }
const insecure = { [allowInsecureRequests]: true } as const

/** What the DPoP handle does beside what its typings show: it signs a proof for any request. */
interface ProofMaker { addProof: (url: URL, headers: Headers, htm: string, accessToken?: string) => Promise<void> }

interface Served {
  app: FastifyInstance
  url: string
  as: AuthorizationServer
  events: Array<[AuditHookName, AuditEvent]>
}

async function served (t: Parameters<typeof buildApp>[0], redisUrl: string, options: Record<string, unknown> = {}): Promise<Served> {
  const events: Array<[AuditHookName, AuditEvent]> = []
  const hook = (name: AuditHookName) => (event: AuditEvent) => { events.push([name, event]) }
  const app = await buildApp(t, {
    redis: redisUrl,
    clientId: 'native-app',
    onRefresh: hook('onRefresh'),
    onLogout: hook('onLogout'),
    onSessionRevoked: hook('onSessionRevoked'),
    onReuseDetected: hook('onReuseDetected'),
    ...options
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url, events, as: { issuer: url, token_endpoint: `${url}/auth/token`, revocation_endpoint: `${url}/auth/revoke` } }
}

async function newKey (algorithm: 'ES256' | 'EdDSA' = 'ES256'): Promise<CryptoKeyPair> {
  const params = algorithm === 'ES256' ? { name: 'ECDSA', namedCurve: 'P-256' } : { name: 'Ed25519' }
  return await crypto.subtle.generateKey(params, false, ['sign', 'verify']) as unknown as CryptoKeyPair
}

/** A native app's login to the app's own route, with a DPoP proof when it has a key. */
async function nativeLogin (server: Served, userId: string, dpop?: DPoPHandle): Promise<{ access_token: string, refresh_token: string, token_type: string }> {
  const url = new URL(`${server.url}/auth/login`)
  const headers = new Headers({ 'content-type': 'application/json', 'x-token-transport': 'body' })
  if (dpop !== undefined) await (dpop as unknown as ProofMaker).addProof(url, headers, 'POST')
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ userId }) })
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`)
  const body = await response.json() as { accessToken: string, refreshToken: string, tokenType: string }
  return { access_token: body.accessToken, refresh_token: body.refreshToken, token_type: body.tokenType }
}

/** The refresh grant through oauth4webapi; resolves to its parsed answer or rejects with its error. */
async function grant (server: Served, refreshToken: string, options: { dpop?: DPoPHandle, client?: Client, scope?: string } = {}) {
  const response = await refreshTokenGrantRequest(server.as, options.client ?? CLIENT, None(), refreshToken, {
    ...insecure,
    ...(options.dpop === undefined ? {} : { DPoP: options.dpop }),
    ...(options.scope === undefined ? {} : { additionalParameters: { scope: options.scope } })
  })
  return await processRefreshTokenResponse(server.as, options.client ?? CLIENT, response)
}

/** A raw form POST to one of the endpoints. */
async function post (server: Served, path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(`${server.url}/auth/${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body })
}

async function me (server: Served, accessToken: string, dpop?: DPoPHandle): Promise<Response> {
  return await protectedResourceRequest(accessToken, 'GET', new URL(`${server.url}/me`), undefined, undefined, {
    ...insecure,
    ...(dpop === undefined ? {} : { DPoP: dpop })
  }).catch((error: { cause?: unknown, response?: Response }) => {
    // oauth4webapi rejects a 401 with a challenge; the response is still what the test reads.
    if (error.response instanceof Response) return error.response
    throw error
  })
}

t.test('the refresh grant, as oauth4webapi sends and checks it', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url)

  t.test('form body in, RFC 6749 answer out, the old token dead', async (t) => {
    const first = await nativeLogin(server, 'alice')
    const response = await refreshTokenGrantRequest(server.as, CLIENT, None(), first.refresh_token, insecure)
    t.equal(response.headers.get('cache-control'), 'no-store')
    t.notOk(response.headers.get('set-cookie'), 'no cookie set')
    const answer = await processRefreshTokenResponse(server.as, CLIENT, response)
    t.match(answer, { token_type: 'bearer', access_token: String, refresh_token: String, expires_in: Number })
    t.equal(payloadOf(answer.access_token).client_id, 'native-app')
    t.equal((await me(server, answer.access_token)).status, 200)
    const again = await grant(server, answer.refresh_token as string)
    t.ok(again.refresh_token, 'the new refresh token works')
  })

  t.test('errors as RFC 6749 §5.2 says, none of which spends the token', async (t) => {
    const session = await nativeLogin(server, 'bob')
    const token = encodeURIComponent(session.refresh_token)
    const cases: Array<[string, string, Record<string, string>, number, string]> = [
      ['a JSON body', JSON.stringify({ grant_type: 'refresh_token', refresh_token: session.refresh_token }), { 'content-type': 'application/json' }, 400, 'invalid_request'],
      ['no grant_type', `refresh_token=${token}`, {}, 400, 'invalid_request'],
      ['another grant', 'grant_type=password&username=bob&password=x', {}, 400, 'unsupported_grant_type'],
      ['no refresh_token', 'grant_type=refresh_token', {}, 400, 'invalid_request'],
      ['refresh_token twice', `grant_type=refresh_token&refresh_token=${token}&refresh_token=${token}`, {}, 400, 'invalid_request'],
      ['a forged token', 'grant_type=refresh_token&refresh_token=eyJhbGciOiJIUzI1NiJ9.e30.AAAA', {}, 400, 'invalid_grant'],
      ['another client', `grant_type=refresh_token&refresh_token=${token}&client_id=evil-app`, {}, 400, 'invalid_grant'],
      ['a scope never granted', `grant_type=refresh_token&refresh_token=${token}&scope=admin`, {}, 400, 'invalid_scope'],
      ['a proof for an unbound session', `grant_type=refresh_token&refresh_token=${token}`, { dpop: await proofFor(server, '/auth/token') }, 400, 'invalid_dpop_proof']
    ]
    for (const [name, body, headers, status, error] of cases) {
      const response = await post(server, 'token', body, headers)
      t.equal(response.status, status, name)
      const answer = await response.json() as { error: string, error_description: string }
      t.equal(answer.error, error, name)
      t.equal(response.headers.get('cache-control'), 'no-store', name)
      t.notMatch(answer.error_description, /at |\n/, `${name}: no stack in the description`)
    }
    t.ok((await grant(server, session.refresh_token)).access_token, 'the token still works after all of them')
  })

  t.test('a refresh cookie is not read, and no cookie is set', async (t) => {
    const session = await nativeLogin(server, 'carol')
    const response = await post(server, 'token', 'grant_type=refresh_token', { cookie: `__Secure-fts_refresh=${session.refresh_token}; fts_refresh=${session.refresh_token}` })
    t.equal(response.status, 400)
    t.equal((await response.json() as { error: string }).error, 'invalid_request')
    t.notOk(response.headers.get('set-cookie'))
    t.notOk(response.headers.get('access-control-allow-origin'), 'no CORS')
  })

  t.test('a narrower scope goes into the access token; the refresh token keeps the grant', async (t) => {
    const scoped = await buildApp(t, { redis: redis.url, clientId: 'native-app' })
    const tokens = await scoped.tokenSessions.issue('dave', { scope: 'read write' })
    const url = await scoped.listen({ port: 0, host: '127.0.0.1' })
    const scopedServer = { ...server, app: scoped, url, as: { issuer: url, token_endpoint: `${url}/auth/token` } }
    const narrow = await grant(scopedServer, tokens.refreshToken, { scope: 'read' })
    t.equal(narrow.scope, 'read')
    t.equal(payloadOf(narrow.access_token).scope, 'read')
    const full = await grant(scopedServer, narrow.refresh_token as string)
    t.equal(full.scope, 'read write', 'without scope, the scope granted')
    await t.rejects(grant(scopedServer, full.refresh_token as string, { scope: 'read admin' }), { error: 'invalid_scope' } as never)
  })
})

/** A proof by a fresh key for a POST to `path`, as oauth4webapi makes one. */
async function proofFor (server: Served, path: string, key?: CryptoKeyPair): Promise<string> {
  const headers = new Headers()
  await (DPoP(CLIENT, key ?? await newKey()) as unknown as ProofMaker).addProof(new URL(`${server.url}${path}`), headers, 'POST')
  return headers.get('dpop') as string
}

t.test('revocation (RFC 7009) ends the session on every instance', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url)
  const other = await served(t, redis.url)

  t.test('by refresh token or access token, with or without a hint', async (t) => {
    for (const [kind, hint] of [['refresh_token', undefined], ['access_token', undefined], ['access_token', 'access_token'], ['refresh_token', 'access_token']] as const) {
      const session = await nativeLogin(server, 'erin')
      t.equal((await me(other, session.access_token)).status, 200)
      const response = await revocationRequest(server.as, CLIENT, None(), kind === 'refresh_token' ? session.refresh_token : session.access_token, {
        ...insecure, ...(hint === undefined ? {} : { additionalParameters: { token_type_hint: hint } })
      })
      t.equal(response.status, 200, `${kind}, hint ${hint ?? 'none'}`)
      await processRevocationResponse(response)
      await t.rejects(grant(server, session.refresh_token), { error: 'invalid_grant' } as never, 'the refresh token is dead')
      t.equal((await me(other, session.access_token)).status, 401, 'the access token is refused on the other instance at once')
    }
  })

  t.test('an unknown or invalid token is a 200 all the same', async (t) => {
    for (const token of ['nonsense', 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA', 'a.bnVsbA.c', 'a.!!.c']) {
      for (const hint of ['refresh_token', 'access_token']) {
        const response = await revocationRequest(server.as, CLIENT, None(), token, { ...insecure, additionalParameters: { token_type_hint: hint } })
        t.equal(response.status, 200, `${token}, hint ${hint}`)
      }
    }
    const missing = await post(server, 'revoke', 'token_type_hint=refresh_token')
    t.equal(missing.status, 400)
    t.equal((await missing.json() as { error: string }).error, 'invalid_request')
  })

  t.test('a superseded refresh token is reuse here too', async (t) => {
    const reuse = await served(t, redis.url, { reuseGrace: 0 })
    const session = await nativeLogin(reuse, 'frank')
    const next = await grant(reuse, session.refresh_token)
    reuse.events.length = 0
    t.equal((await revocationRequest(reuse.as, CLIENT, None(), session.refresh_token, insecure)).status, 200)
    t.same(reuse.events.map(([name]) => name), ['onReuseDetected', 'onSessionRevoked'], 'the alarm')
    await t.rejects(grant(reuse, next.refresh_token as string), { error: 'invalid_grant' } as never, 'the session is over')
  })

  t.test('a DPoP-bound access token is revoked with a proof by its key naming it; a session of no client by no client', async (t) => {
    const dpop = DPoP(CLIENT, await newKey())
    const bound = await nativeLogin(server, 'hugo', dpop)
    const headers = new Headers()
    await (dpop as unknown as ProofMaker).addProof(new URL(server.as.revocation_endpoint as string), headers, 'POST', bound.access_token)
    t.equal((await revocationRequest(server.as, CLIENT, None(), bound.access_token, { ...insecure, headers })).status, 200)
    await t.rejects(grant(server, bound.refresh_token, { dpop }), { error: 'invalid_grant' } as never, 'its session is over')
    const anonymous = await served(t, redis.url, { clientId: undefined })
    const session = await nativeLogin(anonymous, 'hugo')
    t.equal(payloadOf(session.access_token).client_id, undefined, 'a session issued to no client')
    const refused = await post(anonymous, 'revoke', `token=${session.access_token}&client_id=native-app`)
    t.same([refused.status, (await refused.json() as { error: string }).error], [400, 'unauthorized_client'], 'another client: refused')
    t.equal((await post(anonymous, 'revoke', `token=${session.access_token}`)).status, 200, 'no client: revoked')
    t.equal((await me(anonymous, session.access_token)).status, 401)
  })

  t.test('another client\'s token is refused and stays live', async (t) => {
    const session = await nativeLogin(server, 'gina')
    const response = await revocationRequest(server.as, { client_id: 'evil-app', token_endpoint_auth_method: 'none' }, None(), session.refresh_token, insecure)
    t.equal(response.status, 400)
    t.equal((await response.json() as { error: string }).error, 'unauthorized_client', 'RFC 7009 §2.1')
    t.ok((await grant(server, session.refresh_token)).access_token)
  })
})

t.test('DPoP-bound sessions', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url)

  for (const algorithm of ['ES256', 'EdDSA'] as const) {
    t.test(`${algorithm}: bound at login, refreshed and used with proofs by the key`, async (t) => {
      const key = await newKey(algorithm)
      const dpop = DPoP(CLIENT, key)
      const session = await nativeLogin(server, `henry-${algorithm}`, dpop)
      t.equal(session.token_type, 'DPoP')
      const jkt = await dpop.calculateThumbprint()
      t.same(payloadOf(session.access_token).cnf, { jkt })
      t.equal((await me(server, session.access_token, dpop)).status, 200, 'a resource request with its proof')
      const bearer = await me(server, session.access_token)
      t.equal(bearer.status, 401, 'the bound token as a Bearer token: refused')
      const next = await grant(server, session.refresh_token, { dpop })
      t.equal(next.token_type, 'dpop')
      t.same(payloadOf(next.access_token).cnf, { jkt }, 'the new access token is bound too')
      t.equal((await me(server, next.access_token, dpop)).status, 200)
    })
  }

  t.test('a bound session refuses a refresh without a proof, or by another key, and spends nothing', async (t) => {
    const dpop = DPoP(CLIENT, await newKey())
    const session = await nativeLogin(server, 'ivy', dpop)
    await t.rejects(grant(server, session.refresh_token), { error: 'invalid_dpop_proof' } as never, 'no proof')
    await t.rejects(grant(server, session.refresh_token, { dpop: DPoP(CLIENT, await newKey()) }), { error: 'invalid_dpop_proof' } as never, 'a thief\'s own key')
    const plain = await fetch(`${server.url}/auth/refresh`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: session.refresh_token })
    })
    t.equal(plain.status, 400, 'the JSON refresh route checks the binding too')
    t.equal((await plain.json() as { code: string }).code, 'FTS_DPOP_PROOF_INVALID')
    t.ok((await grant(server, session.refresh_token, { dpop })).access_token, 'the owner refreshes with the same token')
  })

  t.test('a proof replayed at the token endpoint is refused', async (t) => {
    const key = await newKey()
    const session = await nativeLogin(server, 'jack', DPoP(CLIENT, key))
    const proof = await proofFor(server, '/auth/token', key)
    const body = `grant_type=refresh_token&refresh_token=${encodeURIComponent(session.refresh_token)}`
    const first = await post(server, 'token', body, { dpop: proof })
    t.equal(first.status, 200)
    const second = await post(server, 'token', body, { dpop: proof })
    t.equal(second.status, 400, 'inside the grace window a replay would get the successor: not with a used proof')
    t.equal((await second.json() as { error: string }).error, 'invalid_dpop_proof')
  })

  t.test('proofs that do not fit the request are refused', async (t) => {
    const key = await newKey()
    const dpop = DPoP(CLIENT, key)
    const session = await nativeLogin(server, 'kate', dpop)
    const body = `grant_type=refresh_token&refresh_token=${encodeURIComponent(session.refresh_token)}`
    for (const [name, proof] of [
      ['for another URL', await proofFor(server, '/auth/refresh', key)],
      ['for another host', await (async () => {
        const headers = new Headers()
        await (DPoP(CLIENT, key) as unknown as ProofMaker).addProof(new URL('https://evil.example/auth/token'), headers, 'POST')
        return headers.get('dpop') as string
      })()],
      ['for another method', await (async () => {
        const headers = new Headers()
        await (DPoP(CLIENT, key) as unknown as ProofMaker).addProof(new URL(`${server.url}/auth/token`), headers, 'GET')
        return headers.get('dpop') as string
      })()],
      ['with its signature changed', (await proofFor(server, '/auth/token', key)).replace(/.$/, (c) => c === 'A' ? 'Q' : 'A')],
      ['not a JWS', 'not-a-proof']
    ] as const) {
      const response = await post(server, 'token', body, { dpop: proof })
      t.equal(response.status, 400, name)
      t.equal((await response.json() as { error: string }).error, 'invalid_dpop_proof', name)
    }
    const resource = await fetch(`${server.url}/me`, { headers: { authorization: `DPoP ${session.access_token}` } })
    t.equal(resource.status, 401, 'a bound access token without a proof')
    t.match(resource.headers.get('www-authenticate'), /^DPoP error="invalid_dpop_proof", algs="ES256/)
    t.ok((await grant(server, session.refresh_token, { dpop })).access_token, 'and the token was never spent')
  })

  t.test('a thief who refreshes a stolen unbound token first: the owner\'s next refresh trips reuse', async (t) => {
    const strict = await served(t, redis.url, { reuseGrace: 0 })
    const owner = DPoP(CLIENT, await newKey())
    const session = await nativeLogin(strict, 'leo')
    const stolen = await grant(strict, session.refresh_token)
    strict.events.length = 0
    await t.rejects(grant(strict, session.refresh_token, { dpop: owner }), { error: 'invalid_grant' } as never, 'reuse, whatever proof comes with it')
    t.same(strict.events.map(([name]) => name), ['onReuseDetected', 'onSessionRevoked'])
    await t.rejects(grant(strict, stolen.refresh_token as string), { error: 'invalid_grant' } as never, 'the thief\'s chain is dead')
  })

  t.test('racing refreshes of a bound token share one successor', async (t) => {
    const dpop = DPoP(CLIENT, await newKey())
    const session = await nativeLogin(server, 'mia', dpop)
    const answers = await Promise.all(Array.from({ length: 5 }, async () => await grant(server, session.refresh_token, { dpop })))
    // One successor id: the token strings differ when the race straddles a second (iat).
    t.equal(new Set(answers.map((answer) => payloadOf(answer.refresh_token as string).jti)).size, 1, 'one chain')
    t.ok((await grant(server, answers[0]?.refresh_token as string, { dpop })).access_token)
  })
})

t.test('server nonces, as oauth4webapi retries them', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url, { dpop: { nonces: true } })
  const dpop = DPoP(CLIENT, await newKey())
  // The first login carries no nonce: the answer names one, which the handle keeps.
  const url = new URL(`${server.url}/auth/login`)
  const headers = new Headers({ 'content-type': 'application/json', 'x-token-transport': 'body' })
  await (dpop as unknown as ProofMaker).addProof(url, headers, 'POST')
  const refused = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ userId: 'nina' }) })
  t.equal(refused.status, 400)
  t.equal((await refused.json() as { code: string }).code, 'FTS_DPOP_NONCE_REQUIRED')
  const nonce = refused.headers.get('dpop-nonce')
  t.match(nonce, /^[A-Za-z0-9_-]{22}$/)
  ;(dpop as unknown as { cacheNonce: (response: Response, url: URL) => void }).cacheNonce(refused, url)
  const session = await nativeLogin(server, 'nina', dpop)
  const next = await grant(server, session.refresh_token, { dpop })
  t.ok(next.access_token, 'the nonce serves every endpoint of the origin')
  t.equal((await me(server, next.access_token, dpop)).status, 200)

  t.test('a nonce the server no longer takes: use_dpop_nonce with a new one, and oauth4webapi\'s retry succeeds', async (t) => {
    // As if the nonce period had passed: the handle holds a nonce the server no longer takes.
    const stale = (): void => {
      (dpop as unknown as { cacheNonce: (response: Response, url: URL) => void }).cacheNonce(
        new Response(null, { headers: { 'dpop-nonce': 'AAAAAAAAAAAAAAAAAAAAAA' } }), new URL(server.url))
    }
    stale()
    let first: unknown
    const refreshed = await grant(server, next.refresh_token as string, { dpop }).catch(async (error: unknown) => {
      first = error
      if (!isDPoPNonceError(error)) throw error
      return await grant(server, next.refresh_token as string, { dpop })
    })
    t.ok(isDPoPNonceError(first), 'the token endpoint answered use_dpop_nonce')
    t.ok(refreshed.access_token, 'the retry, with the nonce that answer brought, went through with the same refresh token')

    stale()
    const url = new URL(`${server.url}/me`)
    const call = async (): Promise<Response> => await protectedResourceRequest(refreshed.access_token, 'GET', url, undefined, undefined, { ...insecure, DPoP: dpop })
    let challenged: unknown
    const answer = await call().catch(async (error: unknown) => {
      challenged = error
      if (!isDPoPNonceError(error)) throw error
      return await call()
    })
    t.ok(isDPoPNonceError(challenged), 'authenticate answered 401 with a DPoP use_dpop_nonce challenge')
    t.equal(answer.status, 200, 'and the retry went through')
  })
})

t.test('the store down: 503 temporarily_unavailable with Retry-After, and the endpoints work again after', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url, { storeTimeout: 300, retryAfter: 2 })
  const session = await nativeLogin(server, 'paul')
  await redis.stop()
  for (const [path, body] of [['token', `grant_type=refresh_token&refresh_token=${session.refresh_token}`], ['revoke', `token=${session.refresh_token}`]] as const) {
    const response = await post(server, path, body)
    t.equal(response.status, 503, path)
    t.equal(response.headers.get('retry-after'), '2', `${path}: Retry-After`)
    t.match(await response.json(), { error: 'temporarily_unavailable', error_description: /FTS_STORE_UNAVAILABLE/ }, path)
  }
  await redis.start()
  // The client reconnects on its own schedule; until then the store is still down (503).
  t.ok(await untilUp(server.app, 'store'), 'the store is back, as its health says')
  // A command the client had queued may still run once Redis is back (see "Errors"): the
  // refresh and the revocation above may have happened. A new session works as before.
  const after = await nativeLogin(server, 'paul')
  t.ok((await grant(server, after.refresh_token)).access_token, 'the token endpoint works again')
})

t.test('authenticate and DPoP, as an attacker tries it', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url)
  const dpop = DPoP(CLIENT, await newKey())
  const bound = await nativeLogin(server, 'quentin', dpop)
  const plain = await nativeLogin(server, 'quentin')
  const resourceProof = async (token: string): Promise<string> => {
    const headers = new Headers()
    await (dpop as unknown as ProofMaker).addProof(new URL(`${server.url}/me`), headers, 'GET', token)
    return headers.get('dpop') as string
  }
  const call = async (authorization: string, proof?: string): Promise<Response> =>
    await fetch(`${server.url}/me`, { headers: { authorization, ...(proof === undefined ? {} : { dpop: proof }) } })

  const proof = await resourceProof(bound.access_token)
  t.equal((await call(`DPoP ${bound.access_token}`, proof)).status, 200)
  const replayed = await call(`DPoP ${bound.access_token}`, proof)
  t.equal(replayed.status, 401, 'the same proof twice')
  t.match(replayed.headers.get('www-authenticate'), /^DPoP error="invalid_dpop_proof"/)
  const downgraded = await call(`Bearer ${bound.access_token}`, await resourceProof(bound.access_token))
  t.equal(downgraded.status, 401, 'a bound token as Bearer, even with a proof beside it')
  t.equal(downgraded.headers.get('www-authenticate'), 'Bearer error="invalid_token"')
  const upgraded = await call(`DPoP ${plain.access_token}`, await resourceProof(plain.access_token))
  t.equal(upgraded.status, 401, 'an unbound token under the DPoP scheme: refused')
  t.match(upgraded.headers.get('www-authenticate'), /^DPoP error="invalid_token"/)
  const otherToken = await call(`DPoP ${bound.access_token}`, await resourceProof(plain.access_token))
  t.equal(otherToken.status, 401, 'a proof made for another token (ath)')
  t.equal((await call('DPoP')).headers.get('www-authenticate')?.startsWith('DPoP error="invalid_token"'), true, 'a scheme without a token')
  t.throws(() => server.app.tokenSessions.verifyAccessToken(bound.access_token), { code: 'FTS_TOKEN_INVALID' }, 'verifyAccessToken has no proof to check')
  const revokeProof = new Headers()
  await (dpop as unknown as ProofMaker).addProof(new URL(`${server.url}/auth/revoke`), revokeProof, 'POST')
  await post(server, 'revoke', `token=${bound.refresh_token}`, { dpop: revokeProof.get('dpop') as string })
  const revoked = await call(`DPoP ${bound.access_token}`, await resourceProof(bound.access_token))
  t.equal(revoked.status, 401, 'a bound token of a revoked session')
  t.equal((await revoked.json() as { code: string }).code, 'FTS_SESSION_REVOKED')
  t.match(revoked.headers.get('www-authenticate'), /^DPoP error="invalid_token"/)
  for (const [name, options] of [
    ['an empty client id', { clientId: '' }], ['a client id that is no string', { clientId: 7 }], ['a client id of 101 characters', { clientId: 'c'.repeat(101) }],
    ['a scope with a quote', { scope: 'read "write"' }], ['a scope that is no string', { scope: ['read'] }], ['a scope of 1001 characters', { scope: 's'.repeat(1001) }],
    ['a scope with two spaces', { scope: 'read  write' }]
  ] as const) {
    await t.rejects(server.app.tokenSessions.issue('mallory', options as never), TypeError, `${name}: the app's bug, told at once`)
  }
  for (const claim of ['cnf', 'client_id', 'scope', 'cid', 'scp']) {
    await t.rejects(server.app.tokenSessions.issue('mallory', { claims: { [claim]: 'x' } } as never), TypeError, `${claim} is not the app's to set`)
  }
})

t.test('odd but valid requests: a proof iat with a fraction, repeated empty parameters, big bodies, a bound token to log out with', async (t) => {
  const redis = await startRedis(t)
  const server = await served(t, redis.url)
  const key = dpopKey()
  const login = await fetch(`${server.url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-token-transport': 'body', dpop: craftedProof(key, { htm: 'POST', htu: `${server.url}/auth/login` }) },
    body: JSON.stringify({ userId: 'rosa' })
  })
  const tokens = await login.json() as { accessToken: string, refreshToken: string }
  const refreshed = await post(server, 'token', `grant_type=refresh_token&refresh_token=${tokens.refreshToken}`, {
    dpop: craftedProof(key, { htm: 'POST', htu: `${server.url}/auth/token`, iat: Date.now() / 1000 - 0.0001 })
  })
  t.equal(refreshed.status, 200, 'an iat with a fraction of a millisecond (Python\'s time.time()): not a 503')
  const next = await refreshed.json() as { access_token: string, refresh_token: string }

  const twice = await post(server, 'token', `grant_type=&grant_type=refresh_token&refresh_token=${next.refresh_token}`)
  t.same([twice.status, (await twice.json() as { error: string }).error], [400, 'invalid_request'], 'a parameter twice, once empty')
  const big = await post(server, 'token', `grant_type=refresh_token&refresh_token=${'x'.repeat(20_000)}`)
  t.same([big.status, (await big.json() as { error: string }).error], [413, 'invalid_request'], 'a body over the limit, in OAuth\'s shape')
  const long = await post(server, 'revoke', `token=${'x'.repeat(9000)}`)
  t.equal(long.status, 200, 'an overlong token to revoke is a token revocation does not know')

  const forged = await fetch(`${server.url}/me`, {
    headers: { authorization: `DPoP ${next.access_token.slice(0, -2)}AA`, dpop: craftedProof(key, { htm: 'GET', htu: `${server.url}/me` }) }
  })
  t.equal((await forged.json() as { code: string }).code, 'FTS_TOKEN_INVALID', 'a forged token is refused before its proof is looked at')
  const logout = await fetch(`${server.url}/auth/logout`, {
    method: 'POST',
    headers: { authorization: `DPoP ${next.access_token}`, dpop: craftedProof(key, { htm: 'POST', htu: `${server.url}/auth/logout`, ath: athOf(next.access_token) }) }
  })
  t.equal(logout.status, 204)
  await t.rejects(grant(server, next.refresh_token, { dpop: DPoP(CLIENT, await newKey()) }), { error: 'invalid_grant' } as never,
    'a bound access token ends its session at logout with a proof by its key that names it (ath)')
})
