// The app under test, shared by the benchmark, the load test and their server process.
// Each contender lives in its own encapsulated scope, so that `@fastify/jwt` registered
// directly (the baselines) and the plugin's own `@fastify/jwt` instances never meet.
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { createVerifier } from 'fast-jwt'
import { Redis } from 'ioredis'
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import tokenSessions, { RedisStore, tokenResponse } from '../dist/index.js'
// The floor refresh signs and checks with the plugin's own token code and keys (internal
// modules of the build, not public exports), so that its crypto is the plugin's exactly.
import { resolveOptions } from '../dist/options.js'
import { createTokenCodec, hashId, newRefreshId, newSessionId, successorId } from '../dist/tokens.js'

/** The plugin's secret (48 bytes). */
export const SECRET = 'bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
/**
 * The app's origin as its clients name it (the plugin's `publicOrigin`): DPoP proofs name
 * it in their `htu`, so the harness makes them before it knows a server's port, and for an
 * app instance that is not listening. Only cookie requests' Origin checks use it too, and
 * the benchmarks send no cookies.
 */
export const PUBLIC_ORIGIN = 'http://bench.local'
/** The baselines' HS256 secrets, as a tutorial app would keep them. */
const ACCESS_SECRET = 'bench-access-secret-0123456789-abcdefghijklmnopqrs'
const REFRESH_SECRET = 'bench-refresh-secret-0123456789-abcdefghijklmnopqr'
/** Access and refresh lifetimes of the naive baseline, as the plugin's defaults. */
const NAIVE_ACCESS_TTL = 900
const NAIVE_REFRESH_TTL = 86400

/**
 * Builds the app (not listening):
 *
 * - `GET /bare`: a bare route, the baseline of everything.
 * - `GET /jwt/me`: `@fastify/jwt` verify alone (`onRequest: request.jwtVerify()`).
 * - `GET /verifier/me`: the verifier under `@fastify/jwt`, alone (see {@link verifierAlone}).
 * - `GET /me`: the plugin's `authenticate`; `POST /auth/login` calls `reply.issueTokens`
 *   for the posted `userId` (a login with a DPoP proof binds the session to its key);
 *   `POST /auth/refresh`, `/auth/logout`, ...: the plugin's routes.
 * - `GET /off/me`, `POST /off/auth/refresh`: the same with `telemetry: false`; `GET /sdk/me`,
 *   `POST /sdk/auth/refresh`: with OpenTelemetry's metrics SDK recording (see
 *   {@link variant}). `/me` and `/auth/refresh` have the API and no SDK, as an app
 *   that installs the plugin's optional peer and nothing else. With `BENCH_BEFORE` (a
 *   checkout of an earlier version, built), `GET /before/me` and `POST /before/auth/refresh`
 *   are that version's plugin, in the same process.
 * - `POST /naive/refresh`: refresh as the classic tutorial writes it.
 * - `POST /floor/refresh`: the least a one-round-trip rotation can do (see {@link floorRefresh}).
 *
 * Returns the app and what the harness needs to mint baseline tokens.
 *
 * @param {string} redisUrl
 */
export async function buildApp (redisUrl) {
  const app = Fastify({ logger: false })
  const handles = {}

  app.get('/bare', async () => ({ hello: 'world' }))

  await app.register(async function (scope) { handles.jwtSign = await jwtBaseline(scope) })
  await app.register(verifierAlone)

  await app.register(async function plugin (scope) {
    const redis = redisClient(redisUrl, scope)
    // BENCH_MAX_SESSIONS: bench/many-sessions.mjs seeds one user with more sessions than the default cap.
    const cap = process.env.BENCH_MAX_SESSIONS === undefined ? {} : { maxSessionsPerUser: Number(process.env.BENCH_MAX_SESSIONS) }
    await scope.register(tokenSessions, { secret: SECRET, redis, routes: true, publicOrigin: PUBLIC_ORIGIN, ...cap })
    scope.post('/auth/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
    scope.get('/me', { onRequest: scope.authenticate }, async (request) => request.user)
    handles.tokenSessions = () => scope.tokenSessions
  })

  await app.register(async function feedDown (scope) {
    const store = new RedisStore({ client: redisClient(redisUrl, scope) })
    await scope.register(tokenSessions, { secret: SECRET, store: withFeedDown(store), publicOrigin: PUBLIC_ORIGIN })
    scope.get('/feed-down/me', { onRequest: scope.authenticate }, async (request) => request.user)
  })

  await app.register(variant(redisUrl, 'off', tokenSessions, { telemetry: false }))
  await app.register(variant(redisUrl, 'sdk', tokenSessions, { telemetry: sdkMeterProvider(app) }))
  if (process.env.BENCH_BEFORE !== undefined) {
    const { default: earlier } = await import(pathToFileURL(join(process.env.BENCH_BEFORE, 'dist/index.js')).href)
    await app.register(variant(redisUrl, 'before', earlier, {}))
  }

  await app.register(async function naive (scope) {
    await naiveRefresh(scope, redisUrl, handles)
  })

  await app.register(async function floor (scope) {
    await floorRefresh(scope, redisUrl, handles)
  })

  await app.ready()
  return { app, ...handles, tokenSessions: handles.tokenSessions() }
}

/**
 * A plugin (this one, or an earlier version's) again under `/<name>`, on the same Redis
 * keys (the same sessions and tokens work there), with `options` added: `GET /<name>/me`
 * and its routes under `/<name>/auth`.
 */
function variant (redisUrl, name, plugin, options) {
  return async function registered (scope) {
    await scope.register(plugin, { secret: SECRET, redis: redisClient(redisUrl, scope), routes: { prefix: `/${name}/auth` }, publicOrigin: PUBLIC_ORIGIN, ...options })
    scope.get(`/${name}/me`, { onRequest: scope.authenticate }, async (request) => request.user)
  }
}

/**
 * An SDK as a production app runs one: a meter provider whose reader collects every 10 s
 * (here to an exporter that drops what it gets), shut down with the app.
 */
function sdkMeterProvider (app) {
  const exporter = { export: (_metrics, done) => done({ code: 0 }), forceFlush: async () => {}, shutdown: async () => {} }
  const meterProvider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 10_000 })] })
  app.addHook('onClose', async () => { await meterProvider.shutdown() })
  return { meterProvider }
}

