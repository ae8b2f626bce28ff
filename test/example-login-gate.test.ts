import t from 'tap'
import type { Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../example-app/src/config.js'
import { FAILED_NETWORK_MEMORY_MS, LOGIN_WINDOW_MS, MAX_FAILED_NETWORKS, MemoryLoginGate, RedisLoginGate, type LoginGate, type LoginPass } from '../example-app/src/login-gate.js'
import { networkOf } from '../example-app/src/networks.js'
import { PASSWORD, appStarter, assertError, call, callFrom, register, type Call } from './helpers/example-app.js'
import { freePort, startRedis } from './helpers/redis.mjs'

// The example app's login gate: password checks per account, whatever the networks they
// come from (issue: guesses spread over 4 addresses found a password), and every limit keyed
// by network (an IPv4 address, an IPv6 /64).
const redis = await startRedis(t)
const startApp = appStarter(redis)

const WRONG = 'wrong password'

/** The gate counts in windows of the clock's minutes: a test that needs one window starts at least 20 s before the next. */
async function freshWindow (): Promise<void> {
  const left = LOGIN_WINDOW_MS - (Date.now() % LOGIN_WINDOW_MS)
  if (left < 20_000) await sleep(left + 50)
}

/** A login from `address` (a loopback address of this machine). */
async function loginFrom (address: string, url: string, username: string, password: string): Promise<Call> {
  return await callFrom(address, url, 'POST', '/auth/login', { json: { username, password } })
}

/** A login as the client `forwarded` behind a trusted proxy (the app trusts 127.0.0.1). */
async function loginAs (forwarded: string, url: string, username: string, password: string): Promise<Call> {
  return await call(url, 'POST', '/auth/login', { json: { username, password }, headers: { 'x-forwarded-for': forwarded } })
}

/** Answers that checked the password: a 401 or a 200 (the gate refuses with 429 before the check). */
function checked (answers: Call[]): number {
  return answers.filter((answer) => answer.status === 401 || answer.status === 200).length
}

/** The gate's 429: the app's shape, Retry-After within the minute, while the network's own limit had requests left. */
function assertGated (t: Test, answer: Call, label: string): void {
  assertError(t, answer, 429, 'RATE_LIMITED', label)
  const retryAfter = Number(answer.headers.get('retry-after'))
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${label}: Retry-After in seconds within the minute (${String(answer.headers.get('retry-after'))})`)
  t.ok(Number(answer.headers.get('x-ratelimit-remaining')) > 0, `${label}: refused by the account's gate, not by the network's limit`)
  t.equal(answer.headers.getSetCookie().length, 0, `${label}: no session`)
}

t.test('networkOf: IPv4 as it is, IPv6 by its /64, IPv4-mapped as IPv4', async (t) => {
  t.equal(networkOf('203.0.113.7'), '203.0.113.7')
  t.equal(networkOf('::ffff:203.0.113.7'), '203.0.113.7', 'as a dual-stack server sees an IPv4 client')
  t.equal(networkOf('::ffff:cb00:7107'), '203.0.113.7', 'the mapped form written in hex')
  t.equal(networkOf('0:0:0:0:0:ffff:203.0.113.7'), '203.0.113.7', 'written out')
  t.equal(networkOf('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(networkOf('2001:db8:1:2::9'), '2001:db8:1:2::/64', 'one /64 whatever the host part')
  t.equal(networkOf('2001:0DB8:0001:0002:ffff::1'), '2001:db8:1:2::/64', 'leading zeros and case do not make another network')
  t.not(networkOf('2001:db8:1:3::1'), networkOf('2001:db8:1:2::1'), 'the next /64 is another network')
  t.equal(networkOf('::1'), '0:0:0:0::/64')
  t.equal(networkOf('2001:db8::'), '2001:db8:0:0::/64')
  t.equal(networkOf('fe80::1%eth0'), 'fe80:0:0:0::/64', 'a zone names an interface, not an address')
  t.equal(networkOf('64:ff9b::203.0.113.7'), '64:ff9b:0:0::/64', 'NAT64 is IPv6 (its /64), not mapped IPv4')
  t.equal(networkOf('::203.0.113.7'), '0:0:0:0::/64', 'IPv4-compatible (deprecated) is not mapped')
  t.equal(networkOf('not an address'), 'not an address', 'what is not an address is left alone')
})

t.test('MemoryLoginGate: the budgets, the failed networks, successes given back, windows', async (t) => {
  let now = 10 * LOGIN_WINDOW_MS
  const gate = new MemoryLoginGate({ shared: 3, fresh: 2 }, () => now)
  const passes: Array<LoginPass | number> = []
  for (const network of ['a', 'b', 'a']) passes.push(await gate.attempt('alice', network))
  t.match(passes, [{ budget: 'shared' }, { budget: 'shared' }, { budget: 'shared' }], 'any network draws on the shared budget first')
  t.equal(await gate.attempt('alice', 'a'), LOGIN_WINDOW_MS, 'spent: a failed network waits for the window to end')
  t.equal(await gate.attempt('alice', 'b'), LOGIN_WINDOW_MS, 'every network that failed')
  const fresh = await gate.attempt('alice', 'c')
  t.match(fresh, { budget: 'fresh', network: 'c' }, 'a network new to the account gets in')
  t.type(await gate.attempt('alice', 'c'), 'number', 'and after its attempt it counts as failed')
  t.match(await gate.attempt('alice', 'd'), { budget: 'fresh' }, 'a second new network')
  t.type(await gate.attempt('alice', 'e'), 'number', 'the fresh budget is spent too')
  t.match(await gate.attempt('bob', 'a'), { budget: 'shared' }, 'another account has budgets of its own')

  await gate.succeeded(fresh as LoginPass)
  t.match(await gate.attempt('alice', 'c'), { budget: 'fresh' }, 'a right password gives its count back and clears its network')
  now += 30_000
  t.equal(await gate.attempt('alice', 'a'), 30_000, 'the wait is what is left of the window')
  now += 30_000
  t.match(await gate.attempt('alice', 'a'), { budget: 'shared' }, 'a new window, a new shared budget')

  const stale = await gate.attempt('carol', 'x') as LoginPass
  now += LOGIN_WINDOW_MS
  await gate.succeeded(stale)
  for (let i = 0; i < 3; i++) await gate.attempt('carol', 'y')
  t.type(await gate.attempt('carol', 'y'), 'number', 'a success of an earlier window gives nothing back to this one')
  t.match(await gate.attempt('carol', 'x'), { budget: 'fresh' }, 'but its network is cleared')

  now += FAILED_NETWORK_MEMORY_MS
  const dave = new MemoryLoginGate({ shared: 1, fresh: 1 }, () => now)
  await dave.attempt('dave', 'a')
  now += FAILED_NETWORK_MEMORY_MS - LOGIN_WINDOW_MS
  await dave.attempt('dave', 'b')
  t.type(await dave.attempt('dave', 'a'), 'number', 'a network is remembered as failed for the memory')
  now += LOGIN_WINDOW_MS
  await dave.attempt('dave', 'b')
  t.match(await dave.attempt('dave', 'a'), { budget: 'fresh' }, 'and then forgotten')
})

/** An account's failed networks are bounded: past the most, the one remembered longest ago goes. */
async function assertNetworksBounded (t: Test, gate: LoginGate): Promise<void> {
  for (let i = 0; i <= MAX_FAILED_NETWORKS; i++) await gate.attempt('alice', `n${i}`)
  // The shared budget is spent now; the network remembered longest ago was dropped.
  t.match(await gate.attempt('alice', 'n0'), { budget: 'fresh' }, `past ${MAX_FAILED_NETWORKS} failed networks the oldest is forgotten`)
  t.type(await gate.attempt('alice', `n${MAX_FAILED_NETWORKS}`), 'number', 'the newest is not')
}

t.test('RedisLoginGate: an account\'s failed networks are bounded', async (t) => {
  await freshWindow()
  const client = redis.client()
  t.teardown(() => client.quit())
  await assertNetworksBounded(t, new RedisLoginGate(client, 'bounded:', { shared: MAX_FAILED_NETWORKS + 1, fresh: 1 }))
  t.equal(await client.zcard('bounded:login:{alice}:failed'), MAX_FAILED_NETWORKS, 'in Redis too')
})

t.test('MemoryLoginGate: memory is bounded, per account and in accounts', async (t) => {
  const now = 10 * LOGIN_WINDOW_MS
  await assertNetworksBounded(t, new MemoryLoginGate({ shared: MAX_FAILED_NETWORKS + 1, fresh: 1 }, () => now))

  const crowd = new MemoryLoginGate({ shared: 1, fresh: 1 }, () => now)
  for (let i = 0; i < MemoryLoginGate.MAX_ACCOUNTS; i++) await crowd.attempt(`user${i}`, 'a')
  t.match(await crowd.attempt('newcomer', 'a'), { account: '*' }, 'past MAX_ACCOUNTS, newcomers share one entry')
  t.type(await crowd.attempt('another', 'a'), 'number', 'limited as one account')
  t.match(await crowd.attempt('user0', 'b'), { account: 'user0', budget: 'fresh' }, 'an account counted before keeps its own entry')
})

/**
 * The measure of the issue, on a gate in Redis or in memory: with RATE_LIMIT_LOGIN=10,
 * password checks against one account in a minute from 4 addresses, and from 100 addresses
 * of one IPv6 /64, are no more than from one; the owner, at a new address, logs in meanwhile.
 */
async function measure (t: Test, env: NodeJS.ProcessEnv): Promise<void> {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '10', TRUST_PROXY: '127.0.0.1', ...env })
  await register(url, 'alice')
  await register(url, 'bob')
  await register(url, 'carol')

  const one: Call[] = []
  for (let i = 0; i < 30; i++) one.push(await loginFrom('127.0.0.2', url, 'alice', `${WRONG} ${i}`))
  // 8 each, within each address's own limit of 10: only the account's gate can refuse them.
  const four: Call[] = []
  for (let i = 0; i < 32; i++) four.push(await loginFrom(`127.0.0.${3 + (i % 4)}`, url, 'bob', `${WRONG} ${i}`))
  const block: Call[] = []
  for (let i = 0; i < 100; i++) block.push(await loginAs(`2001:db8:1:2::${(i + 1).toString(16)}`, url, 'carol', `${WRONG} ${i}`))
  t.comment(`password checks in a minute against one account: from 1 address ${checked(one)} of 30, from 4 addresses ${checked(four)} of 32, from 100 addresses of one IPv6 /64 ${checked(block)} of 100`)
  t.equal(checked(one), 10, 'from one address: RATE_LIMIT_LOGIN')
  t.ok(checked(four) <= checked(one), `from 4 addresses no more than from one (${checked(four)})`)
  t.ok(checked(block) <= checked(one), `from one /64 no more than from one address (${checked(block)})`)
  assertGated(t, four[31] as Call, 'the 32nd guess from 4 addresses')

  t.equal((await loginFrom('127.0.0.9', url, 'bob', PASSWORD)).status, 200, 'the owner, at a new address, logs in during the attack')
  t.equal((await loginAs('2001:db8:1:3::1', url, 'carol', PASSWORD)).status, 200, 'and from another /64')
  assertGated(t, await loginFrom('127.0.0.3', url, 'bob', PASSWORD), 'the right password from a network that failed: refused without a check')
}

t.test('measure: no more password checks from 4 addresses or an IPv6 /64 than from one address (Redis)', async (t) => {
  await measure(t, {})
})

t.test('measure: the same without Redis (the gate in memory)', async (t) => {
  await measure(t, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
})

t.test('an attacker holding back networks gets at most RATE_LIMIT_LOGIN_NEW_NETWORKS more checks, each new network one', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '10', RATE_LIMIT_LOGIN_NEW_NETWORKS: '3' })
  await register(url, 'alice')
  const answers: Call[] = []
  for (let i = 0; i < 10; i++) answers.push(await loginFrom('127.0.0.2', url, 'alice', WRONG))
  for (let address = 3; address <= 7; address++) {
    answers.push(await loginFrom(`127.0.0.${address}`, url, 'alice', WRONG))
    answers.push(await loginFrom(`127.0.0.${address}`, url, 'alice', WRONG))
  }
  t.comment(`password checks in a minute from 6 addresses, 5 of them held back: ${checked(answers)} of ${answers.length}`)
  t.equal(checked(answers), 13, 'RATE_LIMIT_LOGIN, then one check for each of 3 new networks')
  t.same(answers.slice(10).map((answer) => answer.status), [401, 429, 401, 429, 401, 429, 429, 429, 429, 429], 'one each, then the fresh budget is spent')
})

t.test('parallel guesses cannot slip past: every attempt is counted before its password is checked', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '10', RATE_LIMIT_LOGIN_NEW_NETWORKS: '1' })
  await register(url, 'alice')
  // One failure from each first, so that none of the three is new to the account in the burst.
  for (let address = 2; address <= 4; address++) t.equal((await loginFrom(`127.0.0.${address}`, url, 'alice', WRONG)).status, 401)
  const burst = await Promise.all(Array.from({ length: 27 }, async (_, i) => await loginFrom(`127.0.0.${2 + (i % 3)}`, url, 'alice', WRONG)))
  t.equal(checked(burst), 7, `27 guesses at once from 3 addresses, 7 checks left: ${checked(burst)} checked`)
  t.equal(burst.filter((answer) => answer.status === 429).length, 20, 'the rest refused')
})

t.test('an unknown name is gated exactly as a known one: the gate is no account oracle', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '3', RATE_LIMIT_LOGIN_NEW_NETWORKS: '1' })
  await register(url, 'alice')
  const run = async (username: string, base: number): Promise<number[]> => {
    const statuses: number[] = []
    for (const address of [base, base, base, base, base + 1, base + 1, base + 2]) statuses.push((await loginFrom(`127.0.0.${address}`, url, username, WRONG)).status)
    return statuses
  }
  const known = await run('alice', 2)
  const unknown = await run('nobody', 12)
  t.same(known, [401, 401, 401, 429, 401, 429, 429])
  t.same(unknown, known, 'the same answers, in the same order')
  const cased = await loginFrom('127.0.0.20', url, 'ALICE', WRONG)
  assertGated(t, cased, 'the name as typed in another case: one account, one budget')
})

t.test('successful logins do not count against the account', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '3', RATE_LIMIT_LOGIN_NEW_NETWORKS: '1' })
  await register(url, 'alice')
  for (let i = 0; i < 3; i++) t.equal((await loginFrom('127.0.0.2', url, 'alice', PASSWORD)).status, 200, `success ${i + 1}`)
  const after = []
  for (let i = 0; i < 3; i++) after.push((await loginFrom('127.0.0.3', url, 'alice', WRONG)).status)
  t.same(after, [401, 401, 401], 'the shared budget is whole after three successes')
  t.equal((await loginFrom('127.0.0.4', url, 'alice', WRONG)).status, 401, 'then the fresh one')
  assertGated(t, await loginFrom('127.0.0.5', url, 'alice', WRONG), 'and then nothing')
})

t.test('a right password clears its network: after failing once, it is new to the account again', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '3', RATE_LIMIT_LOGIN_NEW_NETWORKS: '2' })
  await register(url, 'alice')
  t.equal((await loginFrom('127.0.0.2', url, 'alice', WRONG)).status, 401, 'a typo')
  t.equal((await loginFrom('127.0.0.2', url, 'alice', PASSWORD)).status, 200, 'then the right password')
  for (const address of ['127.0.0.3', '127.0.0.4']) t.equal((await loginFrom(address, url, 'alice', WRONG)).status, 401, `an attacker's guess from ${address}: the shared checks are spent`)
  t.equal((await loginFrom('127.0.0.2', url, 'alice', WRONG)).status, 401, 'the owner\'s network gets the new networks\' budget')
  assertGated(t, await loginFrom('127.0.0.3', url, 'alice', WRONG), 'the attacker\'s does not')
})

