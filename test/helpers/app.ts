import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import tokenSessions, { MemoryStore, tokenResponse, type TokenSessionsOptions } from '../../lib/index.js'
import { SECRET, type LogCapture } from './common.js'

export { LogCapture, SECRET } from './common.js'

export interface TestAppOptions {
  logs?: LogCapture
  /** Adds the test's own routes before the app is ready. */
  setup?: (app: FastifyInstance) => void
}

/**
 * An app as a user would write one: the plugin, a login route that trusts the posted
 * user id (password checks are the example app's business), and protected routes.
 */
export async function buildApp (
  t: { teardown: (fn: () => unknown) => void },
  options: Partial<TokenSessionsOptions> = {},
  testOptions: TestAppOptions = {}
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: testOptions.logs === undefined ? false : { level: 'debug', stream: testOptions.logs }
  })
  // Sessions in memory unless the test names a store: the plugin never picks one itself.
  const store = 'store' in options || 'redis' in options ? {} : { store: memoryStore(t) }
  await app.register(tokenSessions, { secret: SECRET, routes: true, ...store, ...options })
  app.post<{ Body: { userId: string, claims?: Record<string, unknown> } }>('/auth/login', async (request, reply) => {
    const { userId, claims } = request.body
    return tokenResponse(await reply.issueTokens(userId, claims === undefined ? {} : { claims }))
  })
  app.get('/me', { onRequest: app.authenticate }, async (request) => request.user)
  app.post('/me', { onRequest: app.authenticate }, async (request) => request.user)
  testOptions.setup?.(app)
  await app.ready()
  t.teardown(() => app.close())
  return app
}

/** A MemoryStore closed when the test ends. */
export function memoryStore (t: { teardown: (fn: () => unknown) => void }): MemoryStore {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  return store
}

/** The cookies a response sets, by name. */
export function cookiesOf (response: LightMyRequestResponse): Map<string, { value: string, path?: string, maxAge?: number, expires?: Date, httpOnly?: boolean, sameSite?: string, secure?: boolean, domain?: string }> {
  const cookies = new Map()
  for (const cookie of response.cookies as Array<{ name: string, value: string }>) cookies.set(cookie.name, cookie)
  return cookies
}

/** The cookies a response sets, by name, as `inject`'s `cookies` option takes them. */
export function cookieValues (response: LightMyRequestResponse): Record<string, string> {
  return Object.fromEntries([...cookiesOf(response)].map(([name, cookie]) => [name, cookie.value]))
}

/**
 * A `Cookie` header as a browser would send it after `response`: every cookie it set
 * (or only `names`), in order.
 */
export function cookieHeader (response: LightMyRequestResponse, ...names: string[]): string {
  return [...cookiesOf(response)].filter(([name]) => names.length === 0 || names.includes(name))
    .map(([name, cookie]) => `${name}=${cookie.value}`).join('; ')
}

/**
 * Waits, as a load balancer's readiness check would, until a part of the app's health is
 * `up`: the store after an outage (the client reconnects on its own schedule, after Redis
 * accepts connections again), or the revocation list (start-up waits for it at most
 * `storeTimeout`, and a Cluster's reload on a busy machine may take longer). Resolves to
 * whether it came up within `timeoutMs`.
 */
export async function untilUp (app: FastifyInstance, part: 'store' | 'revocationFeed', timeoutMs = 10_000): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while ((await app.tokenSessions.health())[part] !== 'up') {
    if (Date.now() > until) return false
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return true
}

/** Logs a user in with body transport; returns the token response. */
export async function login (app: FastifyInstance, userId: string, claims?: Record<string, unknown>): Promise<{ accessToken: string, refreshToken: string, expiresIn: number, refreshExpiresIn: number }> {
  const response = await app.inject({
    method: 'POST',
    url: '/auth/login',
    headers: { 'x-token-transport': 'body' },
    payload: claims === undefined ? { userId } : { userId, claims }
  })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Refreshes with a refresh token in the body. */
export async function refresh (app: FastifyInstance, refreshToken: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
}
