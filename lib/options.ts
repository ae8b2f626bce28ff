import { KeyObject } from 'node:crypto'
import { fail } from './invalid-option.js'
import { redisStoreOptions, type RedisStoreOptions } from './stores/redis.js'
import type { SessionStore } from './stores/store.js'
import { refuseKeyMaterial, resolveAccessKeys, secretWeakness } from './keys.js'
import { deriveKeys, type TokenKeys } from './tokens.js'
import type { ResolvedDpop } from './dpop.js'
import { domainMatches } from './transport.js'
import type { AuditHooks, ClaimsHook, DefaultDecoratorNames, OutagePolicy, RouteOptions, TelemetryOptions, TokenSessionsOptions } from './types.js'

/** Access-token lifetime: 15 minutes. */
export const DEFAULT_ACCESS_TOKEN_TTL = 15 * 60
/** Refresh-token lifetime: 24 hours. */
export const DEFAULT_REFRESH_TOKEN_TTL = 24 * 60 * 60
/** How long a rotated refresh token may come back without alarm: 10 seconds. */
export const DEFAULT_REUSE_GRACE = 10
/** The longest grace allowed: a longer one would blunt theft detection. */
export const MAX_REUSE_GRACE = 300
/** A session's absolute lifetime: 30 days. */
export const DEFAULT_SESSION_MAX_LIFETIME = 30 * 24 * 60 * 60
/**
 * The absolute lifetime of a session its user chose not to have remembered (`remember:
 * false`): 12 hours (see `browserSessionMaxLifetime` for when access tokens live as long).
 */
export const DEFAULT_BROWSER_SESSION_MAX_LIFETIME = 12 * 60 * 60
/** The longest refresh-token lifetime and session lifetime allowed: one year. */
export const MAX_TOKEN_TTL = 365 * 24 * 60 * 60
/**
 * The longest access-token lifetime allowed: one day. An access token cannot be taken back
 * but through the revocation list, which remembers each revocation that long; a longer one
 * is almost always milliseconds given for seconds (900000 for 15 minutes).
 */
export const MAX_ACCESS_TOKEN_TTL = 24 * 60 * 60
/** How long one store operation may take: 1 second. */
export const DEFAULT_STORE_TIMEOUT = 1000
/** `Retry-After` of a 503: 1 second. */
export const DEFAULT_RETRY_AFTER = 1
/** How long the revocation feed may be down before its outage policy applies: 5 seconds. */
export const DEFAULT_MAX_FEED_OUTAGE = 5
/** Under `check-store`, the most store lookups in flight at once before requests get a 503. */
export const DEFAULT_MAX_LOOKUPS = 1000
/** The longest `revocationFeed.knownAlive` accepted: 5 seconds, added to how long a revoked token may pass. */
export const MAX_KNOWN_ALIVE = 5000
/**
 * Added to how long a revocation is remembered, beyond the access tokens' lifetime, for
 * clock skew between Redis (which stamps revocations) and app instances (which expire them).
 */
export const REVOCATION_MARGIN_MS = 30_000
/** The shortest secret accepted, in bytes (HS256 wants a key of at least the hash size). */
export const MIN_SECRET_BYTES = 32
/** Header a cookie-authenticated state change must carry. */
export const DEFAULT_CSRF_HEADER = 'x-requested-with'
/** Prefix of the plugin's routes. */
export const DEFAULT_ROUTES_PREFIX = '/auth'
/** The most sessions one user may have by default. */
export const DEFAULT_MAX_SESSIONS_PER_USER = 100
/** The highest `maxSessionsPerUser` accepted. */
export const MAX_SESSIONS_PER_USER = 1_000_000
/** How long after its `iat` a DPoP proof is accepted: 60 seconds. */
export const DEFAULT_DPOP_PROOF_LIFETIME = 60
/** How long a DPoP server nonce lives (when nonces are on): 5 minutes. */
export const DEFAULT_DPOP_NONCE_LIFETIME = 300

