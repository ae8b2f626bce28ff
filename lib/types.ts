import type { JsonWebKey } from 'node:crypto'
import type { FastifyRequest, onRequestAsyncHookHandler, RouteHandlerMethod } from 'fastify'
import type { AccessTokenKey } from './keys.js'
import type { RedisClient } from './stores/redis.js'
import type { SessionInfo, SessionStore } from './stores/store.js'
import type { Claims } from './tokens.js'

/**
 * The authenticated user, set on `request.user` by `fastify.authenticate`. Add the claims
 * your app passes to `issueTokens` by declaration merging.
 *
 * @example
 * ```ts
 * declare module 'fastify-token-sessions' {
 *   interface SessionUser { username: string }
 * }
 * // request.user.username is now a string
 * ```
 */
export interface SessionUser {
  /** The user id (the tokens' `sub`). */
  id: string
  /** The session id (the tokens' `sid`). */
  sessionId: string
  /** When the access token expires, in milliseconds since the epoch (its `exp`). */
  expiresAt: number
}

/**
 * The tokens of one session, as issued at login or refresh.
 *
 * @example
 * ```ts
 * const tokens = await reply.issueTokens(user.id)
 * return tokenResponse(tokens) // { accessToken, tokenType: 'Bearer', expiresIn }
 * ```
 */
export interface TokenSet {
  accessToken: string
  refreshToken: string
  tokenType: 'Bearer'
  /** Seconds until the access token expires. */
  expiresIn: number
  /** Seconds until the refresh token expires. */
  refreshExpiresIn: number
  sessionId: string
  /** `cookie`: both tokens were set as cookies; `body`: the client keeps them itself. */
  transport: TokenTransport
}

/**
 * How tokens travel: httpOnly cookies (browsers) or the JSON body (native clients).
 *
 * @example
 * ```ts
 * // A CLI logs in without cookies, whatever headers it sends:
 * const tokens = await reply.issueTokens(user.id, { transport: 'body' })
 * ```
 */
export type TokenTransport = 'cookie' | 'body'

/**
 * Options of `reply.issueTokens` and `fastify.tokenSessions.issue`.
 *
 * @example
 * ```ts
 * await reply.issueTokens(user.id, { claims: { role: user.role }, label: 'Work laptop' })
 * ```
 */
export interface IssueOptions {
  /** The app's own claims, copied into every access token of the session. Keep them small. */
  claims?: Claims
  /**
   * Overrides the transport. By default tokens go in cookies when cookies are enabled,
   * unless the request carries `x-token-transport: body`.
   */
  transport?: TokenTransport
  /** A name for the session, shown in session lists (e.g. "Work laptop"); at most 100 characters. */
  label?: string
}

/**
 * Given to every audit hook. Never holds a token. `ip` and `userAgent` are those of the
 * request that caused the event (undefined when app code acted without a request).
 *
 * @example
 * ```ts
 * onSessionRevoked: (event) => audit.write({ kind: 'session-ended', ...event })
 * ```
 */
export interface AuditEvent {
  userId: string
  sessionId: string
  /** `login`, `refresh`, `logout`, `logout-all`, `reuse`, or the reason app code gave. */
  reason: string
  ip: string | undefined
  userAgent: string | undefined
}

/**
 * An audit hook: awaited; if it throws, the error is logged and the request goes on.
 *
 * @example
 * ```ts
 * const onReuseDetected: AuditHook = async (event, request) => {
 *   await alerts.send(`refresh token reused for ${event.userId} from ${event.ip}`)
 * }
 * ```
 */
export type AuditHook = (event: AuditEvent, request: FastifyRequest | undefined) => void | Promise<void>

/**
 * The audit hooks, each optional; given with the plugin's options.
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, {
 *   secret,
 *   onLogin: (event, request) => request?.log.info({ audit: 'login', userId: event.userId }),
 *   onReuseDetected: (event) => alerts.send(event)
 * })
 * ```
 */
export interface AuditHooks {
  /** A session started. */
  onLogin?: AuditHook
  /** A refresh token was rotated (not called for a replay within the grace window). */
  onRefresh?: AuditHook
  /** The caller ended its own session (logout, or its own session in logout-all). */
  onLogout?: AuditHook
  /** Any session ended before its time: logout, revocation, logout-all, reuse. */
  onSessionRevoked?: AuditHook
  /** A rotated refresh token came back: the session was revoked (e.g. raise an alert). */
  onReuseDetected?: AuditHook
}

/**
 * The name of an audit hook.
 *
 * @example
 * ```ts
 * const names: AuditHookName[] = ['onLogin', 'onLogout']
 * ```
 */
export type AuditHookName = keyof AuditHooks

/**
 * Which facts about the client a session records (both on by default).
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, { secret, clientInfo: { ip: false, userAgent: true } })
 * ```
 */
export interface ClientInfoOptions {
  /** Record the client's IP (`request.ip`; set Fastify's `trustProxy` behind a proxy). */
  ip?: boolean
  /** Record the client's `User-Agent` (cut to 128 printable ASCII characters). */
  userAgent?: boolean
}

