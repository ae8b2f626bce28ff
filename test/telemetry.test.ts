// Metrics and traces through OpenTelemetry, read with the real SDK's in-memory reader and
// span exporter: each metric moves when its event happens, a store call made for a traced
// request is a span under the request's, and no attribute ever carries an id.
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { context, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { DataPointType, MeterProvider, MetricReader, type Histogram } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import tokenSessions, { tokenResponse, type MemoryStore, type TokenSessionsOptions } from '../lib/index.js'
import {
  ClientMismatchError, DpopNonceRequiredError, DpopProofInvalidError, SessionExpiredError, SessionRevokedError, StoreUnavailableError, TokenExpiredError, TokenInvalidError, TokenMissingError, TokenReusedError
} from '../lib/errors.js'
import { StoreClock } from '../lib/clock.js'
import { RevocationList } from '../lib/revocations.js'
import { STORE_BUCKETS, Telemetry, loadTelemetry, type FeedState } from '../lib/telemetry.js'
import { SECRET, cookieHeader, memoryStore, untilUp } from './helpers/app.js'
import { KEYS, craft, payloadOf } from './helpers/jwt.js'
import { silent, within } from './helpers/feed.js'
import { startRedis } from './helpers/redis.mjs'
import { SilencingRelay } from './helpers/relay.js'

/** A reader the test collects from when it likes: the SDK's own aggregation, nothing exported. */
class TestReader extends MetricReader {
  protected async onForceFlush (): Promise<void> {}
  protected async onShutdown (): Promise<void> {}
}

/** One data point: its attributes, and a counter's or gauge's value or a histogram's. */
interface Point {
  attributes: Record<string, unknown>
  value: number | Histogram
}

/** Every metric the reader has, by name. */
async function collect (reader: MetricReader): Promise<Map<string, Point[]>> {
  const { resourceMetrics, errors } = await reader.collect()
  if (errors.length > 0) throw new AggregateError(errors)
  const metrics = new Map<string, Point[]>()
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      metrics.set(metric.descriptor.name, metric.dataPoints.map((point) => ({ attributes: { ...point.attributes }, value: point.value as number | Histogram })))
    }
  }
  return metrics
}

/** The value of a counter or gauge with exactly these attributes (0 when it has no such point). */
function valueOf (metrics: Map<string, Point[]>, name: string, attributes: Record<string, unknown> = {}): number {
  const point = metrics.get(name)?.find((p) => JSON.stringify(sorted(p.attributes)) === JSON.stringify(sorted(attributes)))
  return point === undefined ? 0 : point.value as number
}

/** The number of recordings of a histogram with these attributes. */
function countOf (metrics: Map<string, Point[]>, name: string, attributes: Record<string, unknown>): number {
  const point = metrics.get(name)?.find((p) => JSON.stringify(sorted(p.attributes)) === JSON.stringify(sorted(attributes)))
  return point === undefined ? 0 : (point.value as Histogram).count
}

function sorted (attributes: Record<string, unknown>): Array<[string, unknown]> {
  return Object.entries(attributes).sort(([a], [b]) => a.localeCompare(b))
}

/** A meter provider with a test reader, shut down when the test ends. */
function metering (t: Test): { meterProvider: MeterProvider, reader: TestReader } {
  const reader = new TestReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  t.teardown(async () => { await meterProvider.shutdown() })
  return { meterProvider, reader }
}

/** An app with the plugin recording to `telemetry`, a login that takes its transport from the body, and routes behind authenticate and a step-up requirement. */
async function app (t: Test, options: Partial<TokenSessionsOptions>, before?: (app: FastifyInstance) => Promise<void>): Promise<FastifyInstance> {
  const server = Fastify()
  await before?.(server)
  await server.register(tokenSessions, { secret: SECRET, routes: true, reuseGrace: 5, ...('redis' in options ? {} : { store: memoryStore(t) }), ...options })
  server.post<{ Body: { userId: string, transport?: 'body' | 'cookie', authenticatedAt?: number } }>('/auth/login', async (request, reply) => {
    const { userId, ...settings } = request.body
    return tokenResponse(await reply.issueTokens(userId, settings))
  })
  server.get('/me', { onRequest: server.authenticate }, async (request) => request.user)
  server.get('/strict', { onRequest: server.authenticateStrict }, async (request) => request.user)
  server.get('/recent', { onRequest: server.authenticate.require({ maxAge: 60 }) }, async (request) => request.user)
  await server.ready()
  t.teardown(() => server.close())
  return server
}

