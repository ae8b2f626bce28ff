// The browser client of fastify-token-sessions: silent refresh for the cookie transport.
// The tokens live in httpOnly cookies this code never sees; it learns what the server
// thinks from the plugin's error codes (./codes.ts) and keeps the tabs of one origin in
// step (./tabs.ts).
import { REFUSED_CODE, RENEWABLE_CODES, REFRESH_END_CODES, RETRY_STATUSES, SESSION_END_CODES, STEP_UP_CODE, type SessionEndReason } from './codes.js'
import type { DpopProver } from './dpop.js'
import { TIMED_OUT, Tabs, WAITED, type SharedState } from './tabs.js'

export { RENEWABLE_CODES, REFRESH_END_CODES, RETRY_STATUSES, SESSION_END_CODES, STEP_UP_CODE, type SessionEndReason }

/** How a session's end reached this tab. */
export interface SessionEndDetail {
  /** The plugin's error code that ended it, when a response did. */
  code: string | undefined
  /** Whether another tab saw the end first and told this one. */
  otherTab: boolean
}

/** What `onRefresh` hears: the new access token's expiry. */
export interface RefreshDetail {
  /** When the access token expires, in ms since the epoch (0: unknown). */
  expiresAt: number
  /** Whether another tab refreshed (or logged in) and told this one. */
  otherTab: boolean
  /** Whether the change was a login (`started()` in another tab), not a refresh. */
  started: boolean
}

/** What `onStepUp` hears: what the route asks for, from its `WWW-Authenticate` challenge. */
export interface StepUpDetail {
  /** The most seconds since the login the route accepts (`max_age`), when it says. */
  maxAge: number | undefined
  /** The classes of authentication the route accepts (`acr_values`), any one of them; empty when it names none. */
  acrValues: string[]
}

export interface SessionClientOptions {
  /** The plugin's refresh route, e.g. `/auth/refresh`. */
  refreshPath: string
  /** The plugin's logout route, used by `logout()` without an argument, e.g. `/auth/logout`. */
  logoutPath?: string
  /**
   * The plugin's anti-CSRF header (its `csrfHeader` option), sent on every request that is
   * not GET, HEAD or OPTIONS, and on the refresh. Default `X-Requested-With`.
   */
  csrfHeader?: string
  /** The `credentials` of requests that set none. Default `same-origin`. */
  credentials?: RequestCredentials
  /** The fetch to wrap. Default the page's `fetch`, looked up at each call. */
  fetch?: typeof fetch
  /**
   * Names the lock, the channel and the storage key the tabs share: one per session kind
   * on an origin. Default `fts-session`.
   */
  name?: string
  /**
   * How long a refresh request may take before it counts as lost, in ms. Default 5,000.
   * Keep it well under the server's `reuseGrace` (10 s by default): the lost refresh is sent
   * again, and only within that window does the server answer it with the same successor.
   */
  refreshTimeout?: number
  /** How long a tab waits for another tab's refresh before it refreshes itself, in ms. Default 10,000. */
  lockTimeout?: number
  /** How often a refresh (or an idempotent request) is retried after a 429, a 503 or a lost answer. Default 5. */
  retries?: number
  /** The longest Retry-After honoured, in seconds; a longer one is not waited for. Default 10. */
  maxRetryAfter?: number
  /**
   * A DPoP prover (`fastify-token-sessions/client/dpop`): each refresh then carries a proof
   * by its key, which the server requires of a session bound at login. A server nonce it
   * asks for is learnt and the refresh sent again.
   */
  dpop?: Pick<DpopProver, 'proof' | 'seen'> | undefined
  /** Called once when the session ends, in every tab. */
  onSessionEnd?: (reason: SessionEndReason, detail: SessionEndDetail) => void
  /** Called after each refresh, this tab's or another's, and after a login in another tab. */
  onRefresh?: (detail: RefreshDetail) => void
  /**
   * Called when a route needs a more recent or stronger login than the session's (401
   * `FTS_STEP_UP_REQUIRED`): show the app's re-authentication form, send it (e.g. to the
   * example app's `/auth/reauthenticate`) and resolve with the answer's body (`{ expiresIn }`);
   * the request is then sent again, once. Resolve `false` when the user gives up: the
   * request's 401 is handed back. One call for the page and for all tabs: a tab whose
   * request fell short while another tab re-authenticated sends it again without asking.
   * Without it, the 401 is handed back untouched. A refresh is never tried for it.
   */
  onStepUp?: (detail: StepUpDetail) => Promise<{ expiresIn?: unknown } | false>
}

