// DPoP proofs made with Node's crypto, for tests that play a native client or an attacker.
import { generateKeyPairSync, hash, randomUUID, sign, type KeyPairKeyObjectResult } from 'node:crypto'

/** A P-256 key pair, as a native client makes one for its proofs (ES256). */
export function dpopKey (): KeyPairKeyObjectResult {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
}

/** A DPoP proof made with Node's crypto, its claims as given (the odd cases oauth4webapi never makes); a fresh `jti` and `iat` unless given. */
export function craftedProof (key: KeyPairKeyObjectResult, claims: Record<string, unknown>): string {
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicKey.export({ format: 'jwk' }) })).toString('base64url')
  const input = `${header}.${Buffer.from(JSON.stringify({ jti: randomUUID(), iat: Date.now() / 1000, ...claims })).toString('base64url')}`
  return `${input}.${sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}

/** The `ath` of a proof that comes with an access token: the token's SHA-256, base64url (RFC 9449 §4.2). */
export function athOf (accessToken: string): string {
  return hash('sha256', accessToken, 'base64url')
}
