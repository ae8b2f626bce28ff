import { constants, createHmac, createPublicKey, hash, verify, type KeyObject } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { DpopAccessNonceRequiredError, DpopAccessProofInvalidError, DpopNonceRequiredError, DpopProofInvalidError } from './errors.js'
import { canonicalSignature } from './tokens.js'

/**
 * The signature algorithms a DPoP proof may use, as its `alg` header names them: the
 * asymmetric ones RFC 9449 expects (never `none`, never an HMAC), each with the key type
 * and curve it needs. `Ed25519` is RFC 9864's name for EdDSA on that curve.
 *
 * @example
 * ```ts
 * // A native client picks one its platform has:
 * const key = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) // ES256
 * ```
 */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'] as const

/** The name of the request header that carries a proof, and of the response header that carries a nonce. */
export const DPOP_HEADER = 'dpop'
export const DPOP_NONCE_HEADER = 'dpop-nonce'

/** How each algorithm verifies, and which keys it takes. */
const VERIFIERS: Record<string, { digest: string | null, kty: string, crv?: readonly string[], padding?: 'pss' }> = {
  ES256: { digest: 'sha256', kty: 'EC', crv: ['P-256'] },
  ES384: { digest: 'sha384', kty: 'EC', crv: ['P-384'] },
  EdDSA: { digest: null, kty: 'OKP', crv: ['Ed25519', 'Ed448'] },
  // RFC 9864's fully specified name, which oauth4webapi and WebCrypto-based clients write.
  Ed25519: { digest: null, kty: 'OKP', crv: ['Ed25519'] },
  PS256: { digest: 'sha256', kty: 'RSA', padding: 'pss' },
  RS256: { digest: 'sha256', kty: 'RSA' }
}

/** The members of a public JWK that its RFC 7638 thumbprint covers, in their sorted order. */
const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] }
/** The RSA keys accepted, in bits: at least 2048, and at most 4096, which bounds the work of a verification. */
const MIN_RSA_BITS = 2048
const MAX_RSA_BITS = 4096
/**
 * The one RSA public exponent accepted, 65537: a verification's cost grows with the
 * exponent, and an exponent of thousands of bits would cost a millisecond or more of CPU a
 * request to anyone who sends one.
 */
const RSA_EXPONENT = 'AQAB'
/** The longest proof accepted: a proof with an RSA-4096 key fits in about 2 KB. */
const MAX_PROOF_LENGTH = 4096
/** The longest `jti` accepted: a proof's id needs 96 bits of randomness, not kilobytes. */
const MAX_JTI_LENGTH = 128
/** How many public keys stay imported, by thumbprint: an import costs as much as a verification. */
const KEY_CACHE_SIZE = 10_000
/** How many proof ids this instance remembers at most (a proof is remembered for the proof lifetime). */
const REPLAY_CACHE_SIZE = 200_000
/** How far in the future a proof's `iat` may be: clocks differ. */
const PROOF_CLOCK_SKEW_MS = 5_000

/** What a valid proof says: its key's thumbprint, its id, and when it stops being fresh. */
export interface Proof {
  /** The RFC 7638 thumbprint (SHA-256, base64url) of the proof's public key. */
  jkt: string
  jti: string
  /** When the proof may no longer be presented (ms, store clock): until then its id is remembered. */
  expiresAt: number
}

/** DPoP settings after checking. */
export interface ResolvedDpop {
  /** How long after its `iat` a proof is accepted (ms). */
  readonly proofLifetimeMs: number
  /** Server nonces: how long each lives (ms), or null when they are off. */
  readonly nonceLifetimeMs: number | null
  /** Whether `authenticate` also remembers proof ids in the store, for every instance to see. */
  readonly sharedReplayCheck: boolean
}

/** Where a proof is checked: the token and refresh routes (400) or `authenticate` (401). */
type Place = 'grant' | 'resource'

/**
 * Checks DPoP proofs (RFC 9449 §4.3): the `DPoP` header is one compact JWS of type
 * `dpop+jwt`, signed by the public key in its `jwk` header (never fetched, never private),
 * for this request's method and URL, fresh, and, with an access token, naming its hash
 * (`ath`). With server nonces on, it carries one this server made in the last two nonce
 * periods: an HMAC of the period's number, so any instance with the same secret checks it
 * and nothing is stored.
 */