/** A request's answer, as `recover` needs it (from fetch, axios, ky or another client). */
export interface Outcome {
  /** The request's method. */
  method: string
  /** The answer's status. */
  status: number
  /** The `code` of its JSON body, if any. */
  code?: string | undefined
  /** Its `Retry-After` header, if any. */
  retryAfter?: string | null | undefined
  /** `client.generation` read just before the request was sent. */
  generation: number
  /** How many times this request was sent again already (0 the first time). */
  attempt: number
  /** False when the body cannot be sent again (a stream): the request is never retried. Default true. */
  replayable?: boolean
  /** The answer's `WWW-Authenticate` header: what a step-up asks for. */
  challenge?: string | null | undefined
}

export interface SessionClient {
  /**
   * `fetch`, with silent refresh: a 401 whose code a refresh may cure refreshes (once for
   * the page, and once for all tabs) and sends the request again; a 401 that ends the
   * session ends it; any other answer, an app's own 401 included, is returned untouched.
   */
  fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>
  /**
   * Decides what to do with a request's answer, for wrapping a client other than fetch
   * (see docs/browsers.md for axios and ky): true means send the request again. It refreshes
   * when a refresh may cure the answer, ends the session when the answer says it is over,
   * and waits out a 429 or 503 of an idempotent request.
   */
  recover: (outcome: Outcome) => Promise<boolean>
  /** The headers a request with this method needs (the anti-CSRF header for a state change). */
  headers: (method: string) => Record<string, string>
  /** Counts the changes of the session (logins, refreshes, ends) in any tab; read it before each request. */
  readonly generation: number
  /** Whether this tab believes a session is on. */
  readonly active: boolean
  /** When the access token expires, in ms since the epoch (0: unknown). */
  readonly expiresAt: number
  /**
   * Tells the client (and every tab) that a login succeeded: pass the login's answer
   * (`{ expiresIn }`) so that the access token is refreshed shortly before it expires.
   */
  started: (answer?: { expiresIn?: unknown }) => void
  /**
   * Tells the client (and every tab) that the session ended another way, e.g. an app
   * route that ended the current session (`DELETE <prefix>/sessions/:id` of this device).
   */
  ended: (reason?: SessionEndReason) => void
  /** Refreshes now (shared with any refresh already running). Resolves true when the session goes on. */
  refresh: () => Promise<boolean>
  /**
   * POSTs to the logout route (`path`, default `logoutPath`; e.g. the logout-all route)
   * and, unless the server could not do it (a 5xx, no answer), ends the session in every
   * tab with `logged-out`. Answers the server's response.
   */
  logout: (path?: string) => Promise<Response>
  /** Removes the client's timers and listeners. */
  close: () => void
}

/** Methods a retry cannot do twice (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])
/** Methods that change nothing, so the plugin checks no anti-CSRF header on them. */
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])
/** The proactive refresh runs this long before the access token expires, at most a quarter of its lifetime. */
const MARGIN_MS = 60_000
/** After a proactive refresh that did not renew the token here, the next one waits this long. */
const PAUSE_MS = 5_000
/**
 * After a wake-up (or a timer that fired late: the page slept or was frozen), the proactive
 * refresh waits this long, plus up to as much again at random: the other tabs' messages,
 * queued while this one slept, arrive first, and tabs waking together do not all try.
 */
const SETTLE_MS = 500
/** How long a tab waits for another tab's re-authentication (a user typing a password). */
const STEP_UP_WAIT_MS = 600_000
/** A timer longer than this fires at once (setTimeout takes a signed 32-bit delay). */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * A refresh's end: done (here or in another tab), the session ended (or none was on), or
 * the failure to hand back (a 503 that outlasted its retries).
 */
type Renewal = boolean | Response

interface PageGlobals {
  document?: { visibilityState?: string, addEventListener: (type: string, listener: () => void) => void, removeEventListener: (type: string, listener: () => void) => void }
  addEventListener?: (type: string, listener: () => void) => void
  removeEventListener?: (type: string, listener: () => void) => void
}
const page = globalThis as PageGlobals

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** The `code` of a JSON error body ('' for none), read from a copy: the caller still reads the body. */
async function codeOf (response: Response): Promise<string> {
  const body = await response.clone().json().catch(() => null)
  return typeof body?.code === 'string' ? body.code : ''
}

/**
 * Creates the page's session client. One per page and session kind.
 *
 * @example
 * ```js
 * import { createSessionClient } from 'fastify-token-sessions/client'
 *
 * const session = createSessionClient({
 *   refreshPath: '/auth/refresh',
 *   logoutPath: '/auth/logout',
 *   onSessionEnd: (reason) => showLogin(reason)
 * })
 * const answer = await session.fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
 * if (answer.ok) session.started(await answer.json())
 * const me = await (await session.fetch('/me')).json()
 * ```
 */
