import fp from 'fastify-plugin'
import fastifyCookie from '@fastify/cookie'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { createEmitter } from './audit.js'
import { StoreClock } from './clock.js'
import { BadRequestError, UnsupportedMediaTypeError } from './errors.js'
import { DpopVerifier } from './dpop.js'
import { ARRIVED, createHandlers, markOwn, listPage, noteArrival, noteArrivalNullUser, type Handlers } from './handlers.js'
import { registerOAuthRoutes } from './oauth.js'
import { rateBound } from './log.js'
import { resolveOptions, type ResolvedOptions, type ResolvedRoutes } from './options.js'
import { LiveCheck } from './live-check.js'
import { RevocationList } from './revocations.js'
import { ROUTE_BODY_LIMIT, describeOnly, jwksSchema, listSessionsSchema, logoutAllSchema, logoutSchema, refreshSchema, revokeSessionSchema } from './schemas.js'
import { Sessions } from './sessions.js'
import { MemoryStore } from './stores/memory.js'
import { RedisStore } from './stores/redis.js'
import type { SessionStore } from './stores/store.js'
import { loadTelemetry } from './telemetry.js'
import { checkUserId, createTokenCodec } from './tokens.js'
import { fail } from './invalid-option.js'
import type { DefaultDecoratorNames, IssueRequest, StepUpOptions, TokenSessionsApi, TokenSessionsOptions } from './types.js'

/**
 * Builds the store from the options. Returns whether the plugin owns it (and so closes
 * it): a store or a client the app passed in stays the app's.
 */
function buildStore (fastify: FastifyInstance, options: ResolvedOptions): { store: SessionStore, owned: boolean } {
  const { store } = options
  if (store.kind === 'given') {
    if (store.store instanceof MemoryStore) {
      fastify.log.warn('fastify-token-sessions: sessions are kept in this process\'s memory (MemoryStore): lost on restart and not shared between instances; for development and tests only')
    }
    return { store: store.store, owned: false }
  }
  return {
    store: new RedisStore({
      ...store.options,
      // For a client the store opens from a URL; one passed in keeps its own settings.
      commandTimeout: options.storeTimeout,
      // Every connection's errors, at most one line per 10 s: an outage errs on each reconnect.
      onClientError: rateBound((err, skipped) => {
        fastify.log.warn({ err: { message: err.message, code: (err as { code?: string }).code }, skipped }, 'session store connection error')
      })
    }),
    owned: true
  }
}

/**
 * Under any eviction policy but `noeviction`, Redis drops keys when memory runs out, and
 * every key here has a TTL, so even the `volatile-*` policies would end sessions at random.
 * Checked once, in the background: a slow or unreachable store must not delay start-up.
 */
async function warnIfEvicting (fastify: FastifyInstance, store: SessionStore): Promise<void> {
  const policy = await store.evictionPolicy?.().catch(() => undefined)
  if (policy === undefined || policy === 'noeviction') return
  fastify.log.warn({ maxmemoryPolicy: policy }, 'fastify-token-sessions: Redis may evict session keys under memory pressure; set maxmemory-policy noeviction')
}

/** Waits for `step` until `deadline` (ms since the epoch) at most; a rejection before then goes through. */
async function until (deadline: number, step: Promise<void> | undefined): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, deadline - Date.now()) })
  try {
    await Promise.race([step, late])
  } finally {
    clearTimeout(timer)
  }
}

/** Under check-store, the most sessions remembered as found live (about 10 MB at most). */
const MAX_KNOWN_SESSIONS = 100_000

/** The one body type the plugin's routes accept. */
const JSON_TYPE = /^application\/json\s*(;|$)/i

/**
 * Rejects bodies that are not JSON before they are parsed. A hook that answers through
 * `done`: a request without a body (every GET of the routes) costs two header reads.
 */
function requireJson (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const { 'content-type': type, 'content-length': length, 'transfer-encoding': encoding } = request.headers
  const hasBody = encoding !== undefined || (length !== undefined && length !== '0')
  done(!hasBody || (type !== undefined && JSON_TYPE.test(type)) ? undefined : new UnsupportedMediaTypeError())
}

