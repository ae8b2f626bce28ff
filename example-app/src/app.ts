import type { IncomingMessage } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import tokenSessions, { type AuditHook, type AuditHookName, type AuditHooks, type TokenSessionsOptions } from 'fastify-token-sessions'
import type { Config } from './config.js'
import { registerDocs } from './docs.js'
import { errorHandler, NotFoundError } from './errors.js'
import { registerHealth } from './health.js'
import { startMetrics, type Metrics } from './metrics.js'
import { LocalLimit, perMinute, registerRateLimits } from './rate-limits.js'
import { authRoutes } from './routes.js'
import { chooseStore, type StoreChoice, type StoreOptions } from './store.js'
import { MemoryLoginGate, RedisLoginGate, type LoginGate } from './login-gate.js'
import { MemoryFailureGate, RedisFailureGate } from './throttle.js'
import { MemoryUserRecords, RedisUserRecords, Users } from './users.js'
import { registerSecurityHeaders, registerWebPage } from './web.js'

export { StartupError } from './store.js'

/** Every route here takes a small JSON body. */
const BODY_LIMIT = 16 * 1024
/** Credentials, headers and cookies must never reach the log. */
const REDACT = ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]']
/**
 * How long a client may take to send a whole request (headers and body). Node's default,
 * 5 minutes, lets a client that never finishes its body hold a connection that long.
 */
const REQUEST_TIMEOUT_MS = 10_000
/** How long a connection may stay silent in the middle of a request before it is closed. */
const CONNECTION_TIMEOUT_MS = 10_000
/**
 * How often Node checks {@link REQUEST_TIMEOUT_MS}. Its default, 30 s, would let a client
 * that trickles a byte at a time keep a connection up to 40 s.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 1000
/** Where the plugin's routes go, next to our own login and registration. */
const AUTH_PREFIX = '/auth'

/** What tests may change about how the app is built. */
export interface BuildOptions {
  /** Where log lines go (default stdout). */
  logStream?: { write (line: string): void }
}

/**
 * Builds the example service (not listening): users, login, password change, `/me`, and
 * the plugin's refresh, logout and session routes under `/auth`. Connects to Redis first;
 * see {@link chooseStore}.
 *
 * @example
 * ```ts
 * const app = await buildApp(loadConfig())
 * await app.listen({ port: 3000 })
 * ```
 */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: REDACT,
      serializers: { req: serializeRequest },
      ...(options.logStream === undefined ? {} : { stream: options.logStream })
    },
    bodyLimit: BODY_LIMIT,
    logController: new AnsweredRequestLog(),
    trustProxy: proxyTrust(config.trustProxy),
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    // Fastify sets requestTimeout on the server after creating it, which leaves Node's
    // headersTimeout at 60 s; while that is longer, Node never applies the shorter
    // requestTimeout (Node 20), and a trickled body would hold the connection regardless.
    http: { headersTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
    // Fastify's ajv would turn 123 into "123" and silently drop unknown fields; we want 400s.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } }
  })
  if (config.jwtSecretGenerated) {
    app.log.warn('JWT_SECRET is not set: using a random secret for this process; every token dies on restart')
  }
  // Before the plugin registers, so that its routes inherit the same error shape.
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(async () => { throw new NotFoundError() })
  // Only JSON is spoken here: without this, Fastify would parse text/plain into a string.
  app.removeContentTypeParser('text/plain')

  const store = await chooseStore(config, app.log)
  app.addHook('onClose', store.close)
  let metrics: Metrics | undefined
  try {
    metrics = await startMetrics(config)
    if (metrics !== undefined) app.addHook('onClose', metrics.close)
    await registerSecurityHeaders(app)
    // Unauthenticated, so off in production unless asked for (DOCS=true).
    if (config.docs) await registerDocs(app)
    // Before the plugin: @fastify/rate-limit reads each route's config as the route is added.
    await registerRateLimits(app, config, store.redis)
    await app.register(tokenSessions, { ...pluginOptions(config, store.options, app.log), ...(metrics === undefined ? {} : { telemetry: { meterProvider: metrics.meterProvider } }) })
    metrics?.route?.(app)
    authRoutes(app, { ...accounts(config, store), perIp: perMinute(config.rateLimitLogin), nativeClients: new Set(config.nativeClientIds), stepUpMaxAge: config.stepUpMaxAge })
    registerHealth(app, store.kind)
    registerWebPage(app)
    await app.ready()
  } catch (error) {
    await store.close()
    await metrics?.close()
    throw error
  }
  return app
}

/** Fastify's trustProxy: a number of hops becomes the function Fastify would make of it (its types take no number). */
function proxyTrust (setting: Config['trustProxy']): boolean | string | ((address: string, hop: number) => boolean) {
  return typeof setting === 'number' ? (_address, hop) => hop < setting : setting
}

/**
 * Users, the login gate and the password-change back-off live where the sessions do: in
 * Redis (shared by every instance, kept across restarts) or, without Redis, in this
 * process's memory.
 */