/** `GET /jwt/me`: `@fastify/jwt` verify alone. Returns its signer. */
async function jwtBaseline (scope) {
  await scope.register(fastifyJwt, { secret: ACCESS_SECRET, sign: { expiresIn: NAIVE_ACCESS_TTL } })
  scope.get('/jwt/me', { onRequest: async (request) => { await request.jwtVerify() } }, async (request) => request.user)
  return (payload) => scope.jwt.sign(payload)
}

/**
 * `GET /verifier/me`: the ceiling of any authenticate. The fast-jwt verifier that
 * `@fastify/jwt` wraps, made once with the baseline's key, called directly in a synchronous
 * hook on the baseline's tokens: no checks of its own, no options merged per call, no
 * promise. It answers the payload, as `/jwt/me` does.
 */
async function verifierAlone (scope) {
  const verify = createVerifier({ key: ACCESS_SECRET, algorithms: ['HS256'] })
  scope.decorateRequest('verified', null)
  const onRequest = (request, reply, done) => {
    const header = request.headers.authorization
    try {
      request.verified = verify(header.slice(header.indexOf(' ') + 1))
    } catch {
      return reply.code(401).send({ error: 'invalid token' })
    }
    done()
  }
  scope.get('/verifier/me', { onRequest }, async (request) => request.verified)
}

/** The `@fastify/jwt` baseline alone, as an app of its own (beside the example app). */
export async function buildJwtBaseline () {
  const app = Fastify({ logger: false })
  const jwtSign = await jwtBaseline(app)
  await app.ready()
  return { app, jwtSign }
}

/**
 * `store` with a revocation feed that never connects: the plugin's revocation list stays
 * down, and under the default outage policy (`check-store`) `GET /feed-down/me` asks Redis
 * whether the session is live on every request, as every instance does while its feed is
 * down. The same keys as the main plugin's: its tokens are live here.
 */
function withFeedDown (store) {
  const methods = ['create', 'rotate', 'stepUp', 'revoke', 'revokeAll', 'list', 'isLive', 'time', 'ping']
  const wrapped = Object.fromEntries(methods.map((name) => [name, (...args) => store[name](...args)]))
  return { ...wrapped, close: async () => {}, revocationFeed: { revocations: async () => [], watch: async () => async () => {} } }
}

/**
 * The one way both contenders get their Redis client, so that they run with the same
 * client settings: ioredis's defaults, as an app creates its client. It is closed with
 * the scope.
 */
function redisClient (redisUrl, scope) {
  const redis = new Redis(redisUrl)
  // A request autocannon abandoned may still reach Redis after quit: not worth a warning.
  redis.on('error', () => {})
  scope.addHook('onClose', async () => {
    // An app closed soon after it started (the harness mints tokens in one) may close a
    // client still connecting: QUIT would be refused ("Connection is closed"), and there
    // is nothing to flush.
    if (redis.status !== 'ready') return redis.disconnect()
    await redis.quit().catch(() => redis.disconnect())
  })
  return redis
}

/**
 * Refresh as the classic tutorial writes it: verify the refresh JWT, `GET refresh:<jti>`,
 * compare with the presented token, sign a new pair, `SET` the new token with `EX`, `DEL`
 * the old one. Three round trips, no atomicity (two racing refreshes both win), no reuse
 * detection, no session record, no revocation of access tokens.
 */