/** The routes' JSON parser: an empty body is no body; broken JSON is a 400 of ours. */
function parseJson (_request: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void {
  if (body.length === 0) return done(null, undefined)
  try {
    done(null, JSON.parse(body.toString()))
  } catch {
    done(new BadRequestError())
  }
}

/** The hooks where an app authenticates: one declared `undefined` is one that was meant. */
const AUTH_HOOKS = ['onRequest', 'preParsing', 'preValidation', 'preHandler'] as const

/**
 * Reports, at start-up, a route that declares a hook as `undefined`, as
 * `{ onRequest: app.authenticate }` does before the plugin's registration is awaited:
 * Fastify accepts it, and the route is open. Routes declared before the plugin loaded are
 * not seen here (Fastify tells a hook only of later ones); `protectRoutes` covers them.
 */
function undefinedHooks (log: FastifyBaseLogger, protecting: boolean): (route: RouteOptions) => void {
  return function reportUndefinedHooks (route) {
    // The HEAD route Fastify adds beside each GET has the GET's options: one line is enough.
    if (route.method === 'HEAD') return
    const hooks = AUTH_HOOKS.filter((name) => Object.hasOwn(route, name) && route[name] === undefined)
    if (hooks.length === 0) return
    log.warn({ method: route.method, url: route.url, hooks },
      `fastify-token-sessions: a route declares ${hooks.join(', ')} as undefined, so Fastify runs no hook there: was app.authenticate read before the plugin's registration was awaited? ` +
      (protecting ? 'protectRoutes authenticates it all the same.' : 'The route is open; await app.register(tokenSessions, ...), or set protectRoutes.'))
  }
}

function registerRoutes (fastify: FastifyInstance, routes: ResolvedRoutes, handlers: Handlers, api: TokenSessionsApi): void {
  fastify.register(async function tokenSessionsRoutes (scope) {
    scope.addHook('onRoute', markOwn)
    scope.addHook('onRequest', requireJson)
    // A browser's `fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' } })`
    // sends no body; Fastify's own parser answers that with a 400, ours treats it as no body.
    scope.removeContentTypeParser('application/json')
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, parseJson)
    scope.setValidatorCompiler(describeOnly)
    const post = { bodyLimit: ROUTE_BODY_LIMIT }
    if (routes.refresh !== null) scope.post('/refresh', { ...routes.refresh, ...post, schema: refreshSchema }, handlers.refresh)
    if (routes.logout !== null) scope.post('/logout', { ...routes.logout, ...post, schema: logoutSchema }, handlers.logout)
    if (routes.logoutAll !== null) scope.post('/logout-all', { ...routes.logoutAll, ...post, schema: logoutAllSchema }, handlers.logoutAll)
    if (routes.jwks !== null) {
      const jwks = api.jwks()
      scope.get('/.well-known/jwks.json', { ...routes.jwks, schema: jwksSchema }, async (_request, reply) => {
        reply.header('cache-control', 'public, max-age=300')
        return jwks
      })
    }
    if (routes.sessions !== null) {
      const listing = { ...routes.sessions, onRequest: handlers.authenticate }
      scope.get<{ Querystring: { cursor?: string, limit?: string } }>('/sessions', { ...listing, schema: listSessionsSchema }, handlers.listSessions)
      scope.delete<{ Params: { id: string } }>('/sessions/:id', { ...listing, schema: revokeSessionSchema }, handlers.revokeSession)
    }
  }, { prefix: routes.prefix })
}

/** `reply.issueTokens` as the plugin declares it. */
type ReplyIssue = (this: FastifyReply, userId: string | number, issueOptions?: IssueRequest) => unknown
/** `reply.stepUp` as the plugin declares it. */
type ReplyStepUp = (this: FastifyReply, stepUpOptions?: StepUpOptions) => unknown

/** Where the `decorators` option is documented, for the errors that send the reader there. */
const DECORATORS_DOCS = 'docs/options.md#decorators'

