// The history a fault-injection run records, and that bench/faults/checker.mjs reads: every
// operation a simulated client sent (with when it started and ended on the harness's one
// monotonic clock, in ms, the instance it went to, what it presented and what came back),
// every fault injected, and each instance's event-loop lag. Ids are opaque strings (the
// harness uses the tokens' `jti` and the session ids); the checker only compares them.

/**
 * What a client asked for.
 * @typedef {'login'|'refresh'|'logout'|'logout-all'|'revoke-session'|'revoke-all'|'authenticate'} OperationKind
 */

/**
 * What the request carried, as far as the harness knows it: the access token presented
 * (authenticate), the refresh token presented (refresh, logout), the session those tokens
 * belong to or that is targeted (logout, revoke-session), the user (login, logout-all,
 * revoke-all).
 * @typedef {object} RequestFacts
 * @property {string} [accessTokenId]
 * @property {string} [refreshTokenId]
 * @property {string} [sessionId]
 * @property {string} [userId]
 * @property {string} [exceptSessionId] the session a revoke-all spares (the caller's, as a password change does)
 */

/**
 * The tokens an answer issued (login, refresh) and the session they belong to.
 * @typedef {object} IssuedTokens
 * @property {string} sessionId
 * @property {string} accessTokenId
 * @property {string} refreshTokenId
 */

/**
 * An HTTP answer.
 * @typedef {object} HttpAnswer
 * @property {number} status
 * @property {string} [code] the error's stable code (`FTS_...`), when there is one
 * @property {number} [retryAfter] the `Retry-After` header, in seconds, when sent
 * @property {IssuedTokens} [newTokens]
 */

/**
 * No answer: the request timed out or its connection failed. It may or may not have
 * taken effect.
 * @typedef {object} NoAnswer
 * @property {'timeout'|'connection'} error
 */

/**
 * @typedef {object} Operation
 * @property {string} id
 * @property {string} client
 * @property {OperationKind} kind
 * @property {string} instance
 * @property {number} start when the request was sent
 * @property {number} end when its answer (or the failure) arrived
 * @property {RequestFacts} request
 * @property {HttpAnswer | NoAnswer} answer
 */

/**
 * @typedef {object} FaultEvent
 * @property {string} kind
 * @property {number} start
 * @property {number} end
 */

/**
 * How late an instance's event loop ran at a moment (a timer's delay past its due time).
 * @typedef {object} LagSample
 * @property {string} instance
 * @property {number} at
 * @property {number} lagMs
 */

/**
 * @typedef {object} History
 * @property {Operation[]} operations
 * @property {FaultEvent[]} faults
 * @property {LagSample[]} lags
 * @property {string[]} instances every app instance of the run, including any that never answered
 */

/**
 * The answer's HTTP status, or undefined when there was no answer.
 * @param {HttpAnswer | NoAnswer} answer
 * @returns {number | undefined}
 */
export function statusOf (answer) {
  return 'status' in answer ? answer.status : undefined
}

/**
 * The answer's error code, if it had one.
 * @param {HttpAnswer | NoAnswer} answer
 * @returns {string | undefined}
 */
export function codeOf (answer) {
  return 'status' in answer ? answer.code : undefined
}

/**
 * The tokens the answer issued, if any.
 * @param {HttpAnswer | NoAnswer} answer
 * @returns {IssuedTokens | undefined}
 */
export function issuedBy (answer) {
  return 'status' in answer ? answer.newTokens : undefined
}
