// Claims are checked against the declared SessionUser (see session-user.d.ts).
import Fastify from 'fastify'
import tokenSessions, { MemoryStore, type Claims, type IssueOptions } from 'fastify-token-sessions'

const app = Fastify()
await app.register(tokenSessions, { secret: 'a'.repeat(48), store: new MemoryStore() })

app.post('/claims', async (_request, reply) => {
  // @ts-expect-error a claim name with a typo
  await reply.issueTokens('u1', { claims: { usernmae: 'typo' } })
  // @ts-expect-error a claim of the wrong type
  await reply.issueTokens('u1', { claims: { username: 42 } })
  // @ts-expect-error a required claim missing
  await reply.issueTokens('u1', { claims: {} })
  // @ts-expect-error no claims at all, though SessionUser requires one
  await reply.issueTokens('u1')
  const claims: Claims = { username: 'ok' }
  const options: IssueOptions = { claims, label: 'laptop' }
  return await reply.issueTokens('u1', options)
})

app.get('/typed', { onRequest: app.authenticate }, async (request) => {
  const name: string = request.user.username
  // @ts-expect-error not declared
  const role: unknown = request.user.role
  return { name, role, at: request.user.sessionStartedAt }
})

export { app }
