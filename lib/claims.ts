// Claims that follow the user: the app's `claims` option, asked at every refresh (and at a
// login given no claims) for what the new tokens say, before the store is touched.
import type { FastifyRequest } from 'fastify'
import { ClaimsUnavailableError } from './errors.js'
import { checkClaims } from './tokens.js'
import type { ClaimsHook, ClaimValues } from './types.js'

/** The reason the audit hooks see when the claims hook ends a session and names none. */
export const DEFAULT_END_REASON = 'claims'
/** A reason the claims hook gives: printable ASCII, as every reason the audit hooks see. */
const REASON = /^[\x21-\x7e][\x20-\x7e]{0,63}$/

/**
 * What the claims hook returns to end the session instead of giving claims (a user
 * disabled or deleted): made by `context.endSession(reason)`, never by the app itself, so
 * that no claims object can be taken for it.
 */
export class SessionEnd {
  /** What the audit hooks see as the event's `reason`. */
  readonly reason: string

  constructor (reason: string) {
    this.reason = reason
  }
}

function endSession (reason: string = DEFAULT_END_REASON): SessionEnd {
  if (typeof reason !== 'string' || !REASON.test(reason)) {
    throw new TypeError('fastify-token-sessions: endSession(reason) takes 1 to 64 printable ASCII characters')
  }
  return new SessionEnd(reason)
}

/**
 * Asks the app's claims hook for a session's claims, within `timeoutMs`. Resolves to the
 * claims, checked as a login's are, or to a {@link SessionEnd}. A hook that throws, does not
 * answer in time or answers something else rejects with a 503 `FTS_CLAIMS_UNAVAILABLE`
 * whose `cause` says why (for the logs): the caller has changed nothing yet, so the client
 * may retry with the same refresh token.
 */
export async function askClaims (
  hook: ClaimsHook, timeoutMs: number, userId: string, sessionId: string, event: 'login' | 'refresh', request: FastifyRequest | undefined
): Promise<ClaimValues | SessionEnd> {
  try {
    const answer: unknown = await within(timeoutMs, async () => await hook(userId, { sessionId, event, request, endSession }))
    if (answer instanceof SessionEnd) return answer
    // A forgotten return must not pass for "no claims": {} says that.
    if (answer === undefined) throw new TypeError('the claims hook answered nothing: return claims ({} for none) or endSession()')
    return checkClaims(answer)
  } catch (cause) {
    throw new ClaimsUnavailableError({ cause })
  }
}

/** What `run` resolves to, or a rejection once `ms` have passed without an answer. */
async function within<T> (ms: number, run: () => Promise<T>): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`the claims hook did not answer within ${ms} ms`)) }, ms)
    run().then((value) => {
      clearTimeout(timer)
      resolve(value)
    }, (error: unknown) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}