async function login (server: FastifyInstance, userId: string, extra: Record<string, unknown> = {}): Promise<{ accessToken: string, refreshToken: string }> {
  const response = await server.inject({ method: 'POST', url: '/auth/login', payload: { userId, transport: 'body', ...extra } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

async function refresh (server: FastifyInstance, refreshToken: string): Promise<{ statusCode: number, refreshToken?: string, code?: string }> {
  const response = await server.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
  const body = response.json()
  return { statusCode: response.statusCode, refreshToken: body.refreshToken, code: body.code }
}

/** `store` with some of its members replaced, the rest its own. */
function overriding (store: MemoryStore, members: Record<string, unknown>): MemoryStore {
  return new Proxy(store, {
    get: (target, name) => {
      if (typeof name === 'string' && name in members) return members[name]
      const value: unknown = Reflect.get(target, name, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}

/** The ids, tokens and addresses a test used: none may appear in any attribute. */
function leaks (metrics: Map<string, Point[]>, secrets: string[]): string[] {
  const found: string[] = []
  for (const [name, points] of metrics) {
    for (const point of points) {
      for (const [key, value] of Object.entries(point.attributes)) {
        if (typeof value !== 'string' || !/^[a-z_-]{1,20}$|^FTS_[A-Z_]+$/.test(value)) found.push(`${name} ${key}=${String(value)} is not a fixed word`)
        for (const secret of secrets) if (String(value).includes(secret)) found.push(`${name} ${key} carries ${secret}`)
      }
    }
  }
  return found
}

t.test('each metric moves when its event happens, and no attribute carries an id', async (t) => {
  const { meterProvider, reader } = metering(t)
  const redis = await startRedis(t)
  const server = await app(t, { redis: redis.url, telemetry: { meterProvider } })
  t.ok(await untilUp(server, 'revocationFeed'), 'the feed is up')
  const secrets: string[] = []

  const cookie = await server.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'cookie-user', transport: 'cookie' } })
  t.equal(cookie.statusCode, 200)
  const body = await login(server, 'user-1')
  await server.tokenSessions.issue('user-2')
  let metrics = await collect(reader)
  t.equal(valueOf(metrics, 'token_sessions.sessions.started', { transport: 'cookie' }), 1, 'a cookie login')
  t.equal(valueOf(metrics, 'token_sessions.sessions.started', { transport: 'body' }), 2, 'a body login, and tokenSessions.issue')
  t.ok(metrics.get('token_sessions.revocations')?.some((p) => p.attributes.reason === 'reuse' && p.value === 0), 'reuse detections are there at 0 before the first, for increase() to see it')

  // Rotated, then the same token again within the grace window, then once more after a second rotation: reuse.
  const first = await refresh(server, body.refreshToken)
  t.equal(first.statusCode, 200)
  t.equal((await refresh(server, body.refreshToken)).statusCode, 200, 'a grace replay')
  const second = await refresh(server, first.refreshToken as string)
  t.equal(second.statusCode, 200)
  t.equal((await refresh(server, body.refreshToken)).code, 'FTS_TOKEN_REUSED')
  t.equal((await refresh(server, 'not.a.token')).code, 'FTS_TOKEN_INVALID')
  t.equal((await server.inject({ method: 'POST', url: '/auth/refresh', payload: {} })).json().code, 'FTS_TOKEN_MISSING')
  const ended = await login(server, 'user-3')
  t.equal((await server.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: ended.refreshToken } })).statusCode, 204)
  t.equal((await refresh(server, ended.refreshToken)).code, 'FTS_SESSION_REVOKED')
  const csrf = await server.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader(cookie) } })
  t.equal(csrf.json().code, 'FTS_CSRF_REJECTED', 'a cookie refresh without the CSRF header')
  metrics = await collect(reader)
  for (const [outcome, count] of Object.entries({ rotated: 2, grace_replay: 1, reused: 1, invalid: 2, missing: 1, revoked: 1 })) {
    t.equal(valueOf(metrics, 'token_sessions.refreshes', { outcome }), count, `refreshes ${outcome}: ${count}`)
  }
  t.equal(valueOf(metrics, 'token_sessions.revocations', { reason: 'reuse', scope: 'session' }), 1, 'the reuse revoked its session')
  t.equal(valueOf(metrics, 'token_sessions.revocations', { reason: 'logout', scope: 'session' }), 1, 'the logout is a revocation')
  t.equal(valueOf(metrics, 'token_sessions.logouts', { scope: 'session' }), 1, 'and a logout')

  const all = await login(server, 'user-4')
  const kept = await login(server, 'user-4')
  t.equal((await server.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: all.refreshToken } })).statusCode, 204)
  const other = await login(server, 'user-5')
  const otherId = (await server.tokenSessions.listSessions('user-5')).sessions[0]?.sessionId as string
  await server.tokenSessions.revokeSession('user-5', otherId, { reason: 'fraud case 4711 for user-5' })
  await server.tokenSessions.revokeAllSessions('user-6', { reason: 'password-change' })
  metrics = await collect(reader)
  t.equal(valueOf(metrics, 'token_sessions.logouts', { scope: 'all' }), 1, 'a logout of every session')
  t.equal(valueOf(metrics, 'token_sessions.revocations', { reason: 'logout-all', scope: 'all' }), 1)
  t.equal(valueOf(metrics, 'token_sessions.revocations', { reason: 'other', scope: 'session' }), 1, 'an app\'s own reason is "other"')
  t.equal(valueOf(metrics, 'token_sessions.revocations', { reason: 'password-change', scope: 'all' }), 1, 'a reason of the fixed set is kept')
  t.equal(valueOf(metrics, 'token_sessions.logouts', { scope: 'session' }), 1, 'a revocation by the app is no logout')

  t.equal((await server.inject({ method: 'GET', url: '/me' })).statusCode, 401)
  t.equal((await server.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${kept.accessToken}` } })).json().code, 'FTS_SESSION_REVOKED')
  t.equal((await server.inject({ method: 'GET', url: '/strict', headers: { authorization: 'Bearer x.y.z' } })).json().code, 'FTS_TOKEN_INVALID')
  t.equal((await server.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${other.accessToken}` } })).json().code, 'FTS_SESSION_REVOKED')
  const old = await login(server, 'user-7', { authenticatedAt: Date.now() - 120_000 })
  t.equal((await server.inject({ method: 'GET', url: '/recent', headers: { authorization: `Bearer ${old.accessToken}` } })).json().code, 'FTS_STEP_UP_REQUIRED')
  t.equal((await server.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${old.accessToken}` } })).statusCode, 200, 'an accepted request counts nothing')
  metrics = await collect(reader)
  t.equal(valueOf(metrics, 'token_sessions.authenticate.refusals', { code: 'FTS_TOKEN_MISSING' }), 1)
  t.equal(valueOf(metrics, 'token_sessions.authenticate.refusals', { code: 'FTS_SESSION_REVOKED' }), 2)
  t.equal(valueOf(metrics, 'token_sessions.authenticate.refusals', { code: 'FTS_TOKEN_INVALID' }), 1, 'authenticateStrict\'s too')
  t.equal(valueOf(metrics, 'token_sessions.step_up.challenges'), 1, 'a step-up challenge')
  t.notOk(metrics.get('token_sessions.authenticate.refusals')?.some((p) => p.attributes.code === 'FTS_STEP_UP_REQUIRED'), 'which is no refusal of authenticate')

  // Store calls, timed in the buckets from 0.1 ms to 1 s.
  const durations = metrics.get('token_sessions.store.duration') ?? []
  t.equal(countOf(metrics, 'token_sessions.store.duration', { operation: 'create', outcome: 'ok' }), 8, 'each login\'s store call')
  t.ok(countOf(metrics, 'token_sessions.store.duration', { operation: 'rotate', outcome: 'ok' }) >= 5, 'each refresh\'s')
  t.ok(countOf(metrics, 'token_sessions.store.duration', { operation: 'revoke_all', outcome: 'ok' }) >= 2)
  t.same((durations[0]?.value as Histogram).buckets.boundaries, STORE_BUCKETS, 'the buckets the plugin advises')
  t.ok(metrics.get('token_sessions.store.errors')?.every((p) => p.value === 0), 'no store error yet: each series there, at 0, for increase() to see the first')
  t.equal(valueOf(metrics, 'token_sessions.revocations', { reason: 'reuse', scope: 'session' }), 1)

  // The feed: up, proven alive by its heartbeats moments ago, their lag measured; the list holds the revocations.
  t.equal(valueOf(metrics, 'token_sessions.feed.up'), 1, 'the feed is up')
  t.equal(valueOf(metrics, 'token_sessions.feed.outage_policy.active', { policy: 'check-store' }), 0, 'its outage policy is not in force')
  const sinceAlive = valueOf(metrics, 'token_sessions.feed.since_alive')
  t.ok(sinceAlive >= 0 && sinceAlive < 1.5, `proven alive within a heartbeat's bound (${sinceAlive} s ago)`)
  t.ok(countOf(metrics, 'token_sessions.feed.lag', {}) >= 1, 'heartbeats\' lag measured')
  t.ok(countOf(metrics, 'token_sessions.feed.reload.duration', {}) >= 1, 'the first load timed')
  t.ok(valueOf(metrics, 'token_sessions.revocation_list.size') >= 4, `the list holds this app's revocations (${valueOf(metrics, 'token_sessions.revocation_list.size')})`)

  for (const response of [body, all, kept, other, old]) secrets.push(response.accessToken, response.refreshToken)
  const listed = await server.tokenSessions.listSessions('user-1')
  secrets.push('user-1', 'user-5', 'user-7', '127.0.0.1', otherId, ...listed.sessions.map((s) => s.sessionId), 'fraud')
  t.same(leaks(metrics, secrets), [], 'every attribute is a fixed word, never an id, a token, an address or an app\'s text')
})

