'use strict'
// A CommonJS app: require() of the package (an ES module, which Node loads for require
// from 20.19 and 22.12 on).
const Fastify = require('fastify')
const { default: tokenSessions, tokenResponse, errors } = require('fastify-token-sessions')

async function main () {
  const app = Fastify()
  await app.register(tokenSessions, { secret: 'a'.repeat(48), redis: process.env.REDIS_URL, routes: true })
  app.post('/login', async (request, reply) => tokenResponse(await reply.issueTokens('u1')))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.id }))
  const login = await app.inject({ method: 'POST', url: '/login', headers: { 'x-token-transport': 'body' } })
  const { accessToken, refreshToken } = login.json()
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
  const missing = await app.inject({ method: 'GET', url: '/me' })
  console.log(JSON.stringify({ me: me.json(), refresh: refreshed.statusCode, missing: missing.json().code, known: missing.json().code === new errors.TokenMissingError().code }))
  await app.close()
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