/** Options after checking: defaults filled in, keys derived, frozen. */
export interface ResolvedOptions {
  readonly keys: TokenKeys
  readonly accessTokenTtl: number
  readonly refreshTokenTtl: number
  readonly sessionMaxLifetime: number
  /** The absolute lifetime of a session issued with `remember: false`, at most `sessionMaxLifetime`. */
  readonly browserSessionMaxLifetime: number
  readonly clientInfo: { readonly ip: boolean, readonly userAgent: boolean }
  readonly reuseGraceMs: number
  /** The store the app passed, or the Redis store to open (its options checked by the store). */
  readonly store:
    | { readonly kind: 'given', readonly store: SessionStore }
    | { readonly kind: 'redis', readonly options: RedisStoreOptions }
  readonly storeTimeout: number
  readonly retryAfter: number
  readonly cookies: ResolvedCookies | null
  readonly csrfHeader: string | null
  readonly routes: ResolvedRoutes | null
  readonly maxSessionsPerUser: number
  readonly replayRequiresSameUserAgent: boolean
  /** The origins whose pages may make cookie-authenticated state changes, beside the request's own. */
  readonly origins: { readonly publicOrigin: string | undefined, readonly allowed: ReadonlySet<string> }
  readonly issuer: string | undefined
  readonly audience: string | undefined
  /** The client of sessions whose login names none; with issuer and audience, access tokens follow RFC 9068. */
  readonly clientId: string | undefined
  readonly dpop: ResolvedDpop
  readonly hooks: Readonly<AuditHooks>
  /** The app's claims hook, if it gave one. */
  readonly claims: ClaimsHook | undefined
  readonly telemetry: TelemetryOptions | false | undefined
  /** Deny by default: the path prefixes left public (routes whose path is one, or below one), or null when off. */
  readonly protectRoutes: { readonly publicPrefixes: readonly string[] } | null
  /** How long instances remember a revocation: the access tokens' lifetime and a margin. */
  readonly rememberMs: number
  readonly revocationFeed: {
    readonly maxOutageMs: number
    readonly onOutage: OutagePolicy
    /** Under `check-store`: how long a session found live is taken for live, in ms. */
    readonly knownAliveMs: number
    /** Under `check-store`: the most store lookups in flight at once. */
    readonly maxLookups: number
  }
  /** The name of each decorator. */
  readonly decorators: Readonly<Record<keyof DefaultDecoratorNames, string>>
  /** Each secret option that meets the length minimum but looks guessable, with the warning to log at start-up. */
  readonly weakSecrets: ReadonlyArray<{ readonly option: string, readonly message: string }>
}

/** Cookie settings after checking. */
export interface ResolvedCookies {
  /** The names as sent, prefixes included. */
  readonly accessTokenName: string
  readonly refreshTokenName: string
  readonly bindingName: string
  readonly domain: string | undefined
  readonly path: string
  readonly refreshPath: string
  readonly secure: boolean
  readonly sameSite: 'strict' | 'lax' | 'none'
  readonly clearSiteData: boolean
}

/** Routes after checking: each one registered has its options, the others are null. */
export interface ResolvedRoutes {
  readonly prefix: string
  readonly refresh: Readonly<RouteOptions> | null
  readonly logout: Readonly<RouteOptions> | null
  readonly logoutAll: Readonly<RouteOptions> | null
  readonly sessions: Readonly<RouteOptions> | null
  readonly jwks: Readonly<RouteOptions> | null
  readonly token: Readonly<RouteOptions> | null
  readonly revoke: Readonly<RouteOptions> | null
}

/** What `authenticate` does while the revocation feed is down (see `revocationFeed.onOutage`). */
export const OUTAGE_POLICIES: readonly OutagePolicy[] = ['check-store', 'accept', 'reject']

const HOOKS = ['onLogin', 'onRefresh', 'onLogout', 'onSessionRevoked', 'onReuseDetected'] as const
const KNOWN_OPTIONS = new Set<string>([
  'secret', 'accessTokenSecret', 'refreshTokenSecret', 'accessTokenKeys', 'activeKid', 'accessTokenTtl', 'refreshTokenTtl', 'sessionMaxLifetime', 'browserSessionMaxLifetime',
  'clientInfo', 'reuseGrace', 'store', 'redis', 'keyPrefix', 'storeTimeout', 'retryAfter', 'cookies', 'csrfHeader',
  'routes', 'decorators', 'issuer', 'audience', 'clientId', 'revocationFeed', 'maxSessionsPerUser', 'replayRequiresSameUserAgent', 'publicOrigin', 'allowedOrigins', 'dpop', 'claims', 'protectRoutes', 'telemetry', ...HOOKS,
  // Fastify hands these register() options to every plugin.
  'prefix', 'logLevel', 'logSerializers'
])
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/
const STORE_METHODS = ['create', 'rotate', 'stepUp', 'revoke', 'revokeAll', 'list', 'isLive', 'time', 'ping', 'close'] as const
const FEED_METHODS = ['revocations', 'watch'] as const
/** A web origin: scheme, host and optional port, nothing else. */
const ORIGIN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$|^https?:\/\/\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/

/**
 * Checks every option once, at registration, and returns them frozen with defaults filled
 * in. A bad value throws an error naming the option and the fix; nothing is coerced.
 */