/** A decorator's name is taken: the plugin's error, naming the option that gives it another. */
function taken (key: keyof DefaultDecoratorNames, name: string): never {
  fail(`decorators.${key}`, `"${name}" is a decorator here already (the app's own, such as @fastify/jwt's authenticate recipe, another plugin's, ` +
    `or this plugin's registered twice): register the plugin once, or give its decorator another name, e.g. decorators: { ${key}: '${OTHER_NAMES[key]}' } (see ${DECORATORS_DOCS})`)
}

/** A name to suggest for each decorator, when its own is taken. */
const OTHER_NAMES: Readonly<Record<keyof DefaultDecoratorNames, string>> = {
  user: 'session',
  authenticate: 'authenticateSession',
  authenticateStrict: 'authenticateSessionStrict',
  refresh: 'refreshSession',
  issueTokens: 'issueSessionTokens',
  stepUp: 'stepUpSession',
  tokenSessions: 'sessionTokens'
}

/**
 * Claims the decorators' names before anything is built, so that a clash fails the
 * registration with the plugin's error, not Fastify's bare one, and leaves nothing running.
 * Fastify refuses an instance decorator the instance has itself (one inherited from a
 * parent scope may be shadowed): that is checked; the request and reply decorators are
 * declared here, their clash caught. Answers whether `request.user` is left undeclared,
 * for the plugin's hook to set null.
 */
function claimDecorators (fastify: FastifyInstance, names: ResolvedOptions['decorators'], issueTokens: ReplyIssue, stepUp: ReplyStepUp): boolean {
  for (const key of ['tokenSessions', 'authenticate', 'authenticateStrict', 'refresh'] as const) {
    if (Object.hasOwn(fastify, names[key])) taken(key, names[key])
  }
  declare('issueTokens', names.issueTokens, () => fastify.decorateReply(names.issueTokens, issueTokens))
  declare('stepUp', names.stepUp, () => fastify.decorateReply(names.stepUp, stepUp))
  // `request.user` is shared with the app and @fastify/jwt, which may declare it before or
  // after the plugin: declared here, a later declaration would throw, and from a plugin
  // that is not async (@fastify/jwt) the error escapes Fastify's loader and ends the
  // process. Set to null by the plugin's onRequest hook instead, unless already declared.
  // Any other name is the plugin's alone.
  if (names.user === 'user') return !fastify.hasRequestDecorator('user')
  declare('user', names.user, () => fastify.decorateRequest(names.user, null))
  return false
}

function declare (key: keyof DefaultDecoratorNames, name: string, decorate: () => void): void {
  try {
    decorate()
  } catch {
    // The one refusal possible here (a null or a function, declared while registering).
    taken(key, name)
  }
}

