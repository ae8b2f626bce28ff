import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import tokenSessions, {
  MemoryStore, errorResponseSchema, tokenResponse, tokenResponseSchema, type AuditHook, type AuditHookName, type AuditHooks, type SessionUser, type TokenSessionsOptions
} from 'fastify-token-sessions'
import type { Config } from './config.js'
import { errorHandler, InvalidCredentialsError, NotFoundError, RateLimitedError, UsernameTakenError } from './errors.js'
import { UserStore } from './users.js'
import { AUTHENTICATED, registerDocs } from './docs.js'
import { registerSecurityHeaders, registerWebPage } from './web.js'

declare module 'fastify-token-sessions' {
  interface SessionUser {
    /** Copied from the login's claims into every access token of the session. */
    username: string
  }
}

/** How long start-up waits for Redis to be ready before deciding it is not there. */
const REDIS_CONNECT_TIMEOUT_MS = 2000
/** How long one Redis command may take: a stalled Redis becomes a fast 503, not a hang. */
const REDIS_COMMAND_TIMEOUT_MS = 1000
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
/** The window of the rate limits: RATE_LIMIT_LOGIN and RATE_LIMIT_REFRESH are per minute. */
const RATE_LIMIT_WINDOW_MS = 60_000
/** The rate-limit counters' Redis keys start with KEY_PREFIX (if set), then this. */
const RATE_LIMIT_NAMESPACE = 'rate-limit:'
/** Where the plugin's routes go, next to our own login and registration. */
const AUTH_PREFIX = '/auth'
/** The plugin's refresh route, under that prefix. */
const REFRESH_ROUTE = { method: 'POST', url: `${AUTH_PREFIX}/refresh` } as const

/** Start-up cannot go on (e.g. no Redis in production). The message says why and what to fix. */
export class StartupError extends Error {
  override name = 'StartupError'
}

/** What tests may change about how the app is built. */
export interface BuildOptions {
  /** Where log lines go (default stdout). */
  logStream?: { write (line: string): void }
}

interface Credentials {
  username: string
  password: string
}

/** The documented error answers the app's routes share. */
const BAD_INPUT = errorResponseSchema('FST_ERR_VALIDATION (a field breaks its rule), FST_ERR_CTP_* (not JSON, too large)')
const UNAUTHENTICATED = errorResponseSchema('FTS_TOKEN_MISSING, FTS_TOKEN_INVALID, FTS_TOKEN_EXPIRED or FTS_SESSION_REVOKED')
const RATE_LIMITED = errorResponseSchema('RATE_LIMITED: too many requests from this IP; see Retry-After')
const STORE_DOWN = errorResponseSchema('FTS_STORE_UNAVAILABLE: Redis did not answer; see Retry-After')

/** The rule a new password must meet (at registration and on a change). */
const NEW_PASSWORD = { type: 'string', minLength: 8, maxLength: 256 } as const

