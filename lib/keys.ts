import { createPrivateKey, createPublicKey, KeyObject, X509Certificate, type JsonWebKey } from 'node:crypto'
import { fail } from './invalid-option.js'

/** The algorithms an access-token key may use. */
export const ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'ES256', 'EdDSA'] as const
/** A JWS algorithm this plugin signs and verifies with. */
export type Algorithm = typeof ALGORITHMS[number]

/**
 * An access-token key as the app configures it: a private key (PEM) or an HMAC secret
 * signs and verifies; a public key only verifies (a retired key during rotation).
 *
 * @example
 * ```ts
 * const key: AccessTokenKey = { kid: '2026-11', algorithm: 'EdDSA', key: readFileSync('ed25519.pem') }
 * await app.register(tokenSessions, { refreshTokenSecret, accessTokenKeys: [key] })
 * ```
 */
export interface AccessTokenKey {
  /** The key id written into the token header (`kid`); letters, digits, `.`, `_`, `-`. */
  kid: string
  /** The one algorithm this key signs and verifies; a token naming another is rejected. */
  algorithm: Algorithm
  /**
   * HS*: the secret (at least as many bytes as the hash: 32, 48, 64), or a secret
   * KeyObject; never a public or private key, which is refused. Others: a private key
   * (signs and verifies) or a public key (verifies only, e.g. a retired key whose tokens
   * have not all expired yet), as PEM or KeyObject.
   */
  key: string | Buffer | KeyObject
}

/** A key ready for @fastify/jwt: what signs, what verifies, and what JWKS publishes. */
export interface ResolvedKey {
  readonly kid: string | undefined
  readonly algorithm: Algorithm
  /** The HMAC secret or PEM private key; undefined for a verify-only public key. */
  readonly signingKey: Buffer | string | undefined
  /** The HMAC secret or PEM public key. */
  readonly verifyKey: Buffer | string
  /** The public JWK of an asymmetric key, for JWKS; undefined for HMAC keys. */
  readonly jwk: JsonWebKey | undefined
}

const KID = /^[A-Za-z0-9._-]{1,64}$/
const HMAC_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 }
/** Which key types each asymmetric algorithm accepts (`rsa-pss` keys sign only PS256). */
const KEY_TYPES: Record<string, readonly string[]> = { RS256: ['rsa'], PS256: ['rsa', 'rsa-pss'], ES256: ['ec'], EdDSA: ['ed25519', 'ed448'] }
const MIN_RSA_BITS = 2048

/**
 * Refuses an HMAC secret that is a public or private key or a certificate, in any usual
 * form (PEM, an OpenSSH line, DER or its base64 without the PEM armour, a JWK or a JWK
 * Set): such material is often public, and whoever has it could sign tokens that verify.
 */
export function refuseKeyMaterial (secret: string | Buffer, option: string): void {
  const text = secret.toString()
  const hint = 'is a public or private key (or a certificate); an HMAC secret must be random bytes known only to the app (e.g. openssl rand -base64 48)'
  if (/-----BEGIN [A-Z0-9 ]+-----/.test(text) || /^\s*(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9@.-]+) /.test(text)) fail(option, hint)
  if (isJwk(text) || isDer(Buffer.from(secret)) || isBase64Der(text)) fail(option, hint)
}

/** A secret with fewer distinct byte values than this is called weak (32 random bytes have about 30, their hex 15). */
export const MIN_DISTINCT_BYTES = 6

/**
 * Why a secret that meets the length minimum still looks guessable, or undefined. Two
 * plain tests: fewer than {@link MIN_DISTINCT_BYTES} distinct byte values (`'a'.repeat(32)`,
 * `'0101…'`), or a whole that is a shorter run of bytes repeated, at least twice
 * (`'secret12'.repeat(4)`): such a secret is as strong as its few symbols or its run, not
 * as its length. A random secret of 32 bytes or more, as bytes, hex, base64 or even
 * decimal digits, passes both but for odds of one in ten million or less. Only a warning:
 * tests and benchmarks use such secrets on purpose.
 */