async function tokenSessions (fastify: FastifyInstance, rawOptions: TokenSessionsOptions): Promise<void> {
  const options = resolveOptions(rawOptions)
  const names = options.decorators
  // Called by requests only, once `handlers` below exists.
  const userUndeclared = claimDecorators(fastify, names, function issueTokens (this: FastifyReply, userId: string | number, issueOptions?: IssueRequest) {
    return handlers.issueTokens(this.request, this, userId, issueOptions)
  }, function stepUp (this: FastifyReply, stepUpOptions?: StepUpOptions) {
    return handlers.stepUp(this.request, this, stepUpOptions)
  })
  // The plugin reads its cookies from the Cookie header itself and needs @fastify/cookie only
  // to set them: registered here, it parses no request's cookies (`hook: false`), which
  // would cost every request of the app. An app that reads `request.cookies` registers
  // @fastify/cookie itself, before the plugin, which then uses that registration.
  if (options.cookies !== null && !fastify.hasReplyDecorator('setCookie')) await fastify.register(fastifyCookie, { hook: false })

  for (const { option, message } of options.weakSecrets) fastify.log.warn({ option }, message)
  // Before the store: a telemetry option that cannot work leaves nothing open.
  const telemetry = await loadTelemetry(options.telemetry)
  const { store, owned } = buildStore(fastify, options)
  // One deadline for all of start-up: a store that is down delays it by storeTimeout at most.
  const deadline = Date.now() + options.storeTimeout
  try {
    await until(deadline, store.checkSetup?.())
  } catch (err) {
    if (owned) await store.close()
    throw err
  }
  const clock = new StoreClock(() => store.time(), fastify.log)
  const codec = await createTokenCodec(fastify, { ...options, now: () => clock.now() })
  const revocations = new RevocationList(store.revocationFeed, clock, { ...options.revocationFeed, rememberMs: options.rememberMs }, fastify.log, telemetry)
  const sessions = new Sessions(options, codec, store, revocations, clock, createEmitter(options.hooks, fastify.log), fastify.log, telemetry)
  const dpop = new DpopVerifier(options.dpop, options.keys.dpopNonce, options.origins.publicOrigin, () => clock.now())
  const { knownAliveMs, maxLookups } = options.revocationFeed
  const liveCheck = new LiveCheck(sessions, { knownAliveMs, maxLookups, retryMs: options.retryAfter * 1000, maxKnownAlive: MAX_KNOWN_SESSIONS }, fastify.log)
  const handlers = createHandlers(options, sessions, revocations, liveCheck, dpop, fastify.log, telemetry)
  fastify.addHook('onClose', async () => {
    clock.stop()
    await revocations.close()
  })
  if (owned) fastify.addHook('onClose', async () => { await store.close() })
  // The first readings of the store's clock: a store that is down at start-up leaves the
  // offset at 0 until it answers (the feed's connect measures).
  await until(deadline, clock.calibrate())
  clock.start()
  await revocations.start(Math.max(0, deadline - Date.now()))

  const api: TokenSessionsApi = {
    store,
    health: async () => {
      const storeUp = await sessions.storeAnswers()
      return {
        // Under check-store an instance whose feed is down still serves correctly, through
        // the store: a pub/sub blip must not take every instance out of the balancer.
        ok: storeUp && (revocations.live || options.revocationFeed.onOutage === 'check-store'),
        store: storeUp ? 'up' : 'down',
        revocationFeed: revocations.live ? 'up' : 'down',
        clockOffsetMs: clock.offsetMs
      }
    },
    issue: async (userId, ...issueOptions) => {
      const tokens = await sessions.issue(userId, issueOptions[0] ?? {})
      telemetry?.sessionStarted('body')
      return { ...tokens, transport: 'body' }
    },
    refresh: async (refreshToken) => ({ ...await sessions.rotate(refreshToken), transport: 'body' }),
    verifyAccessToken: (accessToken) => sessions.verifyAccess(accessToken),
    jwks: () => ({ keys: options.keys.access.keys.flatMap((key) => key.jwk === undefined ? [] : [key.jwk]) }),
    listSessions: async (userId, page = {}) => await listPage(sessions, userId, page),
    revokeSession: async (userId, sessionId, revokeOptions = {}) =>
      await sessions.revoke({ userId: checkUserId(userId), sessionId }, revokeOptions.reason ?? 'revoked', revokeOptions.request),
    revokeAllSessions: async (userId, revokeOptions = {}) => {
      const except = revokeOptions.except === undefined ? {} : { except: revokeOptions.except }
      await sessions.revokeAll(userId, except, revokeOptions.reason ?? 'revoked', revokeOptions.request)
    }
  }

  fastify.decorate(names.tokenSessions, api)
  fastify.decorate(names.authenticate, handlers.authenticate)
  fastify.decorate(names.authenticateStrict, handlers.authenticateStrict)
  fastify.decorate(names.refresh, handlers.refresh)

  // Declared, so that every request object has the slot from the start (one shape for all).
  if (!fastify.hasRequestDecorator(ARRIVED)) fastify.decorateRequest(ARRIVED, undefined)
  fastify.addHook('onRequest', userUndeclared ? noteArrivalNullUser : noteArrival)
  // A hook of the whole app, routes declared before the plugin loaded included (Fastify
  // gives each route the app's hooks when the app is ready).
  if (handlers.protect !== undefined) fastify.addHook('onRequest', handlers.protect)
  fastify.addHook('onRoute', undefinedHooks(fastify.log, handlers.protect !== undefined))
  fastify.addHook('onError', handlers.onError)
  if (options.routes !== null) {
    registerRoutes(fastify, options.routes, handlers, api)
    registerOAuthRoutes(fastify, options.routes, sessions, dpop, options.retryAfter, telemetry)
  }
  // Not awaited (a slow store must not delay start-up); it never rejects.
  fastify.addHook('onReady', async () => { warnIfEvicting(fastify, store) })
}

