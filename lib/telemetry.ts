// Metrics and traces through the OpenTelemetry API, when the app has it: the app's own copy
// (an optional peer dependency), its SDK deciding where they go. Without the API, or with
// it and no SDK, the request path does nothing more than before.
import type { Attributes, BatchObservableCallback, Counter, Histogram, Meter, MeterProvider, Span, Tracer, TracerProvider } from '@opentelemetry/api'
import { fail } from './invalid-option.js'
import type { OutagePolicy, TelemetryOptions } from './types.js'

type Api = typeof import('@opentelemetry/api')

/** The prefix of every metric and span name. */
export const PREFIX = 'token_sessions'

/**
 * A store call's buckets, in seconds, 0.1 ms to 1 s: a Redis call takes well under a
 * millisecond on a good day, and the API's default buckets (0 to 10,000) put them all in
 * one.
 */
export const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
/** A reload of the revocation list's buckets, in seconds: a few entries to a million. */
const RELOAD_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** What a refresh came to: the `outcome` of `token_sessions.refreshes`. */
const REFRESH_OUTCOMES_ALL = ['rotated', 'grace_replay', 'reused', 'expired', 'revoked', 'invalid', 'proof_refused', 'nonce_required', 'missing', 'unavailable'] as const
export type RefreshOutcome = typeof REFRESH_OUTCOMES_ALL[number]

/** The refresh outcome of each error code a refresh may end in; any other is `invalid`. */
const REFRESH_OUTCOMES: Readonly<Record<string, RefreshOutcome>> = {
  FTS_TOKEN_REUSED: 'reused',
  FTS_TOKEN_EXPIRED: 'expired',
  FTS_SESSION_EXPIRED: 'expired',
  FTS_SESSION_REVOKED: 'revoked',
  FTS_DPOP_PROOF_INVALID: 'proof_refused',
  // The server's nonce asked for: with `dpop.nonces`, the first answer to a client without it.
  FTS_DPOP_NONCE_REQUIRED: 'nonce_required',
  FTS_TOKEN_MISSING: 'missing',
  FTS_STORE_UNAVAILABLE: 'unavailable',
  FTS_CLAIMS_UNAVAILABLE: 'unavailable'
}

/**
 * The revocation reasons a metric names; any other (an app's own, a claims hook's) is
 * `other`, so that free text never becomes a time series.
 */
const REASONS = new Set(['logout', 'logout-all', 'revoked', 'reuse', 'limit', 'claims', 'password-change', 'admin'])

/** An error's code when it is one of ours (`FTS_` and capitals), else `other`: the `code` attribute. */
export function codeOf (error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^FTS_[A-Z_]{1,40}$/.test(code) ? code : 'other'
}

/** The store operations, as metrics and spans name them. */
const STORE_OPERATIONS = ['create', 'rotate', 'step_up', 'revoke', 'revoke_all', 'is_live', 'remember_proof', 'ping', 'list'] as const
export type StoreOperation = typeof STORE_OPERATIONS[number]

/** How a store call ended. */
export type StoreCallEnd = 'ok' | 'error' | 'timeout' | 'late'
/** How a store call can fail. */
const STORE_ERRORS = ['error', 'timeout', 'late'] as const

/** One store call being measured: `run` starts it (in its span's context), `end` records it. */
export interface StoreCall {
  run: <T>(operation: () => T) => T
  end: (how: StoreCallEnd) => void
}

/** What the revocation feed's gauges read, at each collection. */
export interface FeedState {
  /** When the feed was last proven alive (a heartbeat's arrival, ms, this instance's clock), if ever. */
  aliveAt: number | undefined
  /** When it went down (ms), while it is down; undefined while it is up. */
  downSince: number | undefined
  /** How many revocations are remembered. */
  size: number
}

/** The metrics of the revocation feed's policy: which, and after how long down it applies. */
export interface FeedPolicy {
  onOutage: OutagePolicy
  maxOutageMs: number
}

/**
 * The plugin's instruments. Made once at registration; each method is a counter's add or
 * a histogram's record with fixed, low-cardinality attributes: never an id, a token, an
 * address or text from a request.
 */
export class Telemetry {
  readonly #api: Api
  readonly #tracer: Tracer
  readonly #meter: Meter
  /** Whether the meter records (an SDK is installed): without one, nothing is timed or counted. */
  readonly metering: boolean
  readonly #started: Counter
  readonly #refreshes: Counter
  readonly #logouts: Counter
  readonly #revocations: Counter
  readonly #refusals: Counter
  readonly #challenges: Counter
  readonly #storeDuration: Histogram
  readonly #storeErrors: Counter
  readonly #feedLag: Histogram
  readonly #reloadDuration: Histogram
  /** The attributes of each store operation, made once. */
  readonly #operations = new Map<StoreOperation, Attributes>()

