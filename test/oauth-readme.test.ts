// The oauth4webapi recipe of docs/native-clients.md, as written, in a process of its own
// against the plugin: over HTTPS, as in production, and over plain HTTP on the loopback
// address, as in development (oauth4webapi refuses plain HTTP unless told otherwise, and the
// recipe tells it so for a server on this machine only): a DPoP-bound login, a refresh, an
// API call, a logout.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenSessions, { tokenResponse } from '../lib/index.js'
import { SECRET } from './helpers/common.js'
import { ROOT, codeBlocks, section } from './helpers/docs.js'
import { startRedis } from './helpers/redis.mjs'

const recipe = codeBlocks(section('docs/native-clients.md', 'A recipe with oauth4webapi')).find((block) => block.language === 'js')?.code

/** A certificate for 127.0.0.1 that only the recipe's process trusts. */
function certificate (dir: string): { key: string, cert: string, file: string } {
  const file = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', file], { stdio: 'ignore' })
  } catch (error) {
    throw new Error('openssl makes this test\'s certificate: install it (Debian: apt-get install -y openssl, which ca-certificates depends on)', { cause: error })
  }
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(file, 'utf8'), file }
}

/** What the recipe's process does with the recipe, printing what it saw as JSON. */
const DRIVER = `
import * as recipe from './recipe.mjs'
const origin = process.argv[2]
const as = recipe.authorizationServer(origin)
const dpop = await recipe.deviceKey()
// The login is the app's own route: its proof comes from the same key, and its first answer
// names the server's nonce, which the handle learns.
const url = new URL(origin + '/auth/login')
const logIn = async () => {
  const headers = new Headers({ 'content-type': 'application/json', 'x-token-transport': 'body' })
  await dpop.addProof(url, headers, 'POST')
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ userId: 'reader' }) })
  dpop.cacheNonce(response, url)
  return response
}
let answer = await logIn()
const nonceAsked = answer.status === 400 && (await answer.json()).code === 'FTS_DPOP_NONCE_REQUIRED'
if (nonceAsked) answer = await logIn()
const login = await answer.json()
const refreshed = await recipe.refresh(as, dpop, login.refreshToken)
const me = await recipe.callApi(dpop, refreshed.access_token, origin + '/me')
const user = await me.json()
// The revocation's proof, from the same key, with the nonce the handle has learnt.
const proof = async (endpoint) => {
  const headers = new Headers()
  await dpop.addProof(endpoint, headers, 'POST')
  return headers.get('dpop')
}
await recipe.logOut(as, refreshed.refresh_token, proof)
const after = await recipe.refresh(as, dpop, refreshed.refresh_token).then(() => 'refreshed', (error) => error.error)
console.log(JSON.stringify({ nonceAsked, loginType: login.tokenType, refreshedType: refreshed.token_type, me: me.status, user: user.id, after }))
`

/** Runs the recipe through DRIVER against `origin`; what it saw, or its error output. */
async function runRecipe (t: Test, origin: string, env: Record<string, string>): Promise<unknown> {
  // The recipe imports oauth4webapi: it runs in a directory of its own whose node_modules
  // are this project's.
  const work = mkdtempSync(join(tmpdir(), 'fts-recipe-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  writeFileSync(join(work, 'package.json'), '{ "type": "module" }\n')
  symlinkSync(join(ROOT, 'node_modules'), join(work, 'node_modules'), 'dir')
  writeFileSync(join(work, 'recipe.mjs'), recipe as string)
  writeFileSync(join(work, 'driver.mjs'), DRIVER)
  const child = spawn(process.execPath, [join(work, 'driver.mjs'), origin], { env: { ...process.env, ...env, NODE_OPTIONS: '' } })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, `the recipe ran ${err}`)
  return code === 0 ? JSON.parse(out) : err
}

/** The plugin's server, over HTTPS with `tls` or else plain HTTP, on 127.0.0.1. */
async function server (t: Test, tls?: { key: string, cert: string }): Promise<string> {
  const redis = await startRedis(t)
  // One type for both: the routes below do not care which server carries them.
  const app = (tls === undefined ? Fastify() : Fastify({ https: tls })) as FastifyInstance
  await app.register(tokenSessions, { secret: SECRET, redis: redis.url, routes: true, clientId: 'my-native-app', dpop: { nonces: true } })
  app.post<{ Body: { userId: string } }>('/auth/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
  app.get('/me', { onRequest: app.authenticate }, async (request) => request.user)
  t.teardown(() => app.close())
  return await app.listen({ port: 0, host: '127.0.0.1' })
}

const EXPECTED = { nonceAsked: true, loginType: 'DPoP', refreshedType: 'dpop', me: 200, user: 'reader', after: 'invalid_grant' }

t.test('the recipe runs as written over HTTPS', async (t) => {
  t.ok(recipe?.includes('refreshTokenGrantRequest') && recipe.includes('revocationRequest'), 'the recipe')
  const dir = mkdtempSync(join(tmpdir(), 'fts-recipe-cert-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { key, cert, file } = certificate(dir)
  const origin = await server(t, { key, cert })
  t.same(await runRecipe(t, origin, { NODE_EXTRA_CA_CERTS: file }), EXPECTED, 'bound at login (after learning the server nonce), refreshed, used, revoked')
})

t.test('the recipe runs as written over plain HTTP on the loopback address (development)', async (t) => {
  const origin = await server(t)
  t.match(origin, /^http:\/\/127\.0\.0\.1:/)
  t.same(await runRecipe(t, origin, {}), EXPECTED, 'the same, without TLS')
})

t.test('over plain HTTP to another host the recipe refuses, as oauth4webapi does', async (t) => {
  // No request is made: the library refuses the http URL before sending anything.
  const work = mkdtempSync(join(tmpdir(), 'fts-recipe-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  writeFileSync(join(work, 'package.json'), '{ "type": "module" }\n')
  symlinkSync(join(ROOT, 'node_modules'), join(work, 'node_modules'), 'dir')
  writeFileSync(join(work, 'recipe.mjs'), recipe as string)
  writeFileSync(join(work, 'remote.mjs'), `import * as recipe from './recipe.mjs'
const as = recipe.authorizationServer('http://sessions.example.com')
const dpop = await recipe.deviceKey()
console.log(await recipe.refresh(as, dpop, 'a-refresh-token').then(() => 'sent', (error) => error.code))
`)
  const out = execFileSync(process.execPath, [join(work, 'remote.mjs')], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
  t.equal(out.trim(), 'OAUTH_HTTP_REQUEST_FORBIDDEN')
})
