import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import type { Redis, Cluster } from 'ioredis'
import tokenSessions, { tokenResponse, type RedisClient } from 'fastify-token-sessions'

declare module 'fastify' {
  interface FastifyInstance {
    /** @fastify/jwt's README recipe. */
    authenticate: (request: FastifyRequest) => Promise<void>
  }
}

/** An app with service tokens (@fastify/jwt) and sessions (the plugin), in either order. */
export async function buildApp (client: Redis | Cluster, order: 'jwt first' | 'plugin first'): Promise<FastifyInstance> {
  const app = Fastify()
  const jwt = async (): Promise<void> => {
    await app.register(fastifyJwt, { secret: 'service-secret-0123456789-abcdefghijklmnopqrstuvwxyz' })
    app.decorate('authenticate', async (request: FastifyRequest) => { await request.jwtVerify() })
  }
  const sessions = async (): Promise<void> => {
    // An ioredis 5 client, standalone or Cluster, passed as it is.
    const redis: RedisClient = client
    await app.register(tokenSessions, {
      secret: 'a'.repeat(48),
      redis,
      decorators: { user: 'session', authenticate: 'authenticateSession' },
      routes: true
    })
  }
  if (order === 'jwt first') {
    await jwt()
    await sessions()
  } else {
    await sessions()
    await jwt()
  }
  app.post('/login', async (_request, reply) => tokenResponse(await reply.issueTokens('u1', { claims: { plan: 'pro' } })))
  app.get('/service', { onRequest: app.authenticate }, async (request) => {
    const svc: string = request.user.svc
    return { svc }
  })
  app.get('/me', { onRequest: app.authenticateSession }, async (request) => {
    const id: string = request.session.id
    const plan: 'free' | 'pro' = request.session.plan
    // @ts-expect-error the session user is typed, not any
    const nope: unknown = request.session.nope
    return { id, plan, ...(nope === undefined ? {} : { nope }) }
  })
  await app.ready()
  return app
}