function accounts (config: Config, store: StoreChoice): { users: Users, passwordFailures: MemoryFailureGate | RedisFailureGate, loginGate: LoginGate } {
  const prefix = config.keyPrefix ?? ''
  const budgets = { shared: config.rateLimitLogin, fresh: config.rateLimitLoginNewNetworks }
  if (store.redis === undefined) {
    return { users: new Users(new MemoryUserRecords()), passwordFailures: new MemoryFailureGate(), loginGate: new MemoryLoginGate(budgets) }
  }
  return {
    users: new Users(new RedisUserRecords(store.redis, prefix)),
    passwordFailures: new RedisFailureGate(store.redis, prefix),
    loginGate: new RedisLoginGate(store.redis, prefix, budgets)
  }
}

/**
 * One log line per request, when it is answered: method, path (no query string), status
 * and duration. Fastify's own writes two (received, answered) for the same facts.
 */
class AnsweredRequestLog extends LogController {
  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error === null || error === undefined) reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
    else reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
  }
}

/**
 * The request as logged: Fastify's fields, but the URL without its query string, where a
 * client may have put a token. Fastify passes its own request here (typed as the raw one).
 */
function serializeRequest (request: IncomingMessage | FastifyRequest): Record<string, unknown> {
  const url = request.url ?? ''
  const query = url.indexOf('?')
  return {
    method: request.method,
    url: query === -1 ? url : url.slice(0, query),
    host: request.headers.host,
    remoteAddress: 'ip' in request ? request.ip : request.socket.remoteAddress,
    remotePort: request.socket.remotePort
  }
}

function pluginOptions (config: Config, store: StoreOptions, log: FastifyBaseLogger): TokenSessionsOptions {
  // Native clients refresh at /auth/token: it counts against the refresh route's limit.
  const refreshLimit = { config: { localRateLimit: new LocalLimit(config.rateLimitRefresh) } }
  // Ending a session costs Redis a script too, and a revoked refresh token (or access token)
  // keeps passing its signature check until it expires, so these routes are limited the
  // same way. In a count of their own: a client that has used up its refreshes can still
  // log out, and logging out does not use up its refreshes. One count for the three, as
  // for refresh and token: the same act through the browser's and a native client's routes.
  const endLimit = { config: { localRateLimit: new LocalLimit(config.rateLimitRefresh) } }
  return {
    secret: config.jwtSecret,
    accessTokenTtl: config.accessTokenTtl,
    refreshTokenTtl: config.refreshTokenTtl,
    sessionMaxLifetime: config.sessionMaxLifetime,
    ...(config.browserSessionMaxLifetime === undefined ? {} : { browserSessionMaxLifetime: config.browserSessionMaxLifetime }),
    maxSessionsPerUser: config.maxSessionsPerUser,
    ...(config.reuseGrace === undefined ? {} : { reuseGrace: config.reuseGrace }),
    ...store,
    // A key prefix means something only to Redis; the plugin rejects it with a store.
    ...(config.keyPrefix === undefined || store.redis === undefined ? {} : { keyPrefix: config.keyPrefix }),
    ...(config.dpopNonces ? { dpop: { nonces: true } } : {}),
    ...(config.revocationOutagePolicy === undefined ? {} : { revocationFeed: { onOutage: config.revocationOutagePolicy } }),
    // GET /auth/sessions and DELETE /auth/sessions/:id are on by default; said here to be seen.
    routes: { prefix: AUTH_PREFIX, refresh: refreshLimit, token: refreshLimit, logout: endLimit, logoutAll: endLimit, revoke: endLimit, sessions: true },
    // Deny by default: a route is authenticated unless it says `public: true` (login,
    // registration, health, the page and its files). /docs is registered before the plugin,
    // in a scope of its own that the plugin's hook does not reach; listed for a reordering.
    protectRoutes: { publicPrefixes: ['/docs'] },
    ...auditHooks(log)
  }
}

/**
 * One structured log line per audit hook call: ids, reason and IP, never a token (the
 * event holds none). A reused refresh token is a warning: the line to alert on.
 */
function auditHooks (log: FastifyBaseLogger): Required<AuditHooks> {
  const audit = (hook: AuditHookName, level: 'info' | 'warn', message: string): AuditHook => (event, request) => {
    // App code may end sessions without a request (a password change): then the app's logger.
    const logger = request?.log ?? log
    const { userId, sessionId, reason, ip, allSessions, except } = event
    // Every session of the user at once: one line, saying which session was spared.
    const scope = allSessions ? { allSessions, except } : {}
    logger[level]({ audit: hook, userId, sessionId, reason, ip, ...scope }, message)
  }
  return {
    onLogin: audit('onLogin', 'info', 'audit: session started'),
    onRefresh: audit('onRefresh', 'info', 'audit: session refreshed'),
    onLogout: audit('onLogout', 'info', 'audit: logged out'),
    onSessionRevoked: audit('onSessionRevoked', 'info', 'audit: session ended'),
    onReuseDetected: audit('onReuseDetected', 'warn', 'security: refresh token reused, session revoked')
  }
}