export function resolveOptions (options: TokenSessionsOptions, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) fail(name, 'is not an option of fastify-token-sessions (check its spelling)')
  }
  const accessTokenTtl = seconds(options.accessTokenTtl, 'accessTokenTtl', DEFAULT_ACCESS_TOKEN_TTL, MAX_ACCESS_TOKEN_TTL)
  const refreshTokenTtl = seconds(options.refreshTokenTtl, 'refreshTokenTtl', DEFAULT_REFRESH_TOKEN_TTL, MAX_TOKEN_TTL)
  outlives(refreshTokenTtl, 'refreshTokenTtl', options.refreshTokenTtl === undefined, accessTokenTtl)
  const sessionMaxLifetime = seconds(options.sessionMaxLifetime, 'sessionMaxLifetime', DEFAULT_SESSION_MAX_LIFETIME, MAX_TOKEN_TTL)
  outlives(sessionMaxLifetime, 'sessionMaxLifetime', options.sessionMaxLifetime === undefined, accessTokenTtl)
  const browserSessionMaxLifetime = resolveBrowserSessionMaxLifetime(options.browserSessionMaxLifetime, { accessTokenTtl, refreshTokenTtl, sessionMaxLifetime })
  const reuseGrace = options.reuseGrace ?? DEFAULT_REUSE_GRACE
  if (typeof reuseGrace !== 'number' || !(reuseGrace >= 0 && reuseGrace <= MAX_REUSE_GRACE)) {
    fail('reuseGrace', `must be a number of seconds from 0 (strict) to ${MAX_REUSE_GRACE}`)
  }
  const routes = resolveRoutes(options.routes)
  const clientInfo = resolveClientInfo(options.clientInfo)
  const replayRequiresSameUserAgent = options.replayRequiresSameUserAgent ?? false
  if (typeof replayRequiresSameUserAgent !== 'boolean') fail('replayRequiresSameUserAgent', 'must be a boolean')
  if (replayRequiresSameUserAgent && !clientInfo.userAgent) {
    fail('replayRequiresSameUserAgent', 'needs clientInfo.userAgent (the user agent is what it compares)')
  }
  const resolved = Object.freeze({
    keys: resolveKeys(options),
    accessTokenTtl,
    refreshTokenTtl,
    sessionMaxLifetime,
    browserSessionMaxLifetime,
    clientInfo,
    reuseGraceMs: Math.round(reuseGrace * 1000),
    store: resolveStore(options),
    storeTimeout: integer(options.storeTimeout, 'storeTimeout', DEFAULT_STORE_TIMEOUT, 1, 60_000, 'milliseconds'),
    retryAfter: integer(options.retryAfter, 'retryAfter', DEFAULT_RETRY_AFTER, 1, 3600, 'seconds'),
    cookies: resolveCookies(options.cookies, routes, env),
    csrfHeader: resolveCsrfHeader(options.csrfHeader),
    routes,
    maxSessionsPerUser: integer(options.maxSessionsPerUser, 'maxSessionsPerUser', DEFAULT_MAX_SESSIONS_PER_USER, 1, MAX_SESSIONS_PER_USER, 'sessions'),
    replayRequiresSameUserAgent,
    origins: resolveOrigins(options),
    issuer: text(options.issuer, 'issuer'),
    audience: text(options.audience, 'audience'),
    clientId: text(options.clientId, 'clientId'),
    dpop: resolveDpop(options.dpop, options.store),
    hooks: resolveHooks(options),
    claims: resolveClaimsHook(options.claims),
    telemetry: resolveTelemetry(options.telemetry),
    protectRoutes: resolveProtectRoutes(options.protectRoutes),
    rememberMs: accessTokenTtl * 1000 + REVOCATION_MARGIN_MS,
    revocationFeed: resolveRevocationFeed(options.revocationFeed),
    decorators: resolveDecorators(options.decorators),
    weakSecrets: weakSecrets(options)
  })
  checkCookieDomain(resolved.cookies, resolved.origins.publicOrigin)
  return resolved
}

/**
 * A `cookies.domain` that publicOrigin's host does not domain-match (RFC 6265 §5.1.3):
 * the browser drops every token cookie, on every login. Known from the options alone, so
 * refused here (without publicOrigin, the host is the request's, and the answer warns).
 */
function checkCookieDomain (cookies: ResolvedCookies | null, publicOrigin: string | undefined): void {
  if (cookies?.domain === undefined || publicOrigin === undefined) return
  const host = new URL(publicOrigin).hostname
  if (domainMatches(host, cookies.domain)) return
  fail('cookies.domain', `"${cookies.domain}" does not match ${host}, the host of publicOrigin: browsers would drop every token cookie (RFC 6265 §5.1.3); give a domain that ${host} is or is under, or leave cookies.domain out (host-only cookies)`)
}

