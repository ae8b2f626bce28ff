import type { JsonWebKey } from 'node:crypto'
import type { FastifyContextConfig, FastifyRequest, onRequestAsyncHookHandler, RouteHandlerMethod } from 'fastify'
import type { SessionEnd } from './claims.js'
import type { AccessTokenKey } from './keys.js'
import type { RedisClient } from './stores/redis.js'
import type { SessionInfo, SessionStore } from './stores/store.js'

/**
 * The authenticated user, set on `request.user` by `fastify.authenticate`. Add the claims
 * your app passes to `issueTokens` by declaration merging; `issueTokens` then requires
 * them, with their types. The `import` makes the file a module, so that the declaration
 * adds to the package's types instead of replacing them (in a `.d.ts` of its own too).
 *
 * @example
 * ```ts
 * import 'fastify-token-sessions'
 * declare module 'fastify-token-sessions' {
 *   interface SessionUser { username: string }
 * }
 * // request.user.username is now a string, and issueTokens(id, { claims: { username } }) is required
 * ```
 */
export interface SessionUser {
  /** The user id (the tokens' `sub`). */
  id: string
  /** The session id (the tokens' `sid`). */
  sessionId: string
  /** When the session started (the user logged in), in milliseconds since the epoch. */
  sessionStartedAt: number
  /** When the access token expires, in milliseconds since the epoch (its `exp`). */
  expiresAt: number
  /**
   * When the user last proved who they are, in milliseconds since the epoch (the token's
   * `auth_time`, RFC 9470): at login, or at a re-authentication; a refresh never renews it.
   */
  authenticatedAt: number
  /** The authentication context class the app gave at login or re-authentication (`acr`), if any. */
  acr?: string
  /** The authentication methods the app gave at login or re-authentication (`amr`), if any. */
  amr?: string[]
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
  /** `DPoP` when the access token is bound to the key of the DPoP proof that came with the request (RFC 9449). */
  tokenType: 'Bearer' | 'DPoP'
  /** Seconds until the access token expires. */
  expiresIn: number
  /** Seconds until the refresh token expires. */
  refreshExpiresIn: number
  sessionId: string
  /** `false`: the session was issued with `remember: false` (its cookies last as long as the browser). */
  remembered: boolean
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

/** The fields of {@link SessionUser} that the plugin sets itself, from the token. */
export type SessionFields = 'id' | 'sessionId' | 'sessionStartedAt' | 'expiresAt' | 'authenticatedAt' | 'acr' | 'amr'

/**
 * The app's own claims, copied into every access token of the session: the fields the app
 * added to {@link SessionUser}, each with its type.
 *
 * @example
 * ```ts
 * // with `interface SessionUser { role: 'admin' | 'member', tenant: string }` declared:
 * const claims: Claims = { role: 'admin', tenant: 'acme' }
 * await reply.issueTokens(user.id, { claims })
 * ```
 */
export type Claims = Omit<SessionUser, SessionFields>

/** Claims as the plugin handles them inside, whatever the app declared. */
export type ClaimValues = Record<string, unknown>

/**
 * Options of `reply.issueTokens` and `fastify.tokenSessions.issue`.
 *
 * @example
 * ```ts
 * await reply.issueTokens(user.id, { claims: { role: user.role }, label: 'Work laptop' })
 * ```
 */
export type IssueOptions = IssueSettings & (object extends Claims
  ? {
      /** The app's own claims, copied into every access token of the session. Keep them small. */
      claims?: Claims
    }
  : {
      /** The app's own claims (required: {@link SessionUser} declares some). Keep them small. */
      claims: Claims
    })

/**
 * The arguments after the user id of `issueTokens` and `tokenSessions.issue`: optional
 * unless {@link SessionUser} declares claims, which every session then must carry.
 */
export type IssueArguments = object extends Claims ? [options?: IssueOptions] : [options: IssueOptions]

/** Issue options as the plugin handles them inside, whatever the app declared. */
export type IssueRequest = IssueSettings & { claims?: unknown }

/** What {@link IssueOptions} holds beside the claims. */
export interface IssueSettings {
  /**
   * Overrides the transport. By default tokens go in cookies when cookies are enabled,
   * unless the request carries `x-token-transport: body`.
   */
  transport?: TokenTransport
  /** A name for the session, shown in session lists (e.g. "Work laptop"); at most 100 characters. */
  label?: string
  /**
   * `false` when the user left "remember me" unticked: the session's cookies carry no
   * `Max-Age` or `Expires`, so the browser drops them when it closes, and the session
   * lives at most `browserSessionMaxLifetime`. The choice travels in the signed refresh
   * token and is kept by every rotation and step-up; no later request can change it.
   * Default `true`.
   */
  remember?: boolean
  /**
   * When the app checked the credentials, in milliseconds since the epoch. If every
   * session of the user is revoked after it (a password change, logout everywhere), the
   * login fails with `FTS_CREDENTIALS_STALE` instead of starting a session that outlives
   * the change. `reply.issueTokens` defaults to when the request arrived. It is also the
   * tokens' `auth_time` (`request.user.authenticatedAt`): for a login through an identity
   * provider, give the provider's `auth_time`, so that its long single sign-on session
   * never passes for a recent login. Without it (`tokenSessions.issue`), the session's start.
   * A time more than a minute ahead of this server's clock throws a `TypeError`.
   */
  authenticatedAt?: number
  /**
   * The authentication context class of this login (`acr`, RFC 9470), e.g. `'mfa'`: 1 to 64
   * printable ASCII characters but space, `"` and `\`. Access tokens carry it until a
   * re-authentication says otherwise; routes may require it (`authenticate.require`).
   */
  acr?: string
  /**
   * The authentication methods of this login (`amr`, RFC 8176), e.g. `['pwd', 'otp']`: 1 to
   * 10 names of 1 to 32 letters, digits, `_` or `-`.
   */
  amr?: string[]
  /**
   * The OAuth client the session is issued to (default: the `clientId` option). Its tokens
   * carry it (`client_id`), and the token and revocation endpoints refuse them to any other
   * client.
   */
  clientId?: string
  /**
   * The scope granted, space-separated OAuth scope tokens. Access tokens carry it (`scope`);
   * a refresh through the token endpoint may ask for less, never for more.
   */
  scope?: string
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
  /**
   * The session. When every session of the user ended at once (`allSessions`), the
   * session that asked for it (logout-all), or undefined when app code did.
   */
  sessionId: string | undefined
  /**
   * `login`, `refresh`, `logout`, `logout-all`, `reuse`, `limit` (ended by
   * `maxSessionsPerUser`), or the reason app code gave.
   */
  reason: string
  /** `onRefresh`: a replay of the previous token within the grace window, answered with the current tokens. */
  replay: boolean
  /** `onSessionRevoked`: every session of the user ended at once, but `except`. */
  allSessions: boolean
  /** With `allSessions`: the session spared. */
  except?: string
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
  /** A refresh token was rotated, or replayed within the grace window (`event.replay`). */
  onRefresh?: AuditHook
  /** The caller ended its own session (logout, or its own session in logout-all). */
  onLogout?: AuditHook
  /**
   * Sessions ended before their time: logout, revocation, reuse, the per-user cap (one
   * call each), or every session of a user at once (one call, `event.allSessions`).
   */
  onSessionRevoked?: AuditHook
  /** A rotated refresh token came back: the session was revoked (e.g. raise an alert). */
  onReuseDetected?: AuditHook
}

/** The name of an audit hook. */
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
 * Cookie settings. Every cookie is httpOnly. With `secure`, names get the prefix the
 * browser's rules allow (`__Host-` where the cookie has `Path=/` and no `Domain`, else
 * `__Secure-`), and the refresh cookie is bound to the session cookie (`__Host-`), which
 * no sibling subdomain can set: a planted token cookie is never accepted.
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, { secret, cookies: { domain: 'example.com', sameSite: 'lax' } })
 * ```
 */
export interface CookieOptions {
  /** Name of the access-token cookie, before its prefix (default `access_token`). */
  accessTokenName?: string
  /** Name of the refresh-token cookie, before its prefix (default `refresh_token`). */
  refreshTokenName?: string
  /**
   * Name of the session cookie, before its prefix (default `session_binding`): `Path=/`,
   * no `Domain`, the refresh token's lifetime, holding the session id; a token cookie is
   * accepted only with the session cookie of its own session.
   */
  bindingName?: string
  /** `Domain` of both cookies (default: none, the cookies stay on the exact host). */
  domain?: string
  /** `Path` of the access-token cookie (default `/`). */
  path?: string
  /** `Path` of the refresh-token cookie (default: the routes' prefix, or `/`). */
  refreshPath?: string
  /**
   * `Secure` flag and the name prefixes, decided once at registration: `true`, `false`,
   * or `'auto'` (default), on when `NODE_ENV` is `production`. Behind a proxy that ends
   * TLS, the browser still sees https: keep it on.
   */
  secure?: boolean | 'auto'
  /** `SameSite` (default `strict`). */
  sameSite?: 'strict' | 'lax' | 'none'
  /**
   * Send `Clear-Site-Data: "cookies"` on logout and logout-all for cookie clients
   * (default false). The browser then clears every cookie of the registrable domain,
   * subdomains included (the app's own cookies and planted ones alike), not only ours.
   */
  clearSiteData?: boolean
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
  refresh?: boolean | RouteOptions
  /** `POST <prefix>/logout` (default true). */
  logout?: boolean | RouteOptions
  /** `POST <prefix>/logout-all` (default true). */
  logoutAll?: boolean | RouteOptions
  /** `GET <prefix>/sessions` and `DELETE <prefix>/sessions/:id` (default true). */
  sessions?: boolean | RouteOptions
  /** `GET <prefix>/.well-known/jwks.json`, the public access-token keys (default false). */
  jwks?: boolean | RouteOptions
  /**
   * `POST <prefix>/token`, the OAuth refresh grant (RFC 6749 §6) for native clients. By
   * default as `refresh` is, its `config` included, so that a rate limit on refresh covers
   * both ways to refresh.
   */
  token?: boolean | RouteOptions
  /** `POST <prefix>/revoke`, OAuth token revocation (RFC 7009) for native clients (default true). */
  revoke?: boolean | RouteOptions
}

/**
 * What an app adds to one of the plugin's routes (giving it turns the route on). `config`
 * is the route's Fastify config, where plugins such as `@fastify/rate-limit` read their
 * per-route settings.
 *
 * @example
 * ```ts
 * await app.register(rateLimit, { global: false })
 * await app.register(tokenSessions, {
 *   secret,
 *   routes: { refresh: { config: { rateLimit: { max: 60, timeWindow: 60_000 } } } }
 * })
 * ```
 */
export interface RouteOptions {
  /** Typed as Fastify's route config, which plugins augment; other keys are the app's own. */
  config?: FastifyContextConfig & Record<string, unknown>
}

/**
 * What `authenticate` does while the revocation feed is down, when revocations made on
 * other instances may not have reached this one:
 * - `check-store`: asks the store whether the session is live (one round trip, as
 *   `authenticateStrict` does); while the store cannot answer either, accepts as `accept`.
 * - `accept`: keeps trusting unexpired access tokens (logged).
 * - `reject`: answers 503 with `Retry-After` once the feed has been down `maxOutage` seconds.
 */
export type OutagePolicy = 'check-store' | 'accept' | 'reject'

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
  /**
   * One secret (at least 32 bytes) from which separate access and refresh keys are derived.
   * `undefined` is accepted by the type (for `process.env.JWT_SECRET`) and refused at
   * registration.
   */
  secret?: string | Buffer | undefined
  /** The access tokens' own secret (at least 32 bytes); give it with `refreshTokenSecret`. */
  accessTokenSecret?: string | Buffer | undefined
  /** The refresh tokens' own secret (at least 32 bytes, different from the access one). */
  refreshTokenSecret?: string | Buffer | undefined
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
  /**
   * The absolute lifetime in seconds of a session issued with `remember: false` (the user
   * left "remember me" unticked): default 12 hours (with access tokens of 12 hours or more, `refreshTokenTtl`), never more than `sessionMaxLifetime`.
   * Its cookies go when the browser closes; this bounds it on a browser that never closes.
   * Must exceed `accessTokenTtl` and not exceed `sessionMaxLifetime`.
   */
  browserSessionMaxLifetime?: number
  /** What a session records of its client, or `false` for nothing (default: IP and user agent). */
  clientInfo?: ClientInfoOptions | false
  /**
   * Seconds during which a just-rotated refresh token may come back (racing tabs, a retry
   * after a lost response) and get the same successor instead of revoking the session
   * (default 10; 0 is strict: any second use is theft).
   */
  reuseGrace?: number
  /**
   * The most sessions one user may have (default 100): a login beyond it ends the
   * user's sessions nearest their end (with one idle timeout, the least recently used),
   * each revoked like any other (`onSessionRevoked` with reason `limit`).
   */
  maxSessionsPerUser?: number
  /**
   * Treat a replay within the grace window as reuse when its user agent differs from the
   * one that last rotated the session (default false). Needs `clientInfo.userAgent`.
   */
  replayRequiresSameUserAgent?: boolean
  /**
   * The app's origin as browsers see it (`https://app.example.com`). Cookie-authenticated
   * state changes whose `Origin` is neither it nor in `allowedOrigins` are rejected.
   * Default: each request's own origin, from its protocol and `Host` (behind a proxy, set
   * Fastify's `trustProxy` so that they are the public ones, or set this).
   */
  publicOrigin?: string
  /** Other origins whose pages may make cookie-authenticated state changes (default none). */
  allowedOrigins?: string[]
  /**
   * Where sessions live: a `RedisStore`, or a `MemoryStore` for development and tests
   * (the plugin then logs a warning). Give either this or `redis`.
   */
  store?: SessionStore
  /**
   * An ioredis client (yours: never closed by the plugin) or a URL (the plugin's own
   * client). `undefined` is accepted by the type (for `process.env.REDIS_URL`) and refused
   * at registration, naming the option: sessions never fall back to memory unasked.
   */
  redis?: RedisClient | string | undefined
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
   * Deny by default: every route of the app runs `authenticate` before its own hooks, unless
   * its config says `public: true`, its path is (or is below) one of `publicPrefixes` (for
   * routes another plugin declares: API docs, static files), it is the plugin's own (each
   * has its checks), or the request is a CORS preflight (`OPTIONS` to a route declared for
   * `OPTIONS` alone) or finds no route (404).
   * A route whose own `authenticate` never ran (a hook forgotten, or `undefined` because the
   * plugin's registration was not awaited) fails closed: 401. Default off.
   *
   * @example
   * ```ts
   * await app.register(tokenSessions, { secret, redis, routes: true, protectRoutes: { publicPrefixes: ['/docs'] } })
   * app.post('/auth/login', { config: { public: true } }, login)
   * app.get('/me', async (request) => request.user) // authenticated
   * ```
   */
  protectRoutes?: boolean | { publicPrefixes?: string[] }
  /**
   * Other names for the plugin's decorators (`user`, `authenticate`, `authenticateStrict`,
   * `refresh`, `issueTokens`, `tokenSessions`), to live beside `@fastify/jwt` or an app's
   * own; declare the same names in {@link DecoratorNames} for the types.
   */
  decorators?: DecoratorOptions
  /**
   * The revocation feed tells every instance about revoked sessions, so that their access
   * tokens stop working at once; heartbeats prove it end to end. While it is down,
   * `onOutage` decides (see {@link OutagePolicy}; default `check-store`); `reject` waits
   * `maxOutage` seconds (default 5) first. Under `check-store`, `knownAlive` (ms, default
   * 0, at most 5000) is how long a session the store found live is taken for live without
   * asking again (it adds to how long a revoked token may pass), and `maxLookups` (default
   * 1000) the most lookups in flight at once, past which requests get a 503.
   */
  revocationFeed?: { onOutage?: OutagePolicy, maxOutage?: number, knownAlive?: number, maxLookups?: number }
  /** `iss` written into and required of every token. */
  issuer?: string
  /** `aud` written into and required of every token. */
  audience?: string
  /**
   * The OAuth client sessions are issued to unless a login names another (`clientId` of
   * `issueTokens`): their tokens carry it (`client_id`), and the token and revocation
   * endpoints refuse them to any other client. With `issuer` and `audience` too, access
   * tokens follow RFC 9068 (JWT access tokens): `typ: at+jwt`, and `iss`, `aud`,
   * `client_id` and a `jti` of their own in every token, so that OAuth resource servers'
   * libraries accept them. Otherwise they are plain JWTs (`typ: JWT`).
   */
  clientId?: string
  /**
   * DPoP (RFC 9449), which a client turns on by sending a proof at login: `proofLifetime`,
   * how long after its `iat` a proof is accepted (seconds, default 60); `nonces`, whether
   * proofs must carry a server nonce (`DPoP-Nonce`), each living `nonceLifetime` seconds
   * (default 300). Nonces are stateless: an HMAC of the time, valid on every instance.
   * `sharedReplayCheck` (default `false`): `authenticate` remembers each proof's id in the
   * store too, so that a proof is accepted once across all instances, not once on each; it
   * costs one store round trip per DPoP-bound request, and while the store is down such
   * requests answer 503.
   */
  dpop?: { proofLifetime?: number, nonces?: boolean, nonceLifetime?: number, sharedReplayCheck?: boolean }
  /**
   * Claims that follow the user: called at every refresh (`<prefix>/refresh`,
   * `<prefix>/token`, `tokenSessions.refresh()`), and at a login given no claims, before
   * the store is touched; what it returns **replaces** the app's claims in the new tokens.
   * So claims are at most one access-token lifetime stale. A hook that throws, or does not
   * answer within `storeTimeout`, makes the refresh a 503 `FTS_CLAIMS_UNAVAILABLE` that
   * spent nothing (the client retries with the same token): never a refresh with stale
   * claims. `context.endSession(reason)` ends the session instead (a user disabled or
   * deleted): the refresh answers 401 `FTS_SESSION_REVOKED`, and the session is revoked on
   * every instance, the audit hooks seeing `reason`. See {@link ClaimsHook}.
   */
  claims?: ClaimsHook
  /**
   * Metrics and traces through the OpenTelemetry API (`@opentelemetry/api`, an optional
   * peer dependency: the app's own copy is used). By default, the providers the app's SDK
   * registered globally, read at registration (start the SDK first); without the API, or
   * without an SDK, nothing is recorded and nothing costs. Give providers here to use others;
   * `false` turns it off. The metrics and spans are listed in docs/operations.md.
   */
  telemetry?: TelemetryOptions | false
}