/**
 * Cookie settings. Every cookie is httpOnly.
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, { secret, cookies: { domain: 'example.com', sameSite: 'lax' } })
 * ```
 */
export interface CookieOptions {
  /** Name of the access-token cookie (default `access_token`). */
  accessTokenName?: string
  /** Name of the refresh-token cookie (default `refresh_token`). */
  refreshTokenName?: string
  /** `Domain` of both cookies (default: none, the cookies stay on the exact host). */
  domain?: string
  /** `Path` of the access-token cookie (default `/`). */
  path?: string
  /** `Path` of the refresh-token cookie (default: the routes' prefix, or `/`). */
  refreshPath?: string
  /** `Secure` flag (default: on when `NODE_ENV` is `production`). */
  secure?: boolean
  /** `SameSite` (default `strict`). */
  sameSite?: 'strict' | 'lax' | 'none'
}

/**
 * Which routes the plugin registers, and where.
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, { secret, routes: { prefix: '/api/auth', jwks: true } })
 * ```
 */
export interface RoutesOptions {
  /** Prefix of the routes (default `/auth`). */
  prefix?: string
  /** `POST <prefix>/refresh` (default true). */
  refresh?: boolean
  /** `POST <prefix>/logout` (default true). */
  logout?: boolean
  /** `POST <prefix>/logout-all` (default true). */
  logoutAll?: boolean
  /** `GET <prefix>/sessions` and `DELETE <prefix>/sessions/:id` (default true). */
  sessions?: boolean
  /** `GET <prefix>/.well-known/jwks.json`, the public access-token keys (default false). */
  jwks?: boolean
}

/**
 * Options of the plugin. Durations are in seconds.
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, {
 *   secret: process.env.JWT_SECRET,           // at least 32 bytes
 *   redis: 'redis://127.0.0.1:6379',
 *   accessTokenTtl: 900,
 *   refreshTokenTtl: 86_400,
 *   routes: { prefix: '/auth' }
 * })
 * ```
 */
export interface TokenSessionsOptions extends AuditHooks {
  /** One secret (at least 32 bytes) from which separate access and refresh keys are derived. */
  secret?: string | Buffer
  /** The access tokens' own secret (at least 32 bytes); give it with `refreshTokenSecret`. */
  accessTokenSecret?: string | Buffer
  /** The refresh tokens' own secret (at least 32 bytes, different from the access one). */
  refreshTokenSecret?: string | Buffer
  /**
   * Access-token keys instead of the secret-derived one: HS256/384/512, RS256, PS256, ES256
   * or EdDSA, each with a `kid`. The active key signs; the others only verify, so tokens
   * signed by a retired key work until they expire. Refresh tokens still use `secret`
   * (or `refreshTokenSecret`).
   */
  accessTokenKeys?: AccessTokenKey[]
  /** The `kid` of the key that signs new access tokens (default: the first that can sign). */
  activeKid?: string
  /** Access-token lifetime in seconds (default 900). */
  accessTokenTtl?: number
  /**
   * Refresh-token lifetime in seconds (default 86400): the session's idle timeout, renewed
   * by each refresh. Must exceed `accessTokenTtl`.
   */
  refreshTokenTtl?: number
  /**
   * The session's absolute lifetime in seconds (default 30 days): no refresh extends a
   * session past it, and the user logs in again. Must exceed `accessTokenTtl`.
   */
  sessionMaxLifetime?: number
  /** What a session records of its client, or `false` for nothing (default: IP and user agent). */
  clientInfo?: ClientInfoOptions | false
  /**
   * Seconds during which a just-rotated refresh token may come back (racing tabs, a retry
   * after a lost response) and get the same successor instead of revoking the session
   * (default 10; 0 is strict: any second use is theft).
   */
  reuseGrace?: number
  /** Where sessions live. Give either this or `redis`; with neither, a `MemoryStore`. */
  store?: SessionStore
  /** An ioredis client (yours: never closed by the plugin) or a URL (the plugin's own client). */
  redis?: RedisClient | string
  /** Prefix of every Redis key, with `redis` (default `tsess:`). */
  keyPrefix?: string
  /** How long one store operation may take before the request gets a 503, in ms (default 1000). */
  storeTimeout?: number
  /** The `Retry-After` of a 503, in seconds (default 1). */
  retryAfter?: number
  /** Cookie settings, or `false` to send tokens in the body only. */
  cookies?: CookieOptions | false
  /**
   * Name of the header that cookie-authenticated state changes must carry with a non-empty
   * value (default `x-requested-with`), or `false` to turn the check off.
   */
  csrfHeader?: string | false
  /** The routes to register, or `false`/absent for none. */
  routes?: RoutesOptions | boolean
  /**
   * The revocation feed tells every instance about revoked sessions, so that their access
   * tokens stop working at once. While it has been down longer than `maxOutage` seconds
   * (default 5), `onOutage` decides: `accept` (default) keeps trusting unexpired access
   * tokens and logs it; `reject` answers 503 on routes behind `authenticate`.
   */
  revocationFeed?: { maxOutage?: number, onOutage?: 'accept' | 'reject' }
  /** `iss` written into and required of every token. */
  issuer?: string
  /** `aud` written into and required of every token. */
  audience?: string
}