async function naiveRefresh (scope, redisUrl, handles) {
  const redis = redisClient(redisUrl, scope)
  await scope.register(fastifyJwt, { secret: ACCESS_SECRET, namespace: 'access', sign: { expiresIn: NAIVE_ACCESS_TTL } })
  await scope.register(fastifyJwt, { secret: REFRESH_SECRET, namespace: 'refresh', sign: { expiresIn: NAIVE_REFRESH_TTL } })

  async function issuePair (userId) {
    const jti = randomUUID()
    const accessToken = scope.jwt.access.sign({ sub: userId })
    const refreshToken = scope.jwt.refresh.sign({ sub: userId, jti })
    await redis.set(`refresh:${jti}`, refreshToken, 'EX', NAIVE_REFRESH_TTL)
    return { accessToken, refreshToken }
  }
  handles.naiveIssue = issuePair

  scope.post('/naive/refresh', async (request, reply) => {
    const refreshToken = request.body?.refreshToken
    let payload
    try {
      payload = scope.jwt.refresh.verify(refreshToken)
    } catch {
      return reply.code(401).send({ error: 'invalid refresh token' })
    }
    const stored = await redis.get(`refresh:${payload.jti}`)
    if (stored !== refreshToken) return reply.code(401).send({ error: 'refresh token revoked' })
    const jti = randomUUID()
    const accessToken = scope.jwt.access.sign({ sub: payload.sub })
    const newRefreshToken = scope.jwt.refresh.sign({ sub: payload.sub, jti })
    await redis.set(`refresh:${jti}`, newRefreshToken, 'EX', NAIVE_REFRESH_TTL)
    await redis.del(`refresh:${payload.jti}`)
    return { accessToken, tokenType: 'Bearer', expiresIn: NAIVE_ACCESS_TTL, refreshToken: newRefreshToken }
  })
}

/** The floor's compare-and-swap: the presented token's hash for its successor's, and the session's start. */
const FLOOR_SWAP = `
local found = redis.call('HMGET', KEYS[1], 'rt', 'st')
if found[1] ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'rt', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return found[2]`

/**
 * The floor of a one-round-trip refresh: exactly the plugin's crypto (its token code, with
 * the keys the plugin derives from the same secret: verify the refresh token, the
 * successor's id, both ids' hashes, sign an access and a refresh token with the same
 * claims) and one atomic compare-and-swap script, and nothing else: no session record, no
 * index, no reuse detection, no grace, no revocation. The plugin's refresh is judged
 * against it where the network makes round trips dear.
 */
async function floorRefresh (scope, redisUrl, handles) {
  const redis = redisClient(redisUrl, scope)
  redis.defineCommand('floorSwap', { numberOfKeys: 1, lua: FLOOR_SWAP })
  const options = resolveOptions({ secret: SECRET, redis })
  const codec = await createTokenCodec(scope, { ...options, now: () => Date.now() })
  const { accessTokenTtl, refreshTokenTtl, sessionMaxLifetime } = options
  const sign = (sub, sid, jti, startedAt, endsAt) => ({
    accessToken: codec.signAccess({ sub, sid, startedAt, ttlSeconds: accessTokenTtl, claims: {}, grant: {}, auth: { time: Math.floor(startedAt / 1000) } }),
    tokenType: 'Bearer',
    expiresIn: accessTokenTtl,
    refreshToken: codec.signRefresh({ sub, sid, jti, ttlSeconds: refreshTokenTtl, endsAt, remembered: true, claims: {}, grant: {}, auth: { time: Math.floor(startedAt / 1000) } }),
    refreshExpiresIn: refreshTokenTtl
  })

  handles.floorIssue = async (userId) => {
    const sid = newSessionId()
    const jti = newRefreshId()
    const startedAt = Date.now()
    const key = `floor:${sid}`
    await redis.hset(key, 'rt', hashId(jti), 'st', startedAt)
    await redis.pexpire(key, refreshTokenTtl * 1000)
    return sign(userId, sid, jti, startedAt, Math.floor(startedAt / 1000) + sessionMaxLifetime)
  }

  scope.post('/floor/refresh', async (request, reply) => {
    const { sub, sid, jti, endsAt } = codec.verifyRefresh(request.body?.refreshToken)
    const successor = successorId(options.keys, jti)
    const startedAt = await redis.floorSwap(`floor:${sid}`, hashId(jti), hashId(successor), refreshTokenTtl * 1000)
    if (startedAt === null) return reply.code(401).send({ error: 'refresh token not current' })
    return sign(sub, sid, successor, Number(startedAt), endsAt)
  })
}
