import type { FastifyBaseLogger } from 'fastify'
import { CLOCK_TOLERANCE_MS, type StoreClock } from './clock.js'
import { StoreUnavailableError } from './errors.js'
import { loggable } from './log.js'
import type { FeedState, Telemetry } from './telemetry.js'
import type { OutagePolicy } from './types.js'
import type { Revocation, RevocationFeed } from './stores/store.js'

/** How soon a failed reload is tried again while the feed is connected. */
const RELOAD_RETRY = 1000
/** How often, at most, a sweep for expired revocations runs as new ones arrive. */
const SWEEP_EVERY = 1000
/**
 * How many remembered revocations one sweep looks at, going on where the last stopped:
 * a sweep costs a request at most a fraction of a millisecond, however many are
 * remembered, and with a million a full pass takes about two minutes (each is remembered
 * for at least the access tokens' lifetime).
 */
const SWEEP_BATCH = 8192

/** What the list needs of the plugin's options. */
export interface RevocationListOptions {
  /** How long the feed may be down before `onOutage` applies, in ms. */
  maxOutageMs: number
  /** What `authenticate` does while the feed is down (see {@link OutagePolicy}). */
  onOutage: OutagePolicy
  /**
   * How long after a user's sessions were all revoked their access tokens may live here:
   * this instance's access-token lifetime and margin. It refuses longer-lived tokens, so
   * what a stamp covers is over for it by then, whatever lifetime the instance that made
   * the stamp has.
   */
  rememberMs: number
}

/**
 * The sessions revoked anywhere whose access tokens may still be alive, held in this
 * process so that `authenticate` rejects them without a store round trip: single
 * sessions, and per user the latest revocation of every session that started before a
 * time (one entry, however many sessions it ends). It is fed by the store's revocation
 * feed and reloaded from the store after every (re)connect, for what the feed missed;
 * each entry is forgotten once its access tokens have expired, by the store's clock.
 *
 * A million entries must fit in a small heap: each is a map entry keyed by the id, with a
 * small integer as its value (times relative to when the list was made, which stay small
 * integers for about 24 days of uptime, 12 where V8 compresses pointers), and nothing else; a spared session of a
 * user's stamp is in a map of its own.
 */
export class RevocationList {
  /** Session id → until when its access tokens may live, in whole seconds after #base (rounded up). */
  readonly #revoked = new Map<string, number>()
  /** User id → when the user's sessions started before were revoked, in ms after #base. */
  readonly #users = new Map<string, number>()
  /** User id → the session the user's stamp spares (only for the stamps that spare one). */
  readonly #spared = new Map<string, string>()
  readonly #base = Date.now()
  readonly #feed: RevocationFeed
  readonly #clock: StoreClock
  readonly #options: RevocationListOptions
  readonly #log: FastifyBaseLogger
  readonly #telemetry: Telemetry | undefined
  /** Stops the feed's gauges. */
  readonly #unobserve: (() => void) | undefined
  /** When the feed was last proven alive (a heartbeat's arrival, ms); undefined for a feed that sends none. */
  #aliveAt: number | undefined
  /** When the feed went down; undefined while it is up. It starts down, until loaded. */
  #downSince: number | undefined = Date.now()
  #connected = false
  #closed = false
  #stopWatching: (() => Promise<void>) | undefined
  #firstLoad: (() => void) | undefined
  #lastSweep = 0
  #revokedSweep: MapIterator<[string, number]> | undefined
  #usersSweep: MapIterator<[string, number]> | undefined
  /**
   * Since when (store clock) revocations may have been missed while the feed was down:
   * the next reload reads only those; undefined, every one (the first load, or a feed
   * that cannot say).
   */
  #missedSince: number | undefined
  /** Whether a reload is running, and whether another must follow it (a connect meanwhile). */
  #reloading = false
  #reloadAgain = false

