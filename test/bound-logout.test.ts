// Sender-constrained at logout too: a token bound to a DPoP key ends its session (logout,
// logout-all, RFC 7009 revocation) only with a proof by that key, as an attacker holding a
// copied token without the key would try it; and the refusal reads as an unknown token's.
import type { KeyPairKeyObjectResult } from 'node:crypto'
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { AuditEvent, AuditHookName } from '../lib/index.js'
import { buildApp, cookieValues } from './helpers/app.js'
import { athOf, craftedProof, dpopKey } from './helpers/dpop.js'
import { startRedis } from './helpers/redis.mjs'

/** The origin `inject` requests come from. */
const ORIGIN = 'http://localhost'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

interface Tokens { accessToken: string, refreshToken: string, tokenType: string }

/** A proof by `key` for a POST to `path`, naming `accessToken` when given (its `ath`). */
function proof (key: KeyPairKeyObjectResult, path: string, accessToken?: string): string {
  return craftedProof(key, { htm: 'POST', htu: `${ORIGIN}${path}`, ...(accessToken === undefined ? {} : { ath: athOf(accessToken) }) })
}

/** A native client's login with a proof by `key`: the session is bound to it. */
async function boundLogin (app: FastifyInstance, userId: string, key: KeyPairKeyObjectResult, nonce?: string): Promise<Tokens> {
  const claims = { htm: 'POST', htu: `${ORIGIN}/auth/login`, ...(nonce === undefined ? {} : { nonce }) }
  const response = await app.inject({
    method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body', dpop: craftedProof(key, claims) }, payload: { userId }
  })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  const tokens = response.json() as Tokens
  if (tokens.tokenType !== 'DPoP') throw new Error('not bound')
  return tokens
}

/** Whether a session of the user is still live, as the store says. */
async function live (app: FastifyInstance, userId: string): Promise<boolean> {
  return (await app.tokenSessions.listSessions(userId)).sessions.length > 0
}

async function logout (app: FastifyInstance, path: 'logout' | 'logout-all', headers: Record<string, string>, refreshToken?: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: `/auth/${path}`, headers, ...(refreshToken === undefined ? {} : { payload: { refreshToken } }) })
}

async function revoke (app: FastifyInstance, body: string, dpop?: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/auth/revoke', headers: { ...FORM, ...(dpop === undefined ? {} : { dpop }) }, payload: body })
}

/** What a client sees of an answer: status, code or OAuth error, and challenge. */
function seen (response: LightMyRequestResponse): unknown {
  const body = response.body === '' ? undefined : response.json() as { code?: string, error?: string }
  return [response.statusCode, body?.code ?? body?.error, response.headers['www-authenticate']]
}

