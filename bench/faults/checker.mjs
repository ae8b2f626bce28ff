// Reads a fault-injection run's history (bench/faults/history.mjs) and reports every
// violation of what the docs promise. Each invariant is one function below, mapped to the
// promise it checks:
//
// a. single-successor: "Racing refreshes (two tabs) within a short grace window share one
//    successor" (README), "with `p` inside the grace window (hand out the same successor
//    again)" (docs/operations.md): a refresh token never yields two different successors,
//    and the same one again only within `reuseGrace`.
// b. reuse-ends-session: "Reuse = theft ... 401 FTS_TOKEN_REUSED (the thief and the owner
//    are both logged out)" and reuse detection revokes like a logout (docs/sessions.md,
//    "Instant revocation across instances"): after a reuse answer, nothing of that session
//    is accepted anywhere past the revocation bound.
// c. revocation-bound: docs/sessions.md "How long a revoked access token can still be
//    accepted" (the policy × feed/store table): the harness passes the bound of the policy
//    and faults in force as `revocationBoundMs`; a request starting past an acknowledged
//    revocation's end + that bound + the instance's event-loop lag around then must be
//    refused.
// d. session-survives: a refresh (or login) answered 200 leaves a working session unless
//    something ended it; the only excused losses are those Redis itself causes, as
//    docs/operations.md "The Redis it needs" says of persistence (a restart without
//    persistence, an asynchronous replica promoted), passed as `excusedLosses` windows and
//    reported as excused with their reason.
// e. no-5xx: "never hang and never 500": a 5xx is a 503 with `Retry-After` (docs/operations.md).
// g. no-hang: "never hang": every request sent to a running instance is answered (the
//    harness gives up after 5 s, 5 times `storeTimeout`; a killed instance's connections
//    fail at once instead).
// f. recovery: "A Redis outage never becomes an outage of every authenticated route": once
//    the last fault has ended, every instance answers again (2xx or an expected 401) within
//    `recoveryMs`, without a restart.
import { codeOf, issuedBy, statusOf } from './history.mjs'

/** @typedef {import('./history.mjs').History} History */
/** @typedef {import('./history.mjs').Operation} Operation */

/**
 * @typedef {'single-successor'|'reuse-ends-session'|'revocation-bound'|'session-survives'|'no-5xx'|'no-hang'|'recovery'} Invariant
 */

/**
 * @typedef {object} Finding
 * @property {Invariant} invariant
 * @property {string} message
 * @property {string[]} operations the ids of the operations involved
 * @property {string} [why] for an excused loss: the reason the history gave
 */

/**
 * @typedef {object} ExcusedLoss
 * @property {number} start the first moment whose acknowledged writes Redis may have lost
 * @property {number} end when the loss happened (the restart, the promotion)
 * @property {string} why
 */

/**
 * @typedef {object} CheckOptions
 * @property {number} revocationBoundMs how long a revoked session's tokens may still pass on another instance, for the policy and faults in force
 * @property {number} reuseGraceMs the server's `reuseGrace`, in ms
 * @property {ExcusedLoss[]} [excusedLosses]
 * @property {number} [recoveryMs] how long after the last fault every instance must answer again (default 10,000)
 */

/**
 * @typedef {object} CheckResult
 * @property {Finding[]} violations
 * @property {Finding[]} excused
 * @property {Record<Invariant, { violations: number, excused: number }>} counts
 */

/** @type {Invariant[]} */
export const INVARIANTS = ['single-successor', 'reuse-ends-session', 'revocation-bound', 'session-survives', 'no-5xx', 'no-hang', 'recovery']

export const DEFAULT_RECOVERY_MS = 10_000

/** Codes of a 401 that a token's or session's lifetime explains: no loss. */
const EXPIRY_CODES = new Set(['FTS_TOKEN_EXPIRED', 'FTS_SESSION_EXPIRED'])
const REUSED = 'FTS_TOKEN_REUSED'

/**
 * Checks a history against every invariant.
 * @param {History} history
 * @param {CheckOptions} options
 * @returns {CheckResult}
 */
