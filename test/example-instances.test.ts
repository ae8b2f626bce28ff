// The example app as a multi-instance service: users live in Redis beside the sessions,
// so two app processes on one Redis share them, and a restart forgets nothing.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { ARGON2_OPTIONS } from '../example-app/src/passwords.js'
import { RedisUserRecords, Users } from '../example-app/src/users.js'
import { SECRET } from './helpers/common.js'
import {
  NEW_PASSWORD, PASSWORD, appStarter, assertError, bearer, call, loginNative, refreshNative, register
} from './helpers/example-app.js'
import { listeningUrl } from './helpers/packed.js'
import { freePort, startRedis } from './helpers/redis.mjs'
import { startCluster } from './helpers/topology.js'
import { Cluster } from 'ioredis'
import { RedisFailureGate } from '../example-app/src/throttle.js'

const SERVER = fileURLToPath(new URL('../example-app/dist/server.js', import.meta.url))
const redis = await startRedis(t)
const startApp = appStarter(redis)

/** One app process, as `npm start` runs it (the built server), on a free port. */
async function startProcess (t: Test, env: Record<string, string>): Promise<{ url: string, child: ChildProcess }> {
  const child = spawn(process.execPath, [SERVER], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, JWT_SECRET: SECRET, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(async () => { await stop(child) })
  const url = await listeningUrl(child)
  if (url === undefined) throw new Error('the app process ended before it listened')
  return { url, child }
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

t.test('two app processes on one Redis: register on A, log in on B, change the password on B', async (t) => {
  const env = { KEY_PREFIX: 'pair:' }
  const a = await startProcess(t, env)
  const b = await startProcess(t, env)
  await register(a.url, 'alice')
  const onA = await loginNative(a.url, 'alice')
  const onB = await loginNative(b.url, 'alice')
  const other = await loginNative(b.url, 'alice')
  t.equal((await call(a.url, 'GET', '/me', { headers: bearer(onB.accessToken) })).status, 200, 'a session started on B works on A')

  const changed = await call(b.url, 'POST', '/auth/change-password', { json: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }, headers: bearer(onB.accessToken) })
  t.equal(changed.status, 204)
  for (const [name, url] of [['A', a.url], ['B', b.url]] as const) {
    assertError(t, await call(url, 'GET', '/me', { headers: bearer(onA.accessToken) }), 401, 'FTS_SESSION_REVOKED', `the session started on A ends, seen on ${name}`)
    assertError(t, await call(url, 'GET', '/me', { headers: bearer(other.accessToken) }), 401, 'FTS_SESSION_REVOKED', `another session on B ends, seen on ${name}`)
    t.equal((await call(url, 'GET', '/me', { headers: bearer(onB.accessToken) })).status, 200, `the changing session lives, seen on ${name}`)
  }
  assertError(t, await refreshNative(a.url, onA.refreshToken), 401, 'FTS_SESSION_REVOKED', 'the ended session cannot refresh')
  assertError(t, await call(a.url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } }), 401, 'INVALID_CREDENTIALS', 'the old password is gone on A')
  t.equal((await call(a.url, 'POST', '/auth/login', { json: { username: 'alice', password: NEW_PASSWORD } })).status, 200, 'the new one works on A')

  await stop(a.child)
  const restarted = await startProcess(t, env)
  t.equal((await call(restarted.url, 'POST', '/auth/login', { json: { username: 'alice', password: NEW_PASSWORD } })).status, 200, 'a restart forgets no user')
})

t.test('racing registrations of one name, on two instances: one wins, whatever the case', async (t) => {
  const env = { KEY_PREFIX: 'race:' }
  const a = await startApp(t, env)
  const b = await startApp(t, env)
  const names = ['Carol', 'carol', 'CAROL', 'carol', 'Carol', 'caRol']
  const results = await Promise.all(names.map(async (name, i) =>
    await call(i % 2 === 0 ? a.url : b.url, 'POST', '/auth/register', { json: { username: name, password: PASSWORD }, headers: { 'x-forwarded-for': `10.0.0.${i}` } })))
  t.same(results.map((result) => result.status).sort(), [201, 409, 409, 409, 409, 409], 'one 201, the others 409 USERNAME_TAKEN')
  const winner = results.find((result) => result.status === 201)?.body as { username: string }
  t.equal((await call(b.url, 'POST', '/auth/login', { json: { username: 'CaRoL', password: PASSWORD } })).status, 200, `the winner (${winner.username}) logs in, in any case`)
})

