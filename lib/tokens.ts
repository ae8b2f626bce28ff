import { createHmac, createSecretKey, hash, hkdfSync, randomBytes, type KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'
import { createVerifier } from 'fast-jwt'
import type { FastifyInstance, FastifyPluginCallback } from 'fastify'
import { CLOCK_TOLERANCE_MS } from './clock.js'
import { SessionExpiredError, TokenExpiredError, TokenInvalidError } from './errors.js'
import { derivedKey, type ResolvedKey } from './keys.js'
import type { ClaimValues, SessionUser } from './types.js'

/**
 * `@fastify/jwt`, loaded without its typings: they declare `request.user` (and `jwt`,
 * `jwtVerify`, ...) for every program that sees them, which would fight this plugin's
 * own declaration of the user and an app's own `@fastify/jwt` types. The plugin runs it
 * only inside an encapsulated context, so none of its decorators reach the app.
 */
const fastifyJwt = createRequire(import.meta.url)('@fastify/jwt') as FastifyPluginCallback<Record<string, unknown>>

/** What the codec uses of one `@fastify/jwt` namespace (`fastify.jwt[namespace]`): its signer. */
interface Signer {
  sign (payload: Record<string, unknown>): string
}

/** A verifier made once for one key: the verified payload of a token, or it throws. */
type Verifier = (token: string) => Record<string, unknown>

/** One key's signer and verifier (only the active access key and the refresh key sign). */
interface KeyCodec {
  signer: Signer
  verify: Verifier
}

/**
 * The JOSE `typ` header of an access token under RFC 9068: with `clientId`, `issuer` and
 * `audience` set, when every claim the profile requires is in the token.
 *
 * @example
 * ```ts
 * // Another service checking our access tokens with its own JWT library:
 * jwtVerify(token, jwks, { typ: ACCESS_TOKEN_TYPE, issuer, audience })
 * ```
 */
export const ACCESS_TOKEN_TYPE = 'at+jwt'
/** The JOSE `typ` header of an access token outside RFC 9068's profile: a plain JWT. */
export const PLAIN_ACCESS_TOKEN_TYPE = 'JWT'
/**
 * The JOSE `typ` header of a refresh token; an access token never carries it.
 *
 * @example
 * ```ts
 * const isRefreshToken = decodeProtectedHeader(token).typ === REFRESH_TOKEN_TYPE
 * ```
 */
export const REFRESH_TOKEN_TYPE = 'rt+jwt'

/** Claims this plugin writes itself; an app's own claims may not use these names. */
export const RESERVED_CLAIMS: ReadonlySet<string> = new Set([
  'sub', 'sid', 'sst', 'jti', 'iat', 'exp', 'nbf', 'iss', 'aud', 'typ', 'clm', 'mx', 'client_id', 'cid', 'cnf', 'scope', 'scp',
  'auth_time', 'acr', 'amr', 'id', 'sessionId', 'sessionStartedAt', 'expiresAt', 'authenticatedAt'
])

/**
 * Claims not copied into `request.user`: ours, and `__proto__`, which as an own key of a
 * parsed payload would, once assigned, replace the user object's prototype.
 */
const SKIPPED_CLAIMS: ReadonlySet<string> = new Set([...RESERVED_CLAIMS, '__proto__'])
const SESSION_ID = /^[A-Za-z0-9_-]{22}$/
const REFRESH_ID = /^[A-Za-z0-9_-]{43}$/
const MAX_USER_ID_LENGTH = 256

/** The access-token keys (the active one signs), and the refresh and successor keys. */
export interface TokenKeys {
  access: { keys: readonly ResolvedKey[], active: ResolvedKey }
  refresh: Buffer
  /** A KeyObject, made once: an HMAC keyed with raw bytes imports them again on each call. */
  successor: KeyObject
  /** Makes and checks DPoP server nonces. */
  dpopNonce: KeyObject
}

/** What a verified refresh token says. */
export interface RefreshClaims {
  sub: string
  sid: string
  jti: string
  /** When the session's absolute lifetime ends, in seconds since the epoch (`mx`). */
  endsAt: number
  /** Whether the session is remembered: `false` when issued with `remember: false` (`rem`). */
  remembered: boolean
  claims: ClaimValues
  /** The client the session was issued to (`cid`), if any. */
  clientId: string | undefined
  /** The scope granted at login (`scp`), space-separated, if any. */
  scope: string | undefined
  /** The user's last authentication, as far as the token says (none before step-up existed). */
  auth: PastAuthentication
}

/** What a refresh token says of the last authentication: no time in one from before step-up. */
export type PastAuthentication = Omit<Authentication, 'time'> & { time: number | undefined }

/**
 * When and how the user last proved who they are (RFC 9470): `auth_time`, and the `acr`
 * and `amr` the app gave at login or re-authentication. A refresh never renews it.
 */
export interface Authentication {
  /** `auth_time`: seconds since the epoch, store clock. */
  time: number
  acr?: string | undefined
  amr?: readonly string[] | undefined
}

/** What a session's tokens say beside the user and the app's claims. */
export interface Grant {
  /** The client the session was issued to (`client_id` in access tokens, `cid` in refresh tokens). */
  clientId?: string | undefined
  /** The scope granted at login; an access token may carry a narrower one. */
  scope?: string | undefined
}

function hkdf (secret: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'fastify-token-sessions', info, 32))
}