export function secretWeakness (secret: Buffer): string | undefined {
  const distinct = new Set(secret).size
  if (distinct < MIN_DISTINCT_BYTES) return `it has ${distinct} distinct byte value${distinct === 1 ? '' : 's'} (fewer than ${MIN_DISTINCT_BYTES})`
  const period = shortestPeriod(secret)
  if (period * 2 <= secret.length) return `it is its first ${period} bytes repeated`
  return undefined
}

/** The length of the shortest run of bytes that, repeated, makes up `bytes` (the last repeat may be cut short). */
function shortestPeriod (bytes: Buffer): number {
  // The prefix function of Knuth-Morris-Pratt: border[i] is the length of the longest
  // proper prefix of bytes[0..i] that is also its suffix; the period is what the last leaves.
  const border = new Array<number>(bytes.length).fill(0)
  for (let i = 1; i < bytes.length; i++) {
    let k = border[i - 1] as number
    while (k > 0 && bytes[i] !== bytes[k]) k = border[k - 1] as number
    border[i] = bytes[i] === bytes[k] ? k + 1 : k
  }
  return bytes.length - (border[bytes.length - 1] as number)
}

function isJwk (text: string): boolean {
  if (!text.trimStart().startsWith('{')) return false
  try {
    const parsed = JSON.parse(text) as { kty?: unknown, keys?: unknown }
    return typeof parsed.kty === 'string' || Array.isArray(parsed.keys)
  } catch {
    return false
  }
}

/** The DER forms of keys and certificates Node reads. */
const DER_READERS: ReadonlyArray<(der: Buffer) => unknown> = [
  (der) => createPublicKey({ key: der, format: 'der', type: 'spki' }),
  (der) => createPublicKey({ key: der, format: 'der', type: 'pkcs1' }),
  (der) => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }),
  (der) => createPrivateKey({ key: der, format: 'der', type: 'pkcs1' }),
  (der) => createPrivateKey({ key: der, format: 'der', type: 'sec1' }),
  (der) => new X509Certificate(der)
]

function isDer (bytes: Buffer): boolean {
  // Every one of them is an ASN.1 SEQUENCE; anything else is not worth trying to parse.
  if (bytes[0] !== 0x30) return false
  return DER_READERS.some((read) => {
    try {
      read(bytes)
      return true
    } catch {
      return false
    }
  })
}

/** A PEM body pasted without its armour: base64 (with line breaks) of a DER key. */
function isBase64Der (text: string): boolean {
  const body = text.replace(/\s+/g, '')
  return body.length >= 64 && /^[A-Za-z0-9+/]+={0,2}$/.test(body) && isDer(Buffer.from(body, 'base64'))
}

/** An HMAC key with no kid: the access key derived from `secret`, as before any rotation. */
export function derivedKey (secret: Buffer): ResolvedKey {
  return Object.freeze({ kid: undefined, algorithm: 'HS256', signingKey: secret, verifyKey: secret, jwk: undefined })
}

/**
 * Checks the configured access-token keys and the active one. Each key's algorithm must
 * fit its key: an RSA key for RS256, P-256 for ES256, and so on, so that no key can be
 * used under an algorithm it was not meant for.
 */
export function resolveAccessKeys (keys: unknown, activeKid: unknown): { keys: ResolvedKey[], active: ResolvedKey } {
  if (!Array.isArray(keys) || keys.length === 0) fail('accessTokenKeys', 'must be a non-empty array of { kid, algorithm, key }')
  const resolved = keys.map((key: unknown, index) => resolveKey(key, `accessTokenKeys[${index}]`))
  const kids = new Set(resolved.map((key) => key.kid))
  if (kids.size !== resolved.length) fail('accessTokenKeys', 'every kid must be unique')
  const active = activeKid === undefined
    ? resolved.find((key) => key.signingKey !== undefined)
    : resolved.find((key) => key.kid === activeKid)
  if (active === undefined) fail('activeKid', 'must name a key of accessTokenKeys that can sign (a secret or a private key)')
  if (active.signingKey === undefined) fail('activeKid', `names "${String(activeKid)}", a public key, which cannot sign`)
  return { keys: resolved, active }
}