t.test('a registration interrupted between its steps never blocks nor hijacks the name', async (t) => {
  const client = redis.client()
  t.teardown(() => client.quit())
  const records = new RedisUserRecords(client, 'interrupted:')
  const users = new Users(records)
  // Interrupted after the claim: the name is held only until the claim lapses.
  t.equal(await records.claim('dave', 'crashed-id', 300), true)
  t.equal(await users.register('dave', PASSWORD), undefined, 'while the claim holds, the name is taken')
  await new Promise((resolve) => setTimeout(resolve, 350))
  const dave = await users.register('Dave', PASSWORD)
  t.type(dave?.id, 'string', 'after it lapses, the name is free')
  // Interrupted after the record: an orphan no name points to, which nobody can log in as.
  await records.create('orphan-id', { username: 'erin', hash: 'x' })
  t.equal(await users.verify('erin', PASSWORD), undefined, 'an orphan record is unreachable')
  t.type((await users.register('erin', PASSWORD))?.id, 'string', 'and does not hold the name')
  // A stall longer than the claim: the name went to another; the stalled one gets nothing.
  const slow = new Users({
    confirm: async (name, id) => await records.confirm(name, id),
    idOf: async (name) => await records.idOf(name),
    read: async (id) => await records.read(id),
    remove: async (id) => await records.remove(id),
    swapHash: async (id, expected, next) => await records.swapHash(id, expected, next),
    claim: async (name: string, id: string) => await records.claim(name, id, 50),
    create: async (id: string, record: { username: string, hash: string }) => {
      await new Promise((resolve) => setTimeout(resolve, 100))
      t.equal(await records.claim('frank', 'quick-id', 60_000), true, 'another registration takes the lapsed name')
      await records.create(id, record)
    }
  })
  t.equal(await slow.register('frank', PASSWORD), undefined, 'the stalled registration fails')
  t.equal(await records.idOf('frank'), 'quick-id', 'the name stays the other\'s')
  const names = await Promise.all((await client.keys('interrupted:users:{*}')).map(async (key) => await client.hget(key, 'username')))
  t.notOk(names.includes('frank'), 'the stalled registration\'s record was removed')
  t.ok(names.includes('Dave') && names.includes('erin'), 'the others\' records are there')
})

t.test('users and the password back-off on a Redis Cluster', async (t) => {
  const nodes = await startCluster(t)
  const cluster = new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })))
  t.teardown(() => cluster.quit())
  const users = new Users(new RedisUserRecords(cluster, 'cluster:'))
  const names = ['kate', 'liam', 'mona', 'nils', 'olga', 'pete']
  const registered = await Promise.all(names.map(async (name) => await users.register(name, PASSWORD)))
  t.ok(registered.every((user) => typeof user?.id === 'string'), 'registrations over many slots (name and record in different ones)')
  t.equal(await users.register('KATE', PASSWORD), undefined, 'names stay unique')
  const kate = registered[0] as { id: string }
  t.match(await users.verify('Kate', PASSWORD), { id: kate.id, username: 'kate' })
  const checked = await users.checkPassword(kate.id, PASSWORD)
  t.type(checked, 'string')
  t.ok(await users.replacePassword(kate.id, checked as string, NEW_PASSWORD), 'a password change')
  t.equal(await users.verify('kate', PASSWORD), undefined)
  t.ok(await users.verify('kate', NEW_PASSWORD))
  const gate = new RedisFailureGate(cluster, 'cluster:')
  for (let i = 0; i < 6; i++) t.equal(await gate.attempt(kate.id), 0, `attempt ${i + 1} may go`)
  t.ok(await gate.attempt(kate.id) > 0, 'the seventh waits: the back-off counts on a Cluster too')
  await gate.succeeded(kate.id)
  t.equal(await gate.attempt(kate.id), 0, 'a right password clears it')
})