  constructor (api: Api, meterProvider: MeterProvider, tracerProvider: TracerProvider) {
    this.#api = api
    this.#meter = meterProvider.getMeter('fastify-token-sessions')
    this.metering = this.#meter !== api.createNoopMeter()
    this.#tracer = tracerProvider.getTracer('fastify-token-sessions')
    const meter = this.#meter
    this.#started = meter.createCounter(`${PREFIX}.sessions.started`, { unit: '{session}', description: 'Sessions started (logins), by transport' })
    this.#refreshes = meter.createCounter(`${PREFIX}.refreshes`, { unit: '{refresh}', description: 'Refreshes, by outcome' })
    this.#logouts = meter.createCounter(`${PREFIX}.logouts`, { unit: '{logout}', description: 'Logouts, of one session or of all the user\'s' })
    this.#revocations = meter.createCounter(`${PREFIX}.revocations`, { unit: '{revocation}', description: 'Revocations, by reason: one session or all of a user\'s' })
    this.#refusals = meter.createCounter(`${PREFIX}.authenticate.refusals`, { unit: '{request}', description: 'Requests authenticate refused, by error code' })
    this.#challenges = meter.createCounter(`${PREFIX}.step_up.challenges`, { unit: '{request}', description: 'Requests refused for a step-up (FTS_STEP_UP_REQUIRED)' })
    this.#storeDuration = meter.createHistogram(`${PREFIX}.store.duration`, {
      unit: 's', description: 'Duration of store calls made for requests, by operation and outcome', advice: { explicitBucketBoundaries: STORE_BUCKETS }
    })
    this.#storeErrors = meter.createCounter(`${PREFIX}.store.errors`, { unit: '{call}', description: 'Store calls that failed, by operation and error' })
    this.#feedLag = meter.createHistogram(`${PREFIX}.feed.lag`, {
      unit: 's', description: 'Revocation feed delivery lag: a heartbeat\'s write on the store to its arrival here', advice: { explicitBucketBoundaries: STORE_BUCKETS }
    })
    this.#reloadDuration = meter.createHistogram(`${PREFIX}.feed.reload.duration`, {
      unit: 's', description: 'Duration of reloads of the revocation list after the feed (re)connects', advice: { explicitBucketBoundaries: RELOAD_BUCKETS }
    })
    // The series alerts watch exist from the start, at 0: a counter's first event is then an
    // increase, which a series that appears at 1 is not to Prometheus's increase() and rate().
    for (const outcome of REFRESH_OUTCOMES_ALL) this.#refreshes.add(0, { outcome })
    this.#revocations.add(0, { reason: 'reuse', scope: 'session' })
    for (const operation of STORE_OPERATIONS) {
      for (const error of STORE_ERRORS) this.#storeErrors.add(0, { operation, error })
    }
  }

  sessionStarted (transport: 'cookie' | 'body'): void {
    this.#started.add(1, { transport })
  }

  refreshed (outcome: 'rotated' | 'grace_replay'): void {
    this.#refreshes.add(1, { outcome })
  }

  /** A refresh that failed, with what it failed with. */
  refreshFailed (error: unknown): void {
    this.#refreshes.add(1, { outcome: REFRESH_OUTCOMES[codeOf(error)] ?? 'invalid' })
  }

  loggedOut (all: boolean): void {
    this.#logouts.add(1, { scope: all ? 'all' : 'session' })
  }

  revoked (reason: string, all: boolean): void {
    this.#revocations.add(1, { reason: REASONS.has(reason) ? reason : 'other', scope: all ? 'all' : 'session' })
  }

  /** A request `authenticate` refused (its step-up requirement apart: see {@link Telemetry.challenged}). */
  refused (error: unknown): void {
    this.#refusals.add(1, { code: codeOf(error) })
  }

  challenged (): void {
    this.#challenges.add(1)
  }

  /**
   * A store call made for a request: timed when an SDK meters, and a span of its own,
   * child of the one active (the request's, when the app traces requests) when that one
   * records. Undefined when there is nothing to do.
   */
  storeCall (operation: StoreOperation): StoreCall | undefined {
    const api = this.#api
    const parent = api.context.active()
    const traced = api.trace.getSpan(parent)?.isRecording() === true
    if (!traced && !this.metering) return undefined
    const attributes = this.#attributesOf(operation)
    const span = traced ? this.#tracer.startSpan(`${PREFIX}.store ${operation}`, { kind: api.SpanKind.CLIENT, attributes }, parent) : undefined
    const started = this.metering ? performance.now() : 0
    return {
      run: span === undefined ? (run) => run() : (run) => api.context.with(api.trace.setSpan(parent, span), run),
      end: (how) => {
        if (this.metering) this.#endCall(attributes, operation, how, started)
        if (span !== undefined) endSpan(api, span, how)
      }
    }
  }

  /** A heartbeat arrived: `lagMs` after the store wrote it. */
  feedLag (lagMs: number): void {
    this.#feedLag.record(Math.max(0, lagMs) / 1000)
  }

  /** A reload of the revocation list took `ms`. */
  reloaded (ms: number): void {
    this.#reloadDuration.record(ms / 1000)
  }

  /** The revocation feed's gauges, read at each collection from `state`, until the function it returns is called. */
  observeFeed (state: () => FeedState, policy: FeedPolicy): () => void {
    const meter = this.#meter
    const up = meter.createObservableGauge(`${PREFIX}.feed.up`, { unit: '1', description: 'Whether the revocation feed is connected and loaded (1) or down (0)' })
    const sinceAlive = meter.createObservableGauge(`${PREFIX}.feed.since_alive`, {
      unit: 's', description: 'Time since the revocation feed was last proven alive (a heartbeat, or its last load for a feed without)'
    })
    const outage = meter.createObservableGauge(`${PREFIX}.feed.outage_policy.active`, {
      unit: '1', description: 'Whether the revocation feed\'s outage policy is in force (1), by policy'
    })
    const size = meter.createObservableGauge(`${PREFIX}.revocation_list.size`, { unit: '{revocation}', description: 'Revocations remembered by this instance' })
    const observables = [up, sinceAlive, outage, size]
    const observe: BatchObservableCallback = (result) => {
      const now = Date.now()
      const { aliveAt, downSince, size: remembered } = state()
      result.observe(up, downSince === undefined ? 1 : 0)
      // A feed without heartbeats is alive while it is up, and was last when it went down.
      result.observe(sinceAlive, Math.max(0, now - (aliveAt ?? downSince ?? now)) / 1000)
      const inForce = downSince !== undefined && (policy.onOutage !== 'reject' || now - downSince > policy.maxOutageMs)
      result.observe(outage, inForce ? 1 : 0, { policy: policy.onOutage })
      result.observe(size, remembered)
    }
    meter.addBatchObservableCallback(observe, observables)
    return () => { meter.removeBatchObservableCallback(observe, observables) }
  }

  #endCall (attributes: Attributes, operation: StoreOperation, how: StoreCallEnd, started: number): void {
    this.#storeDuration.record((performance.now() - started) / 1000, how === 'ok' ? attributes : { operation, outcome: how })
    if (how !== 'ok') this.#storeErrors.add(1, { operation, error: how })
  }

  #attributesOf (operation: StoreOperation): Attributes {
    let attributes = this.#operations.get(operation)
    if (attributes === undefined) {
      attributes = { operation, outcome: 'ok' }
      this.#operations.set(operation, attributes)
    }
    return attributes
  }
}

