// `authenticate` on every request path an app may give it: a hook of any stage (Fastify
// passes `done`, and it answers through it), an array of hooks, and app code awaiting it.
// And what the plugin leaves off an app's requests: @fastify/cookie, when the plugin
// registers it, parses no request's cookies (the plugin reads its own from the header).
import t from 'tap'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import tokenSessions, { type SessionUser } from '../lib/index.js'
import { SECRET, buildApp, cookieHeader, login, memoryStore } from './helpers/app.js'

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
// The project's type check also compiles an app that loads @fastify/jwt's typings, whose
// `request.user` then joins ours: name the plugin's type.
const idOf = (request: FastifyRequest): string => (request.user as SessionUser).id

t.test('authenticate as a hook of each stage, in an array, and awaited by app code', async (t) => {
  const order: string[] = []
  const app = await buildApp(t, {}, {
    setup: (app) => {
      const after = async (request: FastifyRequest): Promise<void> => { order.push(`after ${idOf(request)}`) }
      app.get('/pre-handler', { preHandler: app.authenticate }, async (request) => ({ id: idOf(request) }))
      app.get('/pre-validation', { preValidation: app.authenticate }, async (request) => ({ id: idOf(request) }))
      app.get('/chain', { onRequest: [app.authenticate, after] }, async (request) => ({ id: idOf(request) }))
      app.get('/awaited', async (request: FastifyRequest, reply: FastifyReply) => {
        // The common recipe: an app's own handler awaits it and goes on.
        await app.authenticate(request, reply)
        return { id: idOf(request) }
      })
      app.get('/caught', async (request: FastifyRequest, reply: FastifyReply) => {
        try {
          await app.authenticate(request, reply)
          return { signedIn: true }
        } catch (error) {
          return { signedIn: false, code: (error as { code: string }).code }
        }
      })
    }
  })
  const { accessToken } = await login(app, 'hooked')
  for (const url of ['/me', '/pre-handler', '/pre-validation', '/chain', '/awaited']) {
    const ok = await app.inject({ method: 'GET', url, headers: bearer(accessToken) })
    t.equal(ok.statusCode, 200, `${url}: a valid token passes`)
    t.same(ok.json(), url === '/me' ? { ...ok.json(), id: 'hooked' } : { id: 'hooked' }, `${url}: the user is set`)
    const refused = await app.inject({ method: 'GET', url, headers: bearer(`${accessToken.slice(0, -2)}AA`) })
    t.equal(refused.statusCode, 401, `${url}: a forged token is a 401`)
    t.equal(refused.json().code, 'FTS_TOKEN_INVALID', `${url}: with its code`)
    t.equal(refused.headers['www-authenticate'], 'Bearer error="invalid_token"', `${url}: and the Bearer challenge`)
    const missing = await app.inject({ method: 'GET', url })
    t.equal(missing.json().code, 'FTS_TOKEN_MISSING', `${url}: no token is a 401 of its own`)
  }
  t.same(order, ['after hooked'], 'the next hook of the array ran after a pass, and not after a refusal')
  t.same((await app.inject({ method: 'GET', url: '/caught', headers: bearer(accessToken) })).json(), { signedIn: true })
  t.same((await app.inject({ method: 'GET', url: '/caught' })).json(), { signedIn: false, code: 'FTS_TOKEN_MISSING' },
    'awaited, a refusal rejects with the error, for the app to handle')
})

t.test('@fastify/cookie registered by the plugin parses no request\'s cookies; the plugin\'s cookies still work', async (t) => {
  const app = await buildApp(t, {}, {
    setup: (app) => {
      app.get('/cookies', async (request) => ({ cookies: (request as FastifyRequest & { cookies: unknown }).cookies ?? null }))
    }
  })
  const seen = await app.inject({ method: 'GET', url: '/cookies', headers: { cookie: 'theme=dark' } })
  t.same(seen.json(), { cookies: null }, 'request.cookies is left unparsed')
  const signedIn = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'cookie-user' } })
  t.equal(signedIn.statusCode, 200)
  const cookies = cookieHeader(signedIn)
  t.match(cookies, /access_token=[^;]+; refresh_token=[^;]+; session_binding=/, 'the login set the token cookies')
  const me = await app.inject({ method: 'GET', url: '/me', headers: { cookie: cookies } })
  t.equal(me.statusCode, 200, 'and the access cookie authenticates')
  t.equal(me.json().id, 'cookie-user')
})

t.test('an app that registered @fastify/cookie itself keeps its parsing', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyCookie)
  await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
  app.get('/cookies', async (request) => ({ cookies: request.cookies }))
  const seen = await app.inject({ method: 'GET', url: '/cookies', headers: { cookie: 'theme=dark' } })
  t.same(seen.json(), { cookies: { theme: 'dark' } })
})