/** Registration enforces the username and password rules. */
const registerSchema = {
  tags: ['users'],
  summary: 'Create an account',
  body: {
    type: 'object',
    required: ['username', 'password'],
    additionalProperties: false,
    properties: {
      username: { type: 'string', minLength: 3, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' },
      password: NEW_PASSWORD
    }
  },
  response: {
    201: { description: 'Created', type: 'object', properties: { id: { type: 'string' }, username: { type: 'string' } } },
    400: BAD_INPUT,
    409: errorResponseSchema('USERNAME_TAKEN'),
    429: RATE_LIMITED,
    503: STORE_DOWN
  }
} as const

/**
 * Login checks types and bounds only: a name or password that breaks today's rules just
 * fails as invalid credentials, and a stricter rule later does not lock out old users.
 */
const loginSchema = {
  tags: ['users'],
  summary: 'Log in: starts a session',
  description: 'Browsers get both tokens as httpOnly cookies; with `X-Token-Transport: body` the refresh token is in the body instead.',
  body: {
    type: 'object',
    required: ['username', 'password'],
    additionalProperties: false,
    properties: {
      username: { type: 'string', minLength: 1, maxLength: 64 },
      password: { type: 'string', minLength: 1, maxLength: 256 }
    }
  },
  response: {
    200: tokenResponseSchema,
    400: BAD_INPUT,
    401: errorResponseSchema('INVALID_CREDENTIALS: wrong password or unknown user (one answer for both)'),
    429: RATE_LIMITED,
    503: STORE_DOWN
  }
} as const

interface PasswordChangeBody {
  currentPassword: string
  newPassword: string
}

/** The current password is only bounded, as at login; the new one meets today's rule. */
const changePasswordSchema = {
  tags: ['users'],
  summary: 'Change the password; every other session ends',
  security: AUTHENTICATED,
  body: {
    type: 'object',
    required: ['currentPassword', 'newPassword'],
    additionalProperties: false,
    properties: {
      currentPassword: { type: 'string', minLength: 1, maxLength: 256 },
      newPassword: NEW_PASSWORD
    }
  },
  response: {
    204: { description: 'Changed; every other session of the user has ended', type: 'null' },
    400: BAD_INPUT,
    401: errorResponseSchema('INVALID_CREDENTIALS (wrong current password), or a token error'),
    403: errorResponseSchema('FTS_CSRF_REJECTED: the access cookie without the anti-CSRF header'),
    503: STORE_DOWN
  }
} as const

/** The response schema drops any claim that is not meant to be shown. */
const meSchema = {
  tags: ['users'],
  summary: 'The current user and the access token\'s expiry',
  security: AUTHENTICATED,
  response: {
    200: {
      description: 'The current user',
      type: 'object',
      properties: {
        id: { type: 'string' },
        username: { type: 'string' },
        sessionId: { type: 'string' },
        expiresAt: { type: 'integer', description: 'When the access token expires, in ms since the epoch' }
      }
    },
    401: UNAUTHENTICATED
  }
} as const

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
  try {
    await registerSecurityHeaders(app)
    await registerDocs(app)
    // Before the plugin, so that its refresh route is limited as it is added.
    await registerRateLimits(app, config, store.redis)
    await app.register(tokenSessions, pluginOptions(config, store.options, app.log))
    authRoutes(app, new UserStore(), perMinute(config.rateLimitLogin))
    registerWebPage(app)
    await app.ready()
  } catch (error) {
    await store.close()
    throw error
  }
  return app
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
  return {
    secret: config.jwtSecret,
    accessTokenTtl: config.accessTokenTtl,
    refreshTokenTtl: config.refreshTokenTtl,
    sessionMaxLifetime: config.sessionMaxLifetime,
    maxSessionsPerUser: config.maxSessionsPerUser,
    ...(config.reuseGrace === undefined ? {} : { reuseGrace: config.reuseGrace }),
    ...store,
    // A key prefix means something only to Redis; the plugin rejects it with a store.
    ...(config.keyPrefix === undefined || store.redis === undefined ? {} : { keyPrefix: config.keyPrefix }),
    // GET /auth/sessions and DELETE /auth/sessions/:id are on by default; said here to be seen.
    routes: { prefix: AUTH_PREFIX, sessions: true },
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

function perMinute (max: number): RateLimitOptions {
  return { max, timeWindow: RATE_LIMIT_WINDOW_MS }
}

/**
 * Rate limits on the routes anyone can hammer without an account: login (password
 * guessing), registration (a password hash each; see authRoutes) and refresh (token
 * guessing, a Redis round trip each). `global: false`: only
 * routes with `config.rateLimit` are limited. Counted per client IP (`request.ip`; behind
 * a proxy, set Fastify's `trustProxy`, or every client shares the proxy's IP and limit),
 * in the sessions' Redis through our client, so that every instance counts together, or
 * in memory when sessions are. When Redis cannot count, the request fails closed with a
 * 503 (see errors.ts): both routes need that Redis anyway.
 */
async function registerRateLimits (app: FastifyInstance, config: Config, redis: Redis | undefined): Promise<void> {
  const refresh = perMinute(config.rateLimitRefresh)
  // The plugin declares its refresh route itself: this hook gives it the route-level
  // config. It must run before @fastify/rate-limit's own onRoute hook, which reads it.
  app.addHook('onRoute', (route) => {
    if (route.method === REFRESH_ROUTE.method && route.url === REFRESH_ROUTE.url) {
      route.config = { ...route.config, rateLimit: refresh }
    }
  })
  await app.register(rateLimit, {
    global: false,
    ...(redis === undefined ? {} : { redis, nameSpace: (config.keyPrefix ?? '') + RATE_LIMIT_NAMESPACE }),
    skipOnError: false,
    // The app's error shape and a stable code; the limiter sets Retry-After itself.
    errorResponseBuilder: () => new RateLimitedError()
  })
}

function authRoutes (app: FastifyInstance, users: UserStore, loginLimit: RateLimitOptions): void {
  // Limited as login is: each attempt costs a password hash, and a 409 tells whether a name exists.
  app.post<{ Body: Credentials }>('/auth/register', { schema: registerSchema, config: { rateLimit: loginLimit } }, async (request, reply) => {
    const user = await users.register(request.body.username, request.body.password)
    if (user === undefined) throw new UsernameTakenError()
    reply.code(201)
    return user
  })

  app.post<{ Body: Credentials }>('/auth/login', { schema: loginSchema, config: { rateLimit: loginLimit } }, async (request, reply) => {
    const user = await users.verify(request.body.username, request.body.password)
    if (user === undefined) throw new InvalidCredentialsError()
    return tokenResponse(await reply.issueTokens(user.id, { claims: { username: user.username } }))
  })

  const changePassword = { onRequest: app.authenticate, schema: changePasswordSchema }
  app.post<{ Body: PasswordChangeBody }>('/auth/change-password', changePassword, async (request, reply) => {
    const { id, sessionId } = request.user
    const change = await users.changePassword(id, request.body.currentPassword, request.body.newPassword)
    if (change === undefined) throw new InvalidCredentialsError()
    try {
      // Whoever else holds a session may hold it because they knew the old password.
      await app.tokenSessions.revokeAllSessions(id, { except: sessionId, reason: 'password-change' })
    } catch (error) {
      // The store did not confirm that the other sessions ended: the old password comes
      // back, so that after the 503 the same request can simply be retried.
      change.revert()
      throw error
    }
    reply.code(204)
  })

  app.get('/me', { onRequest: app.authenticate, schema: meSchema }, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    // The cast changes nothing in an app of its own. This repository's typecheck also sees
    // the plugin's lib/ sources (for its tests), whose SessionUser lacks this augmentation.
    const { id, username, sessionId, expiresAt } = request.user as SessionUser
    return { id, username, sessionId, expiresAt }
  })
}

type StoreOptions = Pick<TokenSessionsOptions, 'redis' | 'store'>

/** Where sessions live, and how to release it when the app closes. */
interface StoreChoice {
  options: StoreOptions
  /** Our Redis client when sessions live in Redis: the rate limits count there too. */
  redis: Redis | undefined
  close: () => Promise<void>
}

/**
 * Redis when it answers within {@link REDIS_CONNECT_TIMEOUT_MS}. Otherwise, outside
 * production, an in-memory store (sessions die with the process); in production, a
 * {@link StartupError}: several instances on private memory would each reject the
 * others' refresh tokens.
 *
 * We pass the plugin our connected client rather than the URL: we have connected it
 * anyway to learn whether Redis is there, and a URL would make the plugin open a second
 * connection. A client passed in stays ours, so we quit it on close.
 */
async function chooseStore (config: Config, log: FastifyBaseLogger): Promise<StoreChoice> {
  const client = await connectRedis(config.redisUrl, log)
  if (client !== undefined) {
    log.info({ redis: hostOf(config.redisUrl) }, 'sessions are stored in Redis')
    return { options: { redis: client }, redis: client, close: async () => { await client.quit().catch(() => client.disconnect()) } }
  }
  if (config.production) {
    throw new StartupError(`Redis at ${hostOf(config.redisUrl)} (REDIS_URL) is not reachable; refusing to start in production without a shared session store`)
  }
  log.warn({ redis: hostOf(config.redisUrl) },
    '!!! Redis is not reachable: sessions are kept IN MEMORY, lost on restart and not shared between instances. Development only !!!')
  const store = new MemoryStore()
  return { options: { store }, redis: undefined, close: async () => { await store.close() } }
}

/** A ready client, or undefined (and nothing left running) when Redis does not answer in time. */
async function connectRedis (url: string, log: FastifyBaseLogger): Promise<Redis | undefined> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    // A command waits through one reconnect attempt at most: an outage gives fast 503s.
    maxRetriesPerRequest: 1
  })
  watchConnection(client, log, hostOf(url))
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), REDIS_CONNECT_TIMEOUT_MS)
  })
  try {
    await Promise.race([client.connect(), deadline])
    return client
  } catch {
    // Stops ioredis from reconnecting in the background.
    client.disconnect()
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Logs when the connection drops and when it comes back, not every failed reconnect
 * (ioredis retries forever, up to every 2 s, which would flood the log during an outage).
 */
function watchConnection (client: Redis, log: FastifyBaseLogger, host: string): void {
  let down = false
  client.on('error', (err: Error & { code?: string }) => {
    if (down) return
    down = true
    log.warn({ redis: host, code: err.code, reason: err.message }, 'redis connection error')
  })
  client.on('ready', () => {
    if (down) log.info({ redis: host }, 'redis connection restored')
    down = false
  })
}

/** host:port of a Redis URL, for logs and messages: the URL itself may hold a password. */
function hostOf (url: string): string {
  try {
    return new URL(url).host
  } catch {
    return '(unparsable REDIS_URL)'
  }
}
