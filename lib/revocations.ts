import type { FastifyBaseLogger } from 'fastify'
import type { StoreClock } from './clock.js'
import { StoreUnavailableError } from './errors.js'
import { loggable } from './log.js'
import type { Revocation, RevocationFeed, UserRevocation } from './stores/store.js'

/** How soon a failed reload is tried again while the feed is connected. */
const RELOAD_RETRY = 1000
/** How often, at most, expired revocations are swept out as new ones arrive. */
const SWEEP_EVERY = 1000

/** What the list needs of the plugin's options. */
export interface RevocationListOptions {
  /** How long the feed may be down before `onOutage` applies, in ms. */
  maxOutageMs: number
  /** `accept`: keep trusting access tokens (logged); `reject`: answer 503. */
  onOutage: 'accept' | 'reject'
}

/**
 * The sessions revoked anywhere whose access tokens may still be alive, held in this
 * process so that `authenticate` rejects them without a store round trip: single
 * sessions, and per user the latest revocation of every session that started before a
 * time (one entry, however many sessions it ends). It is fed by the store's revocation
 * feed and reloaded from the store after every (re)connect, for what the feed missed;
 * each entry is forgotten once its access tokens have expired, by the store's clock.
 */
export class RevocationList {
  readonly #revoked = new Map<string, number>()
  readonly #users = new Map<string, UserRevocation>()
  readonly #feed: RevocationFeed
  readonly #clock: StoreClock
  readonly #options: RevocationListOptions
  readonly #log: FastifyBaseLogger
  /** When the feed went down; undefined while it is up. It starts down, until loaded. */
  #downSince: number | undefined = Date.now()
  #connected = false
  #closed = false
  #stopWatching: (() => Promise<void>) | undefined
  #firstLoad: (() => void) | undefined
  #lastSweep = 0

  constructor (feed: RevocationFeed, clock: StoreClock, options: RevocationListOptions, log: FastifyBaseLogger) {
    this.#feed = feed
    this.#clock = clock
    this.#options = options
    this.#log = log
  }

  /**
   * Starts watching and waits for the first load, but no longer than `timeoutMs`: with the
   * store down, the app starts anyway (and the outage policy applies).
   */
  async start (timeoutMs: number): Promise<void> {
    const loaded = new Promise<void>((resolve) => { this.#firstLoad = resolve })
    const watching = this.#feed.watch({
      revoked: (revocations) => this.#add(revocations),
      connected: () => {
        this.#connected = true
        // A reconnect may follow a failover to a server on another clock. Neither rejects:
        // each logs its own failure.
        this.#clock.calibrate()
        this.#reload()
      },
      disconnected: () => this.#down()
    }).then((stop) => { this.#stopWatching = stop })
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })
    await Promise.race([Promise.all([watching, loaded]), timeout])
    clearTimeout(timer)
  }

  /**
   * Records revocations this instance made itself, at once: its own announcement comes
   * back through the feed a moment later.
   */
  remember (revocations: Revocation[]): void {
    this.#add(revocations)
  }

  /**
   * Whether the session was revoked, alone or with every session of its user that started
   * before a time, and its access tokens may still be alive. This runs on every
   * authenticated request: two map lookups, and the clock only when one finds something.
   */
  isRevoked (userId: string, sessionId: string, startedAt: number): boolean {
    const until = this.#revoked.get(sessionId)
    if (until !== undefined) {
      if (until > this.#clock.now()) return true
      this.#revoked.delete(sessionId)
    }
    const stamp = this.#users.get(userId)
    if (stamp === undefined) return false
    if (stamp.until <= this.#clock.now()) {
      this.#users.delete(userId)
      return false
    }
    return startedAt < stamp.startedBefore && sessionId !== stamp.except
  }

  /** Throws a 503 when the feed has been down too long and the policy is to reject. */
  checkFeed (): void {
    if (this.#options.onOutage === 'accept' || this.#downSince === undefined) return
    if (Date.now() - this.#downSince > this.#options.maxOutageMs) {
      throw new StoreUnavailableError({ cause: new Error('revocation feed down') })
    }
  }

  /** How many revocations are remembered (sessions, and users whose sessions all ended). */
  get size (): number {
    return this.#revoked.size + this.#users.size
  }

  /** Whether the feed is connected and loaded. */
  get live (): boolean {
    return this.#downSince === undefined
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.#stopWatching?.()
  }

  /**
   * Adds revocations, and now and then forgets expired ones. Sweeping on every add would
   * cost each logout a scan of every remembered revocation (thousands on a busy fleet).
   */
  #add (revocations: Revocation[]): void {
    const now = this.#clock.now()
    if (now - this.#lastSweep >= SWEEP_EVERY) {
      this.#lastSweep = now
      this.#sweep(now)
    }
    for (const revocation of revocations) {
      if ('sessionId' in revocation) {
        if (revocation.until > (this.#revoked.get(revocation.sessionId) ?? 0)) this.#revoked.set(revocation.sessionId, revocation.until)
        continue
      }
      // The latest stamp of a user covers every earlier one (and may spare another session).
      const known = this.#users.get(revocation.userId)
      if (known === undefined || revocation.startedBefore >= known.startedBefore) this.#users.set(revocation.userId, revocation)
    }
  }

  async #reload (): Promise<void> {
    try {
      this.#add(await this.#feed.revocations())
    } catch (err) {
      this.#log.warn({ err: loggable(err) }, 'revocation list reload failed; retrying')
      setTimeout(() => { if (this.#connected && !this.#closed) this.#reload() }, RELOAD_RETRY).unref()
      return
    }
    if (this.#downSince !== undefined) this.#log.info({ revoked: this.#revoked.size }, 'revocation feed up')
    this.#downSince = undefined
    this.#firstLoad?.()
  }

  #down (): void {
    this.#connected = false
    if (this.#downSince !== undefined || this.#closed) return
    this.#downSince = Date.now()
    this.#log.warn({ onOutage: this.#options.onOutage }, 'revocation feed down: revocations on other instances may be missed')
  }

  #sweep (now: number): void {
    for (const [sessionId, until] of this.#revoked) {
      if (until <= now) this.#revoked.delete(sessionId)
    }
    for (const [userId, stamp] of this.#users) {
      if (stamp.until <= now) this.#users.delete(userId)
    }
  }
}
