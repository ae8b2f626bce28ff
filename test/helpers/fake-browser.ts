// A browser's globals for the client's unit tests in Node: a clock that moves only when a
// test moves it, a page's visibility and events, local storage and Web Locks. Node's own
// BroadcastChannel is real and reaches every channel of the same name in the process.
// Each test installs one and removes it at teardown.

type Teardown = { teardown: (fn: () => unknown) => void }

interface Timer { at: number, fn: () => void }

const realSetImmediate = setImmediate

/** Lets promises and real I/O callbacks settle (a few turns of the event loop). */
export async function settle (turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => realSetImmediate(resolve))
}

/** setTimeout, clearTimeout and Date.now on a clock of the test's own. */
export class FakeClock {
  now = Date.UTC(2026, 11, 3, 12)
  readonly #timers = new Map<number, Timer>()
  #next = 1

  setTimeout = (fn: () => void, ms = 0): number => {
    const id = this.#next++
    this.#timers.set(id, { at: this.now + Math.max(0, ms), fn })
    return id
  }

  clearTimeout = (id: number | undefined): void => {
    if (id !== undefined) this.#timers.delete(id)
  }

  /** The timers still to fire, by when (ms from now). */
  pending (): number[] {
    return [...this.#timers.values()].map((timer) => timer.at - this.now).sort((a, b) => a - b)
  }

  /** Moves time on by `ms`, firing each timer due on the way, in order, settling after each. */
  async advance (ms: number): Promise<void> {
    const end = this.now + ms
    await settle()
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, timer]) => timer.at <= end).sort(([, a], [, b]) => a.at - b.at)[0]
      if (due === undefined) break
      this.#timers.delete(due[0])
      this.now = Math.max(this.now, due[1].at)
      due[1].fn()
      await settle()
    }
    this.now = end
    await settle()
  }

  /**
   * A machine asleep for `ms`: the clock jumps, and no timer fires on the way (a browser
   * runs them late, after wake-up; `advance(0)` then fires those due).
   */
  sleep (ms: number): void {
    this.now += ms
  }
}

/** Web Locks, as far as the client uses them: exclusive, `ifAvailable`, `signal`. */
export class FakeLocks {
  readonly #held = new Map<string, Promise<void>>()

  isHeld (name: string): boolean {
    return this.#held.has(name)
  }

  async request<T> (name: string, options: { ifAvailable?: boolean, signal?: AbortSignal }, callback: (lock: unknown) => T): Promise<Awaited<T>> {
    if (options.ifAvailable === true && this.#held.has(name)) return await callback(null)
    while (this.#held.has(name)) {
      const signal = options.signal
      signal?.throwIfAborted()
      await Promise.race([
        this.#held.get(name),
        new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason), { once: true }))
      ])
    }
    let release = (): void => {}
    this.#held.set(name, new Promise((resolve) => { release = resolve }))
    try {
      return await callback({ name })
    } finally {
      this.#held.delete(name)
      release()
    }
  }
}

export class FakeStorage {
  readonly items = new Map<string, string>()
  /** Storage off (a policy, some private modes): every call throws, as browsers do. */
  blocked = false

  getItem (key: string): string | null {
    this.#check()
    return this.items.get(key) ?? null
  }

  setItem (key: string, value: string): void {
    this.#check()
    this.items.set(key, String(value))
  }

  #check (): void {
    if (this.blocked) throw new DOMException('The operation is insecure.', 'SecurityError')
  }
}

export interface FakeBrowser {
  clock: FakeClock
  locks: FakeLocks
  storage: FakeStorage
  /** The page's document: its visibility, and the events it sends (`visibilitychange`, `resume`). */
  document: EventTarget & { visibilityState: 'visible' | 'hidden' }
  /** The window's events (`storage`, `pageshow`, `online`). */
  window: EventTarget
  /** What the client wrote to the console as warnings. */
  warnings: string[]
  /** Hides or shows the page, as switching tabs does. */
  setVisible: (visible: boolean) => void
}

/**
 * Installs the fake globals for one test; `locks: false` leaves Web Locks out (an insecure
 * context), `channel: false` BroadcastChannel (an old browser). `fetch` is the page's
 * fetch. Everything is put back at teardown.
 */
export function installFakeBrowser (t: Teardown, options: { locks?: boolean, channel?: boolean, fetch?: typeof fetch } = {}): FakeBrowser {
  const clock = new FakeClock()
  const locks = new FakeLocks()
  const storage = new FakeStorage()
  const document = Object.assign(new EventTarget(), { visibilityState: 'visible' as 'visible' | 'hidden' })
  const window = new EventTarget()
  const warnings: string[] = []
  const global = globalThis as Record<string, unknown>
  const replaced: Record<string, unknown> = {
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    document,
    localStorage: storage,
    navigator: options.locks === false ? {} : { locks },
    addEventListener: window.addEventListener.bind(window),
    removeEventListener: window.removeEventListener.bind(window),
    BroadcastChannel: options.channel === false ? undefined : BroadcastChannel,
    fetch: options.fetch ?? fetch,
    location: new URL('https://app.example/page?x=1')
  }
  const saved = new Map(Object.keys(replaced).map((key) => [key, Object.getOwnPropertyDescriptor(global, key)]))
  for (const [key, value] of Object.entries(replaced)) Object.defineProperty(global, key, { value, configurable: true, writable: true })
  const realNow = Date.now
  Date.now = () => clock.now
  const realWarn = console.warn
  console.warn = (...args: unknown[]) => { warnings.push(args.join(' ')) }
  t.teardown(() => {
    for (const [key, descriptor] of saved) {
      if (descriptor === undefined) Reflect.deleteProperty(global, key)
      else Object.defineProperty(global, key, descriptor)
    }
    Date.now = realNow
    console.warn = realWarn
  })
  return {
    clock,
    locks,
    storage,
    document,
    window,
    warnings,
    setVisible (visible) {
      document.visibilityState = visible ? 'visible' : 'hidden'
      document.dispatchEvent(new Event('visibilitychange'))
    }
  }
}
