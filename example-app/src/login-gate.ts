import type { Cluster, Redis } from 'ioredis'
import { inStore } from './errors.js'

/** The gate's window: its budgets are per minute, in fixed windows of the store's clock. */
export const LOGIN_WINDOW_MS = 60_000
/**
 * How long a network that failed against an account is remembered as one: an hour after
 * its last failure. A right password from it forgets it at once.
 */
export const FAILED_NETWORK_MEMORY_MS = 60 * 60_000
/**
 * The most failed networks remembered per account; past it the oldest are forgotten, so
 * that an attack from very many networks cannot make one account's entry grow without end.
 */
export const MAX_FAILED_NETWORKS = 1000

/** The budgets of every account, per {@link LOGIN_WINDOW_MS}. */
export interface LoginBudgets {
  /** Password checks any network gets, until they are used up (`RATE_LIMIT_LOGIN`). */
  shared: number
  /**
   * Once those are used up, the checks left for networks that have not failed against the
   * account (`RATE_LIMIT_LOGIN_NEW_NETWORKS`): the owner at a new address still gets in.
   */
  fresh: number
}

/** An attempt the gate let through: settle it with {@link LoginGate.succeeded} if the password was right. */
export interface LoginPass {
  readonly account: string
  readonly network: string
  /** The window it was counted in, and in which budget. */
  readonly window: number
  readonly budget: 'shared' | 'fresh'
}

/**
 * Password checks per account (the normalised username, known or not: an unknown name is
 * counted exactly as a known one, so the gate tells nothing about which names exist),
 * counted **before** the password is checked, in one step with the decision, so that
 * parallel guesses cannot slip past. Each window, an account's checks come first from a
 * shared budget that every network draws on; once it is spent, a network that has failed
 * against the account in the last {@link FAILED_NETWORK_MEMORY_MS} is refused, and one
 * that has not gets in within a second budget. Every attempt marks its network as failed
 * until a right password clears it; a right password also gives its count back, so
 * successful logins do not count.
 *
 * So however many networks guess, at most `shared` checks a window come from networks
 * that failed, and `fresh` more only from networks new to the account, each of which is
 * failed after its first wrong guess.
 */
export interface LoginGate {
  /** A pass when the password may be checked now, else the milliseconds until the window ends. */
  attempt (account: string, network: string): Promise<LoginPass | number>
  /** The password was right: the attempt does not count, and its network is not failed. */
  succeeded (pass: LoginPass): Promise<void>
}

/** The window of a time, and the ms left in it. */
function windowOf (now: number): { window: number, left: number } {
  const window = Math.floor(now / LOGIN_WINDOW_MS)
  return { window, left: (window + 1) * LOGIN_WINDOW_MS - now }
}

interface AccountEntry {
  window: number
  shared: number
  fresh: number
  /** Network → when it stops counting as failed (ms since the epoch). */
  failed: Map<string, number>
}

/**
 * The gate in this process's memory: for running without Redis (development). At most
 * {@link MemoryLoginGate.MAX_ACCOUNTS} accounts are tracked at once (an attacker names as
 * many as it likes); past that, newcomers share one entry, limited as one account.
 */
export class MemoryLoginGate implements LoginGate {
  static readonly MAX_ACCOUNTS = 100_000
  readonly #budgets: LoginBudgets
  readonly #now: () => number
  readonly #accounts = new Map<string, AccountEntry>()
  /** The window whose start last swept out what was forgotten. */
  #swept = 0

  /** `now`: the clock (milliseconds since the epoch). */
  constructor (budgets: LoginBudgets, now: () => number = Date.now) {
    this.#budgets = budgets
    this.#now = now
  }