/**
 * Derives independent keys from one secret (HKDF-SHA256), or from separate access and
 * refresh secrets, so that no token type can be verified with another's key. Configured
 * access-token keys, when given, replace the derived access key.
 */
export function deriveKeys (secrets: { access: Buffer | TokenKeys['access'], refresh: Buffer }): TokenKeys {
  const access = Buffer.isBuffer(secrets.access) ? derivedKey(hkdf(secrets.access, 'access-token')) : undefined
  return {
    access: access === undefined ? secrets.access as TokenKeys['access'] : { keys: [access], active: access },
    refresh: hkdf(secrets.refresh, 'refresh-token'),
    successor: createSecretKey(hkdf(secrets.refresh, 'refresh-successor')),
    dpopNonce: createSecretKey(hkdf(secrets.refresh, 'dpop-nonce'))
  }
}

/** A new random session id (128 bits). */
export function newSessionId (): string {
  return randomBytes(16).toString('base64url')
}

/** A new random refresh-token id (256 bits): the head of a rotation chain. */
export function newRefreshId (): string {
  return randomBytes(32).toString('base64url')
}

/**
 * The id of the token that replaces `refreshId`. Being a keyed function of the presented
 * id, racing refreshes of the same token agree on the successor without storing it.
 */
export function successorId (keys: TokenKeys, refreshId: string): string {
  return createHmac('sha256', keys.successor).update(refreshId).digest('base64url')
}

/**
 * What the store keeps of a refresh-token id: the first 128 bits of its SHA-256, from
 * which no token can be rebuilt (and 22 characters keep the session hash small).
 */
export function hashId (refreshId: string): string {
  // The one-shot hash: no Hash object (a stream) per call; this runs twice per refresh.
  return hash('sha256', refreshId, 'buffer').subarray(0, 16).toString('base64url')
}

/**
 * Signs and verifies both token types with keys pinned to one algorithm. Times are the
 * store's clock (see `StoreClock`), so that every instance signs and checks alike.
 */
export interface TokenCodec {
  /** `startedAt`: when the session started (ms, store clock), carried as `sst`. */
  /** With `jkt`, the token is bound to that DPoP key (`cnf.jkt`, RFC 9449 §6.1). */
  signAccess (input: { sub: string, sid: string, startedAt: number, ttlSeconds: number, claims: ClaimValues, grant: Grant, auth: Authentication, jkt?: string | undefined }): string
  /** `remembered: false` is carried as `rem: false`, so that every rotation keeps the choice. */
  signRefresh (input: { sub: string, sid: string, jti: string, ttlSeconds: number, endsAt: number, remembered: boolean, claims: ClaimValues, grant: Grant, auth: Authentication }): string
  /**
   * The user of a valid access token: its own claims, then `id`, `sessionId`,
   * `sessionStartedAt` and `expiresAt`. Throws a 401 error for any token that is not a
   * valid access token. `jkt` is the thumbprint of the DPoP proof's key that came with it
   * (undefined for none): a token bound to a key needs a proof by that key, and a token
   * bound to none is refused with a proof (it cannot be told from a downgrade).
   */
  verifyAccess (token: string, jkt?: string): SessionUser
  /**
   * An access token bound to whatever key it names, or (unless `bound`) to none: its user,
   * the key's thumbprint and its client. For a DPoP request, whose proof is checked against
   * that key next, and for ending a session, which checks the proof itself.
   */
  verifyAccessAnyKey (token: string, bound: boolean): { user: SessionUser, jkt: string | undefined, clientId: string | undefined, scope: string | undefined }
  /** Throws a 401 error for any token that is not a valid refresh token. */
  verifyRefresh (token: string): RefreshClaims
}