/**
 * The OpenTelemetry providers the plugin records to, instead of the global ones. Typed by
 * the one method used, so that the plugin's types need no OpenTelemetry package; pass the
 * SDK's `MeterProvider` and `TracerProvider` (or `NodeTracerProvider`).
 *
 * @example
 * ```ts
 * const meterProvider = new MeterProvider({ readers: [new PrometheusExporter({ port: 9464 })] })
 * await app.register(tokenSessions, { secret, telemetry: { meterProvider } })
 * ```
 */
export interface TelemetryOptions {
  /** Where metrics go (default: the global one, `metrics.getMeterProvider()`). */
  meterProvider?: { getMeter: (name: string) => unknown }
  /** Where spans go (default: the global one, `trace.getTracerProvider()`). */
  tracerProvider?: { getTracer: (name: string) => unknown }
}

/**
 * What the `claims` hook is told.
 */
export interface ClaimsContext {
  /** The session the new tokens are for. */
  sessionId: string
  /** A login given no claims, or a refresh (a grace replay included). */
  event: 'login' | 'refresh'
  /** The request, if one asked (not for `tokenSessions.refresh()` or `issue()` called without one). */
  request: FastifyRequest | undefined
  /**
   * Ends the session instead of giving claims: return what it returns. `reason` (1 to 64
   * printable ASCII characters, default `'claims'`) is what the audit hooks see.
   */
  endSession: (reason?: string) => SessionEnd
}

