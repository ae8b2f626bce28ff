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
 * Wrong passwords per subject (a user id), with back-off: after {@link FREE_FAILURES}
 * failures every further one makes the subject wait twice as long before the next try,
 * counted where every instance sees it. A right password clears the count.
 */
export interface FailureGate {
  /** Milliseconds the subject must wait before trying again; 0 when it may try now. */
  waitFor (subject: string): Promise<number>
  /** Records a failure; resolves to the wait it imposes (0 while failures are free). */
  failed (subject: string): Promise<number>
  succeeded (subject: string): Promise<void>
}

/** Failures in this process's memory: for running without Redis. */
export class MemoryFailureGate implements FailureGate {
  readonly #failures = new Map<string, { count: number, forgetAt: number, blockedUntil: number }>()

  async waitFor (subject: string): Promise<number> {
    const entry = this.#current(subject)
    return entry === undefined ? 0 : Math.max(0, entry.blockedUntil - Date.now())
  }

  async failed (subject: string): Promise<number> {
    const now = Date.now()
    const entry = this.#current(subject) ?? { count: 0, forgetAt: 0, blockedUntil: 0 }
    entry.count++
    entry.forgetAt = now + FAILURE_MEMORY_MS
    const wait = backoffAfter(entry.count)
    entry.blockedUntil = now + wait
    this.#failures.set(subject, entry)
    return wait
  }

  async succeeded (subject: string): Promise<void> {
    this.#failures.delete(subject)
  }

  #current (subject: string): { count: number, forgetAt: number, blockedUntil: number } | undefined {
    const entry = this.#failures.get(subject)
    if (entry === undefined || entry.forgetAt > Date.now()) return entry
    this.#failures.delete(subject)
    return undefined
  }
}

/**
 * One failure: count it (remembered {@link FAILURE_MEMORY_MS} after the last), and set the
 * wait it imposes, in one step. KEYS[1] the count, KEYS[2] the wait; ARGV: memory ms,
 * free failures, first back-off ms, longest back-off ms.
 */
const FAILED = `
local count = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local free = tonumber(ARGV[2])
if count <= free then return 0 end
local wait = math.min(tonumber(ARGV[3]) * 2 ^ (count - free - 1), tonumber(ARGV[4]))
redis.call('SET', KEYS[2], '1', 'PX', wait)
return wait`

interface Scripted {
  exampleFailed (count: string, wait: string, memoryMs: number, free: number, firstMs: number, maxMs: number): Promise<number>
}

/** Failures in Redis: `<prefix>pwfail:{<subject>}` (the count) and `…:wait`, in one slot. */
export class RedisFailureGate implements FailureGate {
  readonly #redis: (Redis | Cluster) & Scripted
  readonly #prefix: string

  constructor (redis: Redis | Cluster, prefix: string) {
    redis.defineCommand('exampleFailed', { numberOfKeys: 2, lua: FAILED })
    this.#redis = redis as (Redis | Cluster) & Scripted
    this.#prefix = `${prefix}pwfail:`
  }

  async waitFor (subject: string): Promise<number> {
    return Math.max(0, await inStore(this.#redis.pttl(`${this.#prefix}{${subject}}:wait`)))
  }

  async failed (subject: string): Promise<number> {
    const key = `${this.#prefix}{${subject}}`
    return await inStore(this.#redis.exampleFailed(key, `${key}:wait`, FAILURE_MEMORY_MS, FREE_FAILURES, FIRST_BACKOFF_MS, MAX_BACKOFF_MS))
  }

  async succeeded (subject: string): Promise<void> {
    const key = `${this.#prefix}{${subject}}`
    await inStore(this.#redis.del(key, `${key}:wait`))
  }
}
