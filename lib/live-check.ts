// Asks the store whether a session is live while the revocation feed cannot be trusted, without letting every instance flood it.
import type { FastifyBaseLogger } from 'fastify'
import { SessionRevokedError, StoreUnavailableError } from './errors.js'
import { loggable } from './log.js'

/** What the check needs of the session lifecycle: store calls bounded by `storeTimeout`. */
export interface LiveLookup {
  isLive (userId: string, sessionId: string): Promise<boolean>
  storeAnswers (): Promise<boolean>
}

/** What the check needs of the plugin's options. */
export interface LiveCheckOptions {
  /** How long a session found live is taken for live without asking again, in ms (0: always ask). */
  knownAliveMs: number
  /** The most lookups in flight at once; beyond, a request gets a 503. */
  maxLookups: number
  /** How long the store counts as unreachable after a failed lookup, before it is probed again, in ms. */
  retryMs: number
  /** The most sessions remembered as found live: past it, the memory starts again. */
  maxKnownAlive: number
}

/**
 * The `check-store` outage policy: while the revocation feed is down, `authenticate` asks
 * the store about each session it does not know revoked (one round trip, as
 * `authenticateStrict` does). Every instance switches at once when the feed fails for all,
 * so the store is spared: one lookup in flight per session (later requests for it share
 * its answer), an optional short memory of sessions found live, and a cap on lookups in
 * flight past which a request gets a 503 with `Retry-After`. While the store cannot answer
 * either, nothing can be revoked, and requests are accepted (as under `accept`) without
 * waiting: one probe at a time finds out when it answers again.
 */
export class LiveCheck {
  readonly #lookup: LiveLookup
  readonly #options: LiveCheckOptions
  readonly #log: FastifyBaseLogger
  readonly #inFlight = new Map<string, Promise<boolean>>()
  /** Session id → until when (ms, this instance's clock) it is taken for live. */
  readonly #alive = new Map<string, number>()
  /** Until when the store counts as unreachable (ms, this instance's clock); 0 while it answers. */
  #storeDownUntil = 0
  #probing = false

  constructor (lookup: LiveLookup, options: LiveCheckOptions, log: FastifyBaseLogger) {
    this.#lookup = lookup
    this.#options = options
    this.#log = log
  }

  /**
   * Resolves when the session may be served; rejects with `FTS_SESSION_REVOKED` when the
   * store says it is over, or `FTS_STORE_UNAVAILABLE` when too many lookups are in flight.
   */
  async confirm (userId: string, sessionId: string): Promise<void> {
    if (!await this.#isLive(userId, sessionId)) throw new SessionRevokedError()
  }

  #isLive (userId: string, sessionId: string): Promise<boolean> | boolean {
    const now = Date.now()
    if (this.#storeDownUntil !== 0) return this.#storeDown(now)
    const known = this.#alive.get(sessionId)
    if (known !== undefined) {
      if (known > now) return true
      this.#alive.delete(sessionId)
    }
    const pending = this.#inFlight.get(sessionId)
    if (pending !== undefined) return pending
    if (this.#inFlight.size >= this.#options.maxLookups) throw new StoreUnavailableError({ cause: new Error('too many session lookups in flight') })
    const lookup = this.#lookup.isLive(userId, sessionId).then((live) => {
      if (live && this.#options.knownAliveMs > 0) this.#knownAlive(sessionId)
      return live
    }, (error: unknown) => {
      this.#unreachable(error)
      return true
    }).finally(() => { this.#inFlight.delete(sessionId) })
    this.#inFlight.set(sessionId, lookup)
    return lookup
  }

  /** The store did not answer: sessions are taken for live, and probed again later. */
  #unreachable (error: unknown): void {
    if (this.#storeDownUntil === 0) {
      this.#log.warn({ err: loggable((error as { cause?: unknown }).cause ?? error) }, 'session store unreachable while the revocation feed is down: access tokens are accepted until it answers')
    }
    this.#storeDownUntil = Date.now() + this.#options.retryMs
  }

  /** While the store is unreachable: accepted at once, and one probe at a time once the wait is over. */
  #storeDown (now: number): boolean {
    if (now < this.#storeDownUntil || this.#probing) return true
    this.#probing = true
    this.#lookup.storeAnswers().then((answers) => {
      this.#probing = false
      if (answers) this.#storeDownUntil = 0
      else this.#storeDownUntil = Date.now() + this.#options.retryMs
    })
    return true
  }

  #knownAlive (sessionId: string): void {
    if (this.#alive.size >= this.#options.maxKnownAlive) this.#alive.clear()
    this.#alive.set(sessionId, Date.now() + this.#options.knownAliveMs)
  }
}