/**
 * Checks that a lifetime (`option`, `value` seconds) exceeds the access tokens'. When it is
 * its default, the access tokens' lifetime is what was set wrong, and the error names it.
 */
function outlives (value: number, option: string, isDefault: boolean, accessTokenTtl: number): void {
  if (value > accessTokenTtl) return
  if (isDefault) fail('accessTokenTtl', `is ${accessTokenTtl} seconds, not less than ${option} (${value} seconds, its default): lifetimes are in seconds`)
  fail(option, `is ${value} seconds: it must exceed accessTokenTtl (${accessTokenTtl} seconds)`)
}

/**
 * The absolute lifetime of a session not remembered. By default 12 hours, or one idle
 * timeout (`refreshTokenTtl`) when access tokens live 12 hours or more (a default must not
 * make valid options fail, nor last as long as a remembered session), and never more than
 * `sessionMaxLifetime`. Both exceed `accessTokenTtl`.
 */
function resolveBrowserSessionMaxLifetime (value: unknown, lifetimes: { accessTokenTtl: number, refreshTokenTtl: number, sessionMaxLifetime: number }): number {
  const { accessTokenTtl, refreshTokenTtl, sessionMaxLifetime } = lifetimes
  if (value === undefined) {
    return Math.min(DEFAULT_BROWSER_SESSION_MAX_LIFETIME > accessTokenTtl ? DEFAULT_BROWSER_SESSION_MAX_LIFETIME : refreshTokenTtl, sessionMaxLifetime)
  }
  const lifetime = seconds(value, 'browserSessionMaxLifetime', DEFAULT_BROWSER_SESSION_MAX_LIFETIME, MAX_TOKEN_TTL)
  outlives(lifetime, 'browserSessionMaxLifetime', false, accessTokenTtl)
  if (lifetime > sessionMaxLifetime) {
    fail('browserSessionMaxLifetime', `is ${lifetime} seconds: a session not remembered cannot outlive sessionMaxLifetime (${sessionMaxLifetime} seconds)`)
  }
  return lifetime
}

/** The secrets (and HMAC signing keys) that meet the length minimum but look guessable: logged, not refused. */
function weakSecrets (options: TokenSessionsOptions): ResolvedOptions['weakSecrets'] {
  // Every value here passed resolveKeys: a string, Buffer or secret KeyObject of the right length.
  const given: Array<[string, unknown]> = [['secret', options.secret], ['accessTokenSecret', options.accessTokenSecret], ['refreshTokenSecret', options.refreshTokenSecret]]
  for (const [index, key] of (options.accessTokenKeys ?? []).entries()) {
    if (key.algorithm.startsWith('HS')) given.push([`accessTokenKeys[${index}].key`, key.key instanceof KeyObject ? key.key.export() : key.key])
  }
  const weak: Array<{ option: string, message: string }> = []
  for (const [option, value] of given) {
    if (value === undefined) continue
    const reason = secretWeakness(Buffer.from(value as string | Buffer))
    if (reason === undefined) continue
    weak.push({
      option,
      message: `fastify-token-sessions: ${option} looks guessable: ${reason}. It is accepted (it is long enough), but whoever guesses it can sign tokens: use random bytes (e.g. openssl rand -base64 48)`
    })
  }
  return Object.freeze(weak)
}

const DEFAULT_DECORATORS: Readonly<DefaultDecoratorNames> = Object.freeze({
  user: 'user', authenticate: 'authenticate', authenticateStrict: 'authenticateStrict', refresh: 'refresh', issueTokens: 'issueTokens', stepUp: 'stepUp', tokenSessions: 'tokenSessions'
})
/** A name Fastify can decorate with and code can reach as `app.name`. */
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/

function resolveDecorators (given: unknown): ResolvedOptions['decorators'] {
  if (given === undefined) return DEFAULT_DECORATORS
  if (given === null || typeof given !== 'object') fail('decorators', `must be an object of names: { ${Object.keys(DEFAULT_DECORATORS).join(', ')} }`)
  const names: Record<string, string> = { ...DEFAULT_DECORATORS }
  for (const [key, value] of Object.entries(given)) {
    if (!(key in DEFAULT_DECORATORS)) fail(`decorators.${key}`, `is not a decorator of the plugin (${Object.keys(DEFAULT_DECORATORS).join(', ')})`)
    if (typeof value !== 'string' || !IDENTIFIER.test(value)) fail(`decorators.${key}`, 'must be a name such as "authenticateSession" (letters, digits, _ and $)')
    names[key] = value
  }
  const onInstance = [names.authenticate, names.authenticateStrict, names.refresh, names.tokenSessions]
  if (new Set(onInstance).size !== onInstance.length) fail('decorators', 'authenticate, authenticateStrict, refresh and tokenSessions must have different names')
  return Object.freeze(names as Record<keyof DefaultDecoratorNames, string>)
}

