import type { FastifyRequest, onRequestAsyncHookHandler, RouteHandlerMethod } from 'fastify'
import type { RedisClient } from './stores/redis.js'
import type { SessionStore } from './stores/store.js'
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

/** How tokens travel: httpOnly cookies (browsers) or the JSON body (native clients). */
export type TokenTransport = 'cookie' | 'body'

/** Options of `reply.issueTokens` and `fastify.tokenSessions.issue`. */
export interface IssueOptions {
  /** The app's own claims, copied into every access token of the session. Keep them small. */
  claims?: Claims
  /**
   * Overrides the transport. By default tokens go in cookies when cookies are enabled,
   * unless the request carries `x-token-transport: body`.
   */
  transport?: TokenTransport
}

/** Given to `onReuseDetected`: which session was revoked because a rotated token came back. */
export interface ReuseEvent {
  userId: string
  sessionId: string
  ip: string
  userAgent: string | undefined
}

/** Cookie settings. Every cookie is httpOnly. */
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

/** Which routes the plugin registers, and where. */
export interface RoutesOptions {
  /** Prefix of the routes (default `/auth`). */
  prefix?: string
  /** `POST <prefix>/refresh` (default true). */
  refresh?: boolean
  /** `POST <prefix>/logout` (default true). */
  logout?: boolean
  /** `POST <prefix>/logout-all` (default true). */
  logoutAll?: boolean
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
export interface TokenSessionsOptions {
  /** One secret (at least 32 bytes) from which separate access and refresh keys are derived. */
  secret?: string | Buffer
  /** The access tokens' own secret (at least 32 bytes); give it with `refreshTokenSecret`. */
  accessTokenSecret?: string | Buffer
  /** The refresh tokens' own secret (at least 32 bytes, different from the access one). */
  refreshTokenSecret?: string | Buffer
  /** Access-token lifetime in seconds (default 900). */
  accessTokenTtl?: number
  /** Refresh-token lifetime in seconds (default 86400); must exceed `accessTokenTtl`. */
  refreshTokenTtl?: number
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
  /** `iss` written into and required of every token. */
  issuer?: string
  /** `aud` written into and required of every token. */
  audience?: string
  /** Called when reuse of a rotated refresh token revokes a session, e.g. to raise an alert. */
  onReuseDetected?: (event: ReuseEvent, request: FastifyRequest) => void | Promise<void>
}

/**
 * What `fastify.tokenSessions` offers app code: sessions without HTTP plumbing.
 *
 * @example
 * ```ts
 * // after a password change: end every session of the user
 * await app.tokenSessions.revokeAll(userId)
 * ```
 */
export interface TokenSessionsApi {
  /** The store sessions live in. */
  readonly store: SessionStore
  /** Starts a session and returns its tokens; sets no cookie (see `reply.issueTokens`). */
  issue (userId: string | number, options?: IssueOptions): Promise<TokenSet>
  /** Rotates a refresh token; throws the plugin's 401/503 errors. Sets no cookie. */
  refresh (refreshToken: string): Promise<TokenSet>
  /** Verifies an access token and returns its user; throws a 401 error. No store access. */
  verifyAccessToken (accessToken: string): SessionUser
  /** Ends one session. Resolves to whether it was live. */
  revoke (userId: string | number, sessionId: string): Promise<boolean>
  /** Ends every session of a user. Resolves to how many were live. */
  revokeAll (userId: string | number): Promise<number>
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * A hook (`onRequest` or `preHandler`) that verifies the access token from
     * `Authorization: Bearer` or the access cookie and sets `request.user`.
     */
    authenticate: onRequestAsyncHookHandler
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

/** The JSON body of a token response. */
export interface TokenResponse {
  accessToken: string
  tokenType: 'Bearer'
  expiresIn: number
  refreshToken?: string
  refreshExpiresIn?: number
}
