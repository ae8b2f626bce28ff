import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RateLimitOptions } from '@fastify/rate-limit'
import { tokenResponse } from 'fastify-token-sessions'
import { InvalidCredentialsError, UnknownClientError, UsernameTakenError, rateLimited } from './errors.js'
import type { LoginGate } from './login-gate.js'
import { networkOf } from './networks.js'
import { changePasswordSchema, loginSchema, meSchema, reauthenticateSchema, registerSchema, type Credentials, type LoginBody, type PasswordChangeBody, type ReauthenticateBody } from './schemas.js'
import type { FailureGate } from './throttle.js'
import { nameKey, type Users } from './users.js'

declare module 'fastify-token-sessions' {
  interface SessionUser {
    /** Copied from the login's claims into every access token of the session. */
    username: string
  }
}

/** What the app's own routes work with. */
export interface AccountServices {
  users: Users
  /** Wrong current passwords, per user: the password-change oracle's back-off. */
  passwordFailures: FailureGate
  /** Password checks per account at login, whatever the networks they come from. */
  loginGate: LoginGate
  /** Per client network, for every route anyone can hammer. */
  perIp: RateLimitOptions
  /** The OAuth clients a login may name (`NATIVE_CLIENT_IDS`). */
  nativeClients: ReadonlySet<string>
  /** How recent, in seconds, the last password check must be for a password change (`STEP_UP_MAX_AGE`). */
  stepUpMaxAge: number
}

/** The authentication method of a password check (RFC 8176), in the tokens' `amr`. */
const PASSWORD = ['pwd']

/** The app's own routes: registration, login, re-authentication, password change and `/me`. */
export function authRoutes (app: FastifyInstance, { users, passwordFailures, loginGate, perIp, nativeClients, stepUpMaxAge }: AccountServices): void {
  /**
   * A password check counted against the account first (see LoginGate), as every route
   * that checks a password for a known user does: 429 without a check once its budget is
   * spent, 401 for a wrong password, and a right one gives its count back.
   */
  const gatedCheck = async <T>(username: string, request: FastifyRequest, reply: FastifyReply, check: () => Promise<T | undefined>): Promise<T> => {
    const pass = await loginGate.attempt(nameKey(username), networkOf(request.ip))
    if (typeof pass === 'number') throw rateLimited(reply, pass)
    const checked = await check()
    if (checked === undefined) throw new InvalidCredentialsError()
    await loginGate.succeeded(pass)
    return checked
  }

  // Limited per network as login is: each attempt costs a password hash. Its 409 tells
  // whether a name exists, and stays so (see docs/example-app.md): a person choosing a
  // name must learn that it is taken, and the limit bounds how fast names can be tried.
  app.post<{ Body: Credentials }>('/auth/register', { schema: registerSchema, config: { rateLimit: perIp, public: true } }, async (request, reply) => {
    const user = await users.register(request.body.username, request.body.password)
    if (user === undefined) throw new UsernameTakenError()
    reply.code(201)
    return user
  })

  // The session starts only if no password change ended the user's sessions after this
  // request arrived (the plugin's default authenticatedAt): a login that checked the old
  // password while a change was under way fails instead of outliving it.
  // Before the password is checked, the attempt is counted against the account (see
  // LoginGate): guesses spread over many networks share one budget, and a refused one costs
  // no password check. The per-network limit (perIp) has counted it already.
  // A native client names itself (client_id) so that the session is issued to it: OAuth
  // libraries always send their client_id when they refresh, and a session issued to no
  // client refuses every one. An unknown one is refused first, costing no password check.
  app.post<{ Body: LoginBody }>('/auth/login', { schema: loginSchema, config: { rateLimit: perIp, public: true } }, async (request, reply) => {
    const clientId = request.body.client_id
    if (clientId !== undefined && !nativeClients.has(clientId)) throw new UnknownClientError()
    const { username, password, remember } = request.body
    const user = await gatedCheck(username, request, reply, async () => await users.verify(username, password))
    return tokenResponse(await reply.issueTokens(user.id, { claims: { username: user.username }, amr: PASSWORD, remember: remember !== false, ...(clientId === undefined ? {} : { clientId }) }))
  })

  // The user proves who they are again without leaving the session: the same session gets
  // a new token pair whose auth_time is now (reply.stepUp), and the refresh token it held
  // is dead. An access token is enough to try passwords here, so each attempt counts
  // against the account exactly as a login's does (LoginGate), after the per-network limit.
  // Over cookies, authenticate has required the anti-CSRF header, as for every state change.
  const reauthenticate = { onRequest: app.authenticate, schema: reauthenticateSchema, config: { rateLimit: perIp } }
  app.post<{ Body: ReauthenticateBody }>('/auth/reauthenticate', reauthenticate, async (request, reply) => {
    const { id, username } = request.user
    await gatedCheck(username, request, reply, async () => await users.checkPassword(id, request.body.password))
    return tokenResponse(await reply.stepUp({ amr: PASSWORD }))
  })

  // An access token is enough to try passwords here, so the attempts are limited per client
  // network and, with a growing wait after a few failures, per user, on every instance at once.
  // It also needs a recent login (RFC 9470 step-up): an older one is refused with 401
  // FTS_STEP_UP_REQUIRED before the current password is even looked at, so a stolen access
  // token that outlived its login's minutes cannot change the password by guessing it.
  const changePassword = { onRequest: app.authenticate.require({ maxAge: stepUpMaxAge }), schema: changePasswordSchema, config: { rateLimit: perIp } }
  app.post<{ Body: PasswordChangeBody }>('/auth/change-password', changePassword, async (request, reply) => {
    const { id, sessionId } = request.user
    const wait = await passwordFailures.attempt(id)
    if (wait > 0) throw rateLimited(reply, wait)
    // Every other session ends before the password changes and once more after: a login
    // that read the old password in between arrived before the second end, so the plugin
    // refuses it (FTS_CREDENTIALS_STALE) rather than let it outlive the change.
    // The audit reasons tell the two apart: `password-change`, then `password-changed`.
    const endOthers = async (reason: 'password-change' | 'password-changed'): Promise<void> => {
      await app.tokenSessions.revokeAllSessions(id, { except: sessionId, reason })
    }
    const current = await users.checkPassword(id, request.body.currentPassword)
    if (current === undefined) throw new InvalidCredentialsError()
    await passwordFailures.succeeded(id)
    await endOthers('password-change')
    const change = await users.replacePassword(id, current, request.body.newPassword)
    if (change === undefined) throw new InvalidCredentialsError()
    try {
      await endOthers('password-changed')
    } catch (error) {
      // The store failed between the two: the old password comes back (if the store
      // answers again), so that after the 503 the same request can simply be retried.
      await change.revert().catch(() => {})
      throw error
    }
    reply.code(204)
  })

  app.get('/me', { onRequest: app.authenticate, schema: meSchema }, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const { id, username, sessionId, expiresAt } = request.user
    return { id, username, sessionId, expiresAt }
  })
}