/** The members of the `dpop` option. */
const DPOP_OPTIONS = ['proofLifetime', 'nonces', 'nonceLifetime', 'sharedReplayCheck']

/** The DPoP settings. `store`: the store the app passed, if any (already checked as a store), whose `rememberProof` the shared replay check needs. */
function resolveDpop (dpop: TokenSessionsOptions['dpop'], store: SessionStore | undefined): ResolvedDpop {
  const given = dpop ?? {}
  if (given === null || typeof given !== 'object') fail('dpop', `must be { ${DPOP_OPTIONS.join(', ')} }`)
  for (const key of Object.keys(given)) {
    if (!DPOP_OPTIONS.includes(key)) fail(`dpop.${key}`, `is not a DPoP option (${DPOP_OPTIONS.join(', ')})`)
  }
  const nonces = given.nonces ?? false
  if (typeof nonces !== 'boolean') fail('dpop.nonces', 'must be a boolean')
  const sharedReplayCheck = given.sharedReplayCheck ?? false
  if (typeof sharedReplayCheck !== 'boolean') fail('dpop.sharedReplayCheck', 'must be a boolean')
  if (sharedReplayCheck && store !== undefined && typeof store.rememberProof !== 'function') {
    fail('dpop.sharedReplayCheck', 'needs a store with rememberProof (RedisStore and MemoryStore have it): add it to your store, or leave the option off')
  }
  const proofLifetime = integer(given.proofLifetime, 'dpop.proofLifetime', DEFAULT_DPOP_PROOF_LIFETIME, 1, 600, 'seconds')
  const nonceLifetime = integer(given.nonceLifetime, 'dpop.nonceLifetime', DEFAULT_DPOP_NONCE_LIFETIME, 10, 86_400, 'seconds')
  return Object.freeze({ proofLifetimeMs: proofLifetime * 1000, nonceLifetimeMs: nonces ? nonceLifetime * 1000 : null, sharedReplayCheck })
}

function resolveRevocationFeed (feed: TokenSessionsOptions['revocationFeed']): ResolvedOptions['revocationFeed'] {
  const given = feed ?? {}
  if (typeof given !== 'object') fail('revocationFeed', 'must be { onOutage, maxOutage, knownAlive, maxLookups }')
  const onOutage = given.onOutage ?? 'check-store'
  if (!OUTAGE_POLICIES.includes(onOutage)) fail('revocationFeed.onOutage', `must be ${OUTAGE_POLICIES.map((policy) => `"${policy}"`).join(', ')}`)
  const maxOutage = integer(given.maxOutage, 'revocationFeed.maxOutage', DEFAULT_MAX_FEED_OUTAGE, 0, 3600, 'seconds')
  const knownAliveMs = integer(given.knownAlive, 'revocationFeed.knownAlive', 0, 0, MAX_KNOWN_ALIVE, 'milliseconds')
  const maxLookups = integer(given.maxLookups, 'revocationFeed.maxLookups', DEFAULT_MAX_LOOKUPS, 1, 1_000_000, 'lookups')
  return Object.freeze({ maxOutageMs: maxOutage * 1000, onOutage, knownAliveMs, maxLookups })
}

function resolveClaimsHook (hook: TokenSessionsOptions['claims']): ClaimsHook | undefined {
  if (hook !== undefined && typeof hook !== 'function') fail('claims', 'must be a function (userId, { sessionId, event, request, endSession }) => claims')
  return hook
}

/** A path prefix left public: an absolute path of printable ASCII, `/` itself excepted. */
const PUBLIC_PREFIX = /^\/[!-~]{1,200}$/

function resolveProtectRoutes (given: TokenSessionsOptions['protectRoutes']): ResolvedOptions['protectRoutes'] {
  if (given === undefined || given === false) return null
  if (given === true) return Object.freeze({ publicPrefixes: Object.freeze([]) })
  const prefixes: unknown = given?.publicPrefixes ?? []
  if (given === null || typeof given !== 'object' || !Array.isArray(prefixes) || prefixes.length > 100) {
    fail('protectRoutes', 'must be true, false or { publicPrefixes: [\'/docs\', ...] } (at most 100 prefixes)')
  }
  // Compared without a trailing slash: '/docs' and '/docs/' both leave /docs and /docs/... public.
  const checked = prefixes.map((prefix: unknown) => {
    const trimmed = typeof prefix === 'string' ? prefix.replace(/\/+$/, '') : ''
    if (!PUBLIC_PREFIX.test(trimmed)) {
      fail('protectRoutes.publicPrefixes', `each must be a path below / such as '/docs' (1 to 200 printable characters; '/' itself would leave every route public: mark routes public with config: { public: true } instead), got ${JSON.stringify(prefix)}`)
    }
    return trimmed
  })
  return Object.freeze({ publicPrefixes: Object.freeze(checked) })
}