t.test('the gate counts on every instance together, in the store\'s clock', async (t) => {
  await freshWindow()
  const env = { RATE_LIMIT_LOGIN: '4', RATE_LIMIT_LOGIN_NEW_NETWORKS: '1', KEY_PREFIX: 'shared-gate:' }
  const first = await startApp(t, env)
  const second = await startApp(t, env)
  await register(first.url, 'alice')
  const statuses = []
  // Two networks, three requests each, within their own limit of 4 (counted together too).
  for (let i = 0; i < 6; i++) statuses.push((await loginFrom(`127.0.0.${2 + (i % 2)}`, i % 2 === 0 ? first.url : second.url, 'alice', WRONG)).status)
  t.same(statuses, [401, 401, 401, 401, 429, 429], 'alternating between two instances buys no more')
  const client = redis.client()
  t.teardown(() => client.quit())
  t.same((await client.keys('shared-gate:login:*')).sort(), ['shared-gate:login:{alice}', 'shared-gate:login:{alice}:failed'], 'one account, two keys, one hash tag')
  const ttl = await client.pttl('shared-gate:login:{alice}')
  t.ok(ttl > 0 && ttl <= LOGIN_WINDOW_MS, `the counts go with their window (${ttl} ms)`)
  const memory = await client.pttl('shared-gate:login:{alice}:failed')
  t.ok(memory > FAILED_NETWORK_MEMORY_MS - 60_000 && memory <= FAILED_NETWORK_MEMORY_MS, `the failed networks go an hour after the last (${memory} ms)`)
})