interface TokenCodecOptions {
  keys: TokenKeys
  issuer: string | undefined
  audience: string | undefined
  /** With issuer and audience: access tokens follow RFC 9068. */
  clientId: string | undefined
  accessTokenTtl: number
  refreshTokenTtl: number
  /** The store's clock, in ms. */
  now: () => number
}

/**
 * Registers `@fastify/jwt` once per key in an encapsulated context (so that the app's own
 * `fastify.jwt`, if any, is left alone) and signs with it. Tokens are verified by fast-jwt's
 * verifier, the one `@fastify/jwt` wraps, made here once per key with the same options:
 * `@fastify/jwt`'s own `verify` merges its options into new objects on every call, and
 * verification runs on every authenticated request. Each key pins one algorithm; an
 * access token picks its key by `kid`, and a `jku`, `x5u`, `jwk` or `x5c` header is
 * never fetched nor trusted.
 */
export async function createTokenCodec (fastify: FastifyInstance, options: TokenCodecOptions): Promise<TokenCodec> {
  const accessByKid = new Map<string, KeyCodec>()
  // RFC 9068 only when every claim it requires is there: iss, aud and client_id are
  // configured, and each token gets a jti of its own.
  const profile = options.clientId !== undefined && options.issuer !== undefined && options.audience !== undefined
  const accessType = profile ? ACCESS_TOKEN_TYPE : PLAIN_ACCESS_TOKEN_TYPE
  const accessClaims = ['sub', 'sid', 'sst', 'iat', 'exp', ...(profile ? ['jti', 'client_id'] : [])]
  let refresh: KeyCodec | undefined
  await fastify.register(async function tokenSessionsJwt (child) {
    const register = async (namespace: string, typ: string, key: ResolvedKey, required: string[]): Promise<KeyCodec> => {
      const { algorithm, signingKey, verifyKey } = key
      const verifyOptions = {
        algorithms: [algorithm],
        checkTyp: typ,
        // Checked here instead, by the store's clock (checkTimes).
        ignoreExpiration: true,
        // fast-jwt checks iss and aud only when present: require them when configured.
        requiredClaims: [
          ...required,
          ...(options.issuer === undefined ? [] : ['iss']),
          ...(options.audience === undefined ? [] : ['aud'])
        ],
        ...(options.issuer === undefined ? {} : { allowedIss: options.issuer }),
        ...(options.audience === undefined ? {} : { allowedAud: options.audience })
      }
      await child.register(fastifyJwt, {
        secret: Buffer.isBuffer(verifyKey) ? verifyKey : { public: verifyKey, ...(signingKey === undefined ? {} : { private: signingKey }) },
        namespace,
        // Its own request decorator, so an app's `request.user` is never claimed twice.
        decoratorName: `${namespace}_user`,
        sign: {
          algorithm,
          header: { alg: algorithm, typ, ...(key.kid === undefined ? {} : { kid: key.kid }) },
          ...(options.issuer === undefined ? {} : { iss: options.issuer }),
          ...(options.audience === undefined ? {} : { aud: options.audience })
        },
        verify: verifyOptions
      })
      return {
        signer: ((child as unknown as { jwt: Record<string, Signer> }).jwt)[namespace] as Signer,
        verify: createVerifier({ ...verifyOptions, key: verifyKey }) as Verifier
      }
    }
    for (const [index, key] of options.keys.access.keys.entries()) {
      accessByKid.set(key.kid ?? '', await register(`tokenSessions_access_${index}`, accessType, key, accessClaims))
    }
    // Only this plugin verifies refresh tokens, so HS256 with a derived secret serves.
    refresh = await register('tokenSessions_refresh', REFRESH_TOKEN_TYPE, derivedKey(options.keys.refresh), ['sub', 'sid', 'jti', 'iat', 'exp', 'mx'])
  })
  const signer = (accessByKid.get(options.keys.access.active.kid ?? '') as KeyCodec).signer
  const refreshCodec = refresh as KeyCodec

  const { now, accessTokenTtl, refreshTokenTtl } = options
  return {
    signAccess ({ sub, sid, startedAt, ttlSeconds, claims, grant, auth, jkt }) {
      const iat = Math.floor(now() / 1000)
      const payload: Record<string, unknown> = { ...claims, sub, sid, sst: startedAt, iat, exp: iat + ttlSeconds }
      writeAuthentication(payload, auth)
      if (grant.clientId !== undefined) payload.client_id = grant.clientId
      if (grant.scope !== undefined) payload.scope = grant.scope
      if (jkt !== undefined) payload.cnf = { jkt }
      if (profile) payload.jti = randomBytes(16).toString('base64url')
      return signer.sign(payload)
    },
    signRefresh ({ sub, sid, jti, ttlSeconds, endsAt, remembered, claims, grant, auth }) {
      const iat = Math.floor(now() / 1000)
      const payload: Record<string, unknown> = { sub, sid, jti, iat, exp: Math.min(iat + ttlSeconds, endsAt), mx: endsAt }
      if (!remembered) payload.rem = false
      writeAuthentication(payload, auth)
      if (Object.keys(claims).length > 0) payload.clm = claims
      if (grant.clientId !== undefined) payload.cid = grant.clientId
      if (grant.scope !== undefined) payload.scp = grant.scope
      return refreshCodec.signer.sign(payload)
    },
    verifyAccess (token, jkt) {
      const payload = accessPayload(accessByKid, token)
      // Bound to a key: only with a proof by it; bound to none: never with a proof.
      if (keyOf(payload) !== jkt) throw new TokenInvalidError()
      return accessUser(payload, now(), accessTokenTtl)
    },
    verifyAccessAnyKey (token, bound) {
      const payload = accessPayload(accessByKid, token)
      const jkt = keyOf(payload)
      if (bound && typeof jkt !== 'string') throw new TokenInvalidError()
      const { client_id: clientId, scope } = payload
      return {
        user: accessUser(payload, now(), accessTokenTtl),
        jkt: typeof jkt === 'string' ? jkt : undefined,
        clientId: typeof clientId === 'string' ? clientId : undefined,
        scope: typeof scope === 'string' ? scope : undefined
      }
    },
    verifyRefresh (token) {
      const payload = verify(refreshCodec.verify, token)
      checkSubject(payload)
      const { jti, clm, mx, cid, scp, rem } = payload
      if (typeof jti !== 'string' || !REFRESH_ID.test(jti)) throw new TokenInvalidError()
      if (typeof mx !== 'number' || (rem !== undefined && rem !== false)) throw new TokenInvalidError()
      // signRefresh caps exp at mx, so the two are equal exactly when the cap applied:
      // then the session itself is over.
      if (expired(payload, now(), refreshTokenTtl)) throw payload.exp === mx ? new SessionExpiredError() : new TokenExpiredError()
      if (clm !== undefined && (clm === null || typeof clm !== 'object' || Array.isArray(clm))) throw new TokenInvalidError()
      if ((cid !== undefined && typeof cid !== 'string') || (scp !== undefined && typeof scp !== 'string')) throw new TokenInvalidError()
      return { sub: payload.sub, sid: payload.sid, jti, endsAt: mx, remembered: rem === undefined, claims: (clm ?? {}) as ClaimValues, clientId: cid, scope: scp, auth: readAuthentication(payload) }
    }
  }
}