/** A store call's span ends with its outcome: an error's status names only how it ended, never the error's text. */
function endSpan (api: Api, span: Span, how: StoreCallEnd): void {
  if (how !== 'ok') span.setAttribute('outcome', how).setStatus({ code: api.SpanStatusCode.ERROR, message: how })
  span.end()
}

/**
 * The plugin's telemetry: through the app's OpenTelemetry API, to the global providers or
 * those the `telemetry` option gives (checked at resolution). Undefined with `telemetry:
 * false`, or when the API is not installed (then an option naming providers is refused).
 */
export async function loadTelemetry (
  option: TelemetryOptions | false | undefined, importApi: () => Promise<Api> = async () => await import('@opentelemetry/api')
): Promise<Telemetry | undefined> {
  if (option === false) return undefined
  let api: Api
  try {
    api = await importApi()
  } catch {
    if (option === undefined) return undefined
    return fail('telemetry', 'needs @opentelemetry/api installed beside the plugin (npm install @opentelemetry/api)')
  }
  const meterProvider = option?.meterProvider ?? api.metrics.getMeterProvider()
  const tracerProvider = option?.tracerProvider ?? api.trace.getTracerProvider()
  return new Telemetry(api, meterProvider as MeterProvider, tracerProvider as TracerProvider)
}