t.test('refreshes through the token endpoint and tokenSessions.refresh count; expired tokens and refused proofs too', async (t) => {
  const { meterProvider, reader } = metering(t)
  const server = await app(t, { telemetry: { meterProvider } })
  const token = async (form: Record<string, string>): Promise<number> => (await server.inject({
    method: 'POST', url: '/auth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(form).toString()
  })).statusCode
  const session = await login(server, 'oauth')
  t.equal(await token({ grant_type: 'refresh_token', refresh_token: session.refreshToken }), 200)
  t.equal(await token({ grant_type: 'refresh_token' }), 400, 'no refresh_token')
  t.equal(await token({ grant_type: 'password', refresh_token: 'x' }), 400, 'another grant')
  t.equal(await token({ grant_type: 'refresh_token', refresh_token: 'forged' }), 400)
  const api = await login(server, 'api')
  await server.tokenSessions.refresh(api.refreshToken)
  const real = payloadOf(api.refreshToken)
  const expired = craft({ alg: 'HS256', typ: 'rt+jwt' }, { ...real, iat: real.iat as number - 100, exp: Math.floor(Date.now() / 1000) - 50 }, KEYS.refresh)
  t.equal((await refresh(server, expired)).code, 'FTS_TOKEN_EXPIRED')
  const bound = await login(server, 'proof')
  const refused = await server.inject({ method: 'POST', url: '/auth/refresh', headers: { dpop: 'not.a.proof' }, payload: { refreshToken: bound.refreshToken } })
  t.equal(refused.json().code, 'FTS_DPOP_PROOF_INVALID', 'a proof that does not verify')
  const metrics = await collect(reader)
  for (const [outcome, count] of Object.entries({ rotated: 2, missing: 1, invalid: 2, expired: 1, proof_refused: 1 })) {
    t.equal(valueOf(metrics, 'token_sessions.refreshes', { outcome }), count, `refreshes ${outcome}: ${count}`)
  }
  t.equal(valueOf(metrics, 'token_sessions.sessions.started', { transport: 'body' }), 3)
})

