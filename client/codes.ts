// The plugin's error codes the browser client acts on: its contract with the server. The
// plugin's tests check each code against lib/errors.ts and against the answers of the
// routes that send it; change one side and they fail.

/**
 * Why a session ended, as `onSessionEnd` reports it:
 * - `logged-out`: this tab or another one logged out (`client.logout()`);
 * - `expired`: the session's idle timeout or maximum lifetime passed (the refresh
 *   token or its cookie expired);
 * - `revoked`: ended from another device, by "log out everywhere", by a password change
 *   or by an administrator;
 * - `reuse-detected`: a refresh token came back after it was rotated (a possible theft):
 *   the server ended the session;
 * - `invalid`: the refresh token no longer verifies (a retired signing key, a tampered or
 *   planted cookie);
 * - `refused`: the server refused the refresh itself (403 `FTS_CSRF_REJECTED`: the page's
 *   origin is not one the server allows, or the anti-CSRF header differs); a warning in
 *   the console says what to check. Retrying would not help. Another 403 (a proxy's, a
 *   bot challenge) ends nothing: it is the caller's answer.
 */
export type SessionEndReason = 'logged-out' | 'expired' | 'revoked' | 'reuse-detected' | 'invalid' | 'refused'

/**
 * The 401 codes of a request that one refresh may cure: the access token expired, its
 * cookie is gone (a remembered session's lives as long as its token), or it no longer
 * verifies (a retired signing key). The refresh decides: it succeeds, or answers why the
 * session is over.
 */
export const RENEWABLE_CODES: readonly string[] = ['FTS_TOKEN_EXPIRED', 'FTS_TOKEN_MISSING', 'FTS_TOKEN_INVALID']

/** The 401 codes that end a session on any request (the refresh included), and why. */
export const SESSION_END_CODES: Readonly<Record<string, SessionEndReason>> = {
  FTS_SESSION_REVOKED: 'revoked',
  FTS_SESSION_EXPIRED: 'expired',
  FTS_TOKEN_REUSED: 'reuse-detected'
}

/**
 * What the other 401s of the refresh route itself mean: its refresh token expired, its
 * cookie is gone (expired, or cleared by a logout), or it is invalid. Any 401 of the
 * refresh ends the session; these say why.
 */
export const REFRESH_END_CODES: Readonly<Record<string, SessionEndReason>> = {
  FTS_TOKEN_EXPIRED: 'expired',
  FTS_TOKEN_MISSING: 'expired',
  FTS_TOKEN_INVALID: 'invalid'
}

/** The 403 of the refresh route that ends the session as `refused`: the plugin's own refusal. */
export const REFUSED_CODE = 'FTS_CSRF_REJECTED'

/**
 * The 401 of a route that needs a more recent or stronger login than the session's (RFC
 * 9470 step-up): a refresh cannot satisfy it (it never renews the time of the login), so
 * the client asks the app to re-authenticate (`onStepUp`) and sends the request again.
 */
export const STEP_UP_CODE = 'FTS_STEP_UP_REQUIRED'

/** The answers a client may retry after the wait their Retry-After names. */
export const RETRY_STATUSES: readonly number[] = [429, 503]
