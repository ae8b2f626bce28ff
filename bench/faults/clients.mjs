// The simulated clients of a fault-injection run. Each client belongs to a user (two clients
// per user, as a phone and a laptop), keeps at most one session, and loops until its
// deadline or its operation budget: log in, call `authenticate` on any instance, refresh
// (alone, or racing a second refresh of the same token on another instance), present a
// token it has since rotated (reuse), log out, log out everywhere, end its other client's
// session, end every other session as a password change does, and keep trying the access
// tokens of sessions it saw end, on every instance, for a few seconds. Every choice comes
// from a seeded generator, so a seed repeats a run's requests (not their timing). Each
// operation is recorded as bench/faults/history.mjs describes it.
import { createHash } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

/** @typedef {import('./history.mjs').Operation} Operation */
/** @typedef {import('./history.mjs').HttpAnswer} HttpAnswer */
/** @typedef {import('./history.mjs').NoAnswer} NoAnswer */

/** A request gets no answer after this long: the answer is recorded as a timeout. */
export const REQUEST_TIMEOUT_MS = 5000
/** How long a client keeps trying the access token of a session it saw end. */
const GHOST_MS = 4000
/** The longest pause between two operations of one client. */
const MAX_PAUSE_MS = 40

/**
 * A small seeded generator (mulberry32): the same seed gives the same choices.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function seeded (seed) {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D2B79F5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** A short, opaque id of a token (the history never holds tokens). @param {string} token */
function tokenId (token) {
  return createHash('sha256').update(token).digest('base64url').slice(0, 16)
}

/** A token's claims (read, not verified: the server verified it). @param {string} token */
function claimsOf (token) {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString())
}

/**
 * The id of a refresh token: its `jti`, which names it in the server's rotation (a replay
 * within the grace window gets the same successor, signed anew). An access token has none
 * by default: its id is a digest of the token.
 * @param {string} token
 */
function refreshId (token) {
  return String(claimsOf(token).jti)
}

/**
 * @typedef {object} Tokens
 * @property {string} sessionId
 * @property {string} access
 * @property {string} refresh
 */

/**
 * The recorder and the instances' addresses, shared by every client of a run.
 * @typedef {object} Run
 * @property {() => number} now the harness's monotonic clock (ms since the run began)
 * @property {Operation[]} operations
 * @property {{ name: string, port: number }[]} instances
 * @property {Map<string, Set<string>>} sessionsOf the sessions each user's clients hold (for revoke-session)
 * @property {Agent} agent
 */

/**
 * Sends one request and waits for its answer, at most {@link REQUEST_TIMEOUT_MS}.
 * @param {Run} run
 * @param {number} port
 * @param {string} method
 * @param {string} path
 * @param {{ body?: object, bearer?: string }} what
 * @returns {Promise<{ answer: HttpAnswer | NoAnswer, body: any }>}
 */
async function send (run, port, method, path, what) {
  const payload = what.body === undefined ? undefined : JSON.stringify(what.body)
  /** @type {Record<string, string>} */
  const headers = {}
  if (payload !== undefined) headers['content-type'] = 'application/json'
  if (what.bearer !== undefined) headers.authorization = `Bearer ${what.bearer}`
  return await new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: run.agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      /** @type {Buffer[]} */
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('error', () => resolve({ answer: { error: 'connection' }, body: undefined }))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let body
        try { body = text === '' ? undefined : JSON.parse(text) } catch { body = undefined }
        /** @type {HttpAnswer} */
        const answer = { status: res.statusCode ?? 0 }
        if (typeof body?.code === 'string') answer.code = body.code
        const retryAfter = res.headers['retry-after']
        if (retryAfter !== undefined) answer.retryAfter = Number(retryAfter)
        resolve({ answer, body })
      })
    })
    req.on('timeout', () => { req.destroy(); resolve({ answer: { error: 'timeout' }, body: undefined }) })
    req.on('error', () => resolve({ answer: { error: 'connection' }, body: undefined }))
    req.end(payload)
  })
}

/** One simulated client. */
export class Client {
  /** @type {Tokens | undefined} */
  #session
  /** Refresh tokens this client has since rotated, newest last. @type {{ refresh: string, sessionId: string }[]} */
  #rotated = []
  /** Access tokens of sessions this client saw end, tried until `until`. @type {{ access: string, sessionId: string, until: number }[]} */
  #ghosts = []
  #count = 0

