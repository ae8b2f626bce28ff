// An app that already uses @fastify/jwt (for service tokens, say) and the plugin, side by
// side: the plugin's decorators under other names, @fastify/jwt's `request.user` and the
// common `fastify.authenticate` recipe left as they are, in either registration order.
// (The types of the same set-up are checked by test/consumers.)
import { createRequire } from 'node:module'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyPluginCallback, type FastifyReply, type FastifyRequest } from 'fastify'
import tokenSessions from '../lib/index.js'
import { SECRET, memoryStore } from './helpers/app.js'

// Loaded without its typings, as the plugin loads it: they would declare `request.user`
// for this whole test program (the consumer projects check those types).
const fastifyJwt = createRequire(import.meta.url)('@fastify/jwt') as FastifyPluginCallback<Record<string, unknown>>
const SERVICE_SECRET = 'service-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

type Loose = Record<string, unknown>
type JwtRequest = FastifyRequest & { jwtVerify: () => Promise<unknown>, user: unknown, session: { id: string } }

async function appWith (t: Test, order: 'jwt first' | 'plugin first', namespace?: string): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  const jwt = async (): Promise<void> => {
    await app.register(fastifyJwt, { secret: SERVICE_SECRET, ...(namespace === undefined ? {} : { namespace }) })
    // The recipe from @fastify/jwt's README.
    app.decorate('authenticate', async (request: FastifyRequest) => { await (request as JwtRequest).jwtVerify() })
  }
  const plugin = async (): Promise<void> => {
    await app.register(tokenSessions, {
      secret: SECRET,
      store: memoryStore(t),
      // Cast: this test program keeps the default names in its types (see the top).
      decorators: { user: 'session', authenticate: 'authenticateSession' } as never
    })
  }
  if (order === 'jwt first') {
    await jwt()
    await plugin()
  } else {
    await plugin()
    await jwt()
  }
  const loose = app as unknown as Loose
  app.get('/service', { onRequest: loose.authenticate as never }, async (request) => ({ caller: (request as JwtRequest).user }))
  app.get('/me', { onRequest: loose.authenticateSession as never }, async (request) => ({ id: (request as JwtRequest).session.id }))
  app.post('/login', async (_request, reply: FastifyReply) => await (reply as FastifyReply & { issueTokens: (id: string) => Promise<{ accessToken: string }> }).issueTokens('alice'))
  await app.ready()
  return app
}

for (const order of ['jwt first', 'plugin first'] as const) {
  t.test(`@fastify/jwt and the plugin, ${order}`, async (t) => {
    const app = await appWith(t, order)
    const serviceToken = (app as unknown as { jwt: { sign: (payload: object) => string } }).jwt.sign({ svc: 'billing' })
    const service = await app.inject({ method: 'GET', url: '/service', headers: { authorization: `Bearer ${serviceToken}` } })
    t.equal(service.statusCode, 200, 'a service token passes @fastify/jwt\'s authenticate')
    t.match(service.json(), { caller: { svc: 'billing' } }, 'and lands on request.user')
    const login = await app.inject({ method: 'POST', url: '/login', headers: { 'x-token-transport': 'body' } })
    const { accessToken } = login.json() as { accessToken: string }
    const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
    t.equal(me.statusCode, 200, 'a session token passes authenticateSession')
    t.same(me.json(), { id: 'alice' }, 'and lands on request.session')
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${serviceToken}` } })).statusCode, 401, 'a service token is no session token')
    t.equal((await app.inject({ method: 'GET', url: '/service', headers: { authorization: `Bearer ${accessToken}` } })).statusCode, 401, 'nor the other way round')
  })
}

t.test('with @fastify/jwt under a namespace too', async (t) => {
  const app = await appWith(t, 'plugin first', 'service')
  t.ok(app.hasRequestDecorator('user') && app.hasRequestDecorator('session'))
})

t.test('a renamed user property already taken (by @fastify/session, say) is refused, not shared', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.decorateRequest('session', null)
  const error = await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), decorators: { user: 'session' } as never })
    .ready().then(() => undefined, (err: Error) => err)
  t.match(error, { code: 'FTS_INVALID_OPTION', message: /^Invalid option decorators\.user: "session" is a decorator here already/ })
})

t.test('decorator names are checked', async (t) => {
  for (const [decorators, option] of [
    [{ user: 'has space' }, 'decorators.user'],
    [{ nope: 'x' }, 'decorators.nope'],
    [{ refresh: 'authenticate' }, 'decorators'],
    ['session', 'decorators']
  ] as const) {
    const app = Fastify()
    const error = await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), decorators: decorators as never }).ready().then(() => undefined, (err: Error) => err)
    await app.close()
    t.match(error, { code: 'FTS_INVALID_OPTION', message: new RegExp(`Invalid option ${option}:`) }, option)
  }
})

t.test('every decorator under another name, and none under its default', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const names = { user: 'account', authenticate: 'auth', authenticateStrict: 'authStrict', refresh: 'rotate', issueTokens: 'startSession', tokenSessions: 'sessionsApi' }
  await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), decorators: names as never, routes: true })
  const loose = app as unknown as Loose
  for (const name of ['authenticate', 'authenticateStrict', 'refresh', 'tokenSessions']) t.notOk(name in loose, `no ${name}`)
  t.notOk(app.hasReplyDecorator('issueTokens'))
  app.post('/login', async (_request, reply) => await (reply as unknown as Record<string, (id: string) => Promise<unknown>>).startSession?.('bob'))
  app.get('/strict', { onRequest: loose.authStrict as never }, async (request) => (request as unknown as { account: { id: string } }).account)
  app.post('/rotate', loose.rotate as never)
  const login = (await app.inject({ method: 'POST', url: '/login', headers: { 'x-token-transport': 'body' } })).json() as { accessToken: string, refreshToken: string }
  t.match((await app.inject({ method: 'GET', url: '/strict', headers: { authorization: `Bearer ${login.accessToken}` } })).json(), { id: 'bob' })
  t.equal((await app.inject({ method: 'POST', url: '/rotate', payload: { refreshToken: login.refreshToken } })).statusCode, 200)
  const sessions = await app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${login.accessToken}` } })
  t.equal(sessions.statusCode, 200, 'the session routes read the user under its name')
  t.equal((sessions.json() as { sessions: unknown[] }).sessions.length, 1)
  t.type((loose.sessionsApi as { health: unknown }).health, 'function')
})