/** A verified access token's payload, its subject, session and start checked; not yet its expiry. */
function accessPayload (keys: Map<string, KeyCodec>, token: string): Record<string, unknown> & { sub: string, sid: string, sst: number } {
  const payload = verify(accessKeyOf(keys, token).verify, token)
  checkSubject(payload)
  const { sst } = payload
  if (typeof sst !== 'number' || !Number.isSafeInteger(sst) || sst < 0) throw new TokenInvalidError()
  return payload as Record<string, unknown> & { sub: string, sid: string, sst: number }
}

/** What a verified payload says of the DPoP key it is bound to (`cnf.jkt`): undefined for none. */
function keyOf (payload: Record<string, unknown>): unknown {
  const { cnf } = payload
  return cnf === undefined ? undefined : (cnf as { jkt?: unknown } | null)?.jkt
}

/** The user of an access token's verified payload, once its expiry is checked (by the store's clock `now`). */
function accessUser (payload: Record<string, unknown> & { sub: string, sid: string, sst: number }, now: number, ttlSeconds: number): SessionUser {
  if (expired(payload, now, ttlSeconds)) throw new TokenExpiredError()
  // Built in one object, in the order the app's claims were signed, then ours: this
  // runs on every authenticated request, so no intermediate copies.
  const user: Record<string, unknown> = {}
  for (const name in payload) {
    if (!SKIPPED_CLAIMS.has(name)) user[name] = payload[name]
  }
  user.id = payload.sub
  user.sessionId = payload.sid
  user.sessionStartedAt = payload.sst
  user.expiresAt = (payload.exp as number) * 1000
  // A token from before step-up existed has no auth_time: the session's start stands for it.
  const { auth_time: authTime, acr, amr } = payload
  user.authenticatedAt = typeof authTime === 'number' ? authTime * 1000 : payload.sst
  if (acr !== undefined) user.acr = acr
  if (amr !== undefined) user.amr = amr
  return user as unknown as SessionUser
}