function resolveHooks (options: TokenSessionsOptions): Readonly<AuditHooks> {
  const hooks: AuditHooks = {}
  for (const name of HOOKS) {
    const hook = options[name]
    if (hook === undefined) continue
    if (typeof hook !== 'function') fail(name, 'must be a function (event, request) => void | Promise<void>')
    hooks[name] = hook
  }
  return Object.freeze(hooks)
}

function resolveClientInfo (clientInfo: TokenSessionsOptions['clientInfo']): ResolvedOptions['clientInfo'] {
  if (clientInfo === false) return Object.freeze({ ip: false, userAgent: false })
  const given = clientInfo ?? {}
  if (given === null || typeof given !== 'object') fail('clientInfo', 'must be false or { ip, userAgent }')
  const flag = (name: 'ip' | 'userAgent'): boolean => {
    const value = given[name] ?? true
    if (typeof value !== 'boolean') fail(`clientInfo.${name}`, 'must be a boolean')
    return value
  }
  return Object.freeze({ ip: flag('ip'), userAgent: flag('userAgent') })
}

function integer (value: unknown, option: string, fallback: number, min: number, max: number, unit: string): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(option, `must be a whole number of ${unit} from ${min} to ${max}`)
  }
  return value
}

/** A lifetime in seconds; a value over `max` that fits as milliseconds is called what it likely is. */
function seconds (value: unknown, option: string, fallback: number, max: number): number {
  if (typeof value === 'number' && Number.isInteger(value) && value > max && value / 1000 <= max) {
    fail(option, `must be a whole number of seconds from 1 to ${max}: ${value} seconds is ${(value / 86_400).toFixed(1)} days (milliseconds given for seconds?)`)
  }
  return integer(value, option, fallback, 1, max, 'seconds')
}

function resolveOrigins (options: TokenSessionsOptions): ResolvedOptions['origins'] {
  const origin = (value: unknown, option: string): string => {
    if (typeof value !== 'string' || !ORIGIN.test(value)) fail(option, 'must be an origin such as "https://app.example.com" (scheme, host, optional port; no path)')
    return value.toLowerCase()
  }
  const publicOrigin = options.publicOrigin === undefined ? undefined : origin(options.publicOrigin, 'publicOrigin')
  const allowed = options.allowedOrigins ?? []
  if (!Array.isArray(allowed)) fail('allowedOrigins', 'must be an array of origins')
  return Object.freeze({ publicOrigin, allowed: new Set(allowed.map((value, index) => origin(value, `allowedOrigins[${index}]`))) })
}

function text (value: unknown, option: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0) fail(option, 'must be a non-empty string')
  return value
}

function secretBytes (value: unknown, option: string): Buffer {
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) {
    fail(option, `must be a string or Buffer of at least ${MIN_SECRET_BYTES} bytes (e.g. openssl rand -base64 48)`)
  }
  refuseKeyMaterial(value, option)
  const bytes = Buffer.from(value)
  if (bytes.length < MIN_SECRET_BYTES) {
    fail(option, `is ${bytes.length} bytes; use at least ${MIN_SECRET_BYTES} random bytes (e.g. openssl rand -base64 48)`)
  }
  return bytes
}

function resolveKeys (options: TokenSessionsOptions): TokenKeys {
  const { secret, accessTokenSecret, refreshTokenSecret, accessTokenKeys, activeKid } = options
  if (accessTokenKeys === undefined && activeKid !== undefined) fail('activeKid', 'goes with accessTokenKeys')
  if (secret !== undefined && (accessTokenSecret !== undefined || refreshTokenSecret !== undefined)) {
    fail('secret', 'give either secret, or accessTokenSecret and refreshTokenSecret, not both')
  }
  if (accessTokenKeys !== undefined) {
    if (accessTokenSecret !== undefined) fail('accessTokenSecret', 'give either accessTokenSecret or accessTokenKeys, not both')
    const refresh = refreshTokenSecret ?? secret
    if (refresh === undefined) fail('secret', 'is required for refresh tokens (or give refreshTokenSecret)')
    return deriveKeys({ access: resolveAccessKeys(accessTokenKeys, activeKid), refresh: secretBytes(refresh, refreshTokenSecret === undefined ? 'secret' : 'refreshTokenSecret') })
  }
  if (accessTokenSecret === undefined && refreshTokenSecret === undefined) {
    if (secret === undefined) fail('secret', 'is required (or give accessTokenSecret and refreshTokenSecret)')
    const bytes = secretBytes(secret, 'secret')
    return deriveKeys({ access: bytes, refresh: bytes })
  }
  const access = secretBytes(accessTokenSecret, 'accessTokenSecret')
  const refresh = secretBytes(refreshTokenSecret, 'refreshTokenSecret')
  if (access.equals(refresh)) fail('refreshTokenSecret', 'must differ from accessTokenSecret (or give one secret)')
  return deriveKeys({ access, refresh })
}