t.test('a closed instance\'s feed gauges stop with it', async (t) => {
  const { meterProvider, reader } = metering(t)
  const telemetry = await loadTelemetry({ meterProvider }) as Telemetry
  const store = memoryStore(t)
  // The revocation list asks the telemetry to observe its feed; count how often it is read.
  let reads = 0
  const observeFeed = telemetry.observeFeed.bind(telemetry)
  telemetry.observeFeed = (state, policy) => observeFeed(() => { reads++; return state() }, policy)
  const list = new RevocationList(store.revocationFeed, new StoreClock(async () => Date.now(), silent), { maxOutageMs: 0, onOutage: 'accept', rememberMs: 1000 }, silent, telemetry)
  await list.start(1000)
  t.equal(valueOf(await collect(reader), 'token_sessions.feed.up'), 1)
  t.equal(reads, 1, 'read at each collection')
  await list.close()
  await collect(reader)
  t.equal(reads, 1, 'no longer read once closed: it holds the list no more')
})

t.test('a feed cut turns its state down and its outage policy on; a store that does not answer counts errors', async (t) => {
  const redis = await startRedis(t)
  const relay = await SilencingRelay.start(t, redis.port)
  // Two instances behind the relay, one under each policy, and one on Redis directly.
  const checking = metering(t)
  const rejecting = metering(t)
  const checkingApp = await app(t, { redis: relay.url, telemetry: { meterProvider: checking.meterProvider }, storeTimeout: 300 })
  const rejectingApp = await app(t, { redis: relay.url, telemetry: { meterProvider: rejecting.meterProvider }, revocationFeed: { onOutage: 'reject', maxOutage: 1 } })
  const direct = await app(t, { redis: redis.url, telemetry: false })
  t.ok(await untilUp(checkingApp, 'revocationFeed') && await untilUp(rejectingApp, 'revocationFeed'), 'the feeds are up through the relay')
  const session = await login(checkingApp, 'cut')
  const ended = await login(direct, 'cut-ended')
  t.equal(valueOf(await collect(checking.reader), 'token_sessions.feed.up'), 1)

  relay.silence()
  const down = await within(3000, async () => valueOf(await collect(checking.reader), 'token_sessions.feed.up') === 0)
  t.ok(down !== undefined, `the feed's state turns down within the heartbeat's bound (${down?.toFixed(0)} ms)`)
  t.equal(valueOf(await collect(checking.reader), 'token_sessions.feed.outage_policy.active', { policy: 'check-store' }), 1, 'check-store is in force at once')
  t.ok(await within(3000, async () => valueOf(await collect(rejecting.reader), 'token_sessions.feed.up') === 0) !== undefined)
  t.equal(valueOf(await collect(rejecting.reader), 'token_sessions.feed.outage_policy.active', { policy: 'reject' }), 0, 'reject waits maxOutage before it applies')
  // A logout the silenced instances never hear of: under check-store the store refuses the token, after a lookup.
  t.equal((await direct.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: ended.refreshToken } })).statusCode, 204)
  t.equal((await checkingApp.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${ended.accessToken}` } })).json().code, 'FTS_SESSION_REVOKED')
  let metrics = await collect(checking.reader)
  t.equal(valueOf(metrics, 'token_sessions.authenticate.refusals', { code: 'FTS_SESSION_REVOKED' }), 1, 'a refusal after the store\'s answer counts too')
  t.ok(countOf(metrics, 'token_sessions.store.duration', { operation: 'is_live', outcome: 'ok' }) >= 1, 'and its lookup is timed')
  await sleep(1100)
  metrics = await collect(rejecting.reader)
  t.equal(valueOf(metrics, 'token_sessions.feed.outage_policy.active', { policy: 'reject' }), 1, 'then reject is in force')
  t.ok(valueOf(metrics, 'token_sessions.feed.since_alive') >= 1, 'and the time since the feed was proven alive grows')
  t.equal((await rejectingApp.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${session.accessToken}` } })).statusCode, 503)
  t.equal(valueOf(await collect(rejecting.reader), 'token_sessions.authenticate.refusals', { code: 'FTS_STORE_UNAVAILABLE' }), 1, 'a refusal under reject')
  relay.restore()
  t.ok(await untilUp(checkingApp, 'revocationFeed'), 'up again')
  metrics = await collect(checking.reader)
  t.equal(valueOf(metrics, 'token_sessions.feed.up'), 1)
  t.equal(valueOf(metrics, 'token_sessions.feed.outage_policy.active', { policy: 'check-store' }), 0)
  t.ok(countOf(metrics, 'token_sessions.feed.reload.duration', {}) >= 2, 'the reload after it timed')

  // Redis gone: a refresh's store call and a login's fail.
  await redis.stop()
  t.equal((await refresh(checkingApp, session.refreshToken)).statusCode, 503)
  t.equal((await checkingApp.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'cut-2', transport: 'body' } })).statusCode, 503)
  metrics = await collect(checking.reader)
  const errors = (metrics.get('token_sessions.store.errors') ?? []).filter((p) => p.value !== 0).map((p) => `${String(p.attributes.operation)} ${String(p.attributes.error)}`).sort()
  t.ok(errors.some((e) => e.startsWith('rotate ')) && errors.some((e) => e.startsWith('create ')), `errors by operation (${errors.join(', ')})`)
  t.ok(errors.every((e) => /^(rotate|create|ping) (timeout|error)$/.test(e)), 'each a timeout or an error')
  t.equal(valueOf(metrics, 'token_sessions.refreshes', { outcome: 'unavailable' }), 1, 'the refresh was unavailable')
})