/**
 * The `claims` option: the claims of a session's next tokens, from what the app knows of
 * the user now, typed by {@link SessionUser}'s own fields. The same rules as a login's
 * claims apply (no reserved name, at most 1,024 bytes as JSON).
 *
 * @example
 * ```ts
 * await app.register(tokenSessions, {
 *   secret,
 *   claims: async (userId, { endSession }) => {
 *     const user = await db.users.find(userId)
 *     if (user === undefined || user.disabled) return endSession('user-disabled')
 *     return { role: user.role }
 *   }
 * })
 * ```
 */
export type ClaimsHook = (userId: string, context: ClaimsContext) => Claims | SessionEnd | Promise<Claims | SessionEnd>

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
  issue (userId: string | number, ...options: IssueArguments): Promise<TokenSet>
  /** Rotates a refresh token; throws the plugin's 401/503 errors. Sets no cookie. */
  refresh (refreshToken: string): Promise<TokenSet>
  /**
   * The public keys of asymmetric access-token keys as a JWK Set, for other services that
   * verify access tokens. HMAC keys never appear in it.
   */
  jwks (): { keys: JsonWebKey[] }
  /** Verifies an access token and returns its user; throws a 401 error. No store access. */
  verifyAccessToken (accessToken: string): SessionUser
  /**
   * One page of the user's live sessions, newest first (by when they started; a refresh
   * does not move a session between pages). Pass the `nextCursor` of a page to get the
   * next; it is absent after the last. A page may hold fewer sessions than `limit`
   * (default 50, at most 100) while more follow.
   *
   * @example
   * ```ts
   * let page = await app.tokenSessions.listSessions(userId)
   * while (page.nextCursor !== undefined) page = await app.tokenSessions.listSessions(userId, { cursor: page.nextCursor })
   * ```
   */
  listSessions (userId: string | number, page?: { cursor?: string, limit?: number }): Promise<SessionListPage>
  /** Ends one session. Resolves to whether it was live. */
  revokeSession (userId: string | number, sessionId: string, options?: RevokeOptions): Promise<boolean>
  /**
   * Ends every session of a user but `except`, at once and whatever their number: every
   * session that started before now is over, and logins whose credentials were checked
   * before now fail (`FTS_CREDENTIALS_STALE`).
   */
  revokeAllSessions (userId: string | number, options?: RevokeOptions & { except?: string }): Promise<void>
}