t.test('passwords: Argon2id at OWASP\'s parameters; an older scrypt hash is upgraded at the next login', async (t) => {
  const { url, keyPrefix } = await startApp(t)
  const user = await register(url, 'grace')
  const client = redis.client()
  t.teardown(() => client.quit())
  const stored = await client.hget(`${keyPrefix}users:{${user.id}}`, 'hash')
  t.match(stored, new RegExp(`^\\$argon2id\\$v=19\\$m=${ARGON2_OPTIONS.memoryCost},p=${ARGON2_OPTIONS.parallelism},t=${ARGON2_OPTIONS.timeCost}\\$`), 'argon2id, m=19 MiB, t=2, p=1')
  t.equal(ARGON2_OPTIONS.memoryCost, 19_456)
  // A hash as earlier versions wrote it: scrypt at Node's defaults.
  const { scryptSync, randomBytes } = await import('node:crypto')
  const salt = randomBytes(16)
  await client.hset(`${keyPrefix}users:{${user.id}}`, 'hash', `scrypt$${salt.toString('base64')}$${scryptSync(PASSWORD, salt, 64).toString('base64')}`)
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'grace', password: 'wrong password' } }), 401, 'INVALID_CREDENTIALS', 'a wrong password against the old hash')
  t.match(await client.hget(`${keyPrefix}users:{${user.id}}`, 'hash'), /^scrypt\$/, 'which stays as it was')
  t.equal((await call(url, 'POST', '/auth/login', { json: { username: 'grace', password: PASSWORD } })).status, 200, 'the right password against the old hash')
  t.match(await client.hget(`${keyPrefix}users:{${user.id}}`, 'hash'), /^\$argon2id\$/, 'is upgraded to Argon2id')
  t.equal((await call(url, 'POST', '/auth/login', { json: { username: 'grace', password: PASSWORD } })).status, 200, 'and works after')
})

t.test('the password change is throttled per user across instances, with a growing wait', async (t) => {
  const env = { KEY_PREFIX: 'throttle:', RATE_LIMIT_LOGIN: '1000' }
  const a = await startApp(t, env)
  const b = await startApp(t, env)
  await register(a.url, 'heidi')
  const session = await loginNative(a.url, 'heidi')
  const attempt = async (url: string, currentPassword: string): ReturnType<typeof call> =>
    await call(url, 'POST', '/auth/change-password', { json: { currentPassword, newPassword: NEW_PASSWORD }, headers: bearer(session.accessToken) })
  for (let i = 1; i <= 6; i++) {
    assertError(t, await attempt(i % 2 === 0 ? a.url : b.url, `guess ${i}`), 401, 'INVALID_CREDENTIALS', `wrong password ${i}, on either instance`)
  }
  const waiting = await attempt(b.url, PASSWORD)
  assertError(t, waiting, 429, 'RATE_LIMITED', 'then even the right password waits, on the other instance too')
  t.equal(waiting.headers.get('retry-after'), '1', 'one second after the sixth failure')
  await new Promise((resolve) => setTimeout(resolve, 1100))
  assertError(t, await attempt(a.url, 'guess 7'), 401, 'INVALID_CREDENTIALS', 'after the wait, another try')
  t.equal((await attempt(b.url, PASSWORD)).headers.get('retry-after'), '2', 'and the next wait doubles')
  await new Promise((resolve) => setTimeout(resolve, 2100))
  t.equal((await attempt(a.url, PASSWORD)).status, 204, 'the right password after the wait: changed, and the count cleared')
})

t.test('a burst of parallel wrong passwords gets no more tries than one after another', async (t) => {
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '1000' })
  await register(url, 'burst')
  const session = await loginNative(url, 'burst')
  const statuses = await Promise.all(Array.from({ length: 20 }, async (_, i) =>
    (await call(url, 'POST', '/auth/change-password', { json: { currentPassword: `guess ${i}`, newPassword: NEW_PASSWORD }, headers: bearer(session.accessToken) })).status))
  t.equal(statuses.filter((status) => status === 401).length, 6, 'six passwords checked (the five free and the one that starts the wait)')
  t.equal(statuses.filter((status) => status === 429).length, 14, 'the rest wait')
})

