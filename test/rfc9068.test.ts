// Access tokens as an OAuth resource server checks them: oauth4webapi's
// validateJwtAccessToken (RFC 9068, keys from the plugin's JWKS over HTTP) accepts them
// when the plugin claims the profile, and the plugin claims it only with every claim the
// profile requires.
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { allowInsecureRequests, validateJwtAccessToken, type AuthorizationServer } from 'oauth4webapi'
import { buildApp, login } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'

const ISSUER = 'https://auth.example.com'
const AUDIENCE = 'https://api.example.com'
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
const accessTokenKeys = [{ kid: 'es-1', algorithm: 'ES256' as const, key }]

/** The plugin's app, listening, and the authorization server metadata a resource server would hold. */
async function served (t: Parameters<typeof buildApp>[0], options: Record<string, unknown>): Promise<{ app: FastifyInstance, as: AuthorizationServer }> {
  const app = await buildApp(t, { accessTokenKeys, routes: { jwks: true }, ...options })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, as: { issuer: ISSUER, jwks_uri: `${address}/auth/.well-known/jwks.json` } }
}

function resourceRequest (accessToken: string): Request {
  return new Request('https://api.example.com/orders', { headers: { authorization: `Bearer ${accessToken}` } })
}

t.test('with clientId, issuer and audience, access tokens pass validateJwtAccessToken', async (t) => {
  const { app, as } = await served(t, { issuer: ISSUER, audience: AUDIENCE, clientId: 'web-app' })
  const first = await login(app, 'alice')
  const second = await login(app, 'alice')
  const claims = await validateJwtAccessToken(as, resourceRequest(first.accessToken), AUDIENCE, { [allowInsecureRequests]: true })
  t.match(claims, { iss: ISSUER, aud: AUDIENCE, sub: 'alice', client_id: 'web-app', jti: String })
  t.not(payloadOf(first.accessToken).jti, payloadOf(second.accessToken).jti, 'a jti of its own per token')
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${first.accessToken}` } })
  t.equal(me.statusCode, 200, 'and the plugin accepts them too')
  t.notOk('client_id' in me.json() || 'jti' in me.json(), 'protocol claims stay out of request.user')
  await t.rejects(app.tokenSessions.issue('mallory', { claims: { client_id: 'other' } } as never), TypeError,
    'an app cannot set client_id as a claim of its own')
})

t.test('without clientId, access tokens are plain JWTs, which an RFC 9068 validator refuses', async (t) => {
  const { app, as } = await served(t, { issuer: ISSUER, audience: AUDIENCE })
  const tokens = await login(app, 'bob')
  const header = JSON.parse(Buffer.from(tokens.accessToken.split('.')[0] as string, 'base64url').toString()) as { typ: string }
  t.equal(header.typ, 'JWT', 'no at+jwt claimed')
  t.notOk('client_id' in payloadOf(tokens.accessToken))
  await t.rejects(validateJwtAccessToken(as, resourceRequest(tokens.accessToken), AUDIENCE, { [allowInsecureRequests]: true }), /typ/)
})
