import type { FastifyInstance } from 'fastify'
import type { RateLimitOptions } from '@fastify/rate-limit'
import { tokenResponse } from 'fastify-token-sessions'
import { InvalidCredentialsError, RateLimitedError, UsernameTakenError } from './errors.js'
import { changePasswordSchema, loginSchema, meSchema, registerSchema, type Credentials, type PasswordChangeBody } from './schemas.js'
import type { FailureGate } from './throttle.js'
import type { Users } from './users.js'

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
  /** Per client IP, for every route anyone can hammer. */
  perIp: RateLimitOptions
}

/** The app's own routes: registration, login, password change and `/me`. */
export function authRoutes (app: FastifyInstance, { users, passwordFailures, perIp }: AccountServices): void {
  // Limited as login is: each attempt costs a password hash, and a 409 tells whether a name exists.
  app.post<{ Body: Credentials }>('/auth/register', { schema: registerSchema, config: { rateLimit: perIp } }, async (request, reply) => {
    const user = await users.register(request.body.username, request.body.password)
    if (user === undefined) throw new UsernameTakenError()
    reply.code(201)
    return user
  })

  // The session starts only if no password change ended the user's sessions after this
  // request arrived (the plugin's default authenticatedAt): a login that checked the old
  // password while a change was under way fails instead of outliving it.
  app.post<{ Body: Credentials }>('/auth/login', { schema: loginSchema, config: { rateLimit: perIp } }, async (request, reply) => {
    const user = await users.verify(request.body.username, request.body.password)
    if (user === undefined) throw new InvalidCredentialsError()
    return tokenResponse(await reply.issueTokens(user.id, { claims: { username: user.username } }))
  })

  // An access token is enough to try passwords here, so the attempts are limited per client
  // IP and, with a growing wait after a few failures, per user, on every instance at once.
  const changePassword = { onRequest: app.authenticate, schema: changePasswordSchema, config: { rateLimit: perIp } }
  app.post<{ Body: PasswordChangeBody }>('/auth/change-password', changePassword, async (request, reply) => {
    const { id, sessionId } = request.user
    const wait = await passwordFailures.attempt(id)
    if (wait > 0) {
      reply.header('retry-after', String(Math.ceil(wait / 1000)))
      throw new RateLimitedError()
    }
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