t.test('with telemetry: false every path works as before, recording nothing', async (t) => {
  const { meterProvider, reader } = metering(t)
  const { metrics } = await import('@opentelemetry/api')
  metrics.setGlobalMeterProvider(meterProvider)
  t.teardown(() => { metrics.disable() })
  const store = memoryStore(t)
  // A feed that never connects: authenticate asks the store (check-store), and waits for it.
  const feedDown = overriding(store, { revocationFeed: { revocations: async () => [], watch: async () => async () => {} } })
  const server = await app(t, { telemetry: false, store: feedDown, storeTimeout: 200, maxSessionsPerUser: 1 })
  const session = await login(server, 'quiet')
  const rotated = await refresh(server, session.refreshToken)
  t.equal(rotated.statusCode, 200)
  t.equal((await refresh(server, 'forged')).code, 'FTS_TOKEN_INVALID')
  t.equal((await server.inject({ method: 'POST', url: '/auth/refresh', payload: {} })).json().code, 'FTS_TOKEN_MISSING')
  t.equal((await server.inject({ method: 'GET', url: '/me' })).json().code, 'FTS_TOKEN_MISSING')
  t.equal((await server.inject({ method: 'GET', url: '/strict', headers: { authorization: 'Bearer x.y.z' } })).json().code, 'FTS_TOKEN_INVALID')
  const old = await login(server, 'quiet-old', { authenticatedAt: Date.now() - 120_000 })
  t.equal((await server.inject({ method: 'GET', url: '/recent', headers: { authorization: `Bearer ${old.accessToken}` } })).json().code, 'FTS_STEP_UP_REQUIRED')
  await server.tokenSessions.issue('quiet')
  t.equal((await server.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${session.accessToken}` } })).json().code, 'FTS_SESSION_REVOKED', 'ended by the cap, found by the store')
  await server.tokenSessions.revokeAllSessions('quiet-old')
  t.equal((await collect(reader)).size, 0, 'nothing recorded, though an SDK is installed')
})

t.test('sessions the per-user cap ends are revocations for the limit', async (t) => {
  const { meterProvider, reader } = metering(t)
  const server = await app(t, { telemetry: { meterProvider }, maxSessionsPerUser: 1 })
  await login(server, 'capped')
  await login(server, 'capped')
  t.equal(valueOf(await collect(reader), 'token_sessions.revocations', { reason: 'limit', scope: 'session' }), 1)
})

t.test('a write the store refuses as late is a store error of its own', async (t) => {
  const { meterProvider, reader } = metering(t)
  const store = memoryStore(t)
  // A store whose rotations all arrive past their deadline, at once.
  const server = await app(t, { store: overriding(store, { rotate: async () => ({ status: 'late' }) }), telemetry: { meterProvider } })
  const session = await login(server, 'late')
  t.equal((await refresh(server, session.refreshToken)).statusCode, 503)
  const metrics = await collect(reader)
  t.equal(valueOf(metrics, 'token_sessions.store.errors', { operation: 'rotate', error: 'late' }), 1)
  t.equal(countOf(metrics, 'token_sessions.store.duration', { operation: 'rotate', outcome: 'late' }), 1)
  t.equal(valueOf(metrics, 'token_sessions.refreshes', { outcome: 'unavailable' }), 1)
})

t.test('a store call that times out counts once, however it is answered later', async (t) => {
  const { meterProvider, reader } = metering(t)
  const store = memoryStore(t)
  // Answers after the request's 503: one late, one failing.
  let answers = 0
  const slow = overriding(store, {
    rotate: async () => {
      await sleep(150)
      if (answers++ === 0) return { status: 'late' }
      throw new Error('connection reset')
    }
  })
  const server = await app(t, { store: slow, storeTimeout: 50, telemetry: { meterProvider } })
  const session = await login(server, 'slow')
  t.equal((await refresh(server, session.refreshToken)).statusCode, 503)
  t.equal((await refresh(server, session.refreshToken)).statusCode, 503)
  await sleep(300)
  const metrics = await collect(reader)
  t.equal(answers, 2, 'both were answered, late')
  t.equal(valueOf(metrics, 'token_sessions.store.errors', { operation: 'rotate', error: 'timeout' }), 2, 'two timeouts')
  t.equal(valueOf(metrics, 'token_sessions.store.errors', { operation: 'rotate', error: 'late' }) + valueOf(metrics, 'token_sessions.store.errors', { operation: 'rotate', error: 'error' }), 0, 'and nothing more')
  t.equal(countOf(metrics, 'token_sessions.store.duration', { operation: 'rotate', outcome: 'timeout' }), 2)
  t.equal(countOf(metrics, 'token_sessions.store.duration', { operation: 'rotate', outcome: 'late' }) + countOf(metrics, 'token_sessions.store.duration', { operation: 'rotate', outcome: 'error' }), 0)
})

t.test('the feed\'s gauges for a feed without heartbeats, under each policy', async (t) => {
  const { meterProvider, reader } = metering(t)
  const telemetry = await loadTelemetry({ meterProvider }) as Telemetry
  let state: FeedState = { aliveAt: undefined, downSince: undefined, size: 3 }
  telemetry.observeFeed(() => state, { onOutage: 'accept', maxOutageMs: 5000 })
  let metrics = await collect(reader)
  t.equal(valueOf(metrics, 'token_sessions.feed.up'), 1)
  t.equal(valueOf(metrics, 'token_sessions.feed.since_alive'), 0, 'up, without heartbeats: alive now')
  t.equal(valueOf(metrics, 'token_sessions.feed.outage_policy.active', { policy: 'accept' }), 0)
  t.equal(valueOf(metrics, 'token_sessions.revocation_list.size'), 3)
  state = { aliveAt: undefined, downSince: Date.now() - 2000, size: 3 }
  metrics = await collect(reader)
  t.equal(valueOf(metrics, 'token_sessions.feed.up'), 0)
  const since = valueOf(metrics, 'token_sessions.feed.since_alive')
  t.ok(since >= 2 && since < 3, `down, without heartbeats: since it went down (${since} s)`)
  t.equal(valueOf(metrics, 'token_sessions.feed.outage_policy.active', { policy: 'accept' }), 1, 'accept is in force at once')
  state = { aliveAt: Date.now() - 4000, downSince: Date.now() - 2000, size: 3 }
  t.ok(valueOf(await collect(reader), 'token_sessions.feed.since_alive') >= 4, 'with heartbeats: since the last one arrived')
})

t.test('an error code is a code of the plugin\'s, or other', async (t) => {
  const { meterProvider, reader } = metering(t)
  const telemetry = await loadTelemetry({ meterProvider }) as Telemetry
  telemetry.refused(new TokenExpiredError())
  telemetry.refused(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))
  telemetry.refused(Object.assign(new Error('x'), { code: 'FTS_' + 'A'.repeat(60) }))
  telemetry.refused(undefined)
  const codes = Object.fromEntries((await collect(reader)).get('token_sessions.authenticate.refusals')?.map((p) => [p.attributes.code, p.value]) ?? [])
  t.same(codes, { FTS_TOKEN_EXPIRED: 1, other: 3 })
})

t.test('every error a refresh ends in maps to its outcome', async (t) => {
  const { meterProvider, reader } = metering(t)
  const telemetry = await loadTelemetry({ meterProvider }) as Telemetry
  const errors = [
    new TokenReusedError(), new TokenExpiredError(), new SessionExpiredError(), new SessionRevokedError(), new DpopProofInvalidError(), new DpopNonceRequiredError(),
    new TokenMissingError(), new StoreUnavailableError(), new TokenInvalidError(), new ClientMismatchError(), new Error('a bug'), null
  ]
  for (const error of errors) telemetry.refreshFailed(error)
  const metrics = await collect(reader)
  const counted = Object.fromEntries((metrics.get('token_sessions.refreshes') ?? []).map((p) => [p.attributes.outcome, p.value]))
  t.same(counted, { rotated: 0, grace_replay: 0, reused: 1, expired: 2, revoked: 1, proof_refused: 1, nonce_required: 1, missing: 1, unavailable: 1, invalid: 4 })
})

t.test('a store call made for a traced request is a span under the request\'s; nothing else is traced', async (t) => {
  const contextManager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(contextManager)
  t.teardown(() => { context.disable() })
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  t.teardown(async () => { await tracerProvider.shutdown() })
  const redis = await startRedis(t)
  const instrumentation = new FastifyOtelInstrumentation({ registerOnInitialization: false })
  instrumentation.setTracerProvider(tracerProvider)
  const server = await app(t, { redis: redis.url, telemetry: { tracerProvider } }, async (server) => { await server.register(instrumentation.plugin()) })
  t.ok(await untilUp(server, 'revocationFeed'))
  await sleep(700)
  t.same(exporter.getFinishedSpans().map((span) => span.name), [], 'no span for the feed\'s heartbeats or its load')

  const session = await login(server, 'traced')
  const rotated = await refresh(server, session.refreshToken)
  t.equal(rotated.statusCode, 200)
  t.equal((await refresh(server, session.refreshToken + 'x')).statusCode, 401)
  const spans = exporter.getFinishedSpans()
  const ours = spans.filter((span) => span.name.startsWith('token_sessions.'))
  t.same(ours.map((span) => span.name), ['token_sessions.store create', 'token_sessions.store rotate'], 'one span per store call; a forged token makes none')
  for (const span of ours) {
    const parent = spans.find((candidate) => candidate.spanContext().spanId === span.parentSpanContext?.spanId)
    t.ok(parent !== undefined && parent.spanContext().traceId === span.spanContext().traceId, `${span.name} is a child of a span of the request`)
    t.equal(span.kind, 2, 'a client span')
    t.same(span.attributes, { operation: span.name.split(' ')[1], outcome: 'ok' }, 'its operation, and nothing else')
  }
  const root = spans.find((span) => span.parentSpanContext === undefined && span.spanContext().traceId === ours[1]?.spanContext().traceId)
  t.match(JSON.stringify(root?.attributes), /\/auth\/refresh/, 'the rotation in the refresh request\'s trace')

  exporter.reset()
  await server.tokenSessions.issue('untraced')
  t.same(exporter.getFinishedSpans().map((span) => span.name), [], 'a store call outside any traced request makes no span')
  const tracer = tracerProvider.getTracer('job')
  await tracer.startActiveSpan('nightly job', async (span) => {
    await server.tokenSessions.revokeAllSessions('untraced')
    span.end()
  })
  t.same(exporter.getFinishedSpans().map((span) => span.name), ['token_sessions.store revoke_all', 'nightly job'], 'an app\'s own traced work gets its spans too')

  await redis.stop()
  exporter.reset()
  t.equal((await refresh(server, rotated.refreshToken as string)).statusCode, 503)
  const failed = exporter.getFinishedSpans().find((span) => span.name === 'token_sessions.store rotate')
  t.match(failed?.status, { code: 2 }, 'a failed call\'s span has the error status')
  t.notMatch(JSON.stringify(failed?.status), /ECONN|127\.0\.0\.1|redis/i, 'naming how it ended, not the error')
  t.match(failed?.attributes, { operation: 'rotate', outcome: /^(timeout|error)$/ }, 'as its outcome attribute does')
  t.equal(failed?.events.length, 0, 'and no exception event, whose text might carry a key')
})

t.test('without an SDK nothing is measured; without the API nothing is loaded', async (t) => {
  const noSdk = await loadTelemetry(undefined) as Telemetry
  t.type(noSdk, Telemetry, 'the API is installed here')
  t.equal(noSdk.storeCall('rotate'), undefined, 'no SDK and no traced request: a store call does nothing more')
  const missing = async (): Promise<never> => { throw Object.assign(new Error('Cannot find package'), { code: 'ERR_MODULE_NOT_FOUND' }) }
  t.equal(await loadTelemetry(undefined, missing), undefined, 'no API: no telemetry, and no error')
  t.equal(await loadTelemetry(false), undefined, 'telemetry: false turns it off')
  await t.rejects(loadTelemetry({ meterProvider: new MeterProvider() }, missing), { code: 'FTS_INVALID_OPTION', message: /telemetry.*npm install @opentelemetry\/api/ }, 'providers given without the API is a mistake said at once')
  for (const [telemetry, message] of [
    ['yes', /telemetry.*must be false or/],
    [null, /telemetry.*must be false or/],
    [{ meterProvider: null }, /telemetry\.meterProvider.*getMeter/],
    [{ meterProvider: {} }, /telemetry\.meterProvider.*getMeter/],
    [{ tracerProvider: { getMeter: () => undefined } }, /telemetry\.tracerProvider.*getTracer/],
    [{ meterprovider: new MeterProvider() }, /telemetry\.meterprovider.*is not an option/]
  ] as const) {
    const server = Fastify()
    await t.rejects(async () => { await server.register(tokenSessions, { secret: SECRET, store: memoryStore(t), telemetry: telemetry as never }).ready() }, { code: 'FTS_INVALID_OPTION', message }, `telemetry: ${JSON.stringify(telemetry)}`)
    await server.close()
  }
})

t.test('the global providers are used by default, and telemetry: false records nothing', async (t) => {
  const { meterProvider, reader } = metering(t)
  const { metrics } = await import('@opentelemetry/api')
  t.ok(metrics.setGlobalMeterProvider(meterProvider), 'set as the app\'s SDK would')
  t.teardown(() => { metrics.disable() })
  const byDefault = await app(t, {})
  const off = await app(t, { telemetry: false })
  await login(byDefault, 'global')
  const offSession = await login(off, 'off')
  t.equal((await refresh(off, offSession.refreshToken)).statusCode, 200, 'and refreshes with it off')
  t.equal((await refresh(off, 'forged')).statusCode, 401)
  const collected = await collect(reader)
  t.equal(valueOf(collected, 'token_sessions.sessions.started', { transport: 'body' }), 1, 'the app with the default recorded its login; the one with false did not')
  t.equal(collected.get('token_sessions.refreshes')?.reduce((sum, p) => sum + (p.value as number), 0), 0, 'nor its refreshes')
  t.equal(trace.getTracerProvider().getTracer('x').startSpan('y').isRecording(), false, 'no tracer provider was set: none is needed')
})

t.test('histogram points carry the fixed boundaries and the data point type the SDK gives them', async (t) => {
  const { meterProvider, reader } = metering(t)
  const telemetry = await loadTelemetry({ meterProvider }) as Telemetry
  telemetry.feedLag(-5)
  telemetry.feedLag(3)
  telemetry.reloaded(2500)
  const { resourceMetrics } = await reader.collect()
  const byName = new Map(resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).map((metric) => [metric.descriptor.name, metric]))
  const lag = byName.get('token_sessions.feed.lag')
  t.equal(lag?.dataPointType, DataPointType.HISTOGRAM)
  t.equal(lag?.descriptor.unit, 's')
  t.same((lag?.dataPoints[0]?.value as Histogram).min, 0, 'a lag below zero (clocks apart) counts as none')
  t.same((lag?.dataPoints[0]?.value as Histogram).max, 0.003, 'in seconds')
  t.same((byName.get('token_sessions.feed.reload.duration')?.dataPoints[0]?.value as Histogram).sum, 2.5)
})