t.test('while Redis is down, the gate fails closed: a 503 before the password is checked', async (t) => {
  // Through the app, the per-network limit, counted in the same Redis, answers 503 first
  // (example-rate-limit.test.ts); here the gate's own call, on a store that has gone.
  const outage = await startRedis(t)
  const client = outage.client()
  t.teardown(() => client.disconnect())
  const gate = new RedisLoginGate(client, 'down:', { shared: 10, fresh: 10 })
  t.match(await gate.attempt('alice', 'a'), { budget: 'shared' }, 'up: a pass')
  await outage.stop()
  await t.rejects(gate.attempt('alice', 'a'), { code: 'FTS_STORE_UNAVAILABLE', statusCode: 503 }, 'down: the plugin\'s 503, which the app answers with Retry-After')
})

t.test('every limit counts an IPv6 client by its /64', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_LOGIN: '2', RATE_LIMIT_REFRESH: '2', TRUST_PROXY: '127.0.0.1' })
  const from = (address: string): Record<string, string> => ({ 'x-forwarded-for': address })
  const registerAs = async (address: string, username: string): Promise<number> =>
    (await call(url, 'POST', '/auth/register', { json: { username, password: PASSWORD }, headers: from(address) })).status
  t.same([await registerAs('2001:db8:5:6::1', 'user1'), await registerAs('2001:db8:5:6::2', 'user2'), await registerAs('2001:db8:5:6:ffff::3', 'user3')], [201, 201, 429],
    'registration: three addresses of one /64 share its limit')
  t.equal(await registerAs('2001:db8:5:7::1', 'user4'), 201, 'the next /64 has its own')

  const refresh = async (address: string): Promise<number> =>
    (await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 'guess' }, headers: from(address) })).status
  t.same([await refresh('2001:db8:9:9::1'), await refresh('2001:db8:9:9::2'), await refresh('2001:db8:9:9::3')], [401, 401, 429],
    'refresh: counted in memory by /64 too')
  const logout = async (address: string): Promise<number> =>
    (await call(url, 'POST', '/auth/logout', { json: { refreshToken: 'guess' }, headers: from(address) })).status
  t.same([await logout('2001:db8:9:9::1'), await logout('2001:db8:9:9::a'), await logout('2001:db8:9:9::b')], [204, 204, 429],
    'logout: likewise')

  const login = async (address: string): Promise<number> =>
    (await call(url, 'POST', '/auth/login', { json: { username: `x-${address}`, password: WRONG }, headers: from(address) })).status
  t.same([await login('::ffff:198.51.100.4'), await login('198.51.100.4'), await login('198.51.100.4')], [401, 401, 429],
    'login: an IPv4-mapped address is its IPv4 address')
})

t.test('RATE_LIMIT_LOGIN_NEW_NETWORKS config', async (t) => {
  t.match(loadConfig({}), { rateLimitLogin: 10, rateLimitLoginNewNetworks: 30 }, 'defaults: 10 shared, 30 more for new networks')
  t.match(loadConfig({ RATE_LIMIT_LOGIN_NEW_NETWORKS: '1' }), { rateLimitLoginNewNetworks: 1 })
  for (const bad of ['0', '-1', '1.5', 'lots', '1000001']) {
    t.throws(() => loadConfig({ RATE_LIMIT_LOGIN_NEW_NETWORKS: bad }),
      { name: 'ConfigError', message: /^RATE_LIMIT_LOGIN_NEW_NETWORKS must be a whole number from 1 to 1000000/ }, bad)
  }
})