export function check (history, options) {
  const sessions = indexSessions(history.operations)
  /** @type {Finding[]} */
  const findings = [
    ...singleSuccessor(history, options),
    ...reuseEndsSession(history, options, sessions),
    ...revocationBound(history, options, sessions),
    ...sessionSurvives(history, options, sessions),
    ...no5xx(history),
    ...noHang(history),
    ...recovery(history, options)
  ]
  const violations = findings.filter((f) => f.why === undefined)
  const excused = findings.filter((f) => f.why !== undefined)
  const counts = /** @type {CheckResult['counts']} */ ({})
  for (const invariant of INVARIANTS) {
    counts[invariant] = {
      violations: violations.filter((f) => f.invariant === invariant).length,
      excused: excused.filter((f) => f.invariant === invariant).length
    }
  }
  return { violations, excused, counts }
}

/**
 * The history indexed once, so that each invariant looks up what concerns it (a run
 * records tens of thousands of operations).
 * @typedef {object} SessionIndex
 * @property {Map<string, string>} userOf session id → user id (from the logins)
 * @property {Map<string, Operation>} loginOf session id → the login that created it
 * @property {Map<string, string[]>} sessionsOfUser user id → the sessions its logins created
 * @property {Map<string, Operation[]>} usesOf session id → the authenticate and refresh operations that presented its tokens
 * @property {Map<string, Operation[]>} byToken access-token id or refresh-token id → the operations that presented it
 * @property {Map<string, Operation[]>} endersOf session id → the operations that may have ended it (see {@link mayHaveEnded})
 */

/**
 * @template V
 * @param {Map<string, V[]>} map
 * @param {string} key
 * @param {V} value
 */
