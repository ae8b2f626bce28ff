// What a benchmark's sessions look like, so that memory figures compare: the user agents
// of common browsers, a random IP, a real token hash and the example app's lifetimes.
import { randomBytes } from 'node:crypto'
import { hashId } from '../../dist/tokens.js'

export const USER_AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0'
]

/** Sessions per user in the memory figures (a phone and a laptop). */
export const SESSIONS_PER_USER = 2

export function randomIp () {
  const bytes = randomBytes(4)
  return `${bytes[0] % 223 + 1}.${bytes[1]}.${bytes[2]}.${bytes[3]}`
}

/** A session of `userId` as a login through the example app creates it (what RedisStore.create takes). */
export function sessionOf (userId) {
  return {
    userId,
    sessionId: randomBytes(16).toString('base64url'),
    tokenHash: hashId(randomBytes(32).toString('base64url')),
    ttlMs: 86_400_000,
    maxTtlMs: 2_592_000_000,
    client: { userAgent: USER_AGENTS[Math.floor(Math.random() * USER_AGENTS.length)], ip: randomIp() },
    maxSessions: 100,
    rememberMs: 930_000
  }
}
