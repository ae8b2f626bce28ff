import { createError, type FastifyErrorConstructor } from '@fastify/error'

/**
 * Every error this plugin sends to a client, with its stable `code` and HTTP status.
 * Messages are fixed strings: a client never sees why a token failed in detail
 * (that would help an attacker) nor any message from the store.
 */

/** What every error here takes: nothing, or the error that caused it (kept for logs). */
type Cause = [options?: { cause: unknown }]

/** An error with a fixed message, its code and status in its type. */
function define<C extends string, S extends number, A extends unknown[] = Cause> (code: C, message: string, status: S): FastifyErrorConstructor<{ code: C, statusCode: S }, A> {
  return createError<C, S, A>(code, message, status)
}

/** No access or refresh token was presented. */
export const TokenMissingError = define('FTS_TOKEN_MISSING', 'No token was presented', 401)

/** The token is malformed, forged, of the wrong kind, or fails a claim check. */
export const TokenInvalidError = define('FTS_TOKEN_INVALID', 'The token is invalid', 401)

/** The token was valid once but has expired. */
export const TokenExpiredError = define('FTS_TOKEN_EXPIRED', 'The token has expired', 401)

/** The refresh token names a session that has ended (logged out, revoked or expired). */
export const SessionRevokedError = define('FTS_SESSION_REVOKED', 'The session has ended', 401)

/** The session reached its absolute lifetime (`sessionMaxLifetime`, or `browserSessionMaxLifetime`): the user logs in again. */
export const SessionExpiredError = define('FTS_SESSION_EXPIRED', 'The session reached its maximum lifetime; log in again', 401)

/** A refresh token that was already rotated came back: the session has been revoked. */
export const TokenReusedError = define('FTS_TOKEN_REUSED', 'The refresh token was already used; the session has been revoked', 401)

/**
 * The route requires a more recent or a stronger authentication than the session's last
 * (`authenticate.require`, RFC 9470): the user proves who they are again, and the app
 * steps the session up. A refresh cannot satisfy it. The challenge says what is needed.
 */
export const StepUpRequiredError = define('FTS_STEP_UP_REQUIRED', 'A more recent or stronger authentication is required', 401)

/** The session to end does not exist or is not the caller's. */
export const SessionNotFoundError = define('FTS_SESSION_NOT_FOUND', 'No such session', 404)

/** A cookie-authenticated request lacks the anti-CSRF header or comes from another site. */
export const CsrfError = define('FTS_CSRF_REJECTED', 'Cross-site request rejected', 403)

/**
 * Every session of the user was revoked (a password change, logout everywhere) after the
 * login's credentials were checked: the login lost that race and started no session.
 */
export const CredentialsStaleError = define('FTS_CREDENTIALS_STALE', 'The account changed while signing in; sign in again', 401)

/**
 * A token cookie came twice in one request: one was planted (by a sibling subdomain or a
 * man in the middle). Rejected before any token is read.
 */
export const CookieConflictError = define('FTS_COOKIE_CONFLICT', 'A token cookie was sent more than once', 400)

/** The request is malformed (for example, a body field of the wrong type). */
export const BadRequestError = define('FTS_BAD_REQUEST', 'The request is malformed', 400)

/** The request body is not JSON. */
export const UnsupportedMediaTypeError = define('FTS_UNSUPPORTED_MEDIA_TYPE', 'The request body must be application/json', 415)

/** The session store did not answer in time. */
export const StoreUnavailableError = define('FTS_STORE_UNAVAILABLE', 'The session store is unavailable; retry later', 503)

/**
 * The app's `claims` hook failed, did not answer within `storeTimeout`, or answered claims
 * it may not give (a reserved name, over the size cap): the refresh or login changed
 * nothing, and may be retried (with the same refresh token) after `Retry-After`. The cause
 * is logged.
 */
export const ClaimsUnavailableError = define('FTS_CLAIMS_UNAVAILABLE', 'The session\'s claims could not be computed; retry later', 503)

/** A plugin option is missing or has a bad value; thrown at registration. */
export const InvalidOptionError = define<'FTS_INVALID_OPTION', 500, [option: string, fix: string]>('FTS_INVALID_OPTION', 'Invalid option %s: %s', 500)

/**
 * A DPoP proof (RFC 9449) sent at login or refresh is malformed, badly signed, stale,
 * replayed, for another method or URL, or by a key other than the session's; or a session
 * bound to a key was refreshed without a proof. The refresh token is not spent.
 */
export const DpopProofInvalidError = define('FTS_DPOP_PROOF_INVALID', 'The DPoP proof is invalid', 400)

/** Server nonces are on and the DPoP proof lacks the current one (in the `DPoP-Nonce` header). */
export const DpopNonceRequiredError = define('FTS_DPOP_NONCE_REQUIRED', 'The DPoP proof must carry the server\'s nonce', 400)

/** As {@link DpopProofInvalidError}, from `authenticate`: a 401 with a `DPoP` challenge (RFC 9449 §7.1). */
export const DpopAccessProofInvalidError = define('FTS_DPOP_PROOF_INVALID', 'The DPoP proof is invalid', 401)

/** As {@link DpopNonceRequiredError}, from `authenticate`: a 401 with a `DPoP` challenge. */
export const DpopAccessNonceRequiredError = define('FTS_DPOP_NONCE_REQUIRED', 'The DPoP proof must carry the server\'s nonce', 401)

/** A refresh asked for a scope the session was not granted (the token endpoint's `invalid_scope`). */
export const ScopeInvalidError = define('FTS_SCOPE_INVALID', 'The requested scope exceeds the scope granted', 400)

/** A refresh token was presented by a client other than the one it was issued to (`invalid_grant`). */
export const ClientMismatchError = define('FTS_CLIENT_MISMATCH', 'The token was issued to another client', 400)