function push (map, key, value) {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

/**
 * @param {Operation[]} operations
 * @returns {SessionIndex}
 */
function indexSessions (operations) {
  /** @type {SessionIndex} */
  const index = { userOf: new Map(), loginOf: new Map(), sessionsOfUser: new Map(), usesOf: new Map(), byToken: new Map(), endersOf: new Map() }
  for (const op of operations) {
    const issued = issuedBy(op.answer)
    if (op.kind === 'login' && issued !== undefined && op.request.userId !== undefined) {
      index.userOf.set(issued.sessionId, op.request.userId)
      index.loginOf.set(issued.sessionId, op)
      push(index.sessionsOfUser, op.request.userId, issued.sessionId)
    }
    const session = sessionOf(op)
    if ((op.kind === 'authenticate' || op.kind === 'refresh') && session !== undefined) push(index.usesOf, session, op)
    const token = op.kind === 'authenticate' ? op.request.accessTokenId : op.kind === 'refresh' ? op.request.refreshTokenId : undefined
    if (token !== undefined) push(index.byToken, token, op)
  }
  for (const op of operations) {
    if (isRevocation(op) && mayHaveTakenEffect(op)) {
      for (const session of endedBy(op, index, true)) push(index.endersOf, session, op)
    }
    const session = sessionOf(op)
    if (session === undefined) continue
    if (codeOf(op.answer) === REUSED || mayHaveBeenReuse(op, index)) push(index.endersOf, session, op)
  }
  return index
}

/**
 * Whether a refresh whose outcome is unknown (no answer, or 503) presented a token that an
 * earlier refresh may already have rotated: the store may have judged it reuse, and ended
 * the session, without the client learning it.
 * @param {Operation} op
 * @param {SessionIndex} index
 */
function mayHaveBeenReuse (op, index) {
  const presented = op.request.refreshTokenId
  if (op.kind !== 'refresh' || is2xx(op) || !mayHaveTakenEffect(op) || presented === undefined) return false
  return (index.byToken.get(presented) ?? []).some((other) => other !== op && other.kind === 'refresh' && other.start < op.start && mayHaveTakenEffect(other))
}

/**
 * Whether an operation may have taken effect: answered 2xx, not answered, or a 503 (the
 * store's answer came after `storeTimeout`: it may have run).
 * @param {Operation} op
 */
function mayHaveTakenEffect (op) {
  const status = statusOf(op.answer)
  return status === undefined || status === 503 || (status >= 200 && status < 300)
}

/**
 * The session an operation used (its own fact, or that of the tokens it presented).
 * @param {Operation} op
 */
function sessionOf (op) {
  return op.request.sessionId
}

/** @param {Operation} op */
function is2xx (op) {
  const status = statusOf(op.answer)
  return status !== undefined && status >= 200 && status < 300
}

/**
 * The largest event-loop lag the instance recorded from `from` to `to`.
 * @param {History} history
 * @param {string} instance
 * @param {number} from
 * @param {number} to
 */
export function lagAround (history, instance, from, to) {
  let max = 0
  for (const sample of history.lags) {
    if (sample.instance === instance && sample.at >= from && sample.at <= to && sample.lagMs > max) max = sample.lagMs
  }
  return max
}

/**
 * The excused-loss window that explains losing a write acknowledged during `write`,
 * observed by `observed`: the window holds the write and the loss came before the observation.
 * @param {CheckOptions} options
 * @param {Operation} write
 * @param {Operation} observed
 */
function excuseFor (options, write, observed) {
  return (options.excusedLosses ?? []).find((w) => w.start <= write.end && w.end >= write.start && w.end <= observed.end)
}

/**
 * (a) A refresh token never yields two different successors; the one successor again only
 * for a refresh that started within the grace window of the first answer.
 * @param {History} history
 * @param {CheckOptions} options
 * @returns {Finding[]}
 */
function singleSuccessor (history, options) {
  /** @type {Map<string, Operation[]>} */
  const byToken = new Map()
  for (const op of history.operations) {
    const presented = op.request.refreshTokenId
    if (op.kind !== 'refresh' || presented === undefined || statusOf(op.answer) !== 200 || issuedBy(op.answer) === undefined) continue
    const list = byToken.get(presented) ?? []
    list.push(op)
    byToken.set(presented, list)
  }
  /** @type {Finding[]} */
  const findings = []
  for (const [presented, ops] of byToken) {
    ops.sort((x, y) => x.end - y.end)
    const first = ops[0]
    const successor = issuedBy(first.answer)?.refreshTokenId
    for (const op of ops.slice(1)) {
      const other = issuedBy(op.answer)?.refreshTokenId
      if (other !== successor) {
        findings.push({ invariant: 'single-successor', message: `refresh token ${presented} yielded two successors, ${successor} and ${other}`, operations: [first.id, op.id] })
      } else if (op.start > first.end + options.reuseGraceMs) {
        findings.push({ invariant: 'single-successor', message: `refresh token ${presented} yielded its successor ${successor} again ${op.start - first.end} ms after the first answer, beyond the ${options.reuseGraceMs} ms grace window`, operations: [first.id, op.id] })
      }
    }
  }
  return findings
}

/**
 * Operations accepted with a session's tokens after `ack` ended it, past the bound (plus
 * the lag of the instance that accepted).
 * @param {History} history
 * @param {CheckOptions} options
 * @param {SessionIndex} sessions
 * @param {Invariant} invariant
 * @param {Operation} ack the operation whose answer ended the session
 * @param {Set<string>} ended the sessions it ended
 * @param {string} what
 * @returns {Finding[]}
 */
function acceptedAfter (history, options, sessions, invariant, ack, ended, what) {
  /** @type {Finding[]} */
  const findings = []
  for (const session of ended) {
    for (const op of sessions.usesOf.get(session) ?? []) {
      if (statusOf(op.answer) === 200) findings.push(...lateAcceptance(history, options, sessions, invariant, ack, op, session, what))
    }
  }
  return findings
}

/**
 * `op` accepted `session`'s tokens after `ack` ended it: a finding if it started past the
 * bound (plus the accepting instance's lag meanwhile). Excused when Redis lost the
 * revocation, or lost the session itself (its login) before the revocation came: a store
 * that has forgotten a session has nothing to revoke, and no instance hears of it.
 * @param {History} history
 * @param {CheckOptions} options
 * @param {SessionIndex} sessions
 * @param {Invariant} invariant
 * @param {Operation} ack
 * @param {Operation} op
 * @param {string} session
 * @param {string} what
 * @returns {Finding[]}
 */
function lateAcceptance (history, options, sessions, invariant, ack, op, session, what) {
  if (op.start <= ack.end + options.revocationBoundMs) return []
  const lag = lagAround(history, op.instance, ack.end, op.end)
  if (op.start <= ack.end + options.revocationBoundMs + lag) return []
  const late = op.start - ack.end
  /** @type {Finding} */
  const finding = { invariant, message: `${op.kind} on ${op.instance} accepted session ${session} ${late} ms after ${what} (bound ${options.revocationBoundMs} ms + lag ${lag} ms)`, operations: [ack.id, op.id] }
  const login = sessions.loginOf.get(session)
  const excuse = excuseFor(options, ack, op) ?? (login === undefined ? undefined : excuseFor(options, login, op))
  if (excuse !== undefined) finding.why = excuse.why
  return [finding]
}

/**
 * (b) A reuse answer (401 FTS_TOKEN_REUSED) ends the session everywhere.
 * @param {History} history
 * @param {CheckOptions} options
 * @param {SessionIndex} sessions
 * @returns {Finding[]}
 */
function reuseEndsSession (history, options, sessions) {
  return history.operations
    .filter((op) => codeOf(op.answer) === REUSED && statusOf(op.answer) === 401 && sessionOf(op) !== undefined)
    .flatMap((op) => acceptedAfter(history, options, sessions, 'reuse-ends-session', op, new Set([String(sessionOf(op))]), `the reuse answer ${op.id}`))
}

/**
 * The sessions an acknowledged revocation ended: the one named, or every session of the
 * user whose login had answered before the revocation was sent, but the one it spares.
 * With `possibly`, also the sessions whose login overlapped it (a login whose request
 * reached Redis before the revocation's stamp is over too).
 * @param {Operation} op
 * @param {SessionIndex} sessions
 * @param {boolean} [possibly]
 * @returns {Set<string>}
 */
function endedBy (op, sessions, possibly = false) {
  if (op.kind === 'logout' || op.kind === 'revoke-session') {
    const session = sessionOf(op)
    return new Set(session === undefined ? [] : [session])
  }
  const session = sessionOf(op)
  const user = op.request.userId ?? (session === undefined ? undefined : sessions.userOf.get(session))
  /** @type {Set<string>} */
  const ended = new Set()
  for (const id of user === undefined ? [] : sessions.sessionsOfUser.get(user) ?? []) {
    const login = sessions.loginOf.get(id)
    if (id === op.request.exceptSessionId || login === undefined) continue
    if (possibly ? login.start < op.end : login.end < op.start) ended.add(id)
  }
  return ended
}

/** @param {Operation} op */
function isRevocation (op) {
  return op.kind === 'logout' || op.kind === 'revoke-session' || op.kind === 'logout-all' || op.kind === 'revoke-all'
}

/**
 * (c) An acknowledged revocation is honoured by every instance past the bound.
 * @param {History} history
 * @param {CheckOptions} options
 * @param {SessionIndex} sessions
 * @returns {Finding[]}
 */
function revocationBound (history, options, sessions) {
  return history.operations
    .filter((op) => isRevocation(op) && is2xx(op))
    .flatMap((op) => acceptedAfter(history, options, sessions, 'revocation-bound', op, endedBy(op, sessions), `the acknowledged ${op.kind} ${op.id}`))
}

/**
 * Whether something that started before `observed` ended (could have ended) the session:
 * a revocation that may have taken effect, a reuse answer, or, for a refresh refused as
 * reuse, another refresh of the same token that may have taken effect.
 * @param {Operation} observed
 * @param {string} session
 * @param {SessionIndex} sessions
 */
function endedBefore (observed, session, sessions) {
  const before = (/** @type {Operation} */ op) => op !== observed && op.start < observed.end
  if ((sessions.endersOf.get(session) ?? []).some(before)) return true
  const presented = observed.request.refreshTokenId
  if (codeOf(observed.answer) !== REUSED || presented === undefined) return false
  return (sessions.byToken.get(presented) ?? []).some((op) => before(op) && op.kind === 'refresh' && mayHaveTakenEffect(op))
}

/**
 * (d) Tokens issued by a 200 keep working until something ends their session.
 * @param {History} history
 * @param {CheckOptions} options
 * @param {SessionIndex} sessions
 * @returns {Finding[]}
 */
function sessionSurvives (history, options, sessions) {
  /** @type {Finding[]} */
  const findings = []
  for (const issuer of history.operations) {
    const issued = issuedBy(issuer.answer)
    if ((issuer.kind !== 'refresh' && issuer.kind !== 'login') || statusOf(issuer.answer) !== 200 || issued === undefined) continue
    const uses = [
      ...(sessions.byToken.get(issued.accessTokenId) ?? []).filter((op) => op.kind === 'authenticate'),
      ...(sessions.byToken.get(issued.refreshTokenId) ?? []).filter((op) => op.kind === 'refresh')
    ]
    for (const op of uses) {
      if (op.start < issuer.end || statusOf(op.answer) !== 401) continue
      const code = codeOf(op.answer)
      if (code !== undefined && EXPIRY_CODES.has(code)) continue
      if (endedBefore(op, issued.sessionId, sessions)) continue
      /** @type {Finding} */
      const finding = { invariant: 'session-survives', message: `${op.kind} on ${op.instance} refused (401 ${code ?? ''}) the tokens ${issuer.id} issued for session ${issued.sessionId}, which nothing had ended`, operations: [issuer.id, op.id] }
      const excuse = excuseFor(options, issuer, op)
      if (excuse !== undefined) finding.why = excuse.why
      findings.push(finding)
    }
  }
  return findings
}

/**
 * (e) The only 5xx is a 503 with Retry-After.
 * @param {History} history
 * @returns {Finding[]}
 */
function no5xx (history) {
  /** @type {Finding[]} */
  const findings = []
  for (const op of history.operations) {
    const status = statusOf(op.answer)
    if (status === undefined || status < 500) continue
    if (status === 503 && 'retryAfter' in op.answer && op.answer.retryAfter !== undefined) continue
    findings.push({ invariant: 'no-5xx', message: `${op.kind} on ${op.instance} answered ${status}${status === 503 ? ' without Retry-After' : ''}`, operations: [op.id] })
  }
  return findings
}

/**
 * (g) Every request is answered: none timed out.
 * @param {History} history
 * @returns {Finding[]}
 */
function noHang (history) {
  return history.operations
    .filter((op) => 'error' in op.answer && op.answer.error === 'timeout')
    .map((op) => ({ invariant: /** @type {Invariant} */ ('no-hang'), message: `${op.kind} on ${op.instance} got no answer in ${Math.round(op.end - op.start)} ms`, operations: [op.id] }))
}

/**
 * (f) After the last fault and `recoveryMs`, every instance answers (2xx or 401) again.
 * @param {History} history
 * @param {CheckOptions} options
 * @returns {Finding[]}
 */
function recovery (history, options) {
  const lastFaultEnd = Math.max(0, ...history.faults.map((f) => f.end))
  const from = lastFaultEnd + (options.recoveryMs ?? DEFAULT_RECOVERY_MS)
  /** @type {Finding[]} */
  const findings = []
  for (const instance of history.instances) {
    const after = history.operations.filter((op) => op.instance === instance && op.start >= from)
    if (after.some((op) => is2xx(op) || statusOf(op.answer) === 401)) continue
    const message = after.length === 0
      ? `${instance} was sent nothing from ${from} ms on, so its recovery is unproven`
      : `${instance} answered none of ${after.length} operations with 2xx or 401 from ${from} ms on`
    findings.push({ invariant: 'recovery', message, operations: after.map((op) => op.id) })
  }
  return findings
}