t.test('a bound token without a proof by its key ends nothing, and is answered as an unknown token', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, clientId: 'native-app' })
  const key = dpopKey()
  const thief = dpopKey()
  const unknown = await boundLogin(app, 'gone', key)
  await app.tokenSessions.revokeAllSessions('gone')
  const forged = `${unknown.accessToken.slice(0, -4)}AAAA`

  t.test('a bound access token at logout: the session stays alive', async (t) => {
    const tokens = await boundLogin(app, 'access-logout', key)
    const unknownAnswer = seen(await logout(app, 'logout', { authorization: `DPoP ${forged}` }))
    for (const [name, headers] of [
      ['without a proof', { authorization: `DPoP ${tokens.accessToken}` }],
      ['as Bearer, without a proof', { authorization: `Bearer ${tokens.accessToken}` }],
      ['with a proof by another key', { authorization: `DPoP ${tokens.accessToken}`, dpop: proof(thief, '/auth/logout', tokens.accessToken) }]
    ] as const) {
      t.same(seen(await logout(app, 'logout', headers)), unknownAnswer, `${name}: the answer of an unknown token`)
      t.equal(await live(app, 'access-logout'), true, `${name}: the session stays alive`)
    }
    const noAth = await logout(app, 'logout', { authorization: `DPoP ${tokens.accessToken}`, dpop: proof(key, '/auth/logout') })
    t.same(seen(noAth), [401, 'FTS_DPOP_PROOF_INVALID', 'DPoP error="invalid_dpop_proof", algs="ES256 ES384 EdDSA Ed25519 PS256 RS256"'],
      'a proof by its key that does not name the token is a broken proof, and says so')
    t.equal(await live(app, 'access-logout'), true)
    const ended = await logout(app, 'logout', { authorization: `DPoP ${tokens.accessToken}`, dpop: proof(key, '/auth/logout', tokens.accessToken) })
    t.equal(ended.statusCode, 204)
    t.equal(await live(app, 'access-logout'), false, 'with a proof by its key that names it, the session ends')
  })

  t.test('a bound access token at logout-all: every session stays alive', async (t) => {
    const tokens = await boundLogin(app, 'access-all', key)
    await boundLogin(app, 'access-all', key)
    const unknownAnswer = seen(await logout(app, 'logout-all', { authorization: `DPoP ${forged}` }))
    t.same(unknownAnswer, [401, 'FTS_TOKEN_INVALID', 'Bearer error="invalid_token"'])
    t.same(seen(await logout(app, 'logout-all', { authorization: `DPoP ${tokens.accessToken}` })), unknownAnswer, 'without a proof')
    t.same(seen(await logout(app, 'logout-all', { authorization: `DPoP ${tokens.accessToken}`, dpop: proof(thief, '/auth/logout-all', tokens.accessToken) })),
      unknownAnswer, 'with a proof by another key')
    t.equal((await app.tokenSessions.listSessions('access-all')).sessions.length, 2, 'both sessions live')
    t.equal((await logout(app, 'logout-all', { authorization: `DPoP ${tokens.accessToken}`, dpop: proof(key, '/auth/logout-all', tokens.accessToken) })).statusCode, 204)
    t.equal(await live(app, 'access-all'), false, 'with its key\'s proof, every session ends')
  })

  t.test('a bound session\'s refresh token at logout and logout-all: the session stays alive', async (t) => {
    const revokedAnswer = {
      logout: seen(await logout(app, 'logout', {}, unknown.refreshToken)),
      'logout-all': seen(await logout(app, 'logout-all', {}, unknown.refreshToken))
    }
    t.same(revokedAnswer, { logout: [204, undefined, undefined], 'logout-all': [401, 'FTS_SESSION_REVOKED', 'Bearer error="invalid_token"'] })
    for (const path of ['logout', 'logout-all'] as const) {
      const tokens = await boundLogin(app, `refresh-${path}`, key)
      t.same(seen(await logout(app, path, {}, tokens.refreshToken)), revokedAnswer[path], `${path} without a proof: the answer of a session that is over`)
      t.same(seen(await logout(app, path, { dpop: proof(thief, `/auth/${path}`) }, tokens.refreshToken)), revokedAnswer[path], `${path} with a proof by another key`)
      t.equal(await live(app, `refresh-${path}`), true, `${path}: the session stays alive`)
      t.equal((await logout(app, path, { dpop: proof(key, `/auth/${path}`) }, tokens.refreshToken)).statusCode, 204)
      t.equal(await live(app, `refresh-${path}`), false, `${path} with a proof by its key: the session ends`)
    }
  })

  t.test('at the revocation endpoint: 200 as for an unknown token, and the session stays alive', async (t) => {
    t.same(seen(await revoke(app, `token=${forged}`)), [200, undefined, undefined], 'an unknown token')
    for (const kind of ['refresh', 'access'] as const) {
      const tokens = await boundLogin(app, `revoke-${kind}`, key)
      const token = kind === 'refresh' ? tokens.refreshToken : tokens.accessToken
      const named = kind === 'access' ? token : undefined
      for (const [name, dpop] of [['without a proof', undefined], ['with a proof by another key', proof(thief, '/auth/revoke', named)]] as const) {
        t.same(seen(await revoke(app, `token=${token}`, dpop)), [200, undefined, undefined], `${kind} token ${name}`)
        t.equal(await live(app, `revoke-${kind}`), true, `${kind} token ${name}: the session stays alive`)
      }
      t.equal((await revoke(app, `token=${token}`, proof(key, '/auth/revoke', named))).statusCode, 200)
      t.equal(await live(app, `revoke-${kind}`), false, `${kind} token with a proof by its key: the session ends`)
    }
    const tokens = await boundLogin(app, 'revoke-no-ath', key)
    const noAth = await revoke(app, `token=${tokens.accessToken}`, proof(key, '/auth/revoke'))
    t.same(seen(noAth), [400, 'invalid_dpop_proof', undefined], 'an access token\'s proof names it (ath), here too')
    t.equal(await live(app, 'revoke-no-ath'), true)
  })

  t.test('a bound browser session: its refresh cookie ends it only with a proof, even beside the (bearer) access cookie', async (t) => {
    const login = await app.inject({ method: 'POST', url: '/auth/login', headers: { dpop: proof(key, '/auth/login') }, payload: { userId: 'browser' } })
    const cookies = cookieValues(login)
    const out = async (dpop?: string): Promise<LightMyRequestResponse> => await app.inject({
      method: 'POST', url: '/auth/logout', cookies, headers: { 'x-requested-with': 'fetch', ...(dpop === undefined ? {} : { dpop }) }
    })
    t.equal((await out()).statusCode, 204)
    t.equal(await live(app, 'browser'), true, 'without a proof: the session stays alive')
    t.equal((await out(proof(key, '/auth/logout'))).statusCode, 204)
    t.equal(await live(app, 'browser'), false, 'with a proof by its key: it ends')
  })

  t.test('an unbound access token is a bearer token: a proof beside it is not about it, and it ends its session', async (t) => {
    const plain = (await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: 'plain' } })).json() as Tokens
    t.equal(plain.tokenType, 'Bearer')
    t.equal((await logout(app, 'logout', { authorization: `Bearer ${plain.accessToken}`, dpop: proof(thief, '/auth/logout') })).statusCode, 204)
    t.equal(await live(app, 'plain'), false)
  })

  t.test('a proof serves once: replayed, it is refused and ends nothing', async (t) => {
    const first = await boundLogin(app, 'replay-1', key)
    const second = await boundLogin(app, 'replay-2', key)
    for (const [path, send] of [
      ['/auth/logout', async (tokens: Tokens, dpop: string) => await logout(app, 'logout', { dpop }, tokens.refreshToken)],
      ['/auth/revoke', async (tokens: Tokens, dpop: string) => await revoke(app, `token=${tokens.refreshToken}`, dpop)]
    ] as const) {
      const once = proof(key, path)
      const third = await boundLogin(app, 'replay-3', key)
      t.ok((await send(third, once)).statusCode < 300)
      const replayed = await send(path === '/auth/logout' ? first : second, once)
      t.equal(replayed.statusCode, 400, `${path}: the same proof again, for another session of the key`)
      t.equal(await live(app, path === '/auth/logout' ? 'replay-1' : 'replay-2'), true, `${path}: that session stays alive`)
    }
  })
})

