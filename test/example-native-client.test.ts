// The example app and native clients: a login that names its OAuth client (NATIVE_CLIENT_IDS),
// the DPoP prover of `fastify-token-sessions/client/dpop` with a key pair of the client's own
// (no IndexedDB: Node), and docs/native-clients.md's walk-through run as written.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createDpopProver } from '../client/dpop.js'
import { loadConfig } from '../example-app/src/config.js'
import { PASSWORD, appStarter, assertError, call, register, type Call } from './helpers/example-app.js'
import { ROOT, codeBlocks, section } from './helpers/docs.js'
import { startRedis } from './helpers/redis.mjs'

const redis = await startRedis(t)
const startApp = appStarter(redis)
/** The longest client id the plugin takes (100 characters). */
const LONGEST = 'c'.repeat(100)
const CLIENTS = { NATIVE_CLIENT_IDS: `my-native-app, other-app, ${LONGEST}` }

/** A form posted to one of the plugin's OAuth routes. */
async function form (base: string, path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Call> {
  return await call(base, 'POST', path, { body: new URLSearchParams(fields).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } })
}

async function login (url: string, body: Record<string, string>, headers: Record<string, string> = {}): Promise<Call> {
  return await call(url, 'POST', '/auth/login', { json: body, headers: { 'x-token-transport': 'body', ...headers } })
}

t.test('NATIVE_CLIENT_IDS: comma-separated client ids, none by default', async (t) => {
  t.same(loadConfig({}).nativeClientIds, [], 'none by default')
  t.same(loadConfig({ NATIVE_CLIENT_IDS: '' }).nativeClientIds, [], 'empty is none')
  t.same(loadConfig({ NATIVE_CLIENT_IDS: ' my-app , com.example.app_2~x ,my-app' }).nativeClientIds, ['my-app', 'com.example.app_2~x'], 'trimmed, once each')
  for (const bad of ['my app', 'a,b c', 'ünicode', 'a'.repeat(101), 'x/y']) {
    t.throws(() => loadConfig({ NATIVE_CLIENT_IDS: bad }), { name: 'ConfigError', message: /^NATIVE_CLIENT_IDS must be client ids separated by commas/ }, JSON.stringify(bad))
  }
})

t.test('a login names its client: the session is issued to it, and an unknown one is refused before the password is checked', async (t) => {
  const { url } = await startApp(t, { ...CLIENTS, RATE_LIMIT_LOGIN: '1000' })
  await register(url, 'alice')
  for (const password of ['wrong password', PASSWORD]) {
    const refused = await login(url, { username: 'alice', password, client_id: 'stranger' })
    assertError(t, refused, 400, 'UNKNOWN_CLIENT', `an unknown client_id with a ${password === PASSWORD ? 'right' : 'wrong'} password`)
    t.notOk('accessToken' in refused.body, 'no session')
  }
  const issued = await login(url, { username: 'alice', password: PASSWORD, client_id: 'my-native-app' })
  t.equal(issued.status, 200)
  const other = await form(url, '/auth/token', { grant_type: 'refresh_token', refresh_token: issued.body.refreshToken, client_id: 'other-app' })
  t.equal(other.status, 400)
  t.match(other.body, { error: 'invalid_grant', error_description: /FTS_CLIENT_MISMATCH/ }, 'another client, even a known one, cannot refresh it')
  const own = await form(url, '/auth/token', { grant_type: 'refresh_token', refresh_token: issued.body.refreshToken, client_id: 'my-native-app' })
  t.equal(own.status, 200, 'its own client refreshes it, as an OAuth library does')
  t.match(own.body, { token_type: 'Bearer', refresh_token: String })

  const longest = await login(url, { username: 'alice', password: PASSWORD, client_id: LONGEST })
  t.equal(longest.status, 200, 'the longest client id NATIVE_CLIENT_IDS takes is one the plugin issues to')
  assertError(t, await login(url, { username: 'alice', password: PASSWORD, client_id: LONGEST + 'c' }), 400, 'FST_ERR_VALIDATION', 'a longer client_id is malformed')

  const plain = await login(url, { username: 'alice', password: PASSWORD })
  t.equal(plain.status, 200, 'without client_id, a login as before')
  const named = await form(url, '/auth/token', { grant_type: 'refresh_token', refresh_token: plain.body.refreshToken, client_id: 'my-native-app' })
  t.match(named.body, { error: 'invalid_grant' }, 'a session issued to no client refuses every client_id (why a native client names itself)')
  assertError(t, await login(url, { username: 'alice', password: PASSWORD, client_id: '' }), 400, 'FST_ERR_VALIDATION', 'an empty client_id is malformed')

  const none = await startApp(t, {})
  await register(none.url, 'bob')
  assertError(t, await login(none.url, { username: 'bob', password: PASSWORD, client_id: 'my-native-app' }), 400, 'UNKNOWN_CLIENT', 'with no NATIVE_CLIENT_IDS, every client_id is unknown')
})