/**
 * What `fastify.tokenSessions` offers app code: sessions without HTTP plumbing.
 *
 * @example
 * ```ts
 * // after a password change: end every other session of the user
 * await app.tokenSessions.revokeAllSessions(userId, { except: request.user.sessionId, reason: 'password-change' })
 * ```
 */
export interface TokenSessionsApi {
  /** The store sessions live in. */
  readonly store: SessionStore
  /**
   * The truth for a load balancer's readiness check: `ok` only while the store answers
   * and the revocation feed is live.
   *
   * @example
   * ```ts
   * app.get('/ready', async (_request, reply) => {
   *   const health = await app.tokenSessions.health()
   *   return reply.code(health.ok ? 200 : 503).send(health)
   * })
   * ```
   */
  health (): Promise<Health>
  /** Starts a session and returns its tokens; sets no cookie (see `reply.issueTokens`). */
  issue (userId: string | number, options?: IssueOptions): Promise<TokenSet>
  /** Rotates a refresh token; throws the plugin's 401/503 errors. Sets no cookie. */
  refresh (refreshToken: string): Promise<TokenSet>
  /**
   * The public keys of asymmetric access-token keys as a JWK Set, for other services that
   * verify access tokens. HMAC keys never appear in it.
   */
  jwks (): { keys: JsonWebKey[] }
  /** Verifies an access token and returns its user; throws a 401 error. No store access. */
  verifyAccessToken (accessToken: string): SessionUser
  /** The user's live sessions, oldest first. */
  listSessions (userId: string | number): Promise<SessionInfo[]>
  /** Ends one session. Resolves to whether it was live. */
  revokeSession (userId: string | number, sessionId: string, options?: RevokeOptions): Promise<boolean>
  /** Ends every session of a user, but `except`. Resolves to how many were live. */
  revokeAllSessions (userId: string | number, options?: RevokeOptions & { except?: string }): Promise<number>
}

/**
 * What `health()` reports.
 *
 * @example
 * ```ts
 * app.get('/ready', async (_request, reply) => {
 *   const health = await app.tokenSessions.health()
 *   return reply.code(health.ok ? 200 : 503).send(health)
 * })
 * ```
 */
export interface Health {
  ok: boolean
  store: 'up' | 'down'
  revocationFeed: 'up' | 'down'
}

/**
 * How app code ends sessions, for the audit hooks.
 *
 * @example
 * ```ts
 * await app.tokenSessions.revokeSession(userId, sessionId, { reason: 'admin', request })
 * ```
 */
export interface RevokeOptions {
  /** Given to the hooks as `reason` (default `revoked`). */
  reason?: string
  /** The request that asked for it, whose IP and user agent the hooks receive. */
  request?: FastifyRequest
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * A hook (`onRequest` or `preHandler`) that verifies the access token from
     * `Authorization: Bearer` or the access cookie and sets `request.user`.
     */
    authenticate: onRequestAsyncHookHandler
    /**
     * `authenticate`, plus one store round trip to check that the session is still live:
     * for sensitive routes that must not trust an access token for even a moment after
     * its session ended, whatever the revocation feed's state.
     */
    authenticateStrict: onRequestAsyncHookHandler
    /** A route handler that rotates the refresh token from the body or the refresh cookie. */
    refresh: RouteHandlerMethod
    /** The session API for app code. */
    tokenSessions: TokenSessionsApi
  }
  interface FastifyReply {
    /**
     * Starts a session for a user the app has authenticated (after checking a password),
     * sets the token cookies (unless the transport is `body`) and returns the tokens.
     */
    issueTokens (userId: string | number, options?: IssueOptions): Promise<TokenSet>
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    user: SessionUser
  }
}

/**
 * Re-exported so that the published typings load `@fastify/jwt`'s, which declare
 * `request.user` (typed above as {@link SessionUser}); a bare type import would be elided.
 */
export type { FastifyJWT } from '@fastify/jwt'

/**
 * The JSON body of `GET <prefix>/sessions`.
 *
 * @example
 * ```ts
 * const { sessions } = await (await fetch('/auth/sessions')).json() as SessionListResponse
 * const others = sessions.filter((session) => !session.current)
 * ```
 */
export interface SessionListResponse {
  sessions: Array<SessionInfo & { current: boolean }>
}

/**
 * The JSON body of a token response (login, refresh).
 *
 * @example
 * ```ts
 * const body: TokenResponse = tokenResponse(await reply.issueTokens(user.id))
 * // { accessToken, tokenType: 'Bearer', expiresIn } (+ refreshToken, refreshExpiresIn for body clients)
 * ```
 */
export interface TokenResponse {
  accessToken: string
  tokenType: 'Bearer'
  expiresIn: number
  refreshToken?: string
  refreshExpiresIn?: number
}