/**
 * The signer and verifier of the key the token's header names by `kid` (none: the derived key).
 * With a single key there is nothing to choose, and the header is not parsed twice.
 */
function accessKeyOf (keys: Map<string, KeyCodec>, token: string): KeyCodec {
  if (keys.size === 1) return keys.values().next().value as KeyCodec
  let kid: unknown
  try {
    kid = (JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString()) as { kid?: unknown }).kid
  } catch {
    throw new TokenInvalidError()
  }
  if (kid !== undefined && typeof kid !== 'string') throw new TokenInvalidError()
  const codec = keys.get(kid ?? '')
  if (codec === undefined) throw new TokenInvalidError()
  return codec
}

/** Writes `auth_time`, and `acr` and `amr` when there are, into a payload. */
function writeAuthentication (payload: Record<string, unknown>, auth: Authentication): void {
  payload.auth_time = auth.time
  if (auth.acr !== undefined) payload.acr = auth.acr
  if (auth.amr !== undefined) payload.amr = auth.amr
}

/** What a verified refresh token says of the user's last authentication; a bad shape is an invalid token. */
function readAuthentication (payload: Record<string, unknown>): PastAuthentication {
  const { auth_time: time, acr, amr } = payload
  if (time !== undefined && !(typeof time === 'number' && Number.isSafeInteger(time) && time >= 0)) throw new TokenInvalidError()
  if (acr !== undefined && typeof acr !== 'string') throw new TokenInvalidError()
  if (amr !== undefined && !(Array.isArray(amr) && amr.every((method) => typeof method === 'string'))) throw new TokenInvalidError()
  return { time: time as number | undefined, acr, amr: amr as string[] | undefined }
}

/** Whether a value has the shape of the session ids {@link newSessionId} makes. */
export function isSessionId (value: unknown): value is string {
  return typeof value === 'string' && SESSION_ID.test(value)
}

/**
 * The one place where a JWT failure becomes an HTTP error. fast-jwt raises errors without
 * a status for many malformed tokens (a foreign algorithm, an unknown `crit` header, a bad
 * claim type, ...), which Fastify would answer with a 500.
 * Every failure here is a 401. Expiry is checked afterwards, by {@link expired}.
 */