function resolveStore (options: TokenSessionsOptions): ResolvedOptions['store'] {
  const { store, redis, keyPrefix } = options
  // `redis: process.env.REDIS_URL` with the variable unset must not start an app whose
  // sessions quietly live in one process's memory.
  for (const name of ['redis', 'store'] as const) {
    if (name in options && options[name] === undefined) fail(name, 'is undefined (is the environment variable it comes from set?)')
  }
  if (store !== undefined && redis !== undefined) fail('store', 'give either store or redis, not both')
  if (store !== undefined) {
    if (store === null || typeof store !== 'object' || STORE_METHODS.some((m) => typeof store[m] !== 'function')) {
      fail('store', `must implement SessionStore (${STORE_METHODS.join(', ')}), e.g. new RedisStore({ client })`)
    }
    const feed: unknown = store.revocationFeed
    if (feed === null || typeof feed !== 'object' || FEED_METHODS.some((m) => typeof (feed as Record<string, unknown>)[m] !== 'function')) {
      fail('store', `must have a revocationFeed (${FEED_METHODS.join(', ')})`)
    }
    if (keyPrefix !== undefined) fail('keyPrefix', 'goes to the RedisStore you pass as store, not to the plugin')
    return Object.freeze({ kind: 'given', store })
  }
  if (redis !== undefined) return Object.freeze({ kind: 'redis', options: redisStoreOptions(redis, keyPrefix) })
  if (keyPrefix !== undefined) fail('keyPrefix', 'goes with redis (it prefixes the Redis keys)')
  return fail('redis', 'is required: a redis:// URL or an ioredis client; or give store (a RedisStore, or new MemoryStore() for development and tests)')
}

function resolveRoutes (routes: TokenSessionsOptions['routes']): ResolvedRoutes | null {
  if (routes === undefined || routes === false) return null
  const given = routes === true ? {} : routes
  if (given === null || typeof given !== 'object') fail('routes', 'must be true, false or { prefix, refresh, logout, logoutAll, sessions, jwks, token, revoke }')
  const prefix = given.prefix ?? DEFAULT_ROUTES_PREFIX
  if (typeof prefix !== 'string' || !/^(\/[A-Za-z0-9._~-]+)*$/.test(prefix)) {
    fail('routes.prefix', 'must be a path like "/auth" (no trailing slash), or "" for the root')
  }
  const route = (name: 'refresh' | 'logout' | 'logoutAll' | 'sessions' | 'jwks' | 'token' | 'revoke'): Readonly<RouteOptions> | null => {
    // The token route refreshes too: by default it is on as refresh is, with its config (its rate limit).
    const value = name === 'token' ? given.token ?? given.refresh ?? true : given[name] ?? name !== 'jwks'
    if (typeof value === 'boolean') return value ? Object.freeze({}) : null
    if (value === null || typeof value !== 'object') fail(`routes.${name}`, 'must be a boolean or { config }')
    for (const key of Object.keys(value)) {
      if (key !== 'config') fail(`routes.${name}.${key}`, 'is not a route option (routes take { config })')
    }
    const { config } = value
    if (config === undefined) return Object.freeze({})
    if (config === null || typeof config !== 'object' || Array.isArray(config)) fail(`routes.${name}.config`, 'must be an object (the route\'s Fastify config)')
    return Object.freeze({ config })
  }
  return Object.freeze({
    prefix,
    refresh: route('refresh'),
    logout: route('logout'),
    logoutAll: route('logoutAll'),
    sessions: route('sessions'),
    jwks: route('jwks'),
    token: route('token'),
    revoke: route('revoke')
  })
}