export class DpopVerifier {
  readonly #settings: ResolvedDpop
  readonly #nonceKey: KeyObject
  readonly #publicOrigin: string | undefined
  readonly #now: () => number
  readonly #keys = new Map<string, KeyObject>()
  /** Proof ids seen by `authenticate` and login on this instance, with when each may be forgotten. */
  readonly #seen = new Map<string, number>()
  readonly #limits: { keys: number, proofs: number }

  /** `limits`: how many imported keys and seen proof ids are kept (tests make them small). */
  constructor (
    settings: ResolvedDpop, nonceKey: KeyObject, publicOrigin: string | undefined, now: () => number,
    limits = { keys: KEY_CACHE_SIZE, proofs: REPLAY_CACHE_SIZE }
  ) {
    this.#settings = settings
    this.#nonceKey = nonceKey
    this.#publicOrigin = publicOrigin
    this.#now = now
    this.#limits = limits
  }

  /** The signature algorithms accepted, for a `DPoP` challenge's `algs`. */
  get algorithms (): string {
    return DPOP_ALGORITHMS.join(' ')
  }

  /** The current nonce, or undefined when nonces are off. */
  nonce (): string | undefined {
    const lifetime = this.#settings.nonceLifetimeMs
    return lifetime === null ? undefined : this.#nonceOf(Math.floor(this.#now() / lifetime))
  }

  /** Sends the current nonce with a response to a request that carried a proof (when nonces are on). */
  offerNonce (request: FastifyRequest, reply: FastifyReply): void {
    const nonce = this.nonce()
    if (nonce !== undefined && request.headers[DPOP_HEADER] !== undefined) reply.header(DPOP_NONCE_HEADER, nonce)
  }

