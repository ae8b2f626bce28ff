// Runs the README's getting-started shape against a real Redis, with the app's own ioredis 6 client.
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import tokenSessions, { RedisStore, tokenResponse } from 'fastify-token-sessions'

const redis = new Redis(process.env.REDIS_URL ?? '')
const app = Fastify()
await app.register(tokenSessions, { secret: 'a'.repeat(48), store: new RedisStore({ client: redis }), routes: { prefix: '/auth' } })
app.post('/auth/login', async (_request, reply) => tokenResponse(await reply.issueTokens('u1', { claims: { username: 'ada' } })))
app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.id, username: request.user.username }))
const login = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' } })
const { accessToken } = login.json() as { accessToken: string }
const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
console.log(JSON.stringify({ login: login.statusCode, me: me.json() }))
await app.close()
await redis.quit()
