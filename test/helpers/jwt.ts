import { createHmac } from 'node:crypto'
import { deriveKeys } from '../../lib/tokens.js'
import { SECRET } from './app.js'

const derived = deriveKeys({ access: Buffer.from(SECRET), refresh: Buffer.from(SECRET) })
/** The keys the test app derives from SECRET: what an insider could sign with. */
export const KEYS = { access: derived.access.active.verifyKey as Buffer, refresh: derived.refresh }

function part (value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
}

/** A JWT with any header and payload, HMAC-signed with `key` under `hash` (or unsigned). */
export function craft (header: unknown, payload: unknown, key: Buffer | null, hash = 'sha256'): string {
  const input = `${part(header)}.${part(payload)}`
  if (key === null) return `${input}.`
  return `${input}.${createHmac(hash, key).update(input).digest('base64url')}`
}

/** The decoded payload of a token, without verifying it. */
export function payloadOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>
}

/** Seconds since the epoch. */
export function now (): number {
  return Math.floor(Date.now() / 1000)
}