t.test('a superseded refresh token is reuse whatever comes with it: no proof, another key\'s, or the key\'s', async (t) => {
  const redis = await startRedis(t)
  const events: AuditHookName[] = []
  const hook = (name: AuditHookName) => (_event: AuditEvent) => { events.push(name) }
  const app = await buildApp(t, { redis: redis.url, clientId: 'native-app', reuseGrace: 0, onReuseDetected: hook('onReuseDetected') })
  const key = dpopKey()
  const thief = dpopKey()
  let n = 0
  /** A bound session refreshed once by its owner: its first refresh token is superseded. */
  const superseded = async (): Promise<{ userId: string, old: string }> => {
    const userId = `reuse-${++n}`
    const tokens = await boundLogin(app, userId, key)
    const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { dpop: proof(key, '/auth/refresh') }, payload: { refreshToken: tokens.refreshToken } })
    if (rotated.statusCode !== 200) throw new Error(`refresh failed: ${rotated.body}`)
    return { userId, old: tokens.refreshToken }
  }
  for (const [name, signer] of [['no proof', undefined], ['a proof by another key', thief], ['a proof by the key', key]] as const) {
    for (const path of ['logout', 'logout-all'] as const) {
      const { userId, old } = await superseded()
      const answer = await logout(app, path, signer === undefined ? {} : { dpop: proof(signer, `/auth/${path}`) }, old)
      t.same(seen(answer), [401, 'FTS_TOKEN_REUSED', 'Bearer error="invalid_token"'], `${path}, ${name}`)
      t.equal(await live(app, userId), false, `${path}, ${name}: the session is over`)
    }
    const { userId, old } = await superseded()
    events.length = 0
    t.equal((await revoke(app, `token=${old}`, signer === undefined ? undefined : proof(signer, '/auth/revoke'))).statusCode, 200)
    t.same(events, ['onReuseDetected'], `revoke, ${name}: the alarm`)
    t.equal(await live(app, userId), false, `revoke, ${name}: the session is over`)
  }
})

