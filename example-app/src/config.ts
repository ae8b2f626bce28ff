import { randomBytes } from 'node:crypto'
// The plugin's defaults and limits, checked here too so that a message names the variable
// rather than the plugin's option.
import {
  DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_MAX_SESSIONS_PER_USER, DEFAULT_REFRESH_TOKEN_TTL, DEFAULT_SESSION_MAX_LIFETIME, MAX_REUSE_GRACE,
  MAX_ACCESS_TOKEN_TTL, MAX_SESSIONS_PER_USER, MAX_TOKEN_TTL, MIN_SECRET_BYTES, type OutagePolicy
} from 'fastify-token-sessions'

/** Log levels pino knows; anything else is a typo we would rather hear about at start-up. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
/** Size of the secret generated for development. */
const GENERATED_SECRET_BYTES = 48
/** Logins per client network per minute, and password checks per account: a person mistyping a password never needs more. */
const DEFAULT_RATE_LIMIT_LOGIN = 10
/**
 * Password checks per account per minute from networks new to it, once RATE_LIMIT_LOGIN's
 * are spent: looser, so that an attack from many networks leaves room for the owner.
 */
const DEFAULT_RATE_LIMIT_LOGIN_NEW_NETWORKS = 30
/** Refreshes per client network per minute: several tabs, and a NAT full of users, fit under it. */
const DEFAULT_RATE_LIMIT_REFRESH = 60
/** Far above any honest client, and still a whole number Redis counts exactly. */
const MAX_RATE_LIMIT = 1_000_000
/** Seconds a login stays recent enough for a password change (RFC 9470 step-up). */
const DEFAULT_STEP_UP_MAX_AGE = 300

/** The plugin's outage policies; a record, so that the compiler sees every one of them named here. */
const OUTAGE_POLICIES: Readonly<Record<OutagePolicy, true>> = { 'check-store': true, accept: true, reject: true }

/** A pino log level. */
export type LogLevel = typeof LOG_LEVELS[number]