export function createSessionClient (options: SessionClientOptions): SessionClient {
  const csrf = options.csrfHeader ?? 'X-Requested-With'
  const credentials = options.credentials ?? 'same-origin'
  const refreshTimeout = options.refreshTimeout ?? 5000
  const lockTimeout = options.lockTimeout ?? 10_000
  const retries = options.retries ?? 5
  const maxRetryAfter = (options.maxRetryAfter ?? 10) * 1000
  const send = async (input: RequestInfo | URL, init: RequestInit): Promise<Response> => await (options.fetch ?? fetch)(input, init)
  const { dpop } = options
  /**
   * The plugin's own state changes (refresh, logout): no body, the anti-CSRF header, never
   * cached, and a DPoP proof when there is a prover (a bound session's refresh cookie
   * ends it only with one, as it refreshes it).
   */
  const post = async (path: string, signal?: AbortSignal): Promise<Response> => {
    const sent = headers('POST')
    if (dpop) sent.DPoP = await dpop.proof('POST', new URL(path, location.href).href)
    const response = await send(path, { method: 'POST', headers: sent, credentials, cache: 'no-store', signal: signal ?? null })
    dpop?.seen(response)
    return response
  }

  /** This tab's view: the last change it knows of, whether a session is on (undefined: not known yet). */
  let state: SharedState = { s: 0, a: false, e: 0, l: 0 }
  let known = false
  /** Whether the console was told of a refused refresh. */
  let warned = false
  let inflight: Promise<Renewal> | undefined
  let stepping: Promise<boolean> | undefined
  /** The generation a step-up made here: a request sent with it that still falls short is not stepped up again. */
  let steppedAt = -1
  let timer: ReturnType<typeof setTimeout> | undefined
  let notBefore = 0
  /** When the proactive timer is due (ms since the epoch). */
  let due = 0

  const hidden = (): boolean => page.document?.visibilityState === 'hidden'

  /** Takes in a newer state; `otherTab` when another tab sent it. */
  function adopt (next: SharedState, otherTab: boolean, code?: string): void {
    if (known && next.s <= state.s) return
    const wasOn = state.a
    state = next
    known = true
    if (next.a && otherTab) options.onRefresh?.({ expiresAt: next.e, otherTab, started: !wasOn })
    if (!next.a && wasOn) options.onSessionEnd?.(next.r ?? 'logged-out', { code, otherTab })
    schedule()
  }

  /** A change made here: told to every tab, then taken in. */
  function change (on: boolean, expiresIn?: unknown, reason?: SessionEndReason, code?: string): void {
    const seconds = Number(expiresIn)
    const lifetime = on && seconds > 0 ? seconds * 1000 : 0
    const next: SharedState = { s: Math.max(state.s, tabs.read()?.s ?? 0) + 1, a: on, e: lifetime > 0 ? Date.now() + lifetime : 0, l: lifetime }
    if (reason !== undefined) next.r = reason
    tabs.write(next)
    adopt(next, false, code)
  }

  /** Catches up with a note another tab left while this one missed the message (asleep, frozen, cached). */
  function sync (): void {
    const note = tabs.read()
    if (note !== undefined) adopt(note, true)
  }

  const tabs = new Tabs(options.name ?? 'fts-session', (note) => adopt(note, true))

  /** The wait a 429 or 503 asks for (ms), or undefined when it is not to be retried. */
  function retryDelay (status: number, header: string | null | undefined, attempt: number): number | undefined {
    if (!RETRY_STATUSES.includes(status) || attempt >= retries) return undefined
    // Seconds, or an HTTP date; none: a second. Garbage (NaN) and a wait too long: no retry.
    const seconds = Number(header ?? 1)
    const ms = Math.max(0, Number.isNaN(seconds) ? Date.parse(String(header)) - Date.now() : seconds * 1000)
    return ms <= maxRetryAfter ? ms : undefined
  }

  /** One refresh request, retried after a 429/503 and after a lost answer. Call it holding the lock. */
  async function rotate (generation: number, attempt = 0): Promise<Renewal> {
    sync()
    // Another tab renewed after the failed request was sent: its cookies are ours.
    if (state.s > generation) return state.a
    let response: Response
    try {
      response = await post(options.refreshPath, AbortSignal.timeout(refreshTimeout))
    } catch (error) {
      // No answer (the network, a timeout): the server may have rotated anyway, and the
      // cookie still holds the token it rotated; sent again within the server's reuse
      // grace window, that token gets the same successor.
      if (attempt >= retries) throw error
      await sleep(250 * 2 ** attempt)
      return await rotate(generation, attempt + 1)
    }
    if (response.ok) {
      // Without a body, no expiry is known: no proactive refresh until the next one.
      const body = await response.json().catch(() => null)
      change(true, body?.expiresIn)
      options.onRefresh?.({ expiresAt: state.e, otherTab: false, started: false })
      return true
    }
    // The plugin's 403: it refuses this page's refreshes (its origin, the anti-CSRF header),
    // and will refuse every retry: the session is over here, and the console says why.
    // Another 403 (a proxy's, a bot challenge, maybe passing) is the caller's answer: ending
    // the session in every tab for it would log the user out everywhere.
    const refused = response.status === 403 && await codeOf(response) === REFUSED_CODE
    if (response.status === 401 || refused) {
      const code = await codeOf(response)
      if (refused && !warned) {
        warned = true
        console.warn(`fastify-token-sessions/client: the refresh was refused (403 ${code}); the session ends. Check the server's publicOrigin and allowedOrigins against this page's origin and its csrfHeader against this client's; see docs/troubleshooting.md#fts_csrf_rejected`)
      }
      // The cookie is gone because a tab of this browser logged out: the note says so.
      sync()
      if (state.a || !known) change(false, undefined, refused ? 'refused' : SESSION_END_CODES[code] ?? REFRESH_END_CODES[code] ?? 'invalid', code || undefined)
      return false
    }
    // The server wants its DPoP nonce, which the prover has just learnt: at once.
    if (response.status === 400 && attempt < retries && await codeOf(response) === 'FTS_DPOP_NONCE_REQUIRED') return await rotate(generation, attempt + 1)
    const delay = retryDelay(response.status, response.headers.get('retry-after'), attempt)
    if (delay === undefined) return response
    await sleep(delay)
    return await rotate(generation, attempt + 1)
  }

  /**
   * The page's one refresh: joined by every caller while it runs. Across tabs, one at a
   * time: a tab that had to wait for another's refresh answers true (retry with the
   * cookies the other tab left: if they fail too, the retry's 401 comes back here).
   */
  async function renew (generation: number): Promise<Renewal> {
    inflight ??= (async () => {
      try {
        const result = await tabs.exclusive(async () => await rotate(generation), lockTimeout)
        if (result === WAITED) {
          sync()
          return state.a || !known
        }
        // The holder hangs (a frozen tab): refresh unlocked; the grace window covers a race.
        return result === TIMED_OUT ? await rotate(generation) : result
      } finally {
        inflight = undefined
      }
    })()
    return await inflight
  }

  /** The proactive refresh: shortly before the access token expires, while the page is visible. */
  function schedule (): void {
    clearTimeout(timer)
    if (!state.a || state.e === 0 || hidden()) return
    due = Math.max(state.e - Math.min(MARGIN_MS, state.l / 4), notBefore)
    timer = setTimeout(tick, Math.min(Math.max(due - Date.now(), 0), MAX_TIMER_MS))
  }

  const settle = (): void => {
    notBefore = Date.now() + SETTLE_MS * (1 + Math.random())
  }

  function tick (): void {
    if (Date.now() - due > 1000) {
      // Late: the page slept. Look again once the other tabs' news is in.
      settle()
      return schedule()
    }
    const before = state.s
    // Another tab refreshed and its message is late: the note rescheduled the timer.
    sync()
    if (state.s !== before) return
    renew(before).catch(() => false).then(() => {
      // Not renewed here (another tab did and its message is late, or a failure): look
      // again a little later, not at once.
      if (state.s === before) notBefore = Date.now() + PAUSE_MS
      schedule()
    })
  }

  /** Waking (visible again, restored from the back/forward cache, resumed from frozen): one look, no burst. */
  const wake = (): void => {
    settle()
    sync()
    schedule()
  }
  page.document?.addEventListener('visibilitychange', wake)
  page.document?.addEventListener('resume', wake)
  page.addEventListener?.('pageshow', wake)
  page.addEventListener?.('online', wake)
  // What the tabs knew before this page opened (heard silently: nothing changed).
  const note = tabs.read()
  if (note !== undefined) {
    state = note
    known = true
    schedule()
  }

  /**
   * A step-up's 401: sent again after the app's re-authentication (one for the page, and
   * for all tabs), or after one another tab made since the request was sent.
   */
  async function stepUp (outcome: Outcome, replayable: boolean): Promise<boolean> {
    const { generation } = outcome
    const challenge = outcome.challenge ?? ''
    const ask = options.onStepUp
    // The retry of a request this step-up was for: it still falls short (another class).
    if (!ask || !replayable || outcome.attempt > 2 || (outcome.attempt > 0 && generation === steppedAt)) return false
    if (state.s > generation) return true
    stepping ??= (async () => {
      try {
        const result = await tabs.exclusive(async () => {
          sync()
          if (state.s > generation) return true
          const age = /max_age="?(\d+)/.exec(challenge)?.[1]
          const answer = await ask({ maxAge: age === undefined ? undefined : Number(age), acrValues: /acr_values="([^"]*)"/.exec(challenge)?.[1]?.split(' ') ?? [] })
          if (answer === false) return false
          change(true, answer.expiresIn)
          steppedAt = state.s
          return true
        }, STEP_UP_WAIT_MS, 'step-up')
        if (result !== WAITED) return result === true
        sync()
        return state.s > generation
      } finally {
        stepping = undefined
      }
    })()
    return await stepping
  }

  /** `recover`, answering the refresh's failure (a Response) for `fetch` to hand back instead. */
  async function decide (outcome: Outcome): Promise<Renewal> {
    const { status, code = '', attempt } = outcome
    const replayable = outcome.replayable !== false
    if (status === 401) {
      if (code === STEP_UP_CODE) return await stepUp(outcome, replayable)
      const reason = SESSION_END_CODES[code]
      if (reason !== undefined) {
        if (state.a) change(false, undefined, reason, code)
        return false
      }
      // Not the plugin's (an app's own 401), no session, or tried twice: one round may only
      // have waited for another tab's refresh, the next one refreshes.
      if (!RENEWABLE_CODES.includes(code) || (known && !state.a) || attempt >= 2) return false
      // Sent with a token older than the current one: the retry carries the new one.
      if (state.s > outcome.generation) return replayable
      const renewed = await renew(outcome.generation)
      return renewed === true ? replayable : renewed
    }
    const delay = IDEMPOTENT.has(outcome.method.toUpperCase()) && replayable ? retryDelay(status, outcome.retryAfter, attempt) : undefined
    if (delay === undefined) return false
    await sleep(delay)
    return true
  }

  function headers (method: string): Record<string, string> {
    return SAFE.has(method.toUpperCase()) ? {} : { [csrf]: 'fetch' }
  }

  async function wrappedFetch (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
    const request = input instanceof Request ? input : undefined
    const method = (init.method ?? request?.method ?? 'GET').toUpperCase()
    const sent = new Headers(init.headers ?? request?.headers)
    for (const [name, value] of Object.entries(headers(method))) if (!sent.has(name)) sent.set(name, value)
    const ready: RequestInit = { ...init, headers: sent }
    if (request === undefined) ready.credentials ??= credentials
    const replayable = !(init.body instanceof ReadableStream)
    const attempt = async (count: number): Promise<Response> => {
      const generation = state.s
      const response = await send(request?.clone() ?? input, ready)
      const code = response.status === 401 ? await codeOf(response) : undefined
      const next = await decide({ method, status: response.status, code, retryAfter: response.headers.get('retry-after'), challenge: response.headers.get('www-authenticate'), generation, attempt: count, replayable })
      // A refresh that could not be made (a 503 that outlasted its retries): its answer
      // says why, and the session goes on.
      if (next === true) return await attempt(count + 1)
      return next === false ? response : next
    }
    return await attempt(0)
  }

  return {
    fetch: wrappedFetch,
    recover: async (outcome) => await decide(outcome) === true,
    headers,
    get generation () { return state.s },
    get active () { return state.a },
    get expiresAt () { return state.e },
    started: (answer) => change(true, answer?.expiresIn),
    ended: (reason = 'logged-out') => {
      if (state.a) change(false, undefined, reason)
    },
    refresh: async () => {
      if (!state.a && known) return false
      return await renew(state.s) === true
    },
    logout: async (path = options.logoutPath) => {
      if (path === undefined) throw new TypeError('logout() needs a path, or the logoutPath option')
      let response = await post(path)
      // The server wants its DPoP nonce, which the prover has just learnt: once more with it.
      if (response.status === 400 && await codeOf(response) === 'FTS_DPOP_NONCE_REQUIRED') response = await post(path)
      // Done, or nothing left to end (the cookie is gone): either way the session is over here.
      if (response.ok || response.status === 401) change(false, undefined, 'logged-out')
      return response
    },
    close: () => {
      clearTimeout(timer)
      tabs.close()
      page.document?.removeEventListener('visibilitychange', wake)
      page.document?.removeEventListener('resume', wake)
      page.removeEventListener?.('pageshow', wake)
      page.removeEventListener?.('online', wake)
    }
  }
}