  /**
   * @param {Run} run
   * @param {string} name
   * @param {string} userId
   * @param {() => number} random
   */
  constructor (run, name, userId, random) {
    this.run = run
    this.name = name
    this.userId = userId
    this.random = random
  }

  /** A random instance. */
  #instance () {
    return this.run.instances[Math.floor(this.random() * this.run.instances.length)]
  }

  /**
   * Sends a request to an instance and records it.
   * @param {import('./history.mjs').OperationKind} kind
   * @param {{ name: string, port: number }} instance
   * @param {string} method
   * @param {string} path
   * @param {{ body?: object, bearer?: string }} what
   * @param {import('./history.mjs').RequestFacts} facts
   */
  async #operation (kind, instance, method, path, what, facts) {
    const start = this.run.now()
    const { answer, body } = await send(this.run, instance.port, method, path, what)
    const end = this.run.now()
    /** @type {Tokens | undefined} */
    let tokens
    if ('status' in answer && answer.status === 200 && typeof body?.accessToken === 'string' && typeof body?.refreshToken === 'string') {
      tokens = { sessionId: String(claimsOf(body.accessToken).sid), access: body.accessToken, refresh: body.refreshToken }
      answer.newTokens = { sessionId: tokens.sessionId, accessTokenId: tokenId(tokens.access), refreshTokenId: refreshId(tokens.refresh) }
    }
    this.#count++
    this.run.operations.push({ id: `${this.name}.${this.#count}`, client: this.name, kind, instance: instance.name, start, end, request: facts, answer })
    return { answer, tokens }
  }

  /** The session ends for this client: its access token becomes a ghost to try elsewhere. */
  #ended () {
    const session = this.#session
    if (session === undefined) return
    this.#ghosts.push({ access: session.access, sessionId: session.sessionId, until: this.run.now() + GHOST_MS })
    this.run.sessionsOf.get(this.userId)?.delete(session.sessionId)
    this.#session = undefined
    this.#rotated = []
  }

  /** @param {HttpAnswer | NoAnswer} answer */
  #settle (answer) {
    if ('status' in answer && answer.status === 401) this.#ended()
  }

  async #login () {
    const { tokens } = await this.#operation('login', this.#instance(), 'POST', '/login', { body: { userId: this.userId } }, { userId: this.userId })
    if (tokens === undefined) return
    this.#session = tokens
    const held = this.run.sessionsOf.get(this.userId) ?? new Set()
    held.add(tokens.sessionId)
    this.run.sessionsOf.set(this.userId, held)
  }

  /** @param {Tokens} session */
  async #authenticate (session) {
    const { answer } = await this.#operation('authenticate', this.#instance(), 'GET', '/me', { bearer: session.access }, { sessionId: session.sessionId, accessTokenId: tokenId(session.access) })
    this.#settle(answer)
  }

  /**
   * Refreshes with `refresh`, on one instance or, racing, on two at once. A 503 is retried
   * after its Retry-After, at most twice, with the same token, as a client should.
   * @param {string} refresh
   * @param {string} sessionId
   * @param {boolean} racing
   */
  async #refresh (refresh, sessionId, racing) {
    const facts = { sessionId, refreshTokenId: refreshId(refresh) }
    const one = () => this.#operation('refresh', this.#instance(), 'POST', '/auth/refresh', { body: { refreshToken: refresh } }, facts)
    for (let attempt = 0; attempt < 3; attempt++) {
      const results = await Promise.all(racing ? [one(), one()] : [one()])
      const issued = results.find((r) => r.tokens !== undefined)?.tokens
      if (issued !== undefined) {
        if (this.#session?.sessionId === issued.sessionId && this.#session.refresh !== issued.refresh) {
          this.#rotated.push({ refresh: this.#session.refresh, sessionId: issued.sessionId })
          if (this.#rotated.length > 4) this.#rotated.shift()
          this.#session = issued
        }
        return
      }
      const unavailable = results.find((r) => 'status' in r.answer && r.answer.status === 503)
      if (unavailable === undefined || !('status' in unavailable.answer)) {
        for (const r of results) this.#settle(r.answer)
        return
      }
      await sleep(1000 * (unavailable.answer.retryAfter ?? 1))
    }
  }

  /** Presents a refresh token this client has since rotated: within the grace window it gets the same successor, past it the session ends. */
  async #reuse () {
    const old = this.#rotated[Math.floor(this.random() * this.#rotated.length)]
    if (old === undefined) return
    const { answer } = await this.#operation('refresh', this.#instance(), 'POST', '/auth/refresh', { body: { refreshToken: old.refresh } }, { sessionId: old.sessionId, refreshTokenId: refreshId(old.refresh) })
    if ('status' in answer && answer.status === 401) this.#ended()
  }

  /** @param {Tokens} session */
  async #logout (session) {
    const { answer } = await this.#operation('logout', this.#instance(), 'POST', '/auth/logout', { body: { refreshToken: session.refresh } }, { sessionId: session.sessionId, refreshTokenId: refreshId(session.refresh) })
    if ('status' in answer && (answer.status === 204 || answer.status === 401)) this.#ended()
  }

  /** @param {Tokens} session */
  async #logoutAll (session) {
    const { answer } = await this.#operation('logout-all', this.#instance(), 'POST', '/auth/logout-all', { bearer: session.access }, { sessionId: session.sessionId, userId: this.userId })
    if ('status' in answer && (answer.status === 204 || answer.status === 401)) this.#ended()
  }

  /** Ends a session of the same user held by its other client. @param {Tokens} session */
  async #revokeOther (session) {
    const others = [...(this.run.sessionsOf.get(this.userId) ?? [])].filter((id) => id !== session.sessionId)
    const target = others[Math.floor(this.random() * others.length)]
    if (target === undefined) return
    const { answer } = await this.#operation('revoke-session', this.#instance(), 'DELETE', `/auth/sessions/${target}`, { bearer: session.access }, { sessionId: target })
    // 404: the other session had already ended; only a 401 ends this client's own.
    this.#settle(answer)
  }

  /** @param {Tokens} session */
  async #revokeAll (session) {
    const { answer } = await this.#operation('revoke-all', this.#instance(), 'POST', '/revoke-all', { bearer: session.access }, { sessionId: session.sessionId, userId: this.userId, exceptSessionId: session.sessionId })
    this.#settle(answer)
  }

  /** Tries the access token of a session seen to end, on a random instance. */
  async #haunt () {
    const now = this.run.now()
    this.#ghosts = this.#ghosts.filter((g) => g.until > now)
    const ghost = this.#ghosts[Math.floor(this.random() * this.#ghosts.length)]
    if (ghost === undefined) return
    await this.#operation('authenticate', this.#instance(), 'GET', '/me', { bearer: ghost.access }, { sessionId: ghost.sessionId, accessTokenId: tokenId(ghost.access) })
  }

  /** One step: an action chosen by weight. */
  async #step () {
    const session = this.#session
    if (session === undefined) {
      if (this.#ghosts.length > 0 && this.random() < 0.5) return await this.#haunt()
      return await this.#login()
    }
    const roll = this.random()
    if (roll < 0.40) return await this.#authenticate(session)
    if (roll < 0.52) return await this.#haunt()
    if (roll < 0.70) return await this.#refresh(session.refresh, session.sessionId, false)
    if (roll < 0.78) return await this.#refresh(session.refresh, session.sessionId, true)
    if (roll < 0.82) return await this.#reuse()
    if (roll < 0.86) return await this.#logout(session)
    if (roll < 0.875) return await this.#logoutAll(session)
    if (roll < 0.90) return await this.#revokeOther(session)
    if (roll < 0.91) return await this.#revokeAll(session)
    return await this.#authenticate(session)
  }

  /**
   * Runs until `deadline()` (harness clock; it moves once the faults are over) or
   * `maxOperations` recorded by this client.
   * @param {() => number} deadline
   * @param {number} maxOperations
   */
  async loop (deadline, maxOperations) {
    while (this.run.now() < deadline() && this.#count < maxOperations) {
      await this.#step()
      await sleep(Math.floor(this.random() * MAX_PAUSE_MS))
    }
  }
}

/**
 * Runs `count` clients (two per user) against the instances until `deadline`.
 * @param {Omit<Run, 'sessionsOf' | 'agent'>} shared
 * @param {{ count: number, seed: number, deadline: () => number, maxOperations: number }} plan
 */
export async function runClients (shared, plan) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
  /** @type {Run} */
  const run = { ...shared, sessionsOf: new Map(), agent }
  const clients = Array.from({ length: plan.count }, (_, i) =>
    new Client(run, `c${i}`, `user${Math.floor(i / 2)}`, seeded(plan.seed * 1000 + i)))
  try {
    await Promise.all(clients.map((c) => c.loop(plan.deadline, plan.maxOperations)))
  } finally {
    agent.destroy()
  }
}
