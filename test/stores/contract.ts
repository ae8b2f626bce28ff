import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { Revocation, SessionStore } from '../../lib/index.js'

/** How long revocations are remembered in these tests. */
const REMEMBER = 60_000

let counter = 0
/** A user id no other test uses, with the characters a hash tag must survive. */
function userId (label: string): string {
  counter++
  return `user-${label}-${counter}-{tag}%:x`
}

const MINUTE = 60_000

/** Waits until `condition` holds (at most 2 s): announcements travel asynchronously. */
async function until (condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition() && waited < 2000; waited += 10) await sleep(10)
}

/**
 * The behaviour every SessionStore must have. Run against each store with the same
 * assertions; `makeStore` gives a fresh store that the suite closes.
 */
export function storeContract (t: Test, makeStore: () => Promise<SessionStore>): void {
  let store: SessionStore
  t.beforeEach(async () => { store = await makeStore() })
  t.afterEach(async () => { await store.close() })

  t.test('a created session rotates once, then the old token is reuse', async (t) => {
    const u = userId('rotate')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    t.same(await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER }),
      { status: 'rotated', ttlMs: MINUTE })
    t.same(await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h1', successorHash: 'h2', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER }),
      { status: 'rotated', ttlMs: MINUTE })
    t.same(await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h1', successorHash: 'h2', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER }),
      { status: 'reused' }, 'strict: the rotated token is reuse')
    t.same(await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h2', successorHash: 'h3', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER }),
      { status: 'missing' }, 'reuse deleted the session: the newest token is dead too')
  })

  t.test('within the grace window the rotated token is replayed to the same successor', async (t) => {
    const u = userId('grace')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    const rotate = { userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 300, rememberMs: REMEMBER }
    t.equal((await store.rotate(rotate)).status, 'rotated')
    const replay = await store.rotate(rotate)
    t.equal(replay.status, 'replayed')
    t.ok('ttlMs' in replay && replay.ttlMs > MINUTE - 5000 && replay.ttlMs <= MINUTE, 'replay reports the remaining life')
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'rotated', 'the successor works')
    t.equal((await store.rotate(rotate)).status, 'reused', 'two generations back is reuse even within grace')
  })

  t.test('after the grace window the rotated token is reuse', async (t) => {
    const u = userId('late')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    const rotate = { userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 100, rememberMs: REMEMBER }
    t.equal((await store.rotate(rotate)).status, 'rotated')
    await sleep(250)
    t.equal((await store.rotate(rotate)).status, 'reused')
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'missing')
  })

  t.test('an unknown token hash of a live session is reuse', async (t) => {
    const u = userId('unknown')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    t.equal((await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'other', successorHash: 'x', ttlMs: MINUTE, graceMs: 1000, rememberMs: REMEMBER })).status, 'reused')
  })

  t.test('sessions expire with their ttl', async (t) => {
    const u = userId('ttl')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: 150, maxTtlMs: 3_600_000, client: {} })
    await sleep(300)
    t.equal((await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'missing')
    t.equal(await store.revoke(u, 's1', REMEMBER), false, 'an expired session is not live')
    t.same(await store.revokeAll(u, { rememberMs: REMEMBER }), [])
  })

  t.test('a rotation renews the ttl', async (t) => {
    const u = userId('renew')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: 300, maxTtlMs: 3_600_000, client: {} })
    await sleep(150)
    await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: 400, graceMs: 0, rememberMs: REMEMBER })
    await sleep(250)
    t.equal((await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h1', successorHash: 'h2', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'rotated',
      'alive past its first ttl because the rotation renewed it')
  })

  t.test('revoke ends one session and is idempotent', async (t) => {
    const u = userId('revoke')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'a', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    await store.create({ userId: u, sessionId: 's2', tokenHash: 'b', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    t.equal(await store.revoke(u, 's1', REMEMBER), true)
    t.equal(await store.revoke(u, 's1', REMEMBER), false)
    t.equal((await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'a', successorHash: 'x', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'missing')
    t.equal((await store.rotate({ userId: u, sessionId: 's2', presentedHash: 'b', successorHash: 'y', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'rotated', 'the other session lives')
  })

  t.test('revokeAll ends every session of one user only', async (t) => {
    const u = userId('all')
    const other = userId('other')
    for (const sid of ['s1', 's2', 's3']) await store.create({ userId: u, sessionId: sid, tokenHash: sid, ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    await store.create({ userId: other, sessionId: 's1', tokenHash: 's1', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    t.same((await store.revokeAll(u, { rememberMs: REMEMBER }))?.sort(), ['s1', 's2', 's3'])
    for (const sid of ['s1', 's2', 's3']) {
      t.equal((await store.rotate({ userId: u, sessionId: sid, presentedHash: sid, successorHash: 'x', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'missing')
    }
    t.equal((await store.rotate({ userId: other, sessionId: 's1', presentedHash: 's1', successorHash: 'x', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'rotated')
    t.same(await store.revokeAll(u, { rememberMs: REMEMBER }), [], 'idempotent')
  })

  t.test('revokeAll with ifLive acts only while that session lives', async (t) => {
    const u = userId('guard')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'a', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    await store.create({ userId: u, sessionId: 's2', tokenHash: 'b', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    t.equal(await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 'gone' }), null)
    t.equal((await store.rotate({ userId: u, sessionId: 's2', presentedHash: 'b', successorHash: 'c', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'rotated', 'nothing was revoked')
    t.same((await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 's1' }))?.sort(), ['s1', 's2'])
  })

  t.test('revokeAll can spare one session', async (t) => {
    const u = userId('except')
    for (const sid of ['s1', 's2', 's3']) await store.create({ userId: u, sessionId: sid, tokenHash: sid, ttlMs: MINUTE, maxTtlMs: MINUTE, client: {} })
    t.same((await store.revokeAll(u, { rememberMs: REMEMBER, except: 's2' }))?.sort(), ['s1', 's3'])
    t.same((await store.list(u)).map((s) => s.sessionId), ['s2'], 'the spared session is still listed')
    t.equal((await store.rotate({ userId: u, sessionId: 's2', presentedHash: 's2', successorHash: 'x', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'rotated')
    t.same(await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 's2', except: 's2' }), [], 'a guard and an exception together')
  })

  t.test('list shows live sessions with their client, oldest first', async (t) => {
    const u = userId('list')
    const before = Date.now()
    t.equal(await store.create({ userId: u, sessionId: 's1', tokenHash: 'a', ttlMs: MINUTE, maxTtlMs: 10 * MINUTE, client: { userAgent: 'UA/1', ip: '10.0.0.1', label: 'laptop' } }), MINUTE)
    await sleep(20)
    await store.create({ userId: u, sessionId: 's2', tokenHash: 'b', ttlMs: MINUTE, maxTtlMs: MINUTE, client: {} })
    await store.create({ userId: u, sessionId: 'short', tokenHash: 'c', ttlMs: 100, maxTtlMs: MINUTE, client: {} })
    await sleep(200)
    await store.rotate({ userId: u, sessionId: 's2', presentedHash: 'b', successorHash: 'b2', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })
    const sessions = await store.list(u)
    t.same(sessions.map((s) => s.sessionId), ['s1', 's2'], 'the expired session is not listed')
    const [first, second] = sessions
    t.match(first, { userAgent: 'UA/1', ip: '10.0.0.1', label: 'laptop' })
    t.ok(first !== undefined && first.createdAt >= before - 1000 && first.createdAt <= Date.now() + 1000, 'createdAt is a time in ms')
    t.equal(first?.lastUsedAt, first?.createdAt, 'never refreshed: last used at creation')
    t.ok(second !== undefined && second.lastUsedAt > second.createdAt, 'a rotation updates lastUsedAt')
    t.ok(first !== undefined && Math.abs(first.expiresAt - (first.createdAt + MINUTE)) < 1000, 'expiresAt follows the ttl')
    t.notOk(second !== undefined && 'userAgent' in second, 'no client info, no fields')
    t.same(await store.list(userId('nobody')), [])
  })

  t.test('the absolute lifetime caps every ttl and a rotation never extends it', async (t) => {
    const u = userId('absolute')
    t.equal(await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 400, client: {} }), 400, 'capped at creation')
    await sleep(150)
    const rotated = await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })
    t.equal(rotated.status, 'rotated')
    t.ok('ttlMs' in rotated && rotated.ttlMs <= 260 && rotated.ttlMs > 100, 'the rotation got only what was left')
    await sleep(300)
    t.equal((await store.rotate({ userId: u, sessionId: 's1', presentedHash: 'h1', successorHash: 'h2', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER })).status, 'missing', 'gone at its absolute end')
  })

  t.test('ping resolves while the store answers', async (t) => {
    await t.resolves(store.ping())
  })

  t.test('isLive tells whether a session exists', async (t) => {
    const u = userId('live')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'a', ttlMs: MINUTE, maxTtlMs: MINUTE, client: {} })
    t.equal(await store.isLive(u, 's1'), true)
    t.equal(await store.isLive(u, 's2'), false)
    await store.revoke(u, 's1', REMEMBER)
    t.equal(await store.isLive(u, 's1'), false)
  })

  t.test('revocations are announced to every watcher and remembered for a while', async (t) => {
    const announced: Revocation[] = []
    let connected = 0
    const stop = await store.watchRevocations({
      revoked: (revocations) => announced.push(...revocations),
      connected: () => { connected++ },
      disconnected: () => {}
    })
    t.teardown(stop)
    await until(() => connected > 0)
    const u = userId('announce')
    // Session ids no other test of the suite uses: the store remembers every revocation.
    const [s1, s2, s3, s4] = ['ann-1', 'ann-2', 'ann-3', 'ann-4'] as const
    for (const sid of [s1, s2, s3, s4]) await store.create({ userId: u, sessionId: sid, tokenHash: sid, ttlMs: MINUTE, maxTtlMs: MINUTE, client: {} })
    const before = Date.now()
    await store.revoke(u, s1, REMEMBER)
    await store.revoke(u, s1, REMEMBER)
    await store.revokeAll(u, { rememberMs: REMEMBER, except: s4 })
    await store.rotate({ userId: u, sessionId: s4, presentedHash: 'not-current', successorHash: 'x', ttlMs: MINUTE, graceMs: 0, rememberMs: 100 })
    await until(() => announced.length >= 4)
    const mine = (revocations: Revocation[]): string[] => revocations.map((r) => r.sessionId).filter((id) => id.startsWith('ann-')).sort()
    t.same(mine(announced), [s1, s2, s3, s4], 'logout, logout-all and reuse, each once; an idempotent repeat says nothing')
    const first = announced.find((r) => r.sessionId === s1)
    t.ok(first !== undefined && first.until >= before + REMEMBER - 1000 && first.until <= Date.now() + REMEMBER + 1000, 'until: now + rememberMs')
    t.same(mine(await store.revocations()), [s1, s2, s3, s4], 'remembered for a reload')
    await sleep(300)
    t.same(mine((await store.revocations()).filter((r) => r.until > Date.now())), [s1, s2, s3], 'a short memory runs out')
  })

  t.test('racing rotations of one token: with grace all succeed on one chain', async (t) => {
    const u = userId('race')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    const rotate = { userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 5000, rememberMs: REMEMBER }
    const outcomes = await Promise.all(Array.from({ length: 50 }, async () => await store.rotate(rotate)))
    t.equal(outcomes.filter((o) => o.status === 'rotated').length, 1)
    t.equal(outcomes.filter((o) => o.status === 'replayed').length, 49)
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'rotated', 'the one chain continues')
  })

  t.test('racing rotations of one token: strict lets at most one through', async (t) => {
    const u = userId('strict')
    await store.create({ userId: u, sessionId: 's1', tokenHash: 'h0', ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {} })
    const rotate = { userId: u, sessionId: 's1', presentedHash: 'h0', successorHash: 'h1', ttlMs: MINUTE, graceMs: 0, rememberMs: REMEMBER }
    const outcomes = await Promise.all(Array.from({ length: 50 }, async () => await store.rotate(rotate)))
    t.ok(outcomes.filter((o) => o.status === 'rotated').length <= 1)
    t.equal(outcomes.filter((o) => o.status === 'replayed').length, 0)
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'missing', 'the racers revoked the session')
  })
}
