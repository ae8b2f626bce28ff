import type { Cluster, Redis } from 'ioredis'
import { inStore } from './errors.js'

/** Wrong passwords allowed before the back-off starts. */
export const FREE_FAILURES = 5
/** How long failures are remembered after the last one: 15 minutes. */
export const FAILURE_MEMORY_MS = 15 * 60_000
/** The first wait after the free failures, doubled on each further failure. */
export const FIRST_BACKOFF_MS = 1000
/** The longest wait. */
export const MAX_BACKOFF_MS = 15 * 60_000

/** The wait after `failures` wrong passwords in a row: none, then 1 s, 2 s, 4 s, … up to 15 min. */
export function backoffAfter (failures: number): number {
  if (failures <= FREE_FAILURES) return 0
  return Math.min(FIRST_BACKOFF_MS * 2 ** (failures - FREE_FAILURES - 1), MAX_BACKOFF_MS)
}

/**
 * Password attempts per subject (a user id), with back-off: each attempt is counted as a
 * failure before the password is checked, in one step with the check of the wait, so
 * that a burst of parallel attempts cannot all pass before any failure is recorded. After
 * {@link FREE_FAILURES} attempts each further one makes the subject wait twice as long
 * before the next, counted where every instance sees it. A right password clears the count.
 */
export interface FailureGate {
  /**
   * Asks to try: 0 when the subject may try now (the attempt is then counted), else the
   * milliseconds to wait (nothing counted).
   */
  attempt (subject: string): Promise<number>
  succeeded (subject: string): Promise<void>
}

/** Attempts in this process's memory: for running without Redis. */
export class MemoryFailureGate implements FailureGate {
  readonly #failures = new Map<string, { count: number, forgetAt: number, blockedUntil: number }>()

  async attempt (subject: string): Promise<number> {
    const now = Date.now()
    let entry = this.#failures.get(subject)
    if (entry !== undefined && entry.forgetAt <= now) entry = undefined
    if (entry !== undefined && entry.blockedUntil > now) return entry.blockedUntil - now
    entry ??= { count: 0, forgetAt: 0, blockedUntil: 0 }
    entry.count++
    entry.forgetAt = now + FAILURE_MEMORY_MS
    entry.blockedUntil = now + backoffAfter(entry.count)
    this.#failures.set(subject, entry)
    return 0
  }

  async succeeded (subject: string): Promise<void> {
    this.#failures.delete(subject)
  }
}

/**
 * One attempt: the wait left, if any; else count the attempt (remembered
 * {@link FAILURE_MEMORY_MS} after the last) and set the wait before the next, in one step.
 * KEYS[1] the count, KEYS[2] the wait; ARGV: memory ms, free failures, first back-off ms,
 * longest back-off ms. Returns the wait left, or 0.
 */
const ATTEMPT = `
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return left end
local count = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local free = tonumber(ARGV[2])
if count > free then
  local wait = math.min(tonumber(ARGV[3]) * 2 ^ (count - free - 1), tonumber(ARGV[4]))
  redis.call('SET', KEYS[2], '1', 'PX', wait)
end
return 0`

interface Scripted {
  exampleAttempt (count: string, wait: string, memoryMs: number, free: number, firstMs: number, maxMs: number): Promise<number>
}

/** Attempts in Redis: `<prefix>pwfail:{<subject>}` (the count) and `…:wait`, in one slot. */
export class RedisFailureGate implements FailureGate {
  readonly #redis: (Redis | Cluster) & Scripted
  readonly #prefix: string

  constructor (redis: Redis | Cluster, prefix: string) {
    redis.defineCommand('exampleAttempt', { numberOfKeys: 2, lua: ATTEMPT })
    this.#redis = redis as (Redis | Cluster) & Scripted
    this.#prefix = `${prefix}pwfail:`
  }

  async attempt (subject: string): Promise<number> {
    const key = `${this.#prefix}{${subject}}`
    return await inStore(this.#redis.exampleAttempt(key, `${key}:wait`, FAILURE_MEMORY_MS, FREE_FAILURES, FIRST_BACKOFF_MS, MAX_BACKOFF_MS))
  }

  async succeeded (subject: string): Promise<void> {
    const key = `${this.#prefix}{${subject}}`
    await inStore(this.#redis.del(key, `${key}:wait`))
  }
}
