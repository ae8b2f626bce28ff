import type { FastifyBaseLogger } from 'fastify'
import { loggable } from './log.js'

/**
 * How far an instance's clock may be from the store's before the plugin warns, and how far
 * in the future a token's `iat` may be before it is rejected: 5 seconds.
 */
export const CLOCK_TOLERANCE_MS = 5000
/** How often the offset to the store's clock is measured again: every minute. */
export const CLOCK_CHECK_INTERVAL_MS = 60_000
/** Readings taken at start and after a reconnect; the one with the shortest round trip counts. */
export const CLOCK_SAMPLES = 3
/** How long the most precise reading outranks later ones with longer round trips: 10 minutes. */
export const CLOCK_READING_TRUSTED_MS = 10 * 60_000

/**
 * The store's clock, as this instance sees it. Revocations are stamped and sessions timed
 * by the store's clock (Redis `TIME`); an instance whose own clock runs ahead or behind
 * would forget revocations too early or too late, and sign tokens that other instances
 * read differently. So every instance measures its offset to the store (at start, when the
 * revocation feed reconnects, and every minute) and keeps time by the store's clock.
 */
export class StoreClock {
  #offset = 0
  /** The round trip of the reading the offset comes from: its error is at most half of it. */
  #roundTrip = Number.POSITIVE_INFINITY
  #readAt = 0
  #warned = false
  #timer: NodeJS.Timeout | undefined
  readonly #time: () => Promise<number>
  readonly #log: FastifyBaseLogger

  /** `time` reads the store's clock; the offset stays 0 until a reading succeeds. */
  constructor (time: () => Promise<number>, log: FastifyBaseLogger) {
    this.#time = time
    this.#log = log
  }

  /** Milliseconds since the epoch on the store's clock. */
  now (): number {
    return Date.now() + this.#offset
  }

  /** The store's clock minus this instance's, in ms. */
  get offsetMs (): number {
    return this.#offset
  }

  /**
   * Several readings, keeping the most precise: at start, and after a reconnect, when the
   * store may be another server on another clock (so earlier readings no longer count).
   */
  async calibrate (): Promise<void> {
    this.#roundTrip = Number.POSITIVE_INFINITY
    for (let sample = 0; sample < CLOCK_SAMPLES; sample++) await this.measure()
  }

  /**
   * Reads the store's clock, taking the reading as made halfway through the round trip,
   * so that its error is at most half the round trip. A busy machine or network makes some
   * round trips long: a reading replaces a more precise one only once that has aged past
   * {@link CLOCK_READING_TRUSTED_MS}. A store that does not answer leaves the offset alone.
   */
  async measure (): Promise<void> {
    const sent = Date.now()
    let storeTime: number
    try {
      storeTime = await this.#time()
    } catch (err) {
      this.#log.debug({ err: loggable(err) }, 'could not read the session store\'s clock')
      return
    }
    const received = Date.now()
    const roundTrip = received - sent
    if (roundTrip > this.#roundTrip && received - this.#readAt < CLOCK_READING_TRUSTED_MS) return
    this.#roundTrip = roundTrip
    this.#readAt = received
    this.#offset = Math.round(storeTime - (sent + received) / 2)
    const off = Math.abs(this.#offset) > CLOCK_TOLERANCE_MS
    if (off && !this.#warned) {
      this.#log.warn({ clockOffsetMs: this.#offset }, 'this instance\'s clock is off from the session store\'s; the plugin keeps the store\'s time, but check the machine\'s time sync')
    }
    this.#warned = off
  }

  /** Measures again every `CLOCK_CHECK_INTERVAL_MS` until `stop`. */
  start (): void {
    // measure() never rejects: a failed reading is logged and leaves the offset alone.
    this.#timer = setInterval(() => { this.measure() }, CLOCK_CHECK_INTERVAL_MS)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }
}
