import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import { Ajv } from 'ajv'
import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import swagger from '@fastify/swagger'
import tokenSessions, { tokenResponse } from '../lib/index.js'
import { memoryStore } from './helpers/app.js'
import {
  jwksSchema, listSessionsSchema, logoutAllSchema, logoutSchema, refreshSchema, revokeEndpointSchema, revokeSessionSchema, tokenEndpointSchema
} from '../lib/schemas.js'

/**
 * The routes' schemas are what documentation generators show: every route declares one,
 * and every answer the routes really give (success and error) has a declared status and
 * matches its schema.
 */

const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
const ROUTE_SCHEMAS: Record<string, { response: Record<number, object> }> = {
  'POST /auth/refresh': refreshSchema,
  'POST /auth/logout': logoutSchema,
  'POST /auth/logout-all': logoutAllSchema,
  'GET /auth/sessions': listSessionsSchema,
  'DELETE /auth/sessions/{id}': revokeSessionSchema,
  'GET /auth/.well-known/jwks.json': jwksSchema,
  'POST /auth/token': tokenEndpointSchema,
  'POST /auth/revoke': revokeEndpointSchema
}
const ajv = new Ajv({ strict: false })

async function documentedApp (t: Test, setup: (app: FastifyInstance) => void = () => {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(swagger, { openapi: { info: { title: 'test', version: '1' } } })
  setup(app)
  await app.register(tokenSessions, {
    store: memoryStore(t),
    accessTokenKeys: [{ kid: 'ed', algorithm: 'EdDSA', key: ed }],
    refreshTokenSecret: 'refresh-secret-0123456789-abcdefghijklmnopqrstuvwxyz',
    routes: { jwks: true }
  })
  app.post<{ Body: { userId: string } }>('/auth/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
  await app.ready()
  t.teardown(() => app.close())
  return app
}

/** Checks one real answer of a documented route against the schema declared for its status. */
function conforms (t: Test, route: string, response: LightMyRequestResponse, label: string): void {
  const declared = ROUTE_SCHEMAS[route]?.response[response.statusCode]
  if (declared === undefined) {
    t.fail(`${label}: ${route} answered ${response.statusCode}, which its schema does not declare`)
    return
  }
  const body: unknown = response.body === '' ? null : response.json()
  const valid = ajv.validate(declared, body)
  t.ok(valid, `${label}: ${route} ${response.statusCode} matches its schema ${valid ? '' : ajv.errorsText()}`)
}

t.test('every route is documented, with its answers and the security it needs', async (t) => {
  const app = await documentedApp(t)
  const spec = app.swagger() as unknown as { paths: Record<string, Record<string, { operationId?: string, tags?: string[], responses: Record<string, unknown>, requestBody?: unknown }>> }
  for (const route of Object.keys(ROUTE_SCHEMAS)) {
    const [method = '', path = ''] = route.split(' ')
    const operation = spec.paths[path]?.[method.toLowerCase()]
    t.ok(operation, `${route} is in the document`)
    t.type(operation?.operationId, 'string', `${route}: operationId`)
    t.same(operation?.tags, ['sessions'], `${route}: tagged`)
    const codes = Object.keys(operation?.responses ?? {})
    t.ok(codes.some((code) => code.startsWith('2')), `${route}: its success is described`)
    if (route !== 'GET /auth/.well-known/jwks.json') t.ok(codes.includes('503'), `${route}: the store being down is described`)
  }
  t.ok(spec.paths['/auth/refresh']?.post?.requestBody, 'refresh documents its body')
})

t.test('real answers match the declared schemas, errors included', async (t) => {
  const app = await documentedApp(t)
  const check = async (route: string, label: string, inject: InjectOptions): Promise<LightMyRequestResponse> => {
    const response = await app.inject(inject)
    conforms(t, route, response, label)
    return response
  }
  const login = async (userId: string): Promise<{ accessToken: string, refreshToken: string }> =>
    (await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId } })).json()

  const first = await login('doc')
  const refreshed = await check('POST /auth/refresh', 'body refresh', { method: 'POST', url: '/auth/refresh', payload: { refreshToken: first.refreshToken } })
  t.equal(refreshed.statusCode, 200)
  t.ok(refreshed.json().refreshToken, 'the body client gets its refresh token back')
  await check('POST /auth/refresh', 'non-string token', { method: 'POST', url: '/auth/refresh', payload: { refreshToken: 123 } })
  await check('POST /auth/refresh', 'forged token', { method: 'POST', url: '/auth/refresh', payload: { refreshToken: 'a.b.c' } })
  await check('POST /auth/refresh', 'no token', { method: 'POST', url: '/auth/refresh' })
  await check('POST /auth/refresh', 'cookie without the CSRF header', { method: 'POST', url: '/auth/refresh', cookies: { refresh_token: 'x' } })
  await check('POST /auth/refresh', 'oversized body', { method: 'POST', url: '/auth/refresh', payload: { refreshToken: 'x'.repeat(32 * 1024) } })
  await check('POST /auth/refresh', 'XML body', { method: 'POST', url: '/auth/refresh', headers: { 'content-type': 'text/xml' }, payload: '<a/>' })

  const { accessToken } = await login('doc')
  const bearer = { authorization: `Bearer ${accessToken}` }
  const listed = await check('GET /auth/sessions', 'list', { method: 'GET', url: '/auth/sessions', headers: bearer })
  t.equal(listed.json().sessions.length, 2, 'both sessions listed')
  await check('GET /auth/sessions', 'list without a token', { method: 'GET', url: '/auth/sessions' })
  await check('DELETE /auth/sessions/{id}', 'unknown session', { method: 'DELETE', url: '/auth/sessions/nope', headers: bearer })
  await check('DELETE /auth/sessions/{id}', 'without a token', { method: 'DELETE', url: '/auth/sessions/nope' })
  await check('DELETE /auth/sessions/{id}', 'with a cookie but no CSRF header', { method: 'DELETE', url: '/auth/sessions/nope', cookies: { access_token: accessToken } })
  const other = listed.json().sessions.find((session: { current: boolean }) => !session.current).sessionId
  await check('DELETE /auth/sessions/{id}', 'end another session', { method: 'DELETE', url: `/auth/sessions/${other as string}`, headers: bearer })
  await check('POST /auth/logout', 'logout with a bad body', { method: 'POST', url: '/auth/logout', payload: [1] })
  await check('POST /auth/logout-all', 'logout-all without a token', { method: 'POST', url: '/auth/logout-all' })
  await check('POST /auth/logout-all', 'logout-all', { method: 'POST', url: '/auth/logout-all', headers: bearer })
  await check('POST /auth/logout', 'logout', { method: 'POST', url: '/auth/logout', headers: bearer })
  const jwks = await check('GET /auth/.well-known/jwks.json', 'jwks', { method: 'GET', url: '/auth/.well-known/jwks.json' })
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const native = await login('doc')
  const granted = await check('POST /auth/token', 'refresh grant', {
    method: 'POST', url: '/auth/token', headers: form, payload: `grant_type=refresh_token&refresh_token=${native.refreshToken}`
  })
  t.equal(granted.statusCode, 200)
  await check('POST /auth/token', 'refresh grant with a used token', {
    method: 'POST', url: '/auth/token', headers: form, payload: `grant_type=refresh_token&refresh_token=${native.refreshToken}`
  })
  await check('POST /auth/token', 'a JSON body', { method: 'POST', url: '/auth/token', payload: { grant_type: 'refresh_token' } })
  await check('POST /auth/token', 'oversized body', { method: 'POST', url: '/auth/token', headers: form, payload: `refresh_token=${'x'.repeat(32 * 1024)}` })
  await check('POST /auth/revoke', 'revoke', { method: 'POST', url: '/auth/revoke', headers: form, payload: `token=${granted.json().refresh_token as string}` })
  await check('POST /auth/revoke', 'revoke without a token', { method: 'POST', url: '/auth/revoke', headers: form, payload: '' })
  t.equal(jwks.json().keys[0]?.kid, 'ed', 'the key survives serialization whole')
  t.equal(jwks.json().keys[0]?.x?.length, 43, 'with its public part')
})

t.test('the schemas describe; they do not coerce: the handlers\' own checks decide', async (t) => {
  const app = await documentedApp(t)
  for (const refreshToken of [123, true, ['x'], { a: 1 }, '']) {
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
    t.equal(response.json().code, 'FTS_BAD_REQUEST', `${JSON.stringify(refreshToken)}: our 400, not coerced to a string`)
  }
  const unknownFields = await app.inject({ method: 'POST', url: '/auth/logout', payload: { other: 1 } })
  t.equal(unknownFields.statusCode, 204, 'fields the route does not use are ignored, as before')
})

t.test('an app\'s error handler may add fields: error schemas pass them through', async (t) => {
  const app = await documentedApp(t, (app) => {
    app.setErrorHandler(async (error: { statusCode?: number, code?: string, message: string }, request, reply) => {
      reply.code(error.statusCode ?? 500)
      return { statusCode: error.statusCode, code: error.code, error: 'Unauthorized', message: error.message, requestId: request.id }
    })
  })
  const response = await app.inject({ method: 'POST', url: '/auth/refresh' })
  t.equal(response.statusCode, 401)
  t.match(response.json(), { code: 'FTS_TOKEN_MISSING', requestId: /^req-/ }, 'the app\'s own field survives serialization')
})