  /**
   * The request's proof, checked; undefined when it carries none. With `accessToken`, the
   * proof must name its hash. Its id is not checked against earlier proofs here: the
   * rotation script does that for a refresh, and {@link remember} for the others.
   */
  check (request: FastifyRequest, place: Place, accessToken?: string): Proof | undefined {
    const header = request.headers[DPOP_HEADER]
    if (header === undefined) return undefined
    // Node joins a repeated header with ", ", which no compact JWS contains.
    if (typeof header !== 'string' || header.length > MAX_PROOF_LENGTH || !canonicalSignature(header)) throw invalid(place)
    const parts = header.split('.')
    if (parts.length !== 3) throw invalid(place)
    const [head, body, signature] = parts as [string, string, string]
    const protectedHeader = decoded(head, place)
    const { typ, alg, jwk } = protectedHeader
    const verifier = typeof alg === 'string' && Object.hasOwn(VERIFIERS, alg) ? VERIFIERS[alg] : undefined
    if (typ !== 'dpop+jwt' || verifier === undefined || protectedHeader.crit !== undefined) throw invalid(place)
    const jkt = thumbprint(jwk, verifier.kty, verifier.crv, place)
    const cached = this.#keys.get(jkt)
    const key = cached ?? importKey(jwk as Record<string, string>, verifier.kty, place)
    const signed = Buffer.from(`${head}.${body}`)
    const sig = Buffer.from(signature, 'base64url')
    const ok = verifier.kty === 'EC'
      ? verify(verifier.digest, signed, { key, dsaEncoding: 'ieee-p1363' }, sig)
      : verifier.padding === 'pss' ? verify(verifier.digest, signed, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig) : verify(verifier.digest, signed, key, sig)
    if (!ok) throw invalid(place)
    // Kept only once it has signed something: made-up keys do not push real ones out.
    if (cached === undefined) this.#keep(jkt, key)
    const claims = decoded(body, place)
    const { jti, htm, htu, iat, ath, nonce } = claims
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw invalid(place)
    if (htm !== request.method || typeof htu !== 'string' || !this.#sameUrl(request, htu)) throw invalid(place)
    const now = this.#now()
    if (typeof iat !== 'number' || !Number.isFinite(iat) || iat * 1000 > now + PROOF_CLOCK_SKEW_MS) throw invalid(place)
    const expiresAt = iat * 1000 + this.#settings.proofLifetimeMs
    if (expiresAt < now) throw invalid(place)
    if (accessToken !== undefined && ath !== hash('sha256', accessToken, 'base64url')) throw invalid(place)
    if (this.#settings.nonceLifetimeMs !== null && !this.#nonceValid(nonce, now)) {
      throw place === 'grant' ? new DpopNonceRequiredError() : new DpopAccessNonceRequiredError()
    }
    return { jkt, jti, expiresAt }
  }

  /**
   * Remembers a proof's id until it goes stale, and throws if this instance saw it before.
   * Other instances do not see it: across instances a proof could be replayed, within its
   * short lifetime, to the same method and URL with the same access token, unless
   * `dpop.sharedReplayCheck` has `authenticate` ask the store as well. Ids are kept in
   * the order they came, which is nearly the order they go stale: each call drops the
   * stale ones at the front, and past the cache's size the oldest go first.
   */
  remember (proof: Proof, place: Place): void {
    const id = `${proof.jkt}.${proof.jti}`
    const now = this.#now()
    const until = this.#seen.get(id)
    if (until !== undefined && until >= now) throw invalid(place)
    this.#seen.delete(id)
    this.#seen.set(id, proof.expiresAt)
    for (const [seen, expires] of this.#seen) {
      if (expires >= now && this.#seen.size <= this.#limits.proofs) break
      this.#seen.delete(seen)
    }
  }

  /** Keeps an imported key by its thumbprint; past the cache's size the least recently kept goes. */
  #keep (jkt: string, key: KeyObject): void {
    if (this.#keys.size >= this.#limits.keys) this.#keys.delete(this.#keys.keys().next().value as string)
    this.#keys.set(jkt, key)
  }

  /** Whether a proof's `htu` is this request's URL, scheme and host as the public sees them, without query or fragment. */
  #sameUrl (request: FastifyRequest, htu: string): boolean {
    let claimed: URL
    let own: URL
    try {
      claimed = new URL(htu)
      const path = request.url.split('?', 1)[0] as string
      own = new URL(path, this.#publicOrigin ?? `${request.protocol}://${request.host}`)
    } catch {
      return false
    }
    return claimed.origin === own.origin && claimed.pathname === own.pathname
  }

  #nonceOf (period: number): string {
    return createHmac('sha256', this.#nonceKey).update(String(period)).digest().subarray(0, 16).toString('base64url')
  }

  /** A nonce of the current period or the one before: one sent just before a period ends still works. */
  #nonceValid (nonce: unknown, now: number): boolean {
    if (typeof nonce !== 'string') return false
    const period = Math.floor(now / (this.#settings.nonceLifetimeMs as number))
    return nonce === this.#nonceOf(period) || nonce === this.#nonceOf(period - 1)
  }
}

/** A proof's public key, from the members its thumbprint covers (a private one was refused already). */
function importKey (jwk: Record<string, string>, kty: string, place: Place): KeyObject {
  // 65537 only, and a modulus of 2048 to 4096 bits (a base64url character holds 6 bits).
  if (kty === 'RSA' && (jwk.e !== RSA_EXPONENT || (jwk.n as string).length > Math.ceil(MAX_RSA_BITS / 6))) throw invalid(place)
  let key: KeyObject
  try {
    key = createPublicKey({ key: Object.fromEntries((THUMBPRINT_MEMBERS[kty] as readonly string[]).map((name) => [name, jwk[name]])), format: 'jwk' })
  } catch {
    throw invalid(place)
  }
  // An RSA key always has its details.
  if (kty === 'RSA' && (key.asymmetricKeyDetails as { modulusLength: number }).modulusLength < MIN_RSA_BITS) throw invalid(place)
  return key
}

function invalid (place: Place): Error {
  return place === 'grant' ? new DpopProofInvalidError() : new DpopAccessProofInvalidError()
}

/** A JWS segment's JSON object. */
function decoded (segment: string, place: Place): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString())
  } catch {
    throw invalid(place)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(place)
  return value as Record<string, unknown>
}

/**
 * The RFC 7638 thumbprint of a proof's public key, which must be of the key type (and a
 * curve) the algorithm takes, with no private member.
 */
function thumbprint (jwk: unknown, kty: string, curves: readonly string[] | undefined, place: Place): string {
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) throw invalid(place)
  const key = jwk as Record<string, unknown>
  if (key.kty !== kty || 'd' in key || 'p' in key || 'q' in key || 'k' in key) throw invalid(place)
  if (curves !== undefined && !curves.includes(key.crv as string)) throw invalid(place)
  const members = THUMBPRINT_MEMBERS[kty] as readonly string[]
  for (const name of members) {
    if (typeof key[name] !== 'string' || (key[name] as string).length === 0) throw invalid(place)
  }
  // Required members only, sorted, no whitespace: JSON.stringify of an object built in that order.
  const canonical = JSON.stringify(Object.fromEntries(members.map((name) => [name, key[name]])))
  return hash('sha256', canonical, 'base64url')
}