function resolveCookies (cookies: TokenSessionsOptions['cookies'], routes: ResolvedRoutes | null, env: NodeJS.ProcessEnv): ResolvedCookies | null {
  if (cookies === false) return null
  const given = cookies ?? {}
  if (given === null || typeof given !== 'object') fail('cookies', 'must be false or an object of cookie settings')
  const name = (option: 'accessTokenName' | 'refreshTokenName' | 'bindingName', fallback: string): string => {
    const value = given[option] ?? fallback
    if (typeof value !== 'string' || !COOKIE_NAME.test(value)) fail(`cookies.${option}`, 'must be a valid cookie name')
    if (/^__(host|secure)-/i.test(value)) fail(`cookies.${option}`, 'must be given without a __Host- or __Secure- prefix: the plugin adds the one the browser\'s rules allow when cookies are secure')
    return value
  }
  const path = (option: 'path' | 'refreshPath', fallback: string): string => {
    const value = given[option] ?? fallback
    if (typeof value !== 'string' || !value.startsWith('/') || /[;\s]/.test(value)) fail(`cookies.${option}`, 'must be a path starting with "/"')
    return value
  }
  const sameSite = given.sameSite ?? 'strict'
  if (sameSite !== 'strict' && sameSite !== 'lax' && sameSite !== 'none') fail('cookies.sameSite', 'must be "strict", "lax" or "none"')
  const secureOption = given.secure ?? 'auto'
  if (typeof secureOption !== 'boolean' && secureOption !== 'auto') fail('cookies.secure', 'must be true, false or "auto" (on when NODE_ENV is production)')
  const secure = secureOption === 'auto' ? env.NODE_ENV === 'production' : secureOption
  if (sameSite === 'none' && !secure) fail('cookies.sameSite', 'can be "none" only with secure cookies (browsers drop such cookies otherwise)')
  const domain = given.domain
  if (domain !== undefined && (typeof domain !== 'string' || !/^[A-Za-z0-9.-]+$/.test(domain))) fail('cookies.domain', 'must be a host name')
  const clearSiteData = given.clearSiteData ?? false
  if (typeof clearSiteData !== 'boolean') fail('cookies.clearSiteData', 'must be a boolean')
  const names = [name('accessTokenName', 'access_token'), name('refreshTokenName', 'refresh_token'), name('bindingName', 'session_binding')]
  if (new Set(names).size !== names.length) fail('cookies.refreshTokenName', 'cookies.accessTokenName, refreshTokenName and bindingName must differ')
  const [access, refresh, binding] = names as [string, string, string]
  const accessPath = path('path', '/')
  const refreshPath = path('refreshPath', routes === null || routes.prefix === '' ? '/' : routes.prefix)
  // The prefix each cookie may carry: `__Host-` needs Secure, Path=/ and no Domain, and no
  // other site (a sibling subdomain, a man in the middle on http) can set such a cookie.
  const prefixed = (base: string, cookiePath: string, cookieDomain: string | undefined): string => {
    if (!secure) return base
    return cookiePath === '/' && cookieDomain === undefined ? `__Host-${base}` : `__Secure-${base}`
  }
  return Object.freeze({
    accessTokenName: prefixed(access, accessPath, domain),
    refreshTokenName: prefixed(refresh, refreshPath, domain),
    // The session cookie is always host-only, on every path.
    bindingName: prefixed(binding, '/', undefined),
    domain,
    path: accessPath,
    refreshPath,
    secure,
    sameSite,
    clearSiteData
  })
}

function resolveCsrfHeader (header: TokenSessionsOptions['csrfHeader']): string | null {
  if (header === false) return null
  const value = header ?? DEFAULT_CSRF_HEADER
  if (typeof value !== 'string' || !HEADER_NAME.test(value)) fail('csrfHeader', 'must be a lower-case header name, or false')
  return value
}

/** `telemetry`: `false`, or the providers to record to instead of the global ones. */
function resolveTelemetry (given: TokenSessionsOptions['telemetry']): TelemetryOptions | false | undefined {
  if (given === undefined || given === false) return given
  const shape = 'must be false or { meterProvider, tracerProvider } (OpenTelemetry SDK providers)'
  if (typeof given !== 'object' || given === null) fail('telemetry', shape)
  const { meterProvider, tracerProvider, ...rest } = given
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) fail(`telemetry.${unknown}`, `is not an option: ${shape}`)
  if (meterProvider !== undefined && typeof meterProvider?.getMeter !== 'function') fail('telemetry.meterProvider', 'must be an OpenTelemetry MeterProvider (it has getMeter)')
  if (tracerProvider !== undefined && typeof tracerProvider?.getTracer !== 'function') fail('telemetry.tracerProvider', 'must be an OpenTelemetry TracerProvider (it has getTracer)')
  return Object.freeze({ ...given })
}