t.test('with server nonces, a proof without one is refused and says so, bound session or not; with it the session ends', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, dpop: { nonces: true } })
  const key = dpopKey()
  const asked = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body', dpop: proof(key, '/auth/login') }, payload: { userId: 'n' } })
  const nonce = asked.headers['dpop-nonce'] as string
  const tokens = await boundLogin(app, 'nonce', key, nonce)
  const plain = (await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: 'nonce-plain' } })).json() as Tokens

  for (const [name, refreshToken] of [['a bound session', tokens.refreshToken], ['an unbound one', plain.refreshToken]] as const) {
    const refused = await logout(app, 'logout', { dpop: proof(key, '/auth/logout') }, refreshToken)
    t.same(seen(refused), [400, 'FTS_DPOP_NONCE_REQUIRED', undefined], `${name}: the refresh token's proof is a grant's`)
    t.equal(refused.headers['dpop-nonce'], nonce, `${name}: the nonce comes with it`)
  }
  const resource = await logout(app, 'logout', { authorization: `DPoP ${tokens.accessToken}`, dpop: proof(key, '/auth/logout', tokens.accessToken) })
  t.same(seen(resource), [401, 'FTS_DPOP_NONCE_REQUIRED', 'DPoP error="use_dpop_nonce", algs="ES256 ES384 EdDSA Ed25519 PS256 RS256"'],
    'the access token\'s proof is a resource request\'s, with its challenge')
  t.equal(await live(app, 'nonce'), true, 'nothing ended')
  const withNonce = craftedProof(key, { htm: 'POST', htu: `${ORIGIN}/auth/logout`, nonce })
  const ended = await logout(app, 'logout', { dpop: withNonce }, tokens.refreshToken)
  t.equal(ended.statusCode, 204)
  t.equal(ended.headers['dpop-nonce'], nonce, 'the nonce comes with a logout that carried a proof')
  t.equal(await live(app, 'nonce'), false)
  for (const path of ['logout-all', 'revoke'] as const) {
    const next = await boundLogin(app, `nonce-${path}`, key, nonce)
    const dpop = craftedProof(key, { htm: 'POST', htu: `${ORIGIN}/auth/${path}`, nonce })
    const answer = path === 'revoke' ? await revoke(app, `token=${next.refreshToken}`, dpop) : await logout(app, path, { dpop }, next.refreshToken)
    t.ok(answer.statusCode < 300, path)
    t.equal(answer.headers['dpop-nonce'], nonce, `${path}: the nonce comes with it too`)
    t.equal(await live(app, `nonce-${path}`), false)
  }
})

t.test('revocation by another client is unauthorized_client (RFC 7009 §2.1), for either token, with any hint, and ends nothing', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, clientId: 'native-app' })
  const tokens = (await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: 'client' } })).json() as Tokens
  for (const token of [tokens.refreshToken, tokens.accessToken]) {
    for (const hint of ['', '&token_type_hint=access_token', '&token_type_hint=refresh_token']) {
      const response = await revoke(app, `token=${token}&client_id=evil-app${hint}`)
      t.equal(response.statusCode, 400)
      t.match(response.json(), { error: 'unauthorized_client', error_description: /FTS_CLIENT_MISMATCH/ })
    }
  }
  t.equal(await live(app, 'client'), true, 'the session stays alive')
  t.equal((await revoke(app, `token=${tokens.accessToken}&client_id=native-app`)).statusCode, 200, 'its own client')
  t.equal(await live(app, 'client'), false)
})