/** The example app's settings, read once from the environment. */
export interface Config {
  /** `NODE_ENV === 'production'`: no generated secret, no in-memory fallback. */
  readonly production: boolean
  readonly port: number
  readonly host: string
  readonly redisUrl: string
  /** Seconds. */
  readonly accessTokenTtl: number
  /** Seconds. */
  readonly refreshTokenTtl: number
  /** Seconds: no refresh extends a session past this; the user logs in again. */
  readonly sessionMaxLifetime: number
  /** Seconds, the same for a login without "remember me"; undefined leaves the plugin's default. */
  readonly browserSessionMaxLifetime: number | undefined
  /** Seconds; undefined leaves the plugin's default. */
  readonly reuseGrace: number | undefined
  readonly jwtSecret: string
  /** True when no JWT_SECRET was given and one was made up for this process. */
  readonly jwtSecretGenerated: boolean
  /** Undefined leaves the plugin's default. */
  readonly keyPrefix: string | undefined
  readonly logLevel: LogLevel
  /**
   * Requests to `POST /auth/login` one client network may make per minute
   * (`RATE_LIMIT_LOGIN`); the same number, counted separately, for `POST /auth/register`;
   * and the password checks against one account per minute, from whatever networks.
   */
  readonly rateLimitLogin: number
  /**
   * Password checks against one account per minute from networks that have not failed
   * against it, once `RATE_LIMIT_LOGIN`'s are spent (`RATE_LIMIT_LOGIN_NEW_NETWORKS`).
   */
  readonly rateLimitLoginNewNetworks: number
  /**
   * Requests to `POST /auth/refresh` one client network may make per minute (`RATE_LIMIT_REFRESH`);
   * the same number, counted separately, for the routes that end sessions (`POST /auth/logout`,
   * `/auth/logout-all` and `/auth/revoke`).
   */
  readonly rateLimitRefresh: number
  /** The most sessions one user may have (`MAX_SESSIONS_PER_USER`); a login beyond it ends the one nearest its end (usually the least recently used). */
  readonly maxSessionsPerUser: number
  /**
   * Which proxies' `X-Forwarded-For` to believe for the client's IP (`TRUST_PROXY`): off
   * (the default: behind no proxy, a client could claim any IP), `true` (every hop), a
   * number of hops, or addresses and CIDR ranges. Rate limits count per client network, so behind
   * a proxy without it every client shares the proxy's one limit.
   */
  readonly trustProxy: boolean | number | string
  /**
   * Whether `/docs` (Swagger UI) and `/docs/json` (the OpenAPI document) are served (`DOCS`:
   * `true` or `false`): on by default outside production, off in production unless
   * `DOCS=true`, as they are served without authentication.
   */
  readonly docs: boolean
  /**
   * The OAuth clients a login may name in `client_id` (`NATIVE_CLIENT_IDS`, comma-separated;
   * none by default): the session is issued to that client, whose OAuth library then
   * refreshes it at `/auth/token` with the same `client_id`.
   */
  readonly nativeClientIds: readonly string[]
  /** Whether DPoP proofs must carry a server nonce (`DPOP_NONCES`: `true` or `false`, default false). */
  readonly dpopNonces: boolean
  /**
   * What `authenticate` does while the revocation feed is down (`REVOCATION_OUTAGE_POLICY`:
   * `check-store`, `accept` or `reject`, the plugin's `revocationFeed.onOutage`); undefined
   * leaves the plugin's default.
   */
  readonly revocationOutagePolicy: OutagePolicy | undefined
  /**
   * How recent, in seconds, the user's last password check must be for a password change
   * (`STEP_UP_MAX_AGE`, default 300): an older one gets 401 `FTS_STEP_UP_REQUIRED`, and
   * `POST /auth/reauthenticate` makes it recent again.
   */
  readonly stepUpMaxAge: number
  /** Whether the plugin's metrics are served as Prometheus text (`METRICS`: `true` or `false`, default false). */
  readonly metrics: boolean
  /**
   * The port they are served on, at `/metrics` (`METRICS_PORT`); unset, the app's own port
   * serves `/metrics`, outside production only (it is unauthenticated).
   */
  readonly metricsPort: number | undefined
}

