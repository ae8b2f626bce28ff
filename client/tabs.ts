// What the tabs of one origin share: a note of the session's state (in local storage, and
// sent to the other tabs at each change) and a lock that lets one tab refresh at a time.
import type { SessionEndReason } from './codes.js'

/** The session's state as every tab sees it. Short names: it is stored and sent at each change. */
export interface SharedState {
  /** Bumped by every change (a login, a refresh, an end), in whichever tab made it. */
  s: number
  /** Whether a session is on. */
  a: boolean
  /** When the access token expires, in ms since the epoch (0: unknown). */
  e: number
  /** The access token's lifetime in ms (0: unknown). */
  l: number
  /** Why the session ended. */
  r?: SessionEndReason
}

/** The parts of the Web Locks API used here (the DOM's types are not assumed). */
interface LockManager {
  request: <T>(name: string, options: { ifAvailable?: boolean, signal?: AbortSignal }, callback: (lock: unknown) => T) => Promise<Awaited<T>>
}

interface Channel {
  onmessage: ((event: { data: unknown }) => void) | null
  postMessage: (message: unknown) => void
  close: () => void
}

/** The browser's globals used here, each checked before use (old browsers, insecure contexts, Node). */
interface Globals {
  navigator?: { locks?: LockManager }
  localStorage?: { getItem: (key: string) => string | null, setItem: (key: string, value: string) => void }
  BroadcastChannel?: new (name: string) => Channel
  addEventListener?: (type: string, listener: (event: { key?: string | null, newValue?: string | null }) => void) => void
  removeEventListener?: (type: string, listener: (event: { key?: string | null, newValue?: string | null }) => void) => void
}

const globals = globalThis as Globals

/** What `exclusive` answers when another tab held the lock: it let go, or the wait timed out. */
export const WAITED = 'waited'
export const TIMED_OUT = 'timed-out'

/** A note, or undefined for anything else (garbage, another version's). */
function note (value: unknown): SharedState | undefined {
  return Number.isSafeInteger((value as SharedState | null)?.s) ? value as SharedState : undefined
}

/** Reads a stored note. */
function parse (text: string | null | undefined): SharedState | undefined {
  try {
    return note(JSON.parse(text ?? ''))
  } catch {
    return undefined
  }
}

/**
 * The tabs of one origin under one `name`. Another tab's note arrives through a
 * `BroadcastChannel` or, where there is none, through the `storage` event of the note in
 * local storage; `onNote` hears each, possibly twice, and possibly one of its own.
 */
export class Tabs {
  readonly #key: string
  readonly #name: string
  readonly #channel: Channel | undefined
  readonly #onStorage: (event: { key?: string | null, newValue?: string | null }) => void
  #warned = false

  constructor (name: string, onNote: (state: SharedState) => void) {
    this.#key = `${name}:session`
    this.#name = name
    const Broadcast = globals.BroadcastChannel
    this.#channel = Broadcast === undefined ? undefined : new Broadcast(name)
    if (this.#channel !== undefined) {
      this.#channel.onmessage = (event) => {
        const state = note(event.data)
        if (state !== undefined) onNote(state)
      }
    }
    this.#onStorage = (event) => {
      const state = event.key === this.#key ? parse(event.newValue) : undefined
      if (state !== undefined) onNote(state)
    }
    globals.addEventListener?.('storage', this.#onStorage)
  }

  /** The last note any tab left (undefined where storage is off or holds none). */
  read (): SharedState | undefined {
    try {
      return parse(globals.localStorage?.getItem(this.#key))
    } catch {
      return undefined
    }
  }

  /** Leaves a note for the tabs open now and for those opened later. */
  write (state: SharedState): void {
    try {
      globals.localStorage?.setItem(this.#key, JSON.stringify(state))
    } catch {
      // Storage off (private mode, a policy): the channel still tells the open tabs.
    }
    this.#channel?.postMessage(state)
  }

  /**
   * Runs `task` while no other tab runs its own under the lock `lock` (`refresh`, or
   * `step-up`). When another tab holds the lock, this tab does not queue a task behind it:
   * it waits until the lock is free (that tab most likely refreshed, or stepped up, the very
   * session this one wanted to) and answers WAITED, or TIMED_OUT after `timeoutMs` (a holder
   * that hangs, or a frozen tab). A lock is never stolen: stealing makes two holders, and
   * tabs that steal from each other loop.
   *
   * Without Web Locks (an insecure context, an old browser) `task` runs at once; tabs
   * racing then rely on the server's reuse grace window (see docs/browsers.md).
   */
  async exclusive<T> (task: () => Promise<T>, timeoutMs: number, lock = 'refresh'): Promise<T | typeof WAITED | typeof TIMED_OUT> {
    const locks = globals.navigator?.locks
    if (locks === undefined) {
      if (!this.#warned) {
        this.#warned = true
        console.warn('fastify-token-sessions/client: Web Locks are unavailable (not a secure context?), so tabs cannot take turns to refresh; tabs refreshing at the same moment rely on the server\'s reuseGrace window, and with reuseGrace 0 such a race ends the session as a token reuse')
      }
      return await task()
    }
    const held = {}
    const name = `${this.#name}:${lock}`
    const result = await locks.request(name, { ifAvailable: true }, (lock) => lock === null ? held : task())
    if (result !== held) return result as T
    try {
      await locks.request(name, { signal: AbortSignal.timeout(timeoutMs) }, () => undefined)
      return WAITED
    } catch {
      return TIMED_OUT
    }
  }

  close (): void {
    this.#channel?.close()
    globals.removeEventListener?.('storage', this.#onStorage)
  }
}