/**
 * Secure login sessions for Fastify: short-lived JWT access tokens and rotating,
 * reuse-detecting refresh tokens kept in Redis.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify'
 * import tokenSessions from 'fastify-token-sessions'
 *
 * const app = Fastify()
 * await app.register(tokenSessions, { secret: process.env.JWT_SECRET, redis: process.env.REDIS_URL, routes: true })
 * app.post('/auth/login', async (request, reply) => {
 *   const user = await checkPassword(request.body)        // your code
 *   return tokenResponse(await reply.issueTokens(user.id))
 * })
 * app.get('/me', { onRequest: app.authenticate }, async (request) => request.user)
 * ```
 */
const plugin = fp(tokenSessions, { name: 'fastify-token-sessions', fastify: '5.x' })

export default plugin
export { plugin as tokenSessions }
export { tokenResponse, TRANSPORT_HEADER } from './transport.js'
export { loggable } from './log.js'
export { errorResponseSchema, tokenResponseSchema } from './schemas.js'
export { MemoryStore, type MemoryStoreOptions } from './stores/memory.js'
export { RedisStore, DEFAULT_KEY_PREFIX, type RedisClient, type RedisStoreOptions } from './stores/redis.js'
export type {
  SessionStore, Deadline, NewSession, CreateOutcome, RotateRequest, RotateOutcome, StepUpRequest, StepUpOutcome, RevokeRequest, PresentedToken, RevokeAllOptions, RevokeAllOutcome,
  PageRequest, SessionPage, ClientInfo, SessionInfo, Revocation, SessionRevocation, UserRevocation, RevocationFeed, RevocationListener
} from './stores/store.js'
/**
 * Every error the plugin sends, each a `@fastify/error` constructor with a stable `code`.
 *
 * @example
 * ```ts
 * import { errors } from 'fastify-token-sessions'
 * app.setErrorHandler((error, request, reply) => {
 *   if (error instanceof errors.TokenReusedError) request.log.warn('refresh token reuse')
 *   reply.send(error)
 * })
 * ```
 */
export * as errors from './errors.js'
export { ACCESS_TOKEN_TYPE, PLAIN_ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE, MAX_CLAIMS_BYTES } from './tokens.js'
export type { SessionEnd } from './claims.js'
export {
  DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_REFRESH_TOKEN_TTL, DEFAULT_REUSE_GRACE, MAX_REUSE_GRACE, DEFAULT_SESSION_MAX_LIFETIME, MAX_TOKEN_TTL, MAX_ACCESS_TOKEN_TTL,
  MIN_SECRET_BYTES, DEFAULT_MAX_SESSIONS_PER_USER, MAX_SESSIONS_PER_USER
} from './options.js'
export { ALGORITHMS, type AccessTokenKey, type Algorithm } from './keys.js'
export type {
  AuditEvent, AuditHook, AuditHookName, AuditHooks, Claims, ClaimsContext, ClaimsHook, ClientInfoOptions, CookieOptions, DecoratorName, DecoratorNames, DecoratorOptions,
  DefaultDecoratorNames, Health, InstanceDecorators, IssueArguments, IssueOptions, IssueSettings, IssueTokens, ReplyDecorators, RequestDecorators,
  OutagePolicy, RevokeOptions, SessionFields, StepUp, StepUpOptions, StepUpRequirement,
  RouteOptions, RoutesOptions, SessionListPage, SessionListResponse, SessionUser, TelemetryOptions, TokenResponse, TokenSessionsApi, TokenSessionsOptions, TokenSet,
  TokenTransport
} from './types.js'
