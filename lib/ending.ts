// The session a token names for logout or revocation, and the DPoP proof a sender-constrained one needs.
import type { FastifyRequest } from 'fastify'
import type { DpopVerifier, Proof } from './dpop.js'
import type { SessionRef, Sessions } from './sessions.js'

/** A session a token named, its client, and for an access token the token and the key it is bound to. */
export interface TokenSession extends SessionRef {
  clientId: string | undefined
  access?: { token: string, jkt: string | undefined }
}

/** The session a refresh or an access token names, if its signature holds (throws a 401 error if not). */
export function tokenSession (sessions: Sessions, kind: 'refresh' | 'access', token: string): TokenSession {
  if (kind === 'refresh') return sessions.refreshSession(token)
  const { user, jkt, clientId } = sessions.verifyAccessAnyKey(token, false)
  return { userId: user.id, sessionId: user.sessionId, startedAt: user.sessionStartedAt, clientId, access: { token, jkt } }
}

/**
 * The session to end, with the request's DPoP proof: a sender-constrained token can do
 * nothing else without a proof by its key, so it cannot end its session without one
 * either (a token copied from a log must not log its owner out). Undefined when an access
 * token bound to a key came without a proof by it; a refresh token's binding is the
 * session's, which only the store knows, so the proof's key goes to the store with the
 * token (and a superseded token stays reuse there, whatever proof came).
 *
 * The token was verified first, so a forged one never costs a proof's verification. A
 * proof that comes is checked and remembered, so that it cannot serve twice; a broken one
 * throws, whether or not the session turns out to be bound. An access token's proof names
 * its hash (`ath`), as a proof that comes with an access token does everywhere. `place`:
 * a resource request's 401 errors (logout, which takes an access token as `authenticate`
 * does) or a grant's 400s (refresh tokens, and the OAuth revocation endpoint).
 */
export function provenSession (dpop: DpopVerifier, request: FastifyRequest, named: TokenSession, place: 'grant' | 'resource'): SessionRef | undefined {
  const { access } = named
  if (access === undefined) {
    const proof = remembered(dpop, dpop.check(request, 'grant'), 'grant')
    return proof === undefined || named.presented === undefined ? named : { ...named, presented: { ...named.presented, proofKey: proof.jkt } }
  }
  // Not bound: a bearer token, which ends its session as it does anything else.
  if (access.jkt === undefined) return named
  const proof = remembered(dpop, dpop.check(request, place, access.token), place)
  return proof?.jkt === access.jkt ? named : undefined
}

function remembered (dpop: DpopVerifier, proof: Proof | undefined, place: 'grant' | 'resource'): Proof | undefined {
  if (proof !== undefined) dpop.remember(proof, place)
  return proof
}
