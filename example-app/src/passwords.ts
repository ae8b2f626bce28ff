import { scrypt, timingSafeEqual } from 'node:crypto'
import argon2 from 'argon2'

/**
 * Argon2id at OWASP's recommended minimum (Password Storage Cheat Sheet): 19 MiB of
 * memory, two passes, one lane. About 40 ms on one core of a small server, on the libuv
 * pool, so requests go on meanwhile.
 */
export const ARGON2_OPTIONS = Object.freeze({ type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 })

/** Hashes of earlier versions of this app: `scrypt$<salt, base64>$<key, base64>` (Node's defaults). */
const LEGACY_SCRYPT = /^scrypt\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/

/** A new password's hash, as a PHC string (`$argon2id$v=19$m=…`). */
export async function hashPassword (password: string): Promise<string> {
  return await argon2.hash(password, ARGON2_OPTIONS)
}

/** Whether a password matches a stored hash, and whether that hash should be replaced. */
export interface Verdict {
  matches: boolean
  /** The hash is of an older kind or weaker parameters: hash the password again now. */
  outdated: boolean
}

/**
 * Checks a password against a stored hash of any kind this app has written. A hash it
 * cannot read matches nothing.
 */
export async function verifyPassword (hash: string, password: string): Promise<Verdict> {
  const legacy = LEGACY_SCRYPT.exec(hash)
  if (legacy !== null) return { matches: await scryptMatches(password, legacy[1] as string, legacy[2] as string), outdated: true }
  try {
    const matches = await argon2.verify(hash, password)
    return { matches, outdated: matches && argon2.needsRehash(hash, ARGON2_OPTIONS) }
  } catch {
    return { matches: false, outdated: false }
  }
}

async function scryptMatches (password: string, salt: string, key: string): Promise<boolean> {
  const expected = Buffer.from(key, 'base64')
  const derived = await new Promise<Buffer>((resolve, reject) => {
    scrypt(password, Buffer.from(salt, 'base64'), expected.length, (error, result) => { if (error === null) resolve(result); else reject(error) })
  })
  return timingSafeEqual(derived, expected)
}