/**
 * A setting that cannot work. Its message names the variable and the fix, and never
 * repeats a secret's value.
 */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * Reads the app's settings from the environment. Throws a {@link ConfigError} for any
 * bad value rather than falling back to a default, so a typo fails at start-up.
 *
 * Rate limits, per client network (an IPv4 address, an IPv6 /64) and per minute:
 * - `RATE_LIMIT_LOGIN` (default 10): `POST /auth/login`, against password guessing, and
 *   `POST /auth/register` (each attempt costs a password hash), counted in Redis when the
 *   sessions are (so every instance counts together) and in memory otherwise. It is also
 *   the number of password checks per minute against one account from any networks
 *   together, counted before the password is checked; once they are spent, a network that
 *   has failed against the account gets 429 until the minute ends, and
 * - `RATE_LIMIT_LOGIN_NEW_NETWORKS` (default 30) more checks per minute are left for
 *   networks that have not, so that the owner, elsewhere, still logs in.
 * - `RATE_LIMIT_REFRESH` (default 60): `POST /auth/refresh` and `/auth/token`, against token
 *   guessing and a Redis round trip per request; the same number, counted apart, for
 *   `POST /auth/logout`, `/auth/logout-all` and `/auth/revoke`. Counted in each instance's
 *   memory (see rate-limits.ts), so set per instance.
 * Each is a whole number from 1 to 1000000; a client over it gets a 429 `RATE_LIMITED`
 * with `Retry-After`.
 *
 * `MAX_SESSIONS_PER_USER` (default 100, from 1 to 1000000): a login beyond it ends the
 * user's session nearest its end (usually the least recently used).
 *
 * `NATIVE_CLIENT_IDS` (comma-separated, none by default): the OAuth client ids a login may
 * name in its `client_id` (RFC 6749's unreserved characters, 1 to 100 of them each: the plugin's
 * limit for a `clientId`).
 *
 * `DOCS` (`true` or `false`; unset: on outside production, off in production): serve the API's
 * documentation at `/docs` and `/docs/json`, without authentication.
 *
 * `REVOCATION_OUTAGE_POLICY` (unset: the plugin's default): what `authenticate` does while
 * the revocation feed is down, `check-store` (ask Redis whether the session is live),
 * `accept` (trust unexpired access tokens) or `reject` (503 once the feed has been down a
 * few seconds).
 *
 * `STEP_UP_MAX_AGE` (default 300, from 1 to the longest token lifetime): a password change
 * needs a login, or a re-authentication, at most this many seconds old.
 *
 * `METRICS` (`true` or `false`, default false): the plugin's metrics, as Prometheus text at
 * `/metrics` on `METRICS_PORT` (a port of their own, which production needs: it is
 * unauthenticated) or, outside production without it, on the app's port.
 *
 * `BROWSER_SESSION_MAX_LIFETIME` (unset: the plugin's default, 12 hours or
 * SESSION_MAX_LIFETIME when shorter, the refresh-token lifetime with access tokens of 12 hours or more): how long a session logged in without "remember me"
 * may last, in seconds, if the browser is never closed.
 *
 * @example
 * ```ts
 * const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: process.env.JWT_SECRET })
 * const app = await buildApp(config)
 * ```
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const production = env.NODE_ENV === 'production'
  const accessTokenTtl = wholeNumber(env, 'ACCESS_TOKEN_TTL', DEFAULT_ACCESS_TOKEN_TTL, 1, MAX_ACCESS_TOKEN_TTL)
  const refreshTokenTtl = wholeNumber(env, 'REFRESH_TOKEN_TTL', DEFAULT_REFRESH_TOKEN_TTL, 1, MAX_TOKEN_TTL)
  if (refreshTokenTtl <= accessTokenTtl) {
    throw new ConfigError(`REFRESH_TOKEN_TTL (${refreshTokenTtl}) must be greater than ACCESS_TOKEN_TTL (${accessTokenTtl})`)
  }
  const sessionMaxLifetime = maxLifetime(env, accessTokenTtl)
  const secret = jwtSecret(env, production)
  const port = wholeNumber(env, 'PORT', 3000, 0, 65_535)
  return Object.freeze({
    production,
    port,
    host: text(env, 'HOST') ?? '127.0.0.1',
    redisUrl: redisUrl(env),
    accessTokenTtl,
    refreshTokenTtl,
    sessionMaxLifetime,
    browserSessionMaxLifetime: browserLifetime(env, accessTokenTtl, sessionMaxLifetime),
    reuseGrace: env.REFRESH_REUSE_GRACE === undefined ? undefined : wholeNumber(env, 'REFRESH_REUSE_GRACE', 0, 0, MAX_REUSE_GRACE),
    jwtSecret: secret.value,
    jwtSecretGenerated: secret.generated,
    keyPrefix: keyPrefix(env),
    logLevel: logLevel(env),
    rateLimitLogin: wholeNumber(env, 'RATE_LIMIT_LOGIN', DEFAULT_RATE_LIMIT_LOGIN, 1, MAX_RATE_LIMIT),
    rateLimitLoginNewNetworks: wholeNumber(env, 'RATE_LIMIT_LOGIN_NEW_NETWORKS', DEFAULT_RATE_LIMIT_LOGIN_NEW_NETWORKS, 1, MAX_RATE_LIMIT),
    rateLimitRefresh: wholeNumber(env, 'RATE_LIMIT_REFRESH', DEFAULT_RATE_LIMIT_REFRESH, 1, MAX_RATE_LIMIT),
    maxSessionsPerUser: wholeNumber(env, 'MAX_SESSIONS_PER_USER', DEFAULT_MAX_SESSIONS_PER_USER, 1, MAX_SESSIONS_PER_USER),
    trustProxy: trustProxy(env),
    docs: text(env, 'DOCS') === undefined ? !production : flag(env, 'DOCS'),
    nativeClientIds: nativeClientIds(env),
    dpopNonces: flag(env, 'DPOP_NONCES'),
    revocationOutagePolicy: outagePolicy(env),
    stepUpMaxAge: wholeNumber(env, 'STEP_UP_MAX_AGE', DEFAULT_STEP_UP_MAX_AGE, 1, MAX_TOKEN_TTL),
    ...metrics(env, production, port)
  })
}

