import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import type { NewSession, Revocation, RevocationFeed, RotateRequest, SessionStore } from '../../lib/index.js'

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

/** A session to create, with the suite's defaults. */
function session (userId: string, sessionId: string, fields: Partial<NewSession> = {}): NewSession {
  return { userId, sessionId, tokenHash: sessionId, ttlMs: MINUTE, maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER, ...fields }
}

/** A rotation, with the suite's defaults. */
function rotation (userId: string, sessionId: string, presentedHash: string, successorHash: string, fields: Partial<RotateRequest> = {}): RotateRequest {
  return { userId, sessionId, presentedHash, successorHash, ttlMs: MINUTE, maxTtlMs: 3_600_000, graceMs: 0, rememberMs: REMEMBER, ...fields }
}

/** The ids of a revocation list, of single sessions only. */
function sessionIds (revocations: Revocation[]): string[] {
  return revocations.flatMap((r) => 'sessionId' in r ? [r.sessionId] : []).sort()
}

/**
 * The behaviour every SessionStore must have. Run against each store with the same
 * assertions; `makeStore` gives a fresh store that the suite closes.
 */
export function storeContract (t: Test, makeStore: () => Promise<SessionStore>): void {
  let store: SessionStore
  t.beforeEach(async () => { store = await makeStore() })
  t.afterEach(async () => { await store.close() })

  async function create (fields: NewSession): Promise<{ ttlMs: number, startedAt: number, ended: string[] }> {
    const outcome = await store.create(fields)
    if (outcome.status !== 'created') throw new Error(`not created: ${outcome.status}`)
    return outcome
  }

  async function listed (userId: string): Promise<string[]> {
    return (await store.list(userId, { limit: 100 })).sessions.map((s) => s.sessionId)
  }

  t.test('a created session rotates once, then the old token is reuse', async (t) => {
    const u = userId('rotate')
    const { startedAt } = await create(session(u, 's1', { tokenHash: 'h0' }))
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1')), { status: 'rotated', ttlMs: MINUTE, startedAt })
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2')), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'a rotation keeps the start')
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2')), { status: 'reused' }, 'strict: the rotated token is reuse')
    t.same(await store.rotate(rotation(u, 's1', 'h2', 'h3')), { status: 'missing' }, 'reuse deleted the session: the newest token is dead too')
  })

  t.test('a step-up replaces the token with no grace: the replaced one, and one still within grace, are reuse', async (t) => {
    const u = userId('step-up')
    const { startedAt } = await create(session(u, 's1', { tokenHash: 'h0' }))
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { graceMs: MINUTE })), { status: 'rotated', ttlMs: MINUTE, startedAt })
    const stepUp = { userId: u, sessionId: 's1', successorHash: 'up1', ttlMs: MINUTE, maxTtlMs: 3_600_000, browserSessionMaxTtlMs: 1_800_000 }
    t.same(await store.stepUp(stepUp), { status: 'stepped-up', ttlMs: MINUTE, startedAt, remembered: true }, 'the same session, its start kept')
    t.same(await listed(u), ['s1'], 'one entry in the list')
    t.same(await store.rotate(rotation(u, 's1', 'up1', 'up2', { graceMs: MINUTE })), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'the new token rotates')
    const v = userId('step-up-grace')
    await create(session(v, 's1', { tokenHash: 'h0' }))
    await store.rotate(rotation(v, 's1', 'h0', 'h1', { graceMs: MINUTE }))
    await store.stepUp({ ...stepUp, userId: v })
    t.same(await store.rotate(rotation(v, 's1', 'h0', 'h1', { graceMs: MINUTE })), { status: 'reused' }, 'a token within a rotation\'s grace is reuse after a step-up')
    t.same(await store.stepUp({ ...stepUp, userId: v, successorHash: 'up3' }), { status: 'missing' }, 'and the session is over')
    const w = userId('step-up-replaced')
    await create(session(w, 's1', { tokenHash: 'h0' }))
    await store.stepUp({ ...stepUp, userId: w })
    t.same(await store.rotate(rotation(w, 's1', 'h0', 'h1', { graceMs: MINUTE })), { status: 'reused' }, 'the replaced token is reuse, even within grace')
  })

  t.test('a step-up delivered twice answers as it first did; one past its deadline changes nothing', async (t) => {
    const u = userId('step-up-resent')
    const { startedAt } = await create(session(u, 's1', { tokenHash: 'h0' }))
    const now = await store.time()
    const stepUp = { userId: u, sessionId: 's1', successorHash: 'up1', ttlMs: MINUTE, maxTtlMs: 3_600_000, browserSessionMaxTtlMs: 1_800_000, writeId: 'w1' }
    t.same(await store.stepUp({ ...stepUp, deadline: now - 1 }), { status: 'late' }, 'late')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1')), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'a late step-up left the token as it was')
    const first = await store.stepUp({ ...stepUp, deadline: now + MINUTE })
    t.same(first, { status: 'stepped-up', ttlMs: MINUTE, startedAt, remembered: true })
    const again = await store.stepUp({ ...stepUp, deadline: now + MINUTE })
    t.equal(again.status, 'stepped-up', 'delivered again: the same answer')
    t.same(await store.rotate(rotation(u, 's1', 'up1', 'up2')), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'its token is current')
    t.same(await store.stepUp({ ...stepUp, userId: userId('nobody') }), { status: 'missing' }, 'no such session')
  })

  t.test('a rotation that arrives past its deadline is late and changes nothing, not even as reuse', async (t) => {
    const u = userId('late')
    const { startedAt } = await create(session(u, 's1', { tokenHash: 'h0' }))
    const now = await store.time()
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline: now - 1 })), { status: 'late' }, 'the current token, late')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline: now + MINUTE })), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'the session was left as it was')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h9', { deadline: now - 1 })), { status: 'late' }, 'a superseded token, late: not reuse')
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2')), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'the session lives on')
  })

  t.test('every write that arrives past its deadline is late and changes nothing', async (t) => {
    const u = userId('late-writes')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    const past = await store.time() - 1
    t.same(await store.create({ ...session(u, 's2', { tokenHash: 'x0' }), deadline: past }), { status: 'late' }, 'a login')
    t.same(await store.revoke({ userId: u, sessionId: 's1', rememberMs: REMEMBER, deadline: past }), 'late', 'a logout')
    t.same(await store.revokeAll(u, { rememberMs: REMEMBER, deadline: past }), { status: 'late' }, 'a logout of every session')
    t.same(await listed(u), ['s1'], 'no session was created or ended')
    t.equal(await store.isLive(u, 's1'), true)
  })

  t.test('a rotation delivered twice answers as it first did, even strict; another request with the old token is reuse', async (t) => {
    const u = userId('resent-rotation')
    const { startedAt } = await create(session(u, 's1', { tokenHash: 'h0' }))
    const deadline = await store.time() + MINUTE
    const first = await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w1' }))
    t.same(first, { status: 'rotated', ttlMs: MINUTE, startedAt })
    const again = await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w1' }))
    t.equal(again.status, 'rotated', 'the same write again: rotated, not reuse')
    t.ok(again.status === 'rotated' && again.startedAt === startedAt && again.ttlMs <= MINUTE && again.ttlMs > MINUTE - 5_000, 'with the session\'s start and remaining life')
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2', { deadline, writeId: 'w2' })), { status: 'rotated', ttlMs: MINUTE, startedAt }, 'its successor is the current token')
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2', { deadline, writeId: 'w3' })), { status: 'reused' }, 'the old token in another request: reuse')
  })

  t.test('an empty write id is none: a strict rotation delivered twice is reuse', async (t) => {
    const u = userId('no-write-id')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1', { writeId: '' }))).status, 'rotated')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { writeId: '' })), { status: 'reused' })
  })

  t.test('a write id is only the write it names: the previous rotation\'s id with an older token is reuse', async (t) => {
    const u = userId('resent-old')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    const deadline = await store.time() + MINUTE
    await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w1' }))
    await store.rotate(rotation(u, 's1', 'h1', 'h2', { deadline, writeId: 'w2' }))
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w1' })), { status: 'reused' }, 'a token two rotations old')
  })

  t.test('a replay and a reuse delivered twice answer as they first did, even past the grace window and with a proof', async (t) => {
    const u = userId('resent-replay')
    const { startedAt } = await create(session(u, 's1', { tokenHash: 'h0', boundKey: 'k' }))
    const deadline = await store.time() + MINUTE
    const proof = (id: string): NonNullable<RotateRequest['proof']> => ({ key: 'k', id, ttlMs: MINUTE })
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w1', proof: proof('p1') }))).status, 'rotated')
    const replay = rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w2', graceMs: 300, proof: proof('p2') })
    t.match(await store.rotate(replay), { status: 'replayed', startedAt }, 'a replay within grace')
    await new Promise((resolve) => setTimeout(resolve, 400))
    t.match(await store.rotate(replay), { status: 'replayed', startedAt }, 'delivered again past the window, its proof id already seen: replayed still')
    const reuse = rotation(u, 's1', 'h0', 'h1', { deadline, writeId: 'w3', graceMs: 300, proof: proof('p3') })
    t.same(await store.rotate(reuse), { status: 'reused' }, 'another request past the window: reuse')
    t.same(await store.rotate(reuse), { status: 'reused' }, 'reuse, delivered again: reuse still, not a missing session')
    t.same(await store.rotate({ ...reuse, writeId: 'w4' }), { status: 'missing' }, 'another request: the session is over')
  })

  t.test('a revocation delivered twice answers as it first did; another request finds the session over', async (t) => {
    const u = userId('resent-revoke')
    await create(session(u, 's1', { tokenHash: 'a' }))
    await create(session(u, 's2', { tokenHash: 'b' }))
    await store.rotate(rotation(u, 's2', 'b', 'b2'))
    const deadline = await store.time() + MINUTE
    const logout = { userId: u, sessionId: 's1', rememberMs: REMEMBER, deadline, writeId: 'r1' }
    t.equal(await store.revoke(logout), 'revoked')
    t.equal(await store.revoke(logout), 'revoked', 'the same write again')
    t.equal(await store.revoke({ ...logout, writeId: 'r2' }), 'missing', 'another request')
    const reuse = { userId: u, sessionId: 's2', rememberMs: REMEMBER, deadline, writeId: 'r3', presented: { hash: 'b', graceMs: 0 } }
    t.equal(await store.revoke(reuse), 'reused')
    t.equal(await store.revoke(reuse), 'reused', 'reuse, delivered again')
  })

  t.test('a logout of every session delivered twice answers as it first did, and ends nothing started since', async (t) => {
    const u = userId('resent-revoke-all')
    await create(session(u, 's1', { tokenHash: 'a' }))
    await create(session(u, 's2', { tokenHash: 'b' }))
    const deadline = await store.time() + MINUTE
    const logoutAll = { rememberMs: REMEMBER, ifLive: 's1', presented: { hash: 'a', graceMs: 0 }, deadline, writeId: 'a1' }
    const first = await store.revokeAll(u, logoutAll)
    t.equal(first.status, 'revoked')
    t.same(await listed(u), [])
    await create(session(u, 's3', { tokenHash: 'c' }))
    t.same(await store.revokeAll(u, logoutAll), first, 'the same write again: the first answer, not the caller\'s session over')
    t.same(await listed(u), ['s3'], 'the session started since lives')
    t.same(await store.revokeAll(u, { ...logoutAll, writeId: 'a2' }), { status: 'missing' }, 'another request: the caller\'s session is over')
    const passwordChange = { rememberMs: REMEMBER, except: 's3', deadline, writeId: 'a3' }
    const changed = await store.revokeAll(u, passwordChange)
    t.same(changed.status === 'revoked' && changed.spared, 's3')
    await create(session(u, 's4', { tokenHash: 'd' }))
    t.same(await store.revokeAll(u, passwordChange), changed, 'sparing one, delivered again')
    t.same((await listed(u)).sort(), ['s3', 's4'], 'the session started since lives')
    await store.rotate(rotation(u, 's4', 'd', 'd2'))
    const reuse = { rememberMs: REMEMBER, ifLive: 's4', presented: { hash: 'd', graceMs: 0 }, deadline, writeId: 'a4' }
    t.same(await store.revokeAll(u, reuse), { status: 'reused' })
    t.same(await store.revokeAll(u, reuse), { status: 'reused' }, 'reuse, delivered again')
  })

  t.test('a session bound to a DPoP key rotates only with a proof by that key, and each proof once', async (t) => {
    const u = userId('bound')
    await create(session(u, 's1', { tokenHash: 'h0', boundKey: 'key-a' }))
    const proof = (id: string, key = 'key-a'): Partial<RotateRequest> => ({ proof: { key, id, ttlMs: MINUTE } })
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1')), { status: 'wrong-key' }, 'no proof')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', proof('p1', 'key-b'))), { status: 'wrong-key' }, 'another key')
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1', proof('p1')))).status, 'rotated', 'nothing was spent before: the owner rotates')
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2', proof('p1'))), { status: 'proof-replayed' }, 'a proof id seen before')
    t.equal((await store.rotate(rotation(u, 's1', 'h1', 'h2', proof('p2')))).status, 'rotated')
  })

  t.test('a bound session\'s replay within grace needs the key too; reuse is decided before the key', async (t) => {
    const u = userId('bound-grace')
    await create(session(u, 's1', { tokenHash: 'h0', boundKey: 'key-a' }))
    const rotate = (id: string, fields: Partial<RotateRequest> = {}): RotateRequest =>
      rotation(u, 's1', 'h0', 'h1', { graceMs: 5000, proof: { key: 'key-a', id, ttlMs: MINUTE }, ...fields })
    t.equal((await store.rotate(rotate('p1'))).status, 'rotated')
    t.equal((await store.rotate(rotate('p2'))).status, 'replayed', 'a replay by the key')
    t.same(await store.rotate(rotate('p3', { proof: { key: 'key-b', id: 'p3', ttlMs: MINUTE } })), { status: 'wrong-key' }, 'not by another key')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { graceMs: 5000 })), { status: 'wrong-key' }, 'nor without a proof')
    t.same(await store.rotate(rotation(u, 's1', 'h-old', 'x', { proof: { key: 'key-a', id: 'p4', ttlMs: MINUTE } })), { status: 'reused' },
      'a superseded token is reuse, even with a proof by the key')
    t.same(await store.rotate(rotation(u, 's1', 'h1', 'h2', { proof: { key: 'key-a', id: 'p5', ttlMs: MINUTE } })), { status: 'missing' })
  })

  t.test('an unbound session refuses a proof, and is never bound by one', async (t) => {
    const u = userId('unbound')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'h1', { proof: { key: 'key-a', id: 'p1', ttlMs: MINUTE } })), { status: 'unbound' })
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1'))).status, 'rotated', 'unspent, and still unbound')
    t.same(await store.rotate(rotation(u, 's1', 'h0', 'x', { proof: { key: 'key-a', id: 'p2', ttlMs: MINUTE } })), { status: 'reused' },
      'a superseded token with a proof is reuse, not a refused proof')
  })

  t.test('a proof id is forgotten once the proof is stale', async (t) => {
    const u = userId('proof-ttl')
    await create(session(u, 's1', { tokenHash: 'h0', boundKey: 'key-a' }))
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1', { proof: { key: 'key-a', id: 'p1', ttlMs: 50 } }))).status, 'rotated')
    await sleep(150)
    t.equal((await store.rotate(rotation(u, 's1', 'h1', 'h2', { proof: { key: 'key-a', id: 'p1', ttlMs: 50 } }))).status, 'rotated',
      'remembered for the proof\'s lifetime only (its iat check refuses it after that)')
  })

  /** The store's `rememberProof` (`dpop.sharedReplayCheck`), which every store here has. */
  async function rememberProof (key: string, id: string, ttlMs = MINUTE): Promise<boolean> {
    return await (store as Required<SessionStore>).rememberProof(key, id, ttlMs)
  }

  t.test('a proof id authenticate accepted is new once for its key, until the proof is stale', async (t) => {
    t.equal(await rememberProof('key-a', 'p1'), true)
    t.equal(await rememberProof('key-a', 'p1'), false, 'seen before')
    t.equal(await rememberProof('key-b', 'p1'), true, 'the same id by another key is another proof')
    t.equal(await rememberProof('key-a', 'p2', 50), true)
    await sleep(150)
    t.equal(await rememberProof('key-a', 'p2', 50), true, 'remembered for the proof\'s lifetime only')
    t.equal(await rememberProof('key-a', 'p1'), false, 'a proof still fresh is not forgotten with it')
  })

  t.test('the proof ids authenticate and refresh remember are apart, even for a user id that is a key\'s thumbprint', async (t) => {
    const u = userId('proof-apart')
    await create(session(u, 's1', { tokenHash: 'h0', boundKey: u }))
    t.equal(await rememberProof(u, 'p1'), true)
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1', { proof: { key: u, id: 'p1', ttlMs: MINUTE } }))).status, 'rotated')
    t.equal((await store.rotate(rotation(u, 's1', 'h1', 'h2', { proof: { key: u, id: 'p2', ttlMs: MINUTE } }))).status, 'rotated')
    t.equal(await rememberProof(u, 'p2'), true)
  })

  t.test('within the grace window the rotated token is replayed to the same successor', async (t) => {
    const u = userId('grace')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    const rotate = rotation(u, 's1', 'h0', 'h1', { graceMs: 300 })
    t.equal((await store.rotate(rotate)).status, 'rotated')
    const replay = await store.rotate(rotate)
    t.equal(replay.status, 'replayed')
    t.ok('ttlMs' in replay && replay.ttlMs > MINUTE - 5000 && replay.ttlMs <= MINUTE, 'replay reports the remaining life')
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'rotated', 'the successor works')
    t.equal((await store.rotate(rotate)).status, 'reused', 'two generations back is reuse even within grace')
  })

  t.test('with an agent, a replay by another agent than the last rotation\'s is reuse', async (t) => {
    const u = userId('agent')
    await create(session(u, 's1', { tokenHash: 'h0', agent: 'phone' }))
    const rotate = rotation(u, 's1', 'h0', 'h1', { graceMs: 5000, agent: 'laptop' })
    t.equal((await store.rotate(rotate)).status, 'rotated')
    t.equal((await store.rotate(rotate)).status, 'replayed', 'the agent that rotated may replay')
    t.equal((await store.rotate({ ...rotate, agent: 'thief' })).status, 'reused', 'another agent may not')
    t.equal((await store.rotate(rotation(u, 's1', 'h1', 'h2'))).status, 'missing')
  })

  t.test('after the grace window the rotated token is reuse', async (t) => {
    const u = userId('late')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    const rotate = rotation(u, 's1', 'h0', 'h1', { graceMs: 100 })
    t.equal((await store.rotate(rotate)).status, 'rotated')
    await sleep(250)
    t.equal((await store.rotate(rotate)).status, 'reused')
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'missing')
  })

  t.test('an unknown token hash of a live session is reuse', async (t) => {
    const u = userId('unknown')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    t.equal((await store.rotate(rotation(u, 's1', 'other', 'x', { graceMs: 1000 }))).status, 'reused')
  })

  t.test('sessions expire with their ttl', async (t) => {
    const u = userId('ttl')
    await create(session(u, 's1', { tokenHash: 'h0', ttlMs: 150 }))
    await sleep(300)
    t.equal((await store.rotate(rotation(u, 's1', 'h0', 'h1'))).status, 'missing')
    t.equal(await store.revoke({ userId: u, sessionId: 's1', rememberMs: REMEMBER }), 'missing', 'an expired session is not live')
    t.same(await listed(u), [])
  })

  t.test('a rotation renews the ttl', async (t) => {
    const u = userId('renew')
    await create(session(u, 's1', { tokenHash: 'h0', ttlMs: 300 }))
    await sleep(150)
    await store.rotate(rotation(u, 's1', 'h0', 'h1', { ttlMs: 400 }))
    await sleep(250)
    t.equal((await store.rotate(rotation(u, 's1', 'h1', 'h2'))).status, 'rotated', 'alive past its first ttl because the rotation renewed it')
  })

  t.test('revoke ends one session and is idempotent', async (t) => {
    const u = userId('revoke')
    await create(session(u, 's1', { tokenHash: 'a' }))
    await create(session(u, 's2', { tokenHash: 'b' }))
    t.equal(await store.revoke({ userId: u, sessionId: 's1', rememberMs: REMEMBER }), 'revoked')
    t.equal(await store.revoke({ userId: u, sessionId: 's1', rememberMs: REMEMBER }), 'missing')
    t.equal((await store.rotate(rotation(u, 's1', 'a', 'x'))).status, 'missing')
    t.equal((await store.rotate(rotation(u, 's2', 'b', 'y'))).status, 'rotated', 'the other session lives')
  })

  t.test('revoke with a presented token: current or a replay within grace ends the session, a superseded one is reuse', async (t) => {
    const u = userId('revoke-presented')
    for (const sid of ['s1', 's2', 's3']) await create(session(u, sid, { tokenHash: `${sid}-0` }))
    for (const sid of ['s1', 's2', 's3']) await store.rotate(rotation(u, sid, `${sid}-0`, `${sid}-1`))
    t.equal(await store.revoke({ userId: u, sessionId: 's1', rememberMs: REMEMBER, presented: { hash: 's1-1', graceMs: 0 } }), 'revoked')
    t.equal(await store.revoke({ userId: u, sessionId: 's2', rememberMs: REMEMBER, presented: { hash: 's2-0', graceMs: 5000 } }), 'revoked', 'a replay within grace')
    t.equal(await store.revoke({ userId: u, sessionId: 's3', rememberMs: REMEMBER, presented: { hash: 's3-0', graceMs: 0 } }), 'reused')
    t.same(await listed(u), [], 'reuse revoked the session all the same')
  })

  t.test('a bound session ends by its own token only with a proof by its key; a superseded one is reuse, proof or none', async (t) => {
    const u = userId('revoke-bound')
    for (const sid of ['s1', 's2', 's3', 's4']) await create(session(u, sid, { tokenHash: `${sid}-0`, boundKey: 'key-a' }))
    await create(session(u, 's5', { tokenHash: 's5-0' }))
    for (const sid of ['s2', 's3', 's4']) await store.rotate(rotation(u, sid, `${sid}-0`, `${sid}-1`, { proof: { key: 'key-a', id: `p-${sid}`, ttlMs: MINUTE } }))
    const revoke = async (sessionId: string, hash: string, graceMs: number, proofKey?: string): Promise<string> =>
      await store.revoke({ userId: u, sessionId, rememberMs: REMEMBER, presented: { hash, graceMs, ...(proofKey === undefined ? {} : { proofKey }) } })
    t.equal(await revoke('s1', 's1-0', 0), 'missing', 'its current token without a proof: answered as for no session')
    t.equal(await revoke('s1', 's1-0', 0, 'key-b'), 'missing', 'with a proof by another key')
    t.equal(await revoke('s2', 's2-0', 5000, 'key-b'), 'missing', 'a replay within grace, by another key')
    t.same((await listed(u)).sort(), ['s1', 's2', 's3', 's4', 's5'], 'nothing ended')
    t.equal((await store.rotate(rotation(u, 's1', 's1-0', 's1-1', { proof: { key: 'key-a', id: 'p-again', ttlMs: MINUTE } }))).status, 'rotated', 'nor was spent')
    t.equal(await revoke('s1', 's1-1', 0, 'key-a'), 'revoked', 'with a proof by its key')
    t.equal(await revoke('s2', 's2-0', 5000, 'key-a'), 'revoked', 'a replay within grace, by its key')
    t.equal(await revoke('s3', 's3-0', 0), 'reused', 'a superseded token without a proof is reuse')
    t.equal(await revoke('s4', 's4-0', 0, 'key-a'), 'reused', 'and with a proof by the key')
    t.equal(await revoke('s5', 's5-0', 0, 'key-a'), 'revoked', 'an unbound session ends with a proof beside its token as without')
    t.same(await listed(u), [])
  })

  t.test('revokeAll guarded by a bound session\'s token needs a proof by its key; a superseded one is reuse, proof or none', async (t) => {
    const u = userId('guard-bound')
    for (const sid of ['s1', 's2', 's3']) await create(session(u, sid, { tokenHash: `${sid}-0`, boundKey: 'key-a' }))
    await create(session(u, 'plain', { tokenHash: 'plain-0' }))
    const revokeAll = async (sessionId: string, hash: string, proofKey?: string): Promise<string> =>
      (await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: sessionId, presented: { hash, graceMs: 0, ...(proofKey === undefined ? {} : { proofKey }) } })).status
    t.equal(await revokeAll('s1', 's1-0'), 'missing', 'its current token without a proof: answered as for no session')
    t.equal(await revokeAll('s1', 's1-0', 'key-b'), 'missing', 'with a proof by another key')
    t.same((await listed(u)).sort(), ['plain', 's1', 's2', 's3'], 'nothing ended')
    for (const sid of ['s2', 's3']) await store.rotate(rotation(u, sid, `${sid}-0`, `${sid}-1`, { proof: { key: 'key-a', id: `p-${sid}`, ttlMs: MINUTE } }))
    t.equal(await revokeAll('s2', 's2-0'), 'reused', 'a superseded token without a proof is reuse')
    t.equal(await revokeAll('s3', 's3-0', 'key-a'), 'reused', 'and with a proof by the key')
    t.same((await listed(u)).sort(), ['plain', 's1'], 'reuse ended those sessions alone')
    t.equal(await revokeAll('s1', 's1-0', 'key-a'), 'revoked', 'with a proof by its key')
    t.same(await listed(u), [])
  })

  t.test('revokeAll ends every session of one user only, with one stamp', async (t) => {
    const u = userId('all')
    const other = userId('other')
    const starts = []
    for (const sid of ['s1', 's2', 's3']) starts.push((await create(session(u, sid))).startedAt)
    await create(session(other, 's1'))
    const outcome = await store.revokeAll(u, { rememberMs: REMEMBER })
    t.equal(outcome.status, 'revoked')
    t.ok(outcome.status === 'revoked' && starts.every((start) => start < outcome.startedBefore), 'every session started before the stamp')
    for (const sid of ['s1', 's2', 's3']) t.equal((await store.rotate(rotation(u, sid, sid, 'x'))).status, 'missing')
    t.equal(await store.isLive(u, 's1'), false)
    t.equal(await store.revoke({ userId: u, sessionId: 's2', rememberMs: REMEMBER }), 'missing')
    t.same(await listed(u), [])
    t.equal((await store.rotate(rotation(other, 's1', 's1', 'x'))).status, 'rotated')
    t.equal((await store.revokeAll(u, { rememberMs: REMEMBER })).status, 'revoked', 'idempotent')
  })

  t.test('a session started right after a revokeAll lives, and starts after the stamp', async (t) => {
    const u = userId('after')
    await create(session(u, 's1'))
    const outcome = await store.revokeAll(u, { rememberMs: REMEMBER })
    const { startedAt } = await create(session(u, 's2'))
    t.ok(outcome.status === 'revoked' && startedAt >= outcome.startedBefore, 'at or after the stamp, even within the same millisecond')
    t.equal((await store.rotate(rotation(u, 's2', 's2', 'x'))).status, 'rotated')
    t.same(await listed(u), ['s2'])
  })

  t.test('a login whose credentials were checked before a revokeAll is stale', async (t) => {
    const u = userId('stale')
    const checked = await store.time()
    await sleep(5)
    await store.revokeAll(u, { rememberMs: REMEMBER })
    t.same(await store.create(session(u, 's1', { authenticatedAt: checked })), { status: 'stale' })
    t.same(await listed(u), [], 'nothing was recorded')
    t.equal((await store.create(session(u, 's2', { authenticatedAt: await store.time() }))).status, 'created', 'checked after it: created')
  })

  t.test('revokeAll with ifLive acts only while that session lives', async (t) => {
    const u = userId('guard')
    await create(session(u, 's1', { tokenHash: 'a' }))
    await create(session(u, 's2', { tokenHash: 'b' }))
    t.same(await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 'gone' }), { status: 'missing' })
    t.equal((await store.rotate(rotation(u, 's2', 'b', 'c'))).status, 'rotated', 'nothing was revoked')
    t.equal((await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 's1' })).status, 'revoked')
    t.same(await listed(u), [])
  })

  t.test('revokeAll with a superseded presented token is reuse: that session alone ends', async (t) => {
    const u = userId('guard-reuse')
    await create(session(u, 's1', { tokenHash: 'a' }))
    await create(session(u, 's2', { tokenHash: 'b' }))
    await store.rotate(rotation(u, 's1', 'a', 'a2'))
    t.same(await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 's1', presented: { hash: 'a', graceMs: 0 } }), { status: 'reused' })
    t.same(await listed(u), ['s2'], 'the other session lives')
    t.equal((await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 's2', presented: { hash: 'b', graceMs: 0 } })).status, 'revoked', 'its current token')
  })

  t.test('revokeAll can spare one session, and a later one cannot bring back a session it ended', async (t) => {
    const u = userId('except')
    for (const sid of ['s1', 's2', 's3']) await create(session(u, sid, { maxTtlMs: MINUTE }))
    const first = await store.revokeAll(u, { rememberMs: REMEMBER, except: 's2' })
    t.match(first, { status: 'revoked', spared: 's2' }, 'it says which session it spared')
    t.same(await listed(u), ['s2'], 'the spared session is still listed')
    t.equal(await store.isLive(u, 's2'), true)
    t.equal((await store.rotate(rotation(u, 's2', 's2', 'x'))).status, 'rotated')
    t.equal((await store.revokeAll(u, { rememberMs: REMEMBER, ifLive: 's2', except: 's2' })).status, 'revoked', 'a guard and an exception together')
    t.same(await listed(u), ['s2'])
    const later = await store.revokeAll(u, { rememberMs: REMEMBER, except: 's1' })
    t.equal(later.status, 'revoked')
    t.notOk('spared' in later, 'nothing spared')
    t.ok(later.status === 'revoked' && first.status === 'revoked' && later.startedBefore >= first.startedBefore, 'a later stamp is never before an earlier one')
    t.same(await listed(u), [], 's1 ended with the first stamp: sparing it now does not bring it back')
    t.equal((await store.rotate(rotation(u, 's1', 's1', 'y'))).status, 'missing')
  })

  t.test('beyond maxSessions a login ends the sessions nearest their end, never itself', async (t) => {
    const u = userId('cap')
    for (const sid of ['s1', 's2', 's3']) {
      await create(session(u, sid, { maxSessions: 3 }))
      await sleep(5)
    }
    t.equal((await store.rotate(rotation(u, 's1', 's1', 's1b'))).status, 'rotated', 's1 used again: s2 is now the least recently used')
    const { ended } = await create(session(u, 's4', { maxSessions: 3 }))
    t.same(ended, ['s2'])
    t.same((await listed(u)).sort(), ['s1', 's3', 's4'])
    t.equal((await store.rotate(rotation(u, 's2', 's2', 'x'))).status, 'missing', 'the ended session is over')
    const lowered = await create(session(u, 's5', { maxSessions: 1 }))
    t.same(lowered.ended.sort(), ['s1', 's3', 's4'], 'a lowered cap ends the rest at the next login')
    t.same(await listed(u), ['s5'])
  })

  t.test('list pages newest first by start, stable under rotation, with a cursor', async (t) => {
    const u = userId('page')
    const ids = ['s1', 's2', 's3', 's4', 's5']
    for (const sid of ids) await create(session(u, sid))
    const first = await store.list(u, { limit: 2 })
    t.same(first.sessions.map((s) => s.sessionId), ['s5', 's4'])
    t.type(first.nextCursor, 'number')
    // Rotating the oldest session must not move it to the front.
    t.equal((await store.rotate(rotation(u, 's1', 's1', 's1b'))).status, 'rotated')
    const second = await store.list(u, { limit: 2, cursor: first.nextCursor as number })
    t.same(second.sessions.map((s) => s.sessionId), ['s3', 's2'])
    const third = await store.list(u, { limit: 2, cursor: second.nextCursor as number })
    t.same(third.sessions.map((s) => s.sessionId), ['s1'])
    t.equal(third.nextCursor, undefined, 'no cursor after the last page')
    t.equal((await store.list(u, { limit: 5 })).nextCursor, undefined, 'nor after a page that is exactly full')
    const starts = [...first.sessions, ...second.sessions, ...third.sessions].map((s) => s.createdAt)
    t.equal(new Set(starts).size, 5, 'starts are unique per user, even within one millisecond')
  })

  t.test('list shows live sessions with their client', async (t) => {
    const u = userId('list')
    const before = Date.now()
    t.equal((await create(session(u, 's1', { tokenHash: 'a', maxTtlMs: 10 * MINUTE, client: { userAgent: 'UA/1', ip: '10.0.0.1', label: 'laptop' } }))).ttlMs, MINUTE)
    await sleep(20)
    await create(session(u, 's2', { tokenHash: 'b', maxTtlMs: MINUTE }))
    await create(session(u, 'short', { tokenHash: 'c', ttlMs: 100, maxTtlMs: MINUTE }))
    await sleep(200)
    await store.rotate(rotation(u, 's2', 'b', 'b2'))
    const { sessions } = await store.list(u, { limit: 100 })
    t.same(sessions.map((s) => s.sessionId), ['s2', 's1'], 'the expired session is not listed')
    const [second, first] = sessions
    t.match(first, { userAgent: 'UA/1', ip: '10.0.0.1', label: 'laptop' })
    t.ok(first !== undefined && first.createdAt >= before - 1000 && first.createdAt <= Date.now() + 1000, 'createdAt is a time in ms')
    t.ok(first !== undefined && Math.abs(first.lastUsedAt - first.createdAt) < 5, 'never refreshed: last used at creation')
    t.ok(second !== undefined && second.lastUsedAt > second.createdAt, 'a rotation updates lastUsedAt')
    t.ok(first !== undefined && Math.abs(first.expiresAt - (first.createdAt + MINUTE)) < 1000, 'expiresAt follows the ttl')
    t.notOk(second !== undefined && 'userAgent' in second, 'no client info, no fields')
    t.same(await store.list(userId('nobody'), { limit: 10 }), { sessions: [] })
  })

  t.test('a session not remembered is listed as such after rotations, and a step-up keeps its shorter lifetime', async (t) => {
    const u = userId('not-remembered')
    await create(session(u, 'kept', { tokenHash: 'k0' }))
    const { startedAt } = await create(session(u, 'brief', { tokenHash: 'b0', maxTtlMs: 10 * MINUTE, remembered: false }))
    await store.rotate(rotation(u, 'brief', 'b0', 'b1', { maxTtlMs: 10 * MINUTE }))
    const remembered = Object.fromEntries((await store.list(u, { limit: 10 })).sessions.map((s) => [s.sessionId, s.remembered]))
    t.same(remembered, { kept: true, brief: false }, 'the list tells them apart, after a rotation too')
    const stepUp = { userId: u, successorHash: 'up', ttlMs: 100 * MINUTE, maxTtlMs: 1000 * MINUTE, browserSessionMaxTtlMs: 10 * MINUTE }
    const before = Date.now()
    const brief = await store.stepUp({ ...stepUp, sessionId: 'brief' })
    t.match(brief, { status: 'stepped-up', startedAt, remembered: false })
    // Measured from the session's start, which may lie a millisecond ahead (starts are unique per user).
    t.ok(brief.status === 'stepped-up' && brief.ttlMs <= startedAt + 10 * MINUTE - before && brief.ttlMs > 9 * MINUTE, 'capped by the lifetime of a session not remembered')
    t.same(await store.stepUp({ ...stepUp, sessionId: 'kept' }), { status: 'stepped-up', ttlMs: 100 * MINUTE, startedAt: (await store.list(u, { limit: 10 })).sessions.find((s) => s.sessionId === 'kept')?.createdAt, remembered: true })
  })

  t.test('the absolute lifetime caps every ttl and a rotation never extends it', async (t) => {
    const u = userId('absolute')
    t.equal((await create(session(u, 's1', { tokenHash: 'h0', maxTtlMs: 400 }))).ttlMs, 400, 'capped at creation')
    await sleep(150)
    const rotated = await store.rotate(rotation(u, 's1', 'h0', 'h1', { maxTtlMs: 400 }))
    t.equal(rotated.status, 'rotated')
    t.ok('ttlMs' in rotated && rotated.ttlMs <= 260 && rotated.ttlMs > 100, 'the rotation got only what was left')
    await sleep(300)
    t.equal((await store.rotate(rotation(u, 's1', 'h1', 'h2', { maxTtlMs: 400 }))).status, 'missing', 'gone at its absolute end')
  })

  t.test('ping resolves while the store answers, and time is the store\'s clock', async (t) => {
    await t.resolves(store.ping())
    const time = await store.time()
    t.ok(Math.abs(time - Date.now()) < 1000, 'a time in ms since the epoch')
  })

  t.test('isLive tells whether a session exists', async (t) => {
    const u = userId('live')
    await create(session(u, 's1', { maxTtlMs: MINUTE }))
    t.equal(await store.isLive(u, 's1'), true)
    t.equal(await store.isLive(u, 's2'), false)
    await store.revoke({ userId: u, sessionId: 's1', rememberMs: REMEMBER })
    t.equal(await store.isLive(u, 's1'), false)
  })

  t.test('revocations are announced to every watcher and remembered for a while', async (t) => {
    const announced: Revocation[] = []
    let connected = 0
    const stop = await store.revocationFeed.watch({
      revoked: (revocations) => announced.push(...revocations),
      connected: () => { connected++ },
      disconnected: () => {}
    })
    t.teardown(stop)
    await until(() => connected > 0)
    const u = userId('announce')
    // Session ids no other test of the suite uses: the store remembers every revocation.
    const [s1, s2, s3, s4] = ['ann-1', 'ann-2', 'ann-3', 'ann-4'] as const
    for (const sid of [s1, s2, s3]) await create(session(u, sid, { maxTtlMs: MINUTE }))
    const before = Date.now()
    await store.revoke({ userId: u, sessionId: s1, rememberMs: REMEMBER })
    await store.revoke({ userId: u, sessionId: s1, rememberMs: REMEMBER })
    const all = await store.revokeAll(u, { rememberMs: REMEMBER, except: s3 })
    await store.rotate(rotation(u, s3, 'not-current', 'x', { rememberMs: 100 }))
    await create(session(u, s4, { maxSessions: 1 }))
    await until(() => announced.length >= 3)
    const mine = (revocations: Revocation[]): string[] => sessionIds(revocations).filter((id) => id.startsWith('ann-'))
    t.same(mine(announced), [s1, s3], 'logout and reuse, each once; an idempotent repeat says nothing')
    const stamp = announced.find((r) => 'userId' in r && r.userId === u)
    t.same(stamp, { userId: u, startedBefore: all.status === 'revoked' ? all.startedBefore : 0, except: s3, until: stamp?.until }, 'revokeAll: one entry for the user')
    t.ok(stamp !== undefined && Math.abs(stamp.until - (before + REMEMBER)) < 2000, 'until: the stamp + rememberMs')
    const first = announced.find((r) => 'sessionId' in r && r.sessionId === s1)
    t.ok(first !== undefined && first.until >= before + REMEMBER - 1000 && first.until <= Date.now() + REMEMBER + 1000, 'until: now + rememberMs')
    const reloaded = await reloadAll(store.revocationFeed)
    t.same(mine(reloaded), [s1, s3], 'remembered for a reload')
    t.ok(reloaded.some((r) => 'userId' in r && r.userId === u && r.except === s3), 'the stamp too, user id and all')
    await sleep(300)
    t.same(mine((await reloadAll(store.revocationFeed)).filter((r) => r.until > Date.now())), [s1], 'a short memory runs out')
  })

  t.test('the sessions the cap ends are announced like any revocation', async (t) => {
    const announced: Revocation[] = []
    let connected = 0
    const stop = await store.revocationFeed.watch({ revoked: (revocations) => announced.push(...revocations), connected: () => { connected++ }, disconnected: () => {} })
    t.teardown(stop)
    await until(() => connected > 0)
    const u = userId('cap-announce')
    await create(session(u, 'cap-1', { maxSessions: 1 }))
    await create(session(u, 'cap-2', { maxSessions: 1 }))
    await until(() => announced.length >= 1)
    t.same(sessionIds(announced).filter((id) => id.startsWith('cap-')), ['cap-1'])
  })

  t.test('racing rotations of one token: with grace all succeed on one chain', async (t) => {
    const u = userId('race')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    const rotate = rotation(u, 's1', 'h0', 'h1', { graceMs: 5000 })
    const outcomes = await Promise.all(Array.from({ length: 50 }, async () => await store.rotate(rotate)))
    t.equal(outcomes.filter((o) => o.status === 'rotated').length, 1)
    t.equal(outcomes.filter((o) => o.status === 'replayed').length, 49)
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'rotated', 'the one chain continues')
  })

  t.test('racing rotations of one token: strict lets at most one through', async (t) => {
    const u = userId('strict')
    await create(session(u, 's1', { tokenHash: 'h0' }))
    const rotate = rotation(u, 's1', 'h0', 'h1')
    const outcomes = await Promise.all(Array.from({ length: 50 }, async () => await store.rotate(rotate)))
    t.ok(outcomes.filter((o) => o.status === 'rotated').length <= 1)
    t.equal(outcomes.filter((o) => o.status === 'replayed').length, 0)
    t.equal((await store.rotate({ ...rotate, presentedHash: 'h1', successorHash: 'h2' })).status, 'missing', 'the racers revoked the session')
  })

  t.test('racing logins against a revokeAll: none started before the stamp survives', async (t) => {
    const u = userId('race-all')
    const logins = Array.from({ length: 30 }, async (_, n) => await store.create(session(u, `r${n}`)))
    const revoked = store.revokeAll(u, { rememberMs: REMEMBER })
    const outcomes = await Promise.all(logins)
    const stamp = await revoked
    const survivors = await listed(u)
    const startedAfter = outcomes.flatMap((o, n) => o.status === 'created' && stamp.status === 'revoked' && o.startedAt >= stamp.startedBefore ? [`r${n}`] : [])
    t.same(survivors.sort(), startedAfter.sort(), 'exactly the sessions that started after the stamp live')
  })
}

/** Every revocation a feed reloads, whether it gives them at once or in chunks. */
export async function reloadAll (feed: RevocationFeed): Promise<Revocation[]> {
  const reloaded = feed.revocations()
  if (!(Symbol.asyncIterator in reloaded)) return await reloaded
  const all: Revocation[] = []
  for await (const chunk of reloaded) all.push(...chunk)
  return all
}
