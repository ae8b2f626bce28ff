// DPoP proofs remembered in the store (`dpop.sharedReplayCheck`): several instances behind
// one origin, and an attacker who captured one resource request and replays its proof on
// the instances the first one did not reach; then the store going down under it.
import { generateKeyPairSync, hash, randomUUID, sign } from 'node:crypto'
import t from 'tap'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import tokenSessions, { type SessionStore, type TokenSessionsOptions } from '../lib/index.js'
import { hashId } from '../lib/tokens.js'
import { SECRET, buildApp, memoryStore, untilUp } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

/** The one origin the instances serve behind their load balancer. */
const ORIGIN = 'https://api.example.com'
const SHARED = { publicOrigin: ORIGIN, dpop: { sharedReplayCheck: true } }

/** A device's DPoP key and its RFC 7638 thumbprint. */
interface Device {
  key: ReturnType<typeof generateKeyPairSync>
  jkt: string
}

function device (): Device {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const { crv, kty, x, y } = key.publicKey.export({ format: 'jwk' })
  return { key, jkt: hash('sha256', JSON.stringify({ crv, kty, x, y }), 'base64url') }
}

/** A proof by the device for a request, naming the access token's hash when one goes with it. */
function proof (by: Device, htm: string, path: string, accessToken?: string, jti = randomUUID()): string {
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: by.key.publicKey.export({ format: 'jwk' }) })).toString('base64url')
  const claims = { jti, htm, htu: `${ORIGIN}${path}`, iat: Math.floor(Date.now() / 1000), ...(accessToken === undefined ? {} : { ath: hash('sha256', accessToken, 'base64url') }) }
  const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  return `${input}.${sign('sha256', Buffer.from(input), { key: by.key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}

/** A native client's login with a proof: its access token is bound to the device's key. */
async function boundLogin (app: FastifyInstance, userId: string, by: Device): Promise<string> {
  const response = await app.inject({
    method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body', dpop: proof(by, 'POST', '/auth/login') }, payload: { userId }
  })
  if (response.statusCode !== 200 || response.json().tokenType !== 'DPoP') throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response.json().accessToken
}

/** A resource request with a bound token and a proof (captured, it is what an attacker replays). */
async function call (app: FastifyInstance, accessToken: string, dpop: string, url = '/me') {
  return await app.inject({ method: 'GET', url, headers: { authorization: `DPoP ${accessToken}`, dpop } })
}

/** Routes beside `/me`: `authenticateStrict`, and `authenticate` awaited by app code. */
function otherRoutes (app: FastifyInstance): void {
  app.get('/strict', { onRequest: app.authenticateStrict }, async () => ({ ok: true }))
  app.get('/awaited', async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      await app.authenticate(request, reply)
      return { signedIn: true }
    } catch (error) {
      // Optional sign-in: an app that goes on after a refusal must not find a user set.
      return { signedIn: false, code: (error as { code: string }).code, user: request.user }
    }
  })
}

t.test('two instances on one Redis: a captured proof replayed on the other instance', async (t) => {
  const redis = await startRedis(t)

  t.test('with the option off (the default), the other instance accepts it once: each remembers only its own', async (t) => {
    const a = await buildApp(t, { redis: redis.url, publicOrigin: ORIGIN })
    const b = await buildApp(t, { redis: redis.url, publicOrigin: ORIGIN })
    const owner = device()
    const token = await boundLogin(a, 'off', owner)
    const captured = proof(owner, 'GET', '/me', token)
    t.equal((await call(a, token, captured)).statusCode, 200, 'the owner\'s request')
    t.equal((await call(b, token, captured)).statusCode, 200, 'the replay on B passes once')
    t.equal((await call(b, token, captured)).statusCode, 401, 'and not twice')
    const inspect = redis.client()
    t.teardown(() => inspect.quit())
    t.same(await inspect.keys('*:dpop:*'), [], 'nothing remembered in Redis')
  })

  t.test('with it on, every instance refuses it after the first', async (t) => {
    const a = await buildApp(t, { redis: redis.url, ...SHARED }, { setup: otherRoutes })
    const b = await buildApp(t, { redis: redis.url, ...SHARED }, { setup: otherRoutes })
    const owner = device()
    const token = await boundLogin(a, 'on', owner)
    const captured = proof(owner, 'GET', '/me', token)
    t.equal((await call(a, token, captured)).statusCode, 200, 'the owner\'s request')
    const replayed = await call(b, token, captured)
    t.equal(replayed.statusCode, 401, 'the replay on B')
    t.equal(replayed.json().code, 'FTS_DPOP_PROOF_INVALID')
    t.match(replayed.headers['www-authenticate'], /^DPoP error="invalid_dpop_proof", algs="/, 'with the DPoP challenge')
    t.equal((await call(a, token, captured)).statusCode, 401, 'on A too')
    t.equal((await call(b, token, proof(owner, 'GET', '/me', token))).statusCode, 200, 'the owner\'s next proof passes on B')

    const strict = proof(owner, 'GET', '/strict', token)
    t.equal((await call(a, token, strict, '/strict')).statusCode, 200)
    const strictReplay = await call(b, token, strict, '/strict')
    t.equal(strictReplay.statusCode, 401, 'authenticateStrict asks the store too')
    t.equal(strictReplay.json().code, 'FTS_DPOP_PROOF_INVALID')
    const awaited = proof(owner, 'GET', '/awaited', token)
    t.same((await call(a, token, awaited, '/awaited')).json(), { signedIn: true }, 'authenticate awaited by app code waits for the store')
    t.same((await call(b, token, awaited, '/awaited')).json(), { signedIn: false, code: 'FTS_DPOP_PROOF_INVALID', user: null },
      'and rejects with its refusal, the user left unset')
  })

  t.test('the same proof at two instances at once: one of them accepts it', async (t) => {
    const a = await buildApp(t, { redis: redis.url, ...SHARED })
    const b = await buildApp(t, { redis: redis.url, ...SHARED })
    const owner = device()
    const token = await boundLogin(a, 'race', owner)
    for (let round = 0; round < 20; round++) {
      const captured = proof(owner, 'GET', '/me', token)
      const answers = await Promise.all([call(a, token, captured), call(b, token, captured)])
      t.same(answers.map((answer) => answer.statusCode).sort(), [200, 401], `round ${round}`)
    }
  })

  t.test('the remembered id lives no longer than the proof, keyed by the key\'s thumbprint', async (t) => {
    const a = await buildApp(t, { redis: redis.url, ...SHARED, dpop: { sharedReplayCheck: true, proofLifetime: 30 } })
    const inspect = redis.client()
    t.teardown(() => inspect.quit())
    const owner = device()
    const token = await boundLogin(a, 'ttl', owner)
    const jti = randomUUID()
    t.equal((await call(a, token, proof(owner, 'GET', '/me', token, jti))).statusCode, 200)
    const ttl = await inspect.pttl(`tsess:{${owner.jkt}}:dpop:${hashId(jti)}`)
    t.ok(ttl > 25_000 && ttl <= 30_000, `a TTL within the proof's 30 s lifetime (${ttl} ms)`)
    t.equal(await inspect.get(`tsess:{${owner.jkt}}:dpop:${hashId(jti)}`), '1', 'the jti itself is not stored')
  })
})