t.test('the DPoP prover with a key pair of its own: proofs for every request, in Node (no IndexedDB)', async (t) => {
  t.equal(typeof (globalThis as { indexedDB?: unknown }).indexedDB, 'undefined', 'this runtime has no IndexedDB')
  const { url } = await startApp(t, CLIENTS)
  await register(url, 'carol')
  const keyPair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
  const prover = await createDpopProver({ keyPair })
  const proofFor = async (method: string, path: string, accessToken?: string): Promise<Record<string, string>> =>
    ({ dpop: await prover.proof(method, url + path, accessToken === undefined ? {} : { accessToken }) })

  const bound = await login(url, { username: 'carol', password: PASSWORD, client_id: 'my-native-app' }, await proofFor('POST', '/auth/login'))
  t.equal(bound.body.tokenType, 'DPoP', 'login: the session is bound to the key')
  const refreshed = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: bound.body.refreshToken }, headers: await proofFor('POST', '/auth/refresh') })
  t.equal(refreshed.status, 200, 'refresh: the proof is accepted')
  const { accessToken, refreshToken } = refreshed.body
  const auth = { authorization: `DPoP ${accessToken as string}` }
  t.equal((await call(url, 'GET', '/me', { headers: { ...auth, ...await proofFor('GET', '/me', accessToken) } })).status, 200, 'an API call: the proof names the token (ath)')
  const noAth = await call(url, 'GET', '/me', { headers: { ...auth, ...await proofFor('GET', '/me') } })
  t.equal(noAth.status, 401, 'without the token\'s hash, the same call is refused')
  t.match(noAth.headers.get('www-authenticate'), /^DPoP error="invalid_dpop_proof"/)
  const revoked = await form(url, '/auth/revoke', { token: refreshToken, client_id: 'my-native-app' }, await proofFor('POST', '/auth/revoke'))
  t.equal(revoked.status, 200, 'revocation: a grant\'s proof')
  const after = await call(url, 'GET', '/me', { headers: { ...auth, ...await proofFor('GET', '/me', accessToken) } })
  assertError(t, after, 401, 'FTS_SESSION_REVOKED', 'the session ended')

  const second = await login(url, { username: 'carol', password: PASSWORD }, await proofFor('POST', '/auth/login'))
  const out = await call(url, 'POST', '/auth/logout', { headers: { authorization: `DPoP ${second.body.accessToken as string}`, ...await proofFor('POST', '/auth/logout', second.body.accessToken) } })
  t.equal(out.status, 204, 'logout with the access token and a proof naming it')
  assertError(t, await call(url, 'GET', '/me', { headers: { authorization: `DPoP ${second.body.accessToken as string}`, ...await proofFor('GET', '/me', second.body.accessToken) } }),
    401, 'FTS_SESSION_REVOKED', 'that session ended too')
})

const walkthrough = codeBlocks(section('docs/native-clients.md', 'End to end against the example app')).find((block) => block.language === 'js')?.code

/** Runs the walk-through, as written, in a process of its own; what it returned, as JSON. */
async function runWalkthrough (t: Test, origin: string, username: string): Promise<any> {
  const work = mkdtempSync(join(tmpdir(), 'fts-walkthrough-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  writeFileSync(join(work, 'package.json'), '{ "type": "module" }\n')
  // Its imports resolve as an app's would: oauth4webapi, and this package by its name.
  mkdirSync(join(work, 'node_modules'))
  for (const name of ['oauth4webapi']) symlinkSync(join(ROOT, 'node_modules', name), join(work, 'node_modules', name), 'dir')
  symlinkSync(ROOT, join(work, 'node_modules', 'fastify-token-sessions'), 'dir')
  writeFileSync(join(work, 'walkthrough.mjs'), walkthrough as string)
  writeFileSync(join(work, 'driver.mjs'), `import { signInAndOut } from './walkthrough.mjs'
console.log(JSON.stringify(await signInAndOut(process.argv[2], process.argv[3], process.argv[4])))
`)
  const child = spawn(process.execPath, [join(work, 'driver.mjs'), origin, username, PASSWORD], { env: { ...process.env, NODE_OPTIONS: '' } })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, `the walk-through ran ${err}`)
  return code === 0 ? JSON.parse(out) : undefined
}

for (const nonces of ['false', 'true']) {
  t.test(`docs/native-clients.md's walk-through runs as written against the example app (DPOP_NONCES=${nonces})`, async (t) => {
    t.ok(walkthrough?.includes('refreshTokenGrantRequest') && walkthrough.includes('revocationRequest'), 'the walk-through')
    const { url } = await startApp(t, { ...CLIENTS, DPOP_NONCES: nonces })
    const user = await register(url, `native-${nonces}`)
    const result = await runWalkthrough(t, url, user.username)
    t.match(result, { loginType: 'DPoP', refreshedType: 'dpop', me: { status: 200, id: user.id, username: user.username } }, 'logged in bound, refreshed by oauth4webapi, called the API')
    const after = await form(url, '/auth/token', { grant_type: 'refresh_token', refresh_token: result?.refreshToken, client_id: 'my-native-app' })
    t.match(after.body, { error: 'invalid_grant' }, 'after its revocation, the refresh token is dead')
  })
}