  async attempt (account: string, network: string): Promise<LoginPass | number> {
    const now = this.#now()
    const { window, left } = windowOf(now)
    if (window !== this.#swept) this.#sweep(now, window)
    const key = this.#accounts.has(account) || this.#accounts.size < MemoryLoginGate.MAX_ACCOUNTS ? account : '*'
    const entry = this.#accounts.get(key) ?? { window, shared: 0, fresh: 0, failed: new Map() }
    this.#accounts.set(key, entry)
    if (entry.window !== window) Object.assign(entry, { window, shared: 0, fresh: 0 })
    const failedHere = (entry.failed.get(network) ?? 0) > now
    let budget: LoginPass['budget']
    if (entry.shared < this.#budgets.shared) budget = 'shared'
    else if (!failedHere && entry.fresh < this.#budgets.fresh) budget = 'fresh'
    else return left
    entry[budget]++
    entry.failed.delete(network)
    entry.failed.set(network, now + FAILED_NETWORK_MEMORY_MS)
    // A Map keeps insertion order: the first is the one remembered longest ago.
    if (entry.failed.size > MAX_FAILED_NETWORKS) entry.failed.delete(entry.failed.keys().next().value as string)
    return { account: key, network, window, budget }
  }

  async succeeded (pass: LoginPass): Promise<void> {
    const entry = this.#accounts.get(pass.account)
    if (entry === undefined) return
    if (entry.window === pass.window) entry[pass.budget] = Math.max(0, entry[pass.budget] - 1)
    entry.failed.delete(pass.network)
  }

  /** Forgets accounts with nothing left to remember, once a window. */
  #sweep (now: number, window: number): void {
    this.#swept = window
    for (const [account, entry] of this.#accounts) {
      for (const [known, until] of entry.failed) if (until <= now) entry.failed.delete(known)
      if (entry.window !== window && entry.failed.size === 0) this.#accounts.delete(account)
    }
  }
}

/**
 * One attempt, in the store's clock (so every instance agrees on the window whatever its
 * own clock says). KEYS[1] the counts (a hash: window `w`, `shared`, `fresh`), KEYS[2] the
 * failed networks (a sorted set scored by when each is forgotten). ARGV: network, shared
 * budget, fresh budget, window ms, memory ms, most networks. Returns {1, window, budget}
 * for a pass, {0, ms left in the window} for a refusal.
 */
const ATTEMPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local span = tonumber(ARGV[4])
local window = math.floor(now / span)
local left = (window + 1) * span - now
local counts = redis.call('HMGET', KEYS[1], 'w', 'shared', 'fresh')
local shared, fresh = 0, 0
if tonumber(counts[1]) == window then
  shared = tonumber(counts[2]) or 0
  fresh = tonumber(counts[3]) or 0
end
local budget
if shared < tonumber(ARGV[2]) then
  budget = 'shared'
  shared = shared + 1
else
  local forget = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
  if (forget ~= nil and forget > now) or fresh >= tonumber(ARGV[3]) then return {0, left} end
  budget = 'fresh'
  fresh = fresh + 1
end
redis.call('HSET', KEYS[1], 'w', window, 'shared', shared, 'fresh', fresh)
redis.call('PEXPIRE', KEYS[1], left)
local memory = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + memory, ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[2], memory)
return {1, window, budget}`

/** A right password: KEYS as above; ARGV: network, window, budget. */
const SUCCEEDED = `
if tonumber(redis.call('HGET', KEYS[1], 'w')) == tonumber(ARGV[2]) and tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or 0) > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[3], -1)
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`

interface Scripted {
  exampleLoginAttempt (counts: string, failed: string, network: string, shared: number, fresh: number,
    windowMs: number, memoryMs: number, most: number): Promise<[1, number, LoginPass['budget']] | [0, number]>
  exampleLoginSucceeded (counts: string, failed: string, network: string, window: number, budget: string): Promise<number>
}

/**
 * The gate in Redis, counted by every instance together: `<prefix>login:{<account>}` (the
 * counts) and `…:failed` (the networks), in one Cluster slot.
 */
export class RedisLoginGate implements LoginGate {
  readonly #redis: (Redis | Cluster) & Scripted
  readonly #prefix: string
  readonly #budgets: LoginBudgets

  constructor (redis: Redis | Cluster, prefix: string, budgets: LoginBudgets) {
    redis.defineCommand('exampleLoginAttempt', { numberOfKeys: 2, lua: ATTEMPT })
    redis.defineCommand('exampleLoginSucceeded', { numberOfKeys: 2, lua: SUCCEEDED })
    this.#redis = redis as (Redis | Cluster) & Scripted
    this.#prefix = `${prefix}login:`
    this.#budgets = budgets
  }

  #keys (account: string): [string, string] {
    const counts = `${this.#prefix}{${account}}`
    return [counts, `${counts}:failed`]
  }

  async attempt (account: string, network: string): Promise<LoginPass | number> {
    const answer = await inStore(this.#redis.exampleLoginAttempt(...this.#keys(account), network, this.#budgets.shared, this.#budgets.fresh,
      LOGIN_WINDOW_MS, FAILED_NETWORK_MEMORY_MS, MAX_FAILED_NETWORKS))
    if (answer[0] === 0) return answer[1]
    return { account, network, window: answer[1], budget: answer[2] }
  }

  async succeeded (pass: LoginPass): Promise<void> {
    await inStore(this.#redis.exampleLoginSucceeded(...this.#keys(pass.account), pass.network, pass.window, pass.budget))
  }
}