function verify (verifier: Verifier, token: string): Record<string, unknown> {
  if (!canonicalSignature(token)) throw new TokenInvalidError()
  try {
    // fast-jwt rejects any payload that is not a JSON object (FAST_JWT_INVALID_PAYLOAD).
    return verifier(token)
  } catch {
    throw new TokenInvalidError()
  }
}

/**
 * Whether a verified token has expired, by the store's clock `now` (ms). A token that
 * claims more than the plugin issues is invalid, however well signed: issued further in
 * the future than {@link CLOCK_TOLERANCE_MS}, or living longer than `ttlSeconds`.
 */
function expired (payload: Record<string, unknown>, now: number, ttlSeconds: number): boolean {
  const { iat, exp } = payload
  if (typeof iat !== 'number' || typeof exp !== 'number') throw new TokenInvalidError()
  if (iat * 1000 > now + CLOCK_TOLERANCE_MS || exp - iat > ttlSeconds) throw new TokenInvalidError()
  // As fast-jwt counts it: valid through the second `exp` names.
  return exp * 1000 < now
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * Whether the signature segment is the one encoding of its bytes. The last base64url
 * character carries unused low bits that decoders ignore (4 of them when the length is
 * 2 mod 4, 2 when it is 3 mod 4), so without this check a token with its last character
 * changed (`w` to `x`) would verify: a token never issued. Checked without decoding: this
 * runs on every request.
 */
export function canonicalSignature (token: string): boolean {
  const end = token.length - 1
  const rest = (end - token.lastIndexOf('.')) % 4
  if (rest === 0) return true
  const unused = rest === 2 ? 0b1111 : rest === 3 ? 0b11 : -1
  const last = BASE64URL.indexOf(token.charAt(end))
  return unused >= 0 && last >= 0 && (last & unused) === 0
}

/** The claims fast-jwt does not check by type: ours, which name a store key. */
function checkSubject (payload: Record<string, unknown>): asserts payload is Record<string, unknown> & { sub: string, sid: string } {
  const { sub, sid } = payload
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_USER_ID_LENGTH) throw new TokenInvalidError()
  if (!isSessionId(sid)) throw new TokenInvalidError()
}

/** Checks a user id given to the plugin by app code; a bad one is a bug in the app. */
export function checkUserId (userId: unknown): string {
  const id = typeof userId === 'number' && Number.isSafeInteger(userId) ? String(userId) : userId
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_USER_ID_LENGTH) {
    throw new TypeError(`fastify-token-sessions: a user id must be a non-empty string of at most ${MAX_USER_ID_LENGTH} characters, or a safe integer`)
  }
  return id
}

/**
 * The most the app's claims may take, as JSON, in bytes. With the plugin's own claims at
 * their longest (a user id of 256 characters, a client id of 100, `iss` and `aud` of 100
 * each, a DPoP key, a `jti`, `auth_time`, `acr` and `amr`) and a 4096-bit RSA signature, an
 * access token then still fits the 4,096 bytes browsers keep of a cookie, with a scope of
 * up to 300 characters (test/claims.test.ts signs that token).
 */
export const MAX_CLAIMS_BYTES = 1024

/**
 * Checks the app's own claims (at login, and each answer of the `claims` hook): a plain
 * object, no reserved name, at most {@link MAX_CLAIMS_BYTES} as JSON. They then travel
 * inside the tokens.
 */
export function checkClaims (claims: unknown): ClaimValues {
  if (claims === undefined) return {}
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new TypeError('fastify-token-sessions: claims must be a plain object')
  }
  for (const name of Object.keys(claims)) {
    if (RESERVED_CLAIMS.has(name)) throw new TypeError(`fastify-token-sessions: the claim name "${name}" is reserved`)
  }
  let json: string | undefined
  try {
    json = JSON.stringify(claims)
  } catch {
    throw new TypeError('fastify-token-sessions: claims must be JSON (no BigInt, no cycle)')
  }
  if (Buffer.byteLength(json) > MAX_CLAIMS_BYTES) {
    throw new TypeError(`fastify-token-sessions: claims take at most ${MAX_CLAIMS_BYTES} bytes as JSON (a token must fit a cookie); these take ${Buffer.byteLength(json)}`)
  }
  return claims as ClaimValues
}