function resolveKey (given: unknown, option: string): ResolvedKey {
  if (given === null || typeof given !== 'object') fail(option, 'must be { kid, algorithm, key }')
  const { kid, algorithm, key } = given as Record<string, unknown>
  if (typeof kid !== 'string' || !KID.test(kid)) fail(`${option}.kid`, 'must be 1 to 64 letters, digits, ".", "_" or "-"')
  if (!ALGORITHMS.includes(algorithm as Algorithm)) fail(`${option}.algorithm`, `must be one of ${ALGORITHMS.join(', ')}`)
  if (typeof key !== 'string' && !Buffer.isBuffer(key) && !(key instanceof KeyObject)) fail(`${option}.key`, 'must be a string, Buffer or KeyObject')
  const alg = algorithm as Algorithm
  const minBytes = HMAC_BYTES[alg]
  if (minBytes !== undefined) {
    if (key instanceof KeyObject && key.type !== 'secret') fail(`${option}.key`, `is a ${key.type} key; ${alg} takes a secret: random bytes known only to the app`)
    const secret = key instanceof KeyObject ? key.export() : Buffer.from(key)
    refuseKeyMaterial(secret, `${option}.key`)
    if (secret.length < minBytes) fail(`${option}.key`, `must be at least ${minBytes} bytes for ${alg}`)
    return Object.freeze({ kid, algorithm: alg, signingKey: secret, verifyKey: secret, jwk: undefined })
  }
  return asymmetricKey(kid, alg, key, option)
}

function asymmetricKey (kid: string, algorithm: Algorithm, key: string | Buffer | KeyObject, option: string): ResolvedKey {
  let privateKey: KeyObject | undefined
  let publicKey: KeyObject
  if (key instanceof KeyObject) {
    if (key.type === 'secret') fail(`${option}.key`, `is a secret key, which ${algorithm} cannot use`)
    privateKey = key.type === 'private' ? key : undefined
    publicKey = key.type === 'private' ? createPublicKey(key) : key
  } else {
    try {
      privateKey = createPrivateKey(key)
      publicKey = createPublicKey(privateKey)
    } catch {
      try {
        publicKey = createPublicKey(key)
      } catch {
        fail(`${option}.key`, `must be a PEM private or public key for ${algorithm}`)
      }
    }
  }
  // Asymmetric keys always have a type and details; only secret KeyObjects lack them.
  const type = publicKey.asymmetricKeyType as string
  if (!(KEY_TYPES[algorithm] as readonly string[]).includes(type)) fail(`${option}.key`, `is a ${type} key, which ${algorithm} cannot use`)
  const details = publicKey.asymmetricKeyDetails as { namedCurve?: string, modulusLength?: number }
  if (algorithm === 'ES256' && details.namedCurve !== 'prime256v1') fail(`${option}.key`, 'must be on the P-256 curve for ES256')
  if ((type === 'rsa' || type === 'rsa-pss') && (details.modulusLength as number) < MIN_RSA_BITS) {
    fail(`${option}.key`, `must have at least ${MIN_RSA_BITS} bits`)
  }
  return Object.freeze({
    kid,
    algorithm,
    signingKey: privateKey?.export({ type: 'pkcs8', format: 'pem' }) as string | undefined,
    verifyKey: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    jwk: Object.freeze({ ...publicKey.export({ format: 'jwk' }), kid, alg: algorithm, use: 'sig' })
  })
}
