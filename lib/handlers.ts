import type { FastifyBaseLogger, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import type { DpopVerifier, Proof } from './dpop.js'
import { provenSession, tokenSession, type TokenSession } from './ending.js'
import {
  BadRequestError, ClaimsUnavailableError, CookieConflictError, DpopAccessNonceRequiredError, DpopAccessProofInvalidError, SessionNotFoundError, SessionRevokedError, StepUpRequiredError,
  StoreUnavailableError, TokenInvalidError, TokenMissingError
} from './errors.js'
import { loggable, rateBound } from './log.js'
import type { ResolvedOptions } from './options.js'
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './schemas.js'
import type { SessionRef, Sessions } from './sessions.js'
import type { LiveCheck } from './live-check.js'
import type { RevocationList } from './revocations.js'
import type { Telemetry } from './telemetry.js'
import { requirementOf, shortfall, type Requirement } from './step-up.js'
import { Transport, checkedLength, tokenResponse, type CarriedToken } from './transport.js'
import type { IssueRequest, SessionListPage, SessionListResponse, SessionUser, StepUpOptions, StepUpRequirement, TokenResponse, TokenSet } from './types.js'

/** When a request arrived (ms, this instance's clock), for `issueTokens`' default `authenticatedAt`. */
export const ARRIVED = Symbol('fastify-token-sessions.arrived')
/** Set by a handler whose request named its session by a cookie that a 401 makes useless: the cookies go. */
const CLEAR_ON_401 = Symbol('fastify-token-sessions.clearOn401')
/** Set by `authenticate` on a request that named the DPoP scheme: its 401 carries a DPoP challenge. */
const DPOP_SCHEME = Symbol('fastify-token-sessions.dpopScheme')
/** Set by `authenticate` on a DPoP-bound request: the proof it accepted, which `dpop.sharedReplayCheck` asks the store about. */
const SHARED_PROOF = Symbol('fastify-token-sessions.sharedProof')
/** Set on a request that falls short of its route's step-up requirement: its challenge's parameters. */
const STEP_UP = Symbol('fastify-token-sessions.stepUp')
type MarkedRequest = FastifyRequest & { [ARRIVED]?: number, [CLEAR_ON_401]?: boolean, [DPOP_SCHEME]?: boolean, [SHARED_PROOF]?: Proof, [STEP_UP]?: string }

/** Marks the routes the plugin declares itself: each has its own checks, and `protectRoutes` leaves it to them. */
const OWN_ROUTE = Symbol('fastify-token-sessions.ownRoute')

/** An `onRoute` hook of the plugin's own scopes: their routes are the plugin's (see `protectRoutes`). */
export function markOwn (route: RouteOptions): void {
  route.config = { ...route.config, [OWN_ROUTE]: true } as NonNullable<RouteOptions['config']>
}

/** The `error` of a DPoP challenge (RFC 9449 §7.1) for each code of a 401 of `authenticate`. */
const DPOP_CHALLENGES: Record<string, string> = { FTS_DPOP_PROOF_INVALID: 'invalid_dpop_proof', FTS_DPOP_NONCE_REQUIRED: 'use_dpop_nonce' }

/** Requests whose method changes nothing need no CSRF proof. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * The `onRequest` hook that notes when each request arrived: a login's credentials were
 * checked after it, so a revocation of every session of the user after it wins the race.
 */
export function noteArrival (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  (request as MarkedRequest)[ARRIVED] = Date.now()
  done()
}

/**
 * `noteArrival`, and `request.user` null until `authenticate` sets it, as a declared
 * decorator would have it: for when the plugin leaves `user` undeclared (the name is
 * shared with @fastify/jwt, which may declare it after the plugin). One hook for both,
 * since every route of the app runs it.
 */
export function noteArrivalNullUser (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  const slot = request as unknown as { user?: unknown }
  if (slot.user === undefined) slot.user = null
  noteArrival(request, reply, done)
}

/** What every handler works with. */
interface Context {
  readonly sessions: Sessions
  readonly revocations: RevocationList
  /** Asks the store about sessions while the revocation feed is down (`check-store`). */
  readonly liveCheck: LiveCheck
  readonly transport: Transport
  readonly dpop: DpopVerifier
  readonly retryAfter: number
  /** Whether a DPoP-bound request's proof id is checked in the store too (`dpop.sharedReplayCheck`). */
  readonly sharedReplayCheck: boolean
  /** The request property that holds the user (`decorators.user`). */
  readonly userKey: string
  /** Told of each store failure a request answers 503 for; logs the outage, not each one. */
  readonly outage: (error: Error) => void
  /** Under `protectRoutes`: the requests its hook authenticated, which the route's own `authenticate` does not check again. */
  readonly protected: WeakSet<FastifyRequest> | undefined
  /** The app's metrics and traces, when it has OpenTelemetry's API. */
  readonly telemetry: Telemetry | undefined
}

/** A request seen through its user property, whatever its name. */
type UserSlots = Record<string, SessionUser>

function userOf (context: Context, request: FastifyRequest): SessionUser {
  return (request as unknown as UserSlots)[context.userKey] as SessionUser
}

/** A session a request named, and whether a cookie carried the token that named it. */
interface NamedSession extends SessionRef {
  byCookie: boolean
}

/**
 * The HTTP side of the plugin: the `authenticate` hooks, the routes' handlers and
 * `issueTokens`, each wrapped once (see {@link guard}).
 */
export function createHandlers (
  options: ResolvedOptions, sessions: Sessions, revocations: RevocationList, liveCheck: LiveCheck, dpop: DpopVerifier, log: FastifyBaseLogger, telemetry?: Telemetry
) {
  const context: Context = {
    sessions,
    revocations,
    liveCheck,
    transport: new Transport(options),
    dpop,
    retryAfter: options.retryAfter,
    sharedReplayCheck: options.dpop.sharedReplayCheck,
    userKey: options.decorators.user,
    // Each 503 is the app's error handler's to log, once; this line is the outage's, and it
    // is there even where that handler logs nothing (disableRequestLogging, a handler that
    // only answers): at most one every 10 s, with the number of 503s since the last.
    outage: rateBound((error, skipped) => {
      log.warn({ err: loggable(error.cause), answeredSince: skipped }, 'session store unavailable: requests that need it answer 503 with Retry-After')
    }),
    protected: options.protectRoutes === null ? undefined : new WeakSet<FastifyRequest>(),
    telemetry
  }
  // The decorators (authenticate, authenticateStrict, refresh, issueTokens) are documented
  // where they are typed, in types.ts; the routes in docs/sessions.md.
  const authenticateHook = hookGuard(context, authenticate)
  return {
    authenticate: Object.assign(authenticateHook, {
      require: (requirement: StepUpRequirement) => requireHook(context, authenticateHook, requirementOf(requirement))
    }),
    authenticateStrict: guard(context, authenticateStrict, (error) => { telemetry?.refused(error) }),
    protect: options.protectRoutes === null ? undefined : protectHook(context, authenticateHook, options.protectRoutes.publicPrefixes),
    refresh: guard(context, refresh),
    logout: guard(context, logout),
    logoutAll: guard(context, logoutAll),
    issueTokens: guard(context, issueTokens),
    stepUp: guard(context, stepUp),
    listSessions: guard(context, listSessions),
    revokeSession: guard(context, revokeSession),
    // The app's own routes call the store too (`app.tokenSessions.revokeAllSessions` in a
    // password change): their 503 carries Retry-After and counts in the outage's line.
    onError: (_request: FastifyRequest, reply: FastifyReply, error: unknown, done: () => void): void => {
      storeFailed(context, reply, error)
      done()
    }
  }
}

/** The handlers `createHandlers` returns. */
export type Handlers = ReturnType<typeof createHandlers>

/**
 * A handler with its failures made ready for the wire, in one place: a 401 carries the
 * Bearer challenge (and clears the cookies when its handler asked for that), a store
 * failure carries `Retry-After` (see {@link storeFailed}). The error goes on to the app's error handler, which logs
 * it (Fastify's own logs a 5xx with its cause's message and stack, never a Redis
 * command's arguments): logged here too, every outage's 503 would be logged twice. The
 * outage itself is logged here, rate-bound (see `Context.outage`).
 */
function guard<R extends FastifyRequest, A extends unknown[], T> (
  context: Context, run: (context: Context, request: R, reply: FastifyReply, ...args: A) => T | Promise<T>, counted?: (error: unknown) => void
): (request: R, reply: FastifyReply, ...args: A) => Promise<T> {
  return async function guarded (request, reply, ...args) {
    try {
      return await run(context, request, reply, ...args)
    } catch (error) {
      counted?.(error)
      throw failed(context, request as MarkedRequest, reply, error)
    }
  }
}

/**
 * {@link guard} for a hook that answers at once on its usual path: as a hook, Fastify
 * passes it `done` and it answers through that, with no promise and no turn of the
 * microtask queue (this runs on every authenticated request). Only when it must wait (it
 * returns a promise: a store lookup) does `done` wait for it. Called by app code without
 * `done`, as `await app.authenticate(request, reply)`, it returns a promise as an async
 * hook does.
 */
function hookGuard (
  context: Context, run: (context: Context, request: FastifyRequest, reply: FastifyReply) => Promise<void> | undefined
): (request: FastifyRequest, reply: FastifyReply, done?: HookHandlerDoneFunction) => Promise<void> | undefined {
  return function guarded (request, reply, done) {
    let error: unknown
    let waiting: Promise<void> | undefined
    try {
      waiting = run(context, request, reply)
    } catch (caught) {
      context.telemetry?.refused(caught)
      error = failed(context, request as MarkedRequest, reply, caught)
    }
    if (waiting !== undefined) {
      const settled = waiting.catch((caught: unknown) => {
        context.telemetry?.refused(caught)
        throw failed(context, request as MarkedRequest, reply, caught)
      })
      if (typeof done !== 'function') return settled
      settled.then(() => { done() }, (failure: Error) => { done(failure) })
      return undefined
    }
    if (typeof done === 'function') {
      done(error as Error | undefined)
      return undefined
    }
    return error === undefined ? Promise.resolve() : Promise.reject(error)
  }
}

function failed (context: Context, request: MarkedRequest, reply: FastifyReply, error: unknown): unknown {
  if (statusOf(error) === 401) {
    const stepUp = request[STEP_UP]
    if (request[DPOP_SCHEME] === true) {
      const challenge = stepUp ?? `error="${DPOP_CHALLENGES[(error as { code: string }).code] ?? 'invalid_token'}"`
      reply.header('www-authenticate', `DPoP ${challenge}, algs="${context.dpop.algorithms}"`)
    } else {
      reply.header('www-authenticate', stepUp === undefined ? 'Bearer error="invalid_token"' : `Bearer ${stepUp}`)
    }
    if (request[CLEAR_ON_401] === true) context.transport.clear(reply)
  }
  context.dpop.offerNonce(request, reply)
  storeFailed(context, reply, error)
  return error
}

/**
 * A store failure's answer carries `Retry-After`, and the outage is logged, once per
 * answer; so does the claims hook's failure, which is the app's to log, not an outage.
 */
function storeFailed (context: Context, reply: FastifyReply, error: unknown): void {
  const store = error instanceof StoreUnavailableError
  if (!(store || error instanceof ClaimsUnavailableError) || reply.hasHeader('retry-after')) return
  reply.header('retry-after', String(context.retryAfter))
  if (store) context.outage(error)
}

/** The HTTP status an error carries, if it is one of ours or Fastify's. */
function statusOf (error: unknown): unknown {
  return (error as { statusCode?: unknown }).statusCode
}

/**
 * The user of the request's access token, at once from this instance's revocation list
 * while the feed is live; while it is down under `check-store`, once the store has said the
 * session is live (the only path that waits).
 */
function authenticate (context: Context, request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined {
  // protectRoutes' hook ran this very check on the request already.
  if (context.protected?.has(request) === true) return undefined
  const user = authenticated(context, request, reply)
  const slots = request as unknown as UserSlots
  const marked = request as MarkedRequest
  // The session first, then the proof's id: a refused session costs no proof's write.
  const live = context.revocations.checkFeed() ? context.liveCheck.confirm(user.id, user.sessionId) : undefined
  const checked = live === undefined ? sharedProofCheck(context, marked) : live.then(() => sharedProofCheck(context, marked))
  if (checked === undefined) {
    slots[context.userKey] = user
    return undefined
  }
  return checked.then(() => { slots[context.userKey] = user })
}

/**
 * Deny by default (`protectRoutes`), an `onRequest` hook of the whole app: every request
 * is authenticated before the route's own hooks run, but a CORS preflight, a request that
 * found no route (it stays a 404), a route whose config says `public: true`, one whose path
 * is or is below a public prefix (the route's declared path, not the request's, so that
 * `/docs/../admin` is judged as the route it reaches), and the plugin's own routes. A
 * route that forgot its hook, or got `undefined` for it, is protected all the same.
 */
function protectHook (
  context: Context, authenticateHook: (request: FastifyRequest, reply: FastifyReply, done?: HookHandlerDoneFunction) => Promise<void> | undefined, prefixes: readonly string[]
): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  const guarded = context.protected as WeakSet<FastifyRequest>
  return function protectRoutes (request, reply, done) {
    const route = request.routeOptions
    const config = route.config as { public?: unknown, [OWN_ROUTE]?: boolean }
    if (preflight(request) || request.is404 || config.public === true || config[OWN_ROUTE] === true || publicPath(route.url, prefixes)) return done()
    authenticateHook(request, reply, (error?: Error) => {
      if (error === undefined) guarded.add(request)
      done(error)
    })
  }
}

/**
 * A CORS preflight: an OPTIONS request that reached a route declared for OPTIONS alone (as
 * @fastify/cors declares its own). A route that also takes other methods (`app.all`) is
 * the app's: its OPTIONS requests are authenticated like the rest.
 */
function preflight (request: FastifyRequest): boolean {
  return request.method === 'OPTIONS' && request.routeOptions.method === 'OPTIONS'
}

/** Whether a route's path is one of the public prefixes, or below one. */
function publicPath (url: string | undefined, prefixes: readonly string[]): boolean {
  return url !== undefined && prefixes.some((prefix) => url === prefix || url.startsWith(`${prefix}/`))
}

/**
 * `authenticate`, then the route's step-up requirement: a user whose last authentication
 * falls short gets 401 `FTS_STEP_UP_REQUIRED` with the `insufficient_user_authentication`
 * challenge (RFC 9470 §3), under the scheme the token came with.
 */
function requireHook (
  context: Context, authenticateHook: (request: FastifyRequest, reply: FastifyReply) => Promise<void> | undefined, requirement: Requirement
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async function stepUpRequired (request, reply) {
    await authenticateHook(request, reply)
    const description = shortfall(userOf(context, request), requirement, context.sessions.now())
    if (description === undefined) return
    const marked = request as MarkedRequest
    context.telemetry?.challenged()
    marked[STEP_UP] = `error="insufficient_user_authentication", error_description="${description}"${requirement.params}`
    throw failed(context, marked, reply, new StepUpRequiredError())
  }
}

async function authenticateStrict (context: Context, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const { sessions, userKey } = context
  const user = authenticated(context, request, reply)
  // The store decides here, whatever the feed's state; `reject` still refuses as it says.
  context.revocations.checkFeed()
  await sharedProofCheck(context, request as MarkedRequest)
  if (!await sessions.isLive(user.id, user.sessionId)) throw new SessionRevokedError()
  ;(request as unknown as UserSlots)[userKey] = user
}

/**
 * The user of a valid access token whose session no instance has revoked. This runs on
 * every authenticated request: a Bearer token goes straight to verification.
 */
function authenticated ({ sessions, revocations, transport, dpop }: Context, request: FastifyRequest, reply: FastifyReply): SessionUser {
  const bearer = transport.bearer(request)
  const bound = bearer === undefined ? dpopBound(transport, request as MarkedRequest) : undefined
  let user: SessionUser
  if (bound !== undefined) {
    user = dpopUser(sessions, dpop, checkedLength(bound), request as MarkedRequest, reply)
  } else if (bearer === undefined) {
    const cookie = transport.accessCookie(request)
    if (cookie === undefined) throw new TokenMissingError()
    if (!SAFE_METHODS.has(request.method)) transport.checkCsrf(request)
    user = sessions.verifyAccess(checkedLength(cookie.token))
    // A planted access cookie is of another session than the session cookie's.
    if (user.sessionId !== cookie.boundTo) throw new TokenInvalidError()
  } else {
    user = sessions.verifyAccess(checkedLength(bearer))
  }
  if (revocations.isRevoked(user.id, user.sessionId, user.sessionStartedAt)) throw new SessionRevokedError()
  return user
}

/** The token of an `Authorization: DPoP` header; a malformed one is a 401 with the DPoP challenge. */
function dpopBound (transport: Transport, request: MarkedRequest): string | undefined {
  try {
    return transport.dpopBound(request)
  } catch (error) {
    request[DPOP_SCHEME] = true
    throw error
  }
}

/**
 * The user of a DPoP-bound access token (`Authorization: DPoP <token>`), which needs a proof
 * by the token's key for this request, naming the token's hash, not seen before here.
 */
function dpopUser (sessions: Sessions, dpop: DpopVerifier, token: string, request: MarkedRequest, reply: FastifyReply): SessionUser {
  request[DPOP_SCHEME] = true
  // The token first, against the key it names (its signature proves it names it): a forged
  // token never costs a proof's verification. One bound to no key is refused.
  const { user, jkt } = sessions.verifyAccessAnyKey(token, true)
  const proof = dpop.check(request, 'resource', token)
  if (proof === undefined || proof.jkt !== jkt) throw new DpopAccessProofInvalidError()
  dpop.remember(proof, 'resource')
  request[SHARED_PROOF] = proof
  dpop.offerNonce(request, reply)
  return user
}

/**
 * With `dpop.sharedReplayCheck`, the store's word on the proof of a DPoP-bound request that
 * passed every other check (asked last, so that a refused request costs no round trip):
 * refused if any instance presented it first. Undefined when there is nothing to wait for.
 */
function sharedProofCheck ({ sessions, sharedReplayCheck }: Context, request: MarkedRequest): Promise<void> | undefined {
  const proof = request[SHARED_PROOF]
  if (!sharedReplayCheck || proof === undefined) return undefined
  return sessions.rememberProof(proof).then((first) => {
    if (!first) throw new DpopAccessProofInvalidError()
  })
}

async function refresh ({ sessions, transport, dpop, telemetry }: Context, request: MarkedRequest, reply: FastifyReply): Promise<TokenResponse> {
  let found: ReturnType<Transport['refreshToken']>
  let token: string
  try {
    found = transport.refreshToken(request)
    if (found === undefined) throw new TokenMissingError()
    if (found.boundTo !== undefined) {
      // A refresh cookie that can no longer work is only noise for the browser.
      request[CLEAR_ON_401] = true
      transport.checkCsrf(request)
    }
    token = checkedLength(found.token)
  } catch (error) {
    // Refused before the token was looked at: a refresh all the same, in the metrics.
    telemetry?.refreshFailed(error)
    throw error
  }
  const fromCookie = found.boundTo !== undefined
  // A native client's access token is bound too; a browser's cookie stays a bearer token.
  const tokens = await sessions.rotate(token, request, found.boundTo, { proof: () => dpop.check(request, 'grant'), bindAccess: !fromCookie })
  dpop.offerNonce(request, reply)
  return tokenResponse(transport.deliver(reply, { ...tokens, transport: fromCookie ? 'cookie' : 'body' }))
}

/** Ends the caller's session. Idempotent: without a live session it still answers 204. */
async function logout (context: Context, request: MarkedRequest, reply: FastifyReply): Promise<void> {
  const { sessions, transport, dpop } = context
  request[CLEAR_ON_401] = true
  const session = namedSession(context, request)
  if (session !== undefined) await sessions.revoke(session, 'logout', request)
  dpop.offerNonce(request, reply)
  transport.loggedOut(reply, session?.byCookie === true)
}

/** Ends every session of the caller, who must hold a live one, in one step whatever their number. */
async function logoutAll (context: Context, request: MarkedRequest, reply: FastifyReply): Promise<void> {
  const { sessions, transport, dpop } = context
  const session = sessionOf(context, request)
  request[CLEAR_ON_401] = true
  if (!await sessions.revokeAll(session.userId, { caller: session }, 'logout-all', request)) throw new SessionRevokedError()
  dpop.offerNonce(request, reply)
  transport.loggedOut(reply, session.byCookie)
}

/**
 * Starts a session. A DPoP proof with the login binds the session to its key for good:
 * every refresh then needs a proof by it (and a native client's access tokens too).
 */
async function issueTokens (
  { sessions, transport, dpop, telemetry }: Context, request: MarkedRequest, reply: FastifyReply, userId: string | number, issueOptions: IssueRequest = {}
): Promise<TokenSet> {
  const chosen = transport.chosenFor(request, issueOptions.transport)
  const proof = dpop.check(request, 'grant')
  if (proof !== undefined) dpop.remember(proof, 'grant')
  // By default the credentials were checked after the request arrived.
  const authenticatedAt = issueOptions.authenticatedAt ?? arrivedAt(request)
  const tokens = await sessions.issue(userId, { ...issueOptions, authenticatedAt }, request, proof === undefined ? undefined : { proof, bindAccess: chosen === 'body' })
  telemetry?.sessionStarted(chosen)
  dpop.offerNonce(request, reply)
  return transport.deliver(reply, { ...tokens, transport: chosen })
}

/**
 * Steps the caller's session up after the app checked the credentials again: the request
 * was authenticated (`authenticate` set its user), and its access token says the grant and
 * the DPoP key the new tokens keep. Delivered as `issueTokens` delivers a login's.
 */
async function stepUp ({ sessions, transport, userKey }: Context, request: MarkedRequest, reply: FastifyReply, options: StepUpOptions = {}): Promise<TokenSet> {
  const user = (request as unknown as Partial<UserSlots>)[userKey]
  const header = transport.bearer(request) ?? transport.dpopBound(request)
  const token = header ?? transport.accessCookie(request)?.token
  if (user === undefined || user === null || token === undefined) {
    throw new TypeError('fastify-token-sessions: stepUp needs an authenticated request: run authenticate first (onRequest)')
  }
  const access = sessions.verifyAccessAnyKey(checkedLength(token), false)
  if (access.user.sessionId !== user.sessionId) throw new TokenInvalidError()
  // By default the credentials were checked after the request arrived.
  const authenticatedAt = options.authenticatedAt ?? arrivedAt(request)
  // The claims as the verified token carries them, not as the app may have changed request.user since.
  const tokens = await sessions.stepUp(access.user, access, { ...options, authenticatedAt }, request)
  // A client that sent its access token in a header holds its tokens itself: the new
  // refresh token goes in the body (as cookies it would never reach that client).
  return transport.deliver(reply, { ...tokens, transport: transport.chosenFor(request, header === undefined ? undefined : 'body') })
}

/** When the request arrived (the plugin's onRequest hook noted it), or now for one it did not see. */
function arrivedAt (request: MarkedRequest): number {
  return request[ARRIVED] ?? Date.now()
}

/** The caller's live sessions, a page at a time, its own flagged `current`. */
async function listSessions (
  context: Context, request: FastifyRequest<{ Querystring: { cursor?: string, limit?: string } }>, reply: FastifyReply
): Promise<SessionListResponse> {
  const { sessions } = context
  const { id, sessionId } = userOf(context, request)
  const page = await listPage(sessions, id, { cursor: request.query.cursor, limit: request.query.limit })
  reply.header('cache-control', 'no-store')
  return {
    sessions: page.sessions.map((session) => ({ ...session, current: session.sessionId === sessionId })),
    nextCursor: page.nextCursor ?? null
  }
}

/** Ends one of the caller's sessions; another's is a 404, and nothing changes. */
async function revokeSession (context: Context, request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<void> {
  const { sessions, transport } = context
  const user = userOf(context, request)
  if (!await sessions.revoke({ userId: user.id, sessionId: request.params.id }, 'revoked', request)) throw new SessionNotFoundError()
  if (request.params.id === user.sessionId) transport.clear(reply)
  reply.code(204)
}

/** A resource request's DPoP proof errors: a client must hear of them (of a nonce to use, above all), even at logout. */
const PROOF_ERRORS = [DpopAccessProofInvalidError, DpopAccessNonceRequiredError]

/**
 * For logout: the session named, or undefined when no token names one validly (a bound
 * token without a proof by its key names none).
 */
function namedSession (context: Context, request: MarkedRequest): NamedSession | undefined {
  try {
    return sessionOf(context, request)
  } catch (error) {
    if (statusOf(error) === 401 && !PROOF_ERRORS.some((proofError) => error instanceof proofError)) return undefined
    throw error
  }
}

/**
 * The session the caller names, by its refresh token or else its access token (CSRF
 * checked first when either is a cookie), with the DPoP proof that came (see
 * {@link provenSession}). Throws the first token's error if none holds; a bound access
 * token without a proof by its key is an invalid token.
 */
function sessionOf ({ transport, sessions, dpop }: Context, request: MarkedRequest): NamedSession {
  // A token cookie sent twice was planted; the other token may still name the session
  // (the refresh cookie is __Secure-, which a sibling can plant; the access cookie
  // __Host-, which it cannot), so that logout still works.
  const found: Array<CarriedToken & { kind: 'access' | 'refresh' }> = []
  let conflict: unknown
  for (const kind of ['refresh', 'access'] as const) {
    try {
      const candidate = kind === 'refresh' ? transport.refreshToken(request) : transport.accessToken(request)
      if (candidate !== undefined) found.push({ ...candidate, kind })
    } catch (error) {
      if (!(error instanceof CookieConflictError)) throw error
      conflict ??= error
    }
  }
  if (found.length === 0) throw conflict ?? new TokenMissingError()
  const byCookie = found.some((candidate) => candidate.boundTo !== undefined)
  if (byCookie) transport.checkCsrf(request)
  let firstError: unknown
  for (const candidate of found) {
    let named: TokenSession
    try {
      named = tokenSession(sessions, candidate.kind, checkedLength(candidate.token))
      if (candidate.boundTo !== undefined && candidate.boundTo !== named.sessionId) throw new TokenInvalidError()
    } catch (error) {
      firstError ??= error
      continue
    }
    // The token names the session; a proof that fails is the request's error, not the
    // next token's turn. A bound access token is presented as to `authenticate`, so its
    // proof is a resource request's, with the DPoP challenge on a 401.
    const session = provenProof(dpop, request, named)
    if (session === undefined) throw new TokenInvalidError()
    return { ...session, byCookie }
  }
  throw conflict ?? firstError
}

/** {@link provenSession} for logout: an access token's proof failing is a 401 with the DPoP challenge. */
function provenProof (dpop: DpopVerifier, request: MarkedRequest, named: TokenSession): SessionRef | undefined {
  try {
    return provenSession(dpop, request, named, 'resource')
  } catch (error) {
    if (named.access !== undefined) request[DPOP_SCHEME] = true
    throw error
  }
}

/** One page of a user's sessions as the API gives it: an opaque cursor, a checked size. */
export async function listPage (sessions: Sessions, userId: unknown, page: { cursor?: unknown, limit?: unknown }): Promise<SessionListPage> {
  const cursor = decodeCursor(page.cursor)
  const { sessions: listed, nextCursor } = await sessions.list(userId, { limit: pageSize(page.limit), ...(cursor === undefined ? {} : { cursor }) })
  const next = encodeCursor(nextCursor)
  return next === undefined ? { sessions: listed } : { sessions: listed, nextCursor: next }
}

/** An opaque page cursor: the start time of the last session listed, base64url. */
function encodeCursor (cursor: number | undefined): string | undefined {
  return cursor === undefined ? undefined : Buffer.from(String(cursor)).toString('base64url')
}

/** A cursor back to its start time; anything that is not one of ours is a 400. */
function decodeCursor (cursor: unknown): number | undefined {
  if (cursor === undefined) return undefined
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]{1,24}$/.test(cursor)) throw new BadRequestError()
  const text = Buffer.from(cursor, 'base64url').toString()
  const value = Number(text)
  if (!/^[0-9]{1,16}$/.test(text) || !Number.isSafeInteger(value)) throw new BadRequestError()
  return value
}

/** A page size: a whole number from 1 to {@link MAX_PAGE_SIZE}, as a number or a query string. */
function pageSize (limit: unknown): number {
  if (limit === undefined) return DEFAULT_PAGE_SIZE
  const value = typeof limit === 'string' && /^[0-9]{1,3}$/.test(limit) ? Number(limit) : limit
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_PAGE_SIZE) throw new BadRequestError()
  return value
}
