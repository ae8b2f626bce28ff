// Proves the revocation feed's whole path, from a write on the store to this instance's subscriber, with numbered heartbeats.

/** How often a heartbeat is sent by default, in ms: with the timeout, a silent path is known within 1.5 s. */
export const DEFAULT_HEARTBEAT_INTERVAL = 500
/** How long a heartbeat may take, from its write to its arrival on the subscriber, by default, in ms. */
export const DEFAULT_HEARTBEAT_TIMEOUT = 1000

/** What the heartbeat needs of the feed. */
export interface HeartbeatTransport {
  /** Writes heartbeat `beat` on the store, which publishes it to this instance's heartbeat channel. */
  send: (beat: number) => Promise<void>
  /** The feed is proven: every write made before the proving heartbeat has reached the subscriber. */
  proven: () => void
  /** Heartbeat written at `at` (store clock) arrived in time: the path is alive. */
  alive: (at: number) => void
  /**
   * A heartbeat did not arrive in time: revocations announced since `since` (store clock)
   * may be missed. `silent` when its write succeeded: the path to the subscriber is dead,
   * and the subscriber should connect again.
   */
  late: (since: number | undefined, silent: boolean) => void
}

/** A heartbeat on its way: its deadline, and whether the store took its write. */
interface Pending {
  timer: NodeJS.Timeout
  written: boolean
}

/**
 * The heartbeats of one subscriber. Only a subscription confirmed by the store starts it,
 * and only a heartbeat sent after that confirmation proves it: a heartbeat is a write that
 * the store publishes, so it fails where writes fail (a replica that was a primary, a store
 * that refuses writes), and arrives only where announcements arrive. A heartbeat is judged
 * late from when it was actually sent, and only after this process has read what reached
 * it meanwhile (the judgement waits for the event loop's next poll), so a stall of this
 * process (a GC pause, a long reload) delays heartbeats but never counts as an outage.
 */
export class Heartbeat {
  readonly #transport: HeartbeatTransport
  readonly #intervalMs: () => number
  readonly #timeoutMs: number
  #next = 0
  readonly #pending = new Map<number, Pending>()
  #ticker: NodeJS.Timeout | undefined
  #proven = false
  /** The store's time of the last proving heartbeat: what was published before it has arrived. */
  #provenAt: number | undefined

  /** `intervalMs` is asked before each heartbeat: a Cluster's feed takes its primaries in turn, each once an interval. */
  constructor (transport: HeartbeatTransport, intervalMs: () => number, timeoutMs: number) {
    this.#transport = transport
    this.#intervalMs = intervalMs
    this.#timeoutMs = timeoutMs
  }

  /** Whether the feed is proven now. */
  get proven (): boolean {
    return this.#proven
  }

  /** The subscription is confirmed: heartbeats start, the first at once. */
  subscribed (): void {
    // Those on their way are forgotten: only a heartbeat sent from now on proves this one.
    this.stop()
    this.#beat()
  }

  /** The subscription is gone: no heartbeat can arrive until the next one. */
  unsubscribed (): void {
    this.stop()
    this.#proven = false
  }

  /** Heartbeat `beat` arrived; `at` is when the store wrote it, on its clock. */
  received (beat: number, at: number): void {
    const pending = this.#pending.get(beat)
    if (pending === undefined) return
    clearTimeout(pending.timer)
    this.#pending.delete(beat)
    this.#provenAt = at
    this.#transport.alive(at)
    if (this.#proven) return
    this.#proven = true
    this.#transport.proven()
  }

  /** Since when, on the store's clock, announcements may be missed, if the feed went down now. */
  get since (): number | undefined {
    return this.#proven ? this.#provenAt : undefined
  }

  stop (): void {
    clearTimeout(this.#ticker)
    this.#ticker = undefined
    for (const { timer } of this.#pending.values()) clearTimeout(timer)
    this.#pending.clear()
  }

  #beat (): void {
    this.#ticker = setTimeout(() => { this.#beat() }, this.#intervalMs())
    this.#ticker.unref()
    const beat = this.#next++
    const pending: Pending = { timer: setTimeout(() => { setImmediate(() => { this.#judge(beat) }) }, this.#timeoutMs), written: false }
    pending.timer.unref()
    this.#pending.set(beat, pending)
    this.#transport.send(beat).then(() => { pending.written = true }, () => {})
  }

  /** Heartbeat `beat`'s time is up, and what reached this process meanwhile has been read. */
  #judge (beat: number): void {
    const pending = this.#pending.get(beat)
    if (pending === undefined) return
    this.#pending.delete(beat)
    const since = this.since
    this.#proven = false
    // A silent path: the subscriber connects again, and its next subscription starts anew.
    if (pending.written) this.stop()
    this.#transport.late(since, pending.written)
  }
}