/**
 * A page of sessions from `listSessions`.
 *
 * @example
 * ```ts
 * const { sessions, nextCursor } = await app.tokenSessions.listSessions(userId, { limit: 20 })
 * ```
 */
export interface SessionListPage {
  sessions: SessionInfo[]
  /** Opaque; absent after the last page. */
  nextCursor?: string
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
  /**
   * The store's clock minus this instance's, in ms, as last measured. The plugin keeps
   * the store's time either way; beyond 5 s it logs a warning.
   */
  clockOffsetMs: number
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

/** The names the plugin decorates Fastify with, unless the app gives others. */
export interface DefaultDecoratorNames {
  /** The request property `authenticate` sets. */
  user: 'user'
  authenticate: 'authenticate'
  authenticateStrict: 'authenticateStrict'
  refresh: 'refresh'
  /** The reply decorator. */
  issueTokens: 'issueTokens'
  stepUp: 'stepUp'
  tokenSessions: 'tokenSessions'
}

/**
 * The names an app gives the plugin's decorators instead of the defaults, declared here
 * for the types and passed as the `decorators` option for the run time (each name declared
 * here must be passed there). For an app that also uses `@fastify/jwt`, whose
 * `request.user` and common `fastify.authenticate` recipe would otherwise clash.
 *
 * @example
 * ```ts
 * import 'fastify-token-sessions'
 * declare module 'fastify-token-sessions' {
 *   interface DecoratorNames { user: 'session', authenticate: 'authenticateSession' }
 * }
 * await app.register(tokenSessions, { ..., decorators: { user: 'session', authenticate: 'authenticateSession' } })
 * app.get('/me', { onRequest: app.authenticateSession }, async (request) => request.session.id)
 * ```
 */
export interface DecoratorNames {}

/** The name in use for one decorator: the app's, or the default. */
export type DecoratorName<K extends keyof DefaultDecoratorNames> = K extends keyof DecoratorNames
  ? DecoratorNames[K] & string
  : DefaultDecoratorNames[K]

/**
 * The `decorators` option: every name the app declared in {@link DecoratorNames}, the
 * others optional (and then only their defaults).
 */
export type DecoratorOptions =
  & { [K in keyof DefaultDecoratorNames as K extends keyof DecoratorNames ? K : never]: DecoratorName<K> }
  & { [K in keyof DefaultDecoratorNames as K extends keyof DecoratorNames ? never : K]?: DecoratorName<K> }

/** `reply.issueTokens`. */
export type IssueTokens = (userId: string | number, ...options: IssueArguments) => Promise<TokenSet>

/**
 * What a route requires of the user's last authentication (`authenticate.require`), one or
 * both: `maxAge`, the most seconds since it (`auth_time`); `acr`, the authentication
 * context classes that satisfy it (any one of them).
 */
export interface StepUpRequirement {
  maxAge?: number
  acr?: string | string[]
}

/**
 * Options of `reply.stepUp`: how the user just proved who they are again.
 *
 * @example
 * ```ts
 * await reply.stepUp({ acr: 'mfa', amr: ['pwd', 'otp'] })
 * ```
 */
export interface StepUpOptions {
  /** When the app checked the credentials (ms since the epoch); default: when the request arrived. */
  authenticatedAt?: number
  /** The authentication context class of this authentication (none: the session's `acr` is dropped). */
  acr?: string
  /** The authentication methods of this authentication (none: the session's `amr` is dropped). */
  amr?: string[]
}

/** `reply.stepUp`. */
export type StepUp = (options?: StepUpOptions) => Promise<TokenSet>

/** The instance decorators, under their names. */
export type InstanceDecorators =
  & {
    /**
     * A hook (`onRequest` or `preHandler`) that verifies the access token from
     * `Authorization: Bearer` or the access cookie and sets the user on the request.
     */
    [K in DecoratorName<'authenticate'>]: onRequestAsyncHookHandler & {
      /**
       * `authenticate`, then the route's requirement of the user's last authentication
       * (RFC 9470): a request that falls short gets 401 `FTS_STEP_UP_REQUIRED` with an
       * `insufficient_user_authentication` challenge, before the route's own checks.
       *
       * @example
       * ```ts
       * app.post('/account/password', { onRequest: app.authenticate.require({ maxAge: 300 }) }, changePassword)
       * ```
       */
      require: (requirement: StepUpRequirement) => onRequestAsyncHookHandler
    }
  }
  & {
    /**
     * `authenticate`, plus one store round trip to check that the session is still live:
     * for sensitive routes that must not trust an access token for even a moment after
     * its session ended, whatever the revocation feed's state.
     */
    [K in DecoratorName<'authenticateStrict'>]: onRequestAsyncHookHandler
  }
  & {
    /** A route handler that rotates the refresh token from the body or the refresh cookie. */
    [K in DecoratorName<'refresh'>]: RouteHandlerMethod
  }
  & {
    /** The session API for app code. */
    [K in DecoratorName<'tokenSessions'>]: TokenSessionsApi
  }

/** The request decorator: the user `authenticate` set, under its name. */
export type RequestDecorators = { [K in DecoratorName<'user'>]: SessionUser }

/** The reply decorator, under its name. */
export type ReplyDecorators = {
  /**
   * Starts a session for a user the app has authenticated (after checking a password),
   * sets the token cookies (unless the transport is `body`) and returns the tokens.
   */
  [K in DecoratorName<'issueTokens'>]: IssueTokens
} & {
  /**
   * Steps the caller's session up once the app has checked the credentials again (RFC
   * 9470): the same session, its `auth_time` now (and `acr`/`amr` as given), a new token
   * pair delivered as a login's; the refresh token it replaces is reuse if presented again,
   * even within `reuseGrace`. On a route that runs `authenticate`.
   */
  [K in DecoratorName<'stepUp'>]: StepUp
}

// The members come from the decorators' names, the app's or the defaults.
declare module 'fastify' {
  interface FastifyContextConfig {
    /** Under `protectRoutes`: this route needs no authentication (a login, a health check, a public page). */
    public?: boolean
  }
  interface FastifyInstance extends InstanceDecorators {}
  interface FastifyRequest extends RequestDecorators {}
  interface FastifyReply extends ReplyDecorators {}
}

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
  /** The `cursor` of the next page, or null after the last. */
  nextCursor: string | null
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
  tokenType: 'Bearer' | 'DPoP'
  expiresIn: number
  refreshToken?: string
  refreshExpiresIn?: number
}