/** METRICS and METRICS_PORT: in production, never on the app's public port. */
function metrics (env: NodeJS.ProcessEnv, production: boolean, port: number): { metrics: boolean, metricsPort: number | undefined } {
  const on = flag(env, 'METRICS')
  const metricsPort = text(env, 'METRICS_PORT') === undefined ? undefined : wholeNumber(env, 'METRICS_PORT', 0, 1, 65_535)
  if (metricsPort === port) throw new ConfigError(`METRICS_PORT (${port}) must differ from PORT: the metrics are served apart from the app, or leave METRICS_PORT unset to serve them on PORT`)
  if (metricsPort !== undefined && !on) throw new ConfigError('METRICS_PORT is set but METRICS is not true: set METRICS=true to serve metrics, or unset METRICS_PORT')
  if (on && production && metricsPort === undefined) {
    throw new ConfigError('METRICS=true in production needs METRICS_PORT: /metrics is unauthenticated, so it is served on a port of its own, not the app\'s')
  }
  return { metrics: on, metricsPort }
}

/** A variable's value, or undefined when it is unset or empty (compose passes empty strings). */
function text (env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value === '' ? undefined : value
}

/** `true` or `false`; unset is false, anything else an error. */
function flag (env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = text(env, name)
  if (raw === undefined || raw === 'false') return false
  if (raw === 'true') return true
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`)
}

/** Only plain digits: `Number()` would accept '', ' 1', '1e3' and '0x10'. */
function wholeNumber (env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name)
  if (raw === undefined) return fallback
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN
  if (!(value >= min && value <= max)) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  }
  return value
}

/**
 * Checked against the access-token lifetime even when unset: with a long ACCESS_TOKEN_TTL
 * the plugin's default would be refused, and the message should name the variable.
 */
function maxLifetime (env: NodeJS.ProcessEnv, accessTokenTtl: number): number {
  const value = wholeNumber(env, 'SESSION_MAX_LIFETIME', DEFAULT_SESSION_MAX_LIFETIME, 1, MAX_TOKEN_TTL)
  // Only a value given can fail: the default (30 days) outlives the longest access token (a day).
  if (value <= accessTokenTtl) throw new ConfigError(`SESSION_MAX_LIFETIME (${value}) must be greater than ACCESS_TOKEN_TTL (${accessTokenTtl})`)
  return value
}

/** A session without "remember me" lasts longer than an access token and no longer than a remembered one. */
function browserLifetime (env: NodeJS.ProcessEnv, accessTokenTtl: number, sessionMaxLifetime: number): number | undefined {
  if (text(env, 'BROWSER_SESSION_MAX_LIFETIME') === undefined) return undefined
  const value = wholeNumber(env, 'BROWSER_SESSION_MAX_LIFETIME', 0, 1, MAX_TOKEN_TTL)
  if (value <= accessTokenTtl) throw new ConfigError(`BROWSER_SESSION_MAX_LIFETIME (${value}) must be greater than ACCESS_TOKEN_TTL (${accessTokenTtl})`)
  if (value > sessionMaxLifetime) throw new ConfigError(`BROWSER_SESSION_MAX_LIFETIME (${value}) must not exceed SESSION_MAX_LIFETIME (${sessionMaxLifetime})`)
  return value
}

function jwtSecret (env: NodeJS.ProcessEnv, production: boolean): { value: string, generated: boolean } {
  const value = text(env, 'JWT_SECRET')
  if (value === undefined) {
    if (production) {
      throw new ConfigError(`JWT_SECRET is required when NODE_ENV=production: set it to at least ${MIN_SECRET_BYTES} random bytes, e.g. $(openssl rand -base64 48)`)
    }
    // A fresh secret per process: tokens stop working on restart, which is fine in development.
    return { value: randomBytes(GENERATED_SECRET_BYTES).toString('base64url'), generated: true }
  }
  const bytes = Buffer.byteLength(value)
  if (bytes < MIN_SECRET_BYTES) {
    throw new ConfigError(`JWT_SECRET is ${bytes} bytes; use at least ${MIN_SECRET_BYTES} random bytes, e.g. $(openssl rand -base64 48)`)
  }
  return { value, generated: false }
}

function redisUrl (env: NodeJS.ProcessEnv): string {
  const value = text(env, 'REDIS_URL') ?? 'redis://127.0.0.1:6379'
  // The URL may hold a password, so the message does not repeat it.
  if (!/^rediss?:\/\/./.test(value)) throw new ConfigError('REDIS_URL must be a redis:// or rediss:// URL')
  return value
}

function keyPrefix (env: NodeJS.ProcessEnv): string | undefined {
  const value = text(env, 'KEY_PREFIX')
  if (value !== undefined && /[{}]/.test(value)) {
    throw new ConfigError('KEY_PREFIX must not contain "{" or "}" (they would break the per-user Redis Cluster hash tag)')
  }
  return value
}

/** An OAuth client id as this app accepts one: RFC 3986's unreserved characters. */
const CLIENT_ID = /^[A-Za-z0-9._~-]{1,100}$/

function nativeClientIds (env: NodeJS.ProcessEnv): readonly string[] {
  const ids = (text(env, 'NATIVE_CLIENT_IDS') ?? '').split(',').map((id) => id.trim()).filter((id) => id !== '')
  const bad = ids.find((id) => !CLIENT_ID.test(id))
  if (bad !== undefined) {
    throw new ConfigError(`NATIVE_CLIENT_IDS must be client ids separated by commas, each 1 to 100 of A-Z a-z 0-9 . _ ~ -, got ${JSON.stringify(bad)}`)
  }
  return Object.freeze([...new Set(ids)])
}

/** Proxy addresses and ranges: IPv4 or IPv6, with an optional prefix length. */
const PROXY_LIST = /^[0-9A-Fa-f.:]+(\/\d{1,3})?(\s*,\s*[0-9A-Fa-f.:]+(\/\d{1,3})?)*$/

function trustProxy (env: NodeJS.ProcessEnv): boolean | number | string {
  const value = text(env, 'TRUST_PROXY')
  if (value === undefined || value === 'false') return false
  if (value === 'true') return true
  if (/^\d+$/.test(value)) return wholeNumber(env, 'TRUST_PROXY', 0, 1, 10)
  if (!PROXY_LIST.test(value)) {
    throw new ConfigError('TRUST_PROXY must be true, false, a number of proxy hops (1 to 10), or proxy addresses and CIDR ranges separated by commas')
  }
  return value
}

function logLevel (env: NodeJS.ProcessEnv): LogLevel {
  const value = text(env, 'LOG_LEVEL') ?? 'info'
  const level = LOG_LEVELS.find((known) => known === value)
  if (level === undefined) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`)
  return level
}

/** Unset leaves the plugin's default; a name the plugin does not know fails here, naming the variable. */
function outagePolicy (env: NodeJS.ProcessEnv): OutagePolicy | undefined {
  const value = text(env, 'REVOCATION_OUTAGE_POLICY')
  if (value === undefined) return undefined
  const names = Object.keys(OUTAGE_POLICIES) as OutagePolicy[]
  const policy = names.find((known) => known === value)
  if (policy === undefined) throw new ConfigError(`REVOCATION_OUTAGE_POLICY must be one of ${names.join(', ')}, got ${JSON.stringify(value)}`)
  return policy
}
