import type { FastifyInstance } from 'fastify'
import type { RateLimitOptions } from '@fastify/rate-limit'
import { tokenResponse } from 'fastify-token-sessions'
import { InvalidCredentialsError, UsernameTakenError } from './errors.js'
import { changePasswordSchema, loginSchema, meSchema, registerSchema, type Credentials, type PasswordChangeBody } from './schemas.js'
import type { UserStore } from './users.js'

declare module 'fastify-token-sessions' {
  interface SessionUser {
    /** Copied from the login's claims into every access token of the session. */
    username: string
  }
}

/** The app's own routes: registration, login, password change and `/me`. */
export function authRoutes (app: FastifyInstance, users: UserStore, loginLimit: RateLimitOptions): void {
  // Limited as login is: each attempt costs a password hash, and a 409 tells whether a name exists.
  app.post<{ Body: Credentials }>('/auth/register', { schema: registerSchema, config: { rateLimit: loginLimit } }, async (request, reply) => {
    const user = await users.register(request.body.username, request.body.password)
    if (user === undefined) throw new UsernameTakenError()
    reply.code(201)
    return user
  })

  app.post<{ Body: Credentials }>('/auth/login', { schema: loginSchema, config: { rateLimit: loginLimit } }, async (request, reply) => {
    const user = await users.verify(request.body.username, request.body.password)
    if (user === undefined) throw new InvalidCredentialsError()
    return tokenResponse(await reply.issueTokens(user.id, { claims: { username: user.username } }))
  })

  const changePassword = { onRequest: app.authenticate, schema: changePasswordSchema }
  app.post<{ Body: PasswordChangeBody }>('/auth/change-password', changePassword, async (request, reply) => {
    const { id, sessionId } = request.user
    const change = await users.changePassword(id, request.body.currentPassword, request.body.newPassword)
    if (change === undefined) throw new InvalidCredentialsError()
    try {
      // Whoever else holds a session may hold it because they knew the old password.
      await app.tokenSessions.revokeAllSessions(id, { except: sessionId, reason: 'password-change' })
    } catch (error) {
      // The store did not confirm that the other sessions ended: the old password comes
      // back, so that after the 503 the same request can simply be retried.
      change.revert()
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