t.test('the password change is limited per IP too', async (t) => {
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '3' })
  await register(url, 'ivan')
  const session = await loginNative(url, 'ivan')
  // register and login used 2 of the 3; the limit counts per route.
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) {
    statuses.push((await call(url, 'POST', '/auth/change-password', { json: { currentPassword: `no ${i}`, newPassword: NEW_PASSWORD }, headers: bearer(session.accessToken) })).status)
  }
  t.same(statuses, [401, 401, 401, 429], 'the fourth attempt from the IP in the minute is refused')
})

t.test('a login with the old password racing a password change never keeps a session', async (t) => {
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '1000' })
  let password = PASSWORD
  let survived = 0
  for (let round = 0; round < 6; round++) {
    const name = `judy${round}`
    await register(url, name)
    const session = await loginNative(url, name)
    const next = `${NEW_PASSWORD} ${round}`
    password = PASSWORD
    const change = call(url, 'POST', '/auth/change-password', { json: { currentPassword: password, newPassword: next }, headers: bearer(session.accessToken) })
    await new Promise((resolve) => setTimeout(resolve, round * 12))
    const login = await call(url, 'POST', '/auth/login', { json: { username: name, password }, headers: { 'x-token-transport': 'body' } })
    t.equal((await change).status, 204, `round ${round}: the change went through`)
    if (login.status === 200) {
      const refreshed = await refreshNative(url, login.body.refreshToken as string)
      if (refreshed.status === 200) survived++
    } else {
      t.match(login.body.code, /^(INVALID_CREDENTIALS|FTS_CREDENTIALS_STALE)$/, `round ${round}: the login failed (${String(login.body.code)})`)
    }
  }
  t.equal(survived, 0, 'no session from the old password outlived the change')
})

t.test('/health and /health/ready', async (t) => {
  const outage = await startRedis(t)
  const { url } = await startApp(t, { REDIS_URL: outage.url })
  const live = await call(url, 'GET', '/health')
  t.equal(live.status, 200)
  t.same(live.body, { status: 'ok' })
  const ready = await call(url, 'GET', '/health/ready')
  t.equal(ready.status, 200)
  t.same(ready.body, { status: 'ready', store: 'up', revocationFeed: 'up', storage: 'redis' })
  await outage.stop()
  t.equal((await call(url, 'GET', '/health')).status, 200, 'alive without Redis')
  let notReady = await call(url, 'GET', '/health/ready')
  for (let i = 0; i < 40 && notReady.status !== 503; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    notReady = await call(url, 'GET', '/health/ready')
  }
  t.equal(notReady.status, 503, 'not ready without Redis')
  t.match(notReady.body, { status: 'unavailable', store: 'down', storage: 'redis' })
  await outage.start()
  let back = notReady
  for (let i = 0; i < 60 && back.status !== 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    back = await call(url, 'GET', '/health/ready')
  }
  t.equal(back.status, 200, 'ready again when Redis is back')
})

t.test('without Redis, /health/ready and the start-up log say that sessions live in memory', async (t) => {
  const closed = await freePort()
  const { url, logs } = await startApp(t, { REDIS_URL: `redis://127.0.0.1:${closed}` })
  const ready = await call(url, 'GET', '/health/ready')
  t.equal(ready.status, 200, 'the process works: ready')
  t.same(ready.body, { status: 'ready', store: 'up', revocationFeed: 'up', storage: 'memory' }, 'and says where sessions are')
  const warning = logs.entries().find((entry) => String(entry.msg).includes('IN MEMORY'))
  t.equal(warning?.level, 40, 'the log warns')
  t.notOk(logs.entries().some((entry) => String(entry.msg).startsWith('sessions are stored in Redis')), 'and claims no Redis')
})

t.test('with Redis, the start-up line names it (host and port: a URL may hold a password)', async (t) => {
  const { logs } = await startApp(t)
  const line = logs.entries().find((entry) => String(entry.msg).startsWith('sessions are stored in Redis'))
  t.equal(line?.msg, `sessions are stored in Redis at 127.0.0.1:${redis.port}`)
})