t.test('the store down: a DPoP-bound request answers 503 with Retry-After, a Bearer one is not held up', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, ...SHARED, storeTimeout: 300, retryAfter: 2 })
  const owner = device()
  const token = await boundLogin(app, 'outage', owner)
  const bearer = (await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: 'outage' } })).json().accessToken
  await redis.stop()
  const started = Date.now()
  const down = await call(app, token, proof(owner, 'GET', '/me', token))
  t.equal(down.statusCode, 503, 'the replay guarantee cannot be given: refused')
  t.ok(Date.now() - started < 2000, 'within storeTimeout, not a hang')
  t.equal(down.headers['retry-after'], '2')
  t.match(down.json(), { statusCode: 503, code: 'FTS_STORE_UNAVAILABLE' })
  t.notMatch(down.body, /ECONNREFUSED|Connection|redis/i, 'no store error in the answer')
  t.equal(down.headers['www-authenticate'], undefined, 'no challenge: the proof was not at fault')
  const plain = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${bearer}` } })
  t.equal(plain.statusCode, 200, 'a Bearer token needs no store')
  await redis.start()
  t.ok(await untilUp(app, 'store'), 'the store is back')
  t.equal((await call(app, token, proof(owner, 'GET', '/me', token))).statusCode, 200, 'and DPoP-bound requests pass again')
})

t.test('the memory store: instances that share one remember each other\'s proofs', async (t) => {
  for (const shared of [false, true]) {
    const store = memoryStore(t)
    const options = { store, publicOrigin: ORIGIN, dpop: { sharedReplayCheck: shared } }
    const a = await buildApp(t, options)
    const b = await buildApp(t, options)
    const owner = device()
    const token = await boundLogin(a, 'memory', owner)
    const captured = proof(owner, 'GET', '/me', token)
    t.equal((await call(a, token, captured)).statusCode, 200)
    t.equal((await call(b, token, captured)).statusCode, shared ? 401 : 200, shared ? 'on: the replay is refused' : 'off: accepted once')
  }
})

t.test('a store of one\'s own needs rememberProof for the option, and only for it', async (t) => {
  const register = async (options: Partial<TokenSessionsOptions>): Promise<Error | undefined> => {
    const app = Fastify()
    t.teardown(() => app.close())
    return await app.register(tokenSessions, { secret: SECRET, ...options }).ready().then(() => undefined, (error: Error) => error)
  }
  const memory = memoryStore(t)
  const methods = ['create', 'rotate', 'stepUp', 'revoke', 'revokeAll', 'list', 'isLive', 'time', 'ping', 'close'] as const
  const without = { ...Object.fromEntries(methods.map((name) => [name, memory[name].bind(memory)])), revocationFeed: memory.revocationFeed } as unknown as SessionStore
  t.equal(await register({ store: without }), undefined, 'without the option, a store needs no rememberProof')
  const refused = await register({ store: without, dpop: { sharedReplayCheck: true } })
  t.match(refused, { code: 'FTS_INVALID_OPTION', message: /Invalid option dpop\.sharedReplayCheck: needs a store with rememberProof/ })
  t.equal(await register({ store: { ...without, rememberProof: memory.rememberProof.bind(memory) }, dpop: { sharedReplayCheck: true } }), undefined, 'with it, the option is taken')
  t.match(await register({ store: memory, dpop: { sharedReplayCheck: 'yes' as unknown as boolean } }), { code: 'FTS_INVALID_OPTION', message: /Invalid option dpop\.sharedReplayCheck: must be a boolean/ })
  t.match(await register({ store: memory, dpop: { sharedReplay: true } as never }), { message: /Invalid option dpop\.sharedReplay: is not a DPoP option \(proofLifetime, nonces, nonceLifetime, sharedReplayCheck\)/ })
})
