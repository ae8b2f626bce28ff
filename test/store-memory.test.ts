import t from 'tap'
import { MemoryStore } from '../lib/index.js'
import { reloadAll, storeContract } from './stores/contract.js'

/** How long revocations are remembered in these tests. */
const REMEMBER = 60_000

t.test('MemoryStore keeps the store contract', async (t) => {
  storeContract(t, async () => new MemoryStore())
})

t.test('MemoryStore sweeps stale DPoP proof ids out of memory', async (t) => {
  let now = 1_000_000
  const store = new MemoryStore({ now: () => now, sweepInterval: 10 })
  t.teardown(() => store.close())
  await store.create({ userId: 'u', sessionId: 's1', tokenHash: 'a', ttlMs: 60_000, maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER, boundKey: 'k' })
  const rotation = { userId: 'u', sessionId: 's1', ttlMs: 60_000, maxTtlMs: 3_600_000, graceMs: 0, rememberMs: REMEMBER, proof: { key: 'k', id: 'p', ttlMs: 1000 } }
  t.equal((await store.rotate({ ...rotation, presentedHash: 'a', successorHash: 'b' })).status, 'rotated')
  t.equal((await store.rotate({ ...rotation, presentedHash: 'b', successorHash: 'c' })).status, 'proof-replayed')
  now += 2000
  await new Promise((resolve) => setTimeout(resolve, 50))
  now -= 2000
  t.equal((await store.rotate({ ...rotation, presentedHash: 'b', successorHash: 'c' })).status, 'rotated', 'the sweep dropped the stale id itself, not just hid it')
})

t.test('MemoryStore keeps authenticate\'s proof ids bounded, and sweeps stale ones out', async (t) => {
  let now = 1_000_000
  const store = new MemoryStore({ now: () => now, sweepInterval: 10 })
  t.teardown(() => store.close())
  t.equal(await store.rememberProof('k', 'p', 1000), true)
  now += 2000
  await new Promise((resolve) => setTimeout(resolve, 50))
  now -= 2000
  t.equal(await store.rememberProof('k', 'p', 1000), true, 'the sweep dropped the stale id itself, not just hid it')
  for (let i = 0; i < 200_000; i++) await store.rememberProof('k', `q${i}`, 60_000)
  t.equal(await store.rememberProof('k', 'q0', 60_000), false, 'up to 200,000 are kept')
  t.equal(await store.rememberProof('k', 'p', 1000), true, 'past them the oldest went first')
})

t.test('MemoryStore sweeps expired sessions out of memory', async (t) => {
  let now = 1_000_000
  const store = new MemoryStore({ now: () => now, sweepInterval: 10 })
  t.teardown(() => store.close())
  const fields = { maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER }
  await store.create({ userId: 'u', sessionId: 's1', tokenHash: 'a', ttlMs: 1000, ...fields })
  await store.create({ userId: 'u', sessionId: 's2', tokenHash: 'b', ttlMs: 5000, ...fields })
  now += 2000
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same((await store.list('u', { limit: 10 })).sessions.map((s) => s.sessionId), ['s2'], 's1 was swept, s2 lives')
  t.equal(await store.revoke({ userId: 'u', sessionId: 's2', rememberMs: 1000 }), 'revoked')
  t.equal((await store.revokeAll('w', { rememberMs: 1000 })).status, 'revoked')
  t.equal((await reloadAll(store.revocationFeed)).length, 2, 'a session and a stamp')
  now += 10_000
  await new Promise((resolve) => setTimeout(resolve, 50))
  now -= 10_000
  t.same(await reloadAll(store.revocationFeed), [], 'the sweep dropped the expired revocation itself, not just hid it')
  now += 10_000
  await store.create({ userId: 'v', sessionId: 's1', tokenHash: 'a', ttlMs: 1000, ...fields })
  now += 2000
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(await store.revoke({ userId: 'v', sessionId: 's1', rememberMs: REMEMBER }), 'missing')
})

t.test('MemoryStore keeps a revocation\'s outcome for its delivery again a minute when it has no deadline, then sweeps it out', async (t) => {
  let now = 1_000_000
  const fields = { ttlMs: 60_000, maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER }
  const logout = { userId: 'u', sessionId: 's1', rememberMs: REMEMBER, writeId: 'w1' }
  const kept = new MemoryStore({ now: () => now, sweepInterval: 3_600_000 })
  t.teardown(() => kept.close())
  await kept.create({ userId: 'u', sessionId: 's1', tokenHash: 'a', ...fields })
  t.equal(await kept.revoke(logout), 'revoked')
  now += 59_000
  t.equal(await kept.revoke(logout), 'revoked', 'delivered again within the minute')
  now += 2_000
  t.equal(await kept.revoke(logout), 'missing', 'after it, a new request')
  const swept = new MemoryStore({ now: () => now, sweepInterval: 10 })
  t.teardown(() => swept.close())
  await swept.create({ userId: 'u', sessionId: 's1', tokenHash: 'a', ...fields })
  t.equal(await swept.revoke(logout), 'revoked')
  now += 61_000
  await new Promise((resolve) => setTimeout(resolve, 50))
  now -= 61_000
  t.equal(await swept.revoke(logout), 'missing', 'the sweep dropped the kept outcome itself, not just hid it')
})
