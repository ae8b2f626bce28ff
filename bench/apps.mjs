// The app under test, shared by the benchmark, the load test and their server process.
// Each contender lives in its own encapsulated scope, so that `@fastify/jwt` registered
// directly (the baselines) and the plugin's own `@fastify/jwt` instances never meet.
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { Redis } from 'ioredis'
import tokenSessions, { tokenResponse } from '../dist/index.js'

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
 * - `GET /me`: the plugin's `authenticate`; `POST /auth/login` calls `reply.issueTokens`
 *   for the posted `userId` (a login with a DPoP proof binds the session to its key);
 *   `POST /auth/refresh`, `/auth/logout`, ...: the plugin's routes.
 * - `POST /naive/refresh`: refresh as the classic tutorial writes it.
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

  await app.register(async function plugin (scope) {
    const redis = redisClient(redisUrl, scope)
    // BENCH_MAX_SESSIONS: bench/many-sessions.mjs seeds one user with more sessions than the default cap.
    const cap = process.env.BENCH_MAX_SESSIONS === undefined ? {} : { maxSessionsPerUser: Number(process.env.BENCH_MAX_SESSIONS) }
    await scope.register(tokenSessions, { secret: SECRET, redis, routes: true, publicOrigin: PUBLIC_ORIGIN, ...cap })
    scope.post('/auth/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
    scope.get('/me', { onRequest: scope.authenticate }, async (request) => request.user)
    handles.tokenSessions = () => scope.tokenSessions
  })

  await app.register(async function naive (scope) {
    await naiveRefresh(scope, redisUrl, handles)
  })

  await app.ready()
  return { app, ...handles, tokenSessions: handles.tokenSessions() }
}

/** `GET /jwt/me`: `@fastify/jwt` verify alone. Returns its signer. */
async function jwtBaseline (scope) {
  await scope.register(fastifyJwt, { secret: ACCESS_SECRET, sign: { expiresIn: NAIVE_ACCESS_TTL } })
  scope.get('/jwt/me', { onRequest: async (request) => { await request.jwtVerify() } }, async (request) => request.user)
  return (payload) => scope.jwt.sign(payload)
}

/** The `@fastify/jwt` baseline alone, as an app of its own (beside the example app). */
export async function buildJwtBaseline () {
  const app = Fastify({ logger: false })
  const jwtSign = await jwtBaseline(app)
  await app.ready()
  return { app, jwtSign }
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
  scope.addHook('onClose', async () => { await redis.quit() })
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
