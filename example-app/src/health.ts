import type { FastifyInstance } from 'fastify'
import type { StorageKind } from './store.js'

/** Liveness and readiness, for an orchestrator's probes and the image's HEALTHCHECK. */
const healthSchema = {
  tags: ['operations'],
  response: {
    200: { description: 'Up', type: 'object', properties: { status: { type: 'string' } }, additionalProperties: true },
    503: { description: 'Not ready', type: 'object', properties: { status: { type: 'string' } }, additionalProperties: true }
  }
} as const

/** What readiness answers, up or not. */
const readyBody = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ready', 'unavailable'] },
    store: { type: 'string', enum: ['up', 'down'] },
    revocationFeed: { type: 'string', enum: ['up', 'down'] },
    storage: {
      type: 'string',
      enum: ['redis', 'memory'],
      description: '`memory`: no Redis was reachable at start-up, so sessions and users live in this process (development only: lost on restart, not shared with other instances)'
    }
  },
  additionalProperties: false
} as const

const readySchema = {
  tags: ['operations'],
  summary: 'Readiness',
  response: { 200: { description: 'Ready', ...readyBody }, 503: { description: 'Not ready', ...readyBody } }
} as const

/**
 * `GET /health`: the process answers (liveness; never touches Redis, so a Redis outage
 * does not get healthy instances restarted). `GET /health/ready`: the session store and
 * the revocation feed are up (`tokenSessions.health()`), 503 otherwise, so a balancer
 * sends no traffic to an instance that would only answer 503s; and where sessions live
 * (`storage`), so that running in memory is seen, not only logged.
 */
export function registerHealth (app: FastifyInstance, storage: StorageKind): void {
  app.get('/health', { schema: { ...healthSchema, summary: 'Liveness' }, logLevel: 'warn', config: { public: true } }, async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    return { status: 'ok' }
  })
  app.get('/health/ready', { schema: readySchema, logLevel: 'warn', config: { public: true } }, async (_request, reply) => {
    const health = await app.tokenSessions.health()
    reply.header('cache-control', 'no-store')
    reply.code(health.ok ? 200 : 503)
    return { status: health.ok ? 'ready' : 'unavailable', store: health.store, revocationFeed: health.revocationFeed, storage }
  })
}