  constructor (feed: RevocationFeed, clock: StoreClock, options: RevocationListOptions, log: FastifyBaseLogger, telemetry?: Telemetry) {
    this.#feed = feed
    this.#clock = clock
    this.#options = options
    this.#log = log
    this.#telemetry = telemetry
    this.#unobserve = telemetry?.observeFeed(() => this.#state(), options)
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
        // A reconnect may follow a failover to a server on another clock. The clock first:
        // a reload's pipelines would lengthen the round trips it reads, and so its error.
        // Neither rejects: each logs its own failure.
        this.#clock.calibrate().then(() => this.#reload())
      },
      disconnected: (since) => this.#down(since),
      alive: (at) => {
        this.#aliveAt = Date.now()
        this.#telemetry?.feedLag(this.#clock.now() - at)
      }
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
      if (!this.#sessionOver(until, this.#clock.now())) return true
      this.#revoked.delete(sessionId)
    }
    const stamp = this.#users.get(userId)
    if (stamp === undefined) return false
    if (this.#stampOver(stamp, this.#clock.now())) {
      this.#forgetUser(userId)
      return false
    }
    return startedAt < this.#base + stamp && sessionId !== this.#spared.get(userId)
  }

  /**
   * Whether `authenticate` must ask the store about a session this list does not know
   * revoked: while the feed is down under `check-store`. Throws a 503 when the feed has
   * been down longer than `maxOutage` under `reject`.
   */
  checkFeed (): boolean {
    if (this.#downSince === undefined) return false
    const { onOutage } = this.#options
    if (onOutage === 'check-store') return true
    if (onOutage === 'reject' && Date.now() - this.#downSince > this.#options.maxOutageMs) {
      throw new StoreUnavailableError({ cause: new Error('revocation feed down') })
    }
    return false
  }

  /**
   * Whether this instance knows the session over (revoked, or ended with every session of
   * its user that started before `startedAt`, when that is known): ending it again needs
   * no store call.
   */
  knowsEnded (userId: string, sessionId: string, startedAt?: number): boolean {
    const until = this.#revoked.get(sessionId)
    if (until !== undefined && !this.#sessionOver(until, this.#clock.now())) return true
    return startedAt !== undefined && this.isRevoked(userId, sessionId, startedAt)
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
    this.#unobserve?.()
    await this.#stopWatching?.()
  }

  /** Adds revocations, and now and then forgets a batch of expired ones. */
  #add (revocations: Revocation[]): void {
    const now = this.#clock.now()
    if (now - this.#lastSweep >= SWEEP_EVERY) {
      this.#lastSweep = now
      this.#sweep(now)
    }
    for (const revocation of revocations) {
      if ('sessionId' in revocation) {
        const until = Math.ceil((revocation.until - this.#base) / 1000)
        if (this.#sessionOver(until, now)) continue
        if (until > (this.#revoked.get(revocation.sessionId) ?? -Infinity)) this.#revoked.set(revocation.sessionId, until)
        continue
      }
      // The latest stamp of a user covers every earlier one (and may spare another session).
      const { userId } = revocation
      const startedBefore = revocation.startedBefore - this.#base
      if (this.#stampOver(startedBefore, now)) continue
      const known = this.#users.get(userId) ?? -Infinity
      if (startedBefore < known) continue
      if (startedBefore === known) {
        // Two stamps of one time (logout-all twice in a millisecond), in either order, or
        // the same one again: what either of them ends is over.
        if (this.#spared.get(userId) !== revocation.except) this.#spared.delete(userId)
        continue
      }
      this.#users.set(userId, startedBefore)
      if (revocation.except === undefined) this.#spared.delete(userId)
      else this.#spared.set(userId, revocation.except)
    }
  }

  /**
   * Reloads every revocation, a chunk at a time (handing the event loop back between
   * chunks), once for any number of connects that come while it runs.
   */
  async #reload (): Promise<void> {
    if (this.#reloading) {
      this.#reloadAgain = true
      return
    }
    this.#reloading = true
    // A revocation made at or after `since` is remembered until at least `since` plus the
    // access tokens' lifetime and margin (instances of one deployment share it): less the
    // clock tolerance, for the store's servers' clocks.
    const since = this.#missedSince
    const from = since === undefined ? undefined : since + this.#options.rememberMs - CLOCK_TOLERANCE_MS
    const started = Date.now()
    try {
      for await (const chunk of chunksOf(from === undefined ? this.#feed.revocations() : this.#feed.revocations(from))) this.#add(chunk)
    } catch (err) {
      this.#reloading = this.#reloadAgain = false
      this.#log.warn({ err: loggable(err) }, 'revocation list reload failed; retrying')
      setTimeout(() => { if (this.#connected && !this.#closed) this.#reload() }, RELOAD_RETRY).unref()
      return
    }
    this.#reloading = false
    this.#telemetry?.reloaded(Date.now() - started)
    if (this.#reloadAgain) {
      this.#reloadAgain = false
      this.#reload()
      return
    }
    // The feed went down while it ran: still down, and its next connect reloads again.
    if (!this.#connected) return
    if (this.#downSince !== undefined) this.#log.info({ revoked: this.#revoked.size }, 'revocation feed up')
    this.#downSince = undefined
    this.#firstLoad?.()
  }

  /** What the feed's gauges say. */
  #state (): FeedState {
    return { aliveAt: this.#aliveAt, downSince: this.#downSince, size: this.size }
  }

  #down (since: number | undefined): void {
    this.#connected = false
    if (this.#downSince !== undefined || this.#closed) return
    this.#downSince = Date.now()
    this.#missedSince = since
    this.#log.warn({ onOutage: this.#options.onOutage }, 'revocation feed down: revocations on other instances may be missed')
  }

  /** Forgets the expired among the next SWEEP_BATCH sessions and users, from where the last sweep stopped. */
  #sweep (now: number): void {
    this.#revokedSweep = sweepSome(this.#revoked, this.#revokedSweep, (until) => this.#sessionOver(until, now), (sessionId) => this.#revoked.delete(sessionId))
    this.#usersSweep = sweepSome(this.#users, this.#usersSweep, (stamp) => this.#stampOver(stamp, now), (userId) => this.#forgetUser(userId))
  }

  /** Whether a revoked session's access tokens (its entry: whole seconds after #base) are over by `now`. */
  #sessionOver (until: number, now: number): boolean {
    return this.#base + until * 1000 <= now
  }

  /** Whether a user's stamp (ms after #base) is past this instance's memory by `now`. */
  #stampOver (stamp: number, now: number): boolean {
    return this.#base + stamp + this.#options.rememberMs <= now
  }

  #forgetUser (userId: string): void {
    this.#users.delete(userId)
    this.#spared.delete(userId)
  }
}

/**
 * Goes on through `map` from `cursor` (a new pass when there is none), forgets up to
 * SWEEP_BATCH expired entries' worth of it, and gives back where it stopped (none at the
 * end of a pass). Deleting an entry of a Map while iterating it is safe.
 */
function sweepSome (
  map: Map<string, number>, cursor: MapIterator<[string, number]> | undefined, expired: (value: number) => boolean, forget: (key: string) => void
): MapIterator<[string, number]> | undefined {
  const entries = cursor ?? map.entries()
  for (let n = 0; n < SWEEP_BATCH; n++) {
    const next = entries.next()
    if (next.done === true) return undefined
    if (expired(next.value[1])) forget(next.value[0])
  }
  return entries
}

/** A feed's reload as chunks, whether it gives them all at once or a chunk at a time. */
async function * chunksOf (revocations: Promise<Revocation[]> | AsyncIterable<Revocation[]>): AsyncGenerator<Revocation[]> {
  if (Symbol.asyncIterator in revocations) yield * revocations
  else yield await revocations
}
