// The README's oauth4webapi recipe, as written, in a process of its own against the plugin
// over HTTPS (oauth4webapi refuses plain HTTP unless told otherwise, and the recipe does not
// tell it): a DPoP-bound login, a refresh, an API call, a logout.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import tokenSessions, { tokenResponse } from '../lib/index.js'
import { SECRET } from './helpers/common.js'
import { startRedis } from './helpers/redis.mjs'

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const section = README.slice(README.indexOf('### Native clients with OAuth libraries, and DPoP'), README.indexOf('## How it works'))
const recipe = /```js\n([\s\S]*?)```/.exec(section)?.[1]

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

t.test('the README\'s oauth4webapi recipe runs as written', async (t) => {
  t.ok(recipe?.includes('refreshTokenGrantRequest') && recipe.includes('revocationRequest'), 'the recipe')
  const dir = mkdtempSync(join(tmpdir(), 'fts-recipe-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { key, cert, file } = certificate(dir)
  const redis = await startRedis(t)
  const app = Fastify({ https: { key, cert } })
  await app.register(tokenSessions, { secret: SECRET, redis: redis.url, routes: true, clientId: 'my-native-app', dpop: { nonces: true } })
  app.post<{ Body: { userId: string } }>('/auth/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
  app.get('/me', { onRequest: app.authenticate }, async (request) => request.user)
  t.teardown(() => app.close())
  const origin = await app.listen({ port: 0, host: '127.0.0.1' })

  // The recipe imports oauth4webapi: it runs beside this project's node_modules.
  const project = new URL('..', import.meta.url).pathname
  const work = mkdtempSync(join(project, 'node_modules', '.fts-recipe-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  writeFileSync(join(work, 'recipe.mjs'), recipe as string)
  writeFileSync(join(work, 'driver.mjs'), DRIVER)
  const child = spawn(process.execPath, [join(work, 'driver.mjs'), origin], { env: { ...process.env, NODE_EXTRA_CA_CERTS: file, NODE_OPTIONS: '' } })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, `the recipe ran ${err}`)
  t.same(JSON.parse(out), { nonceAsked: true, loginType: 'DPoP', refreshedType: 'dpop', me: 200, user: 'reader', after: 'invalid_grant' },
    'bound at login (after learning the server nonce), refreshed, used, revoked')
})
