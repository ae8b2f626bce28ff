import t from 'tap'
import { check, type CheckOptions } from '../bench/faults/checker.mjs'
import type { History, Operation } from '../bench/faults/history.mjs'

// Synthetic histories: each clean one must give no violation, and each broken one exactly
// the violation it holds, naming its operations.

const OPTIONS: CheckOptions = { revocationBoundMs: 100, reuseGraceMs: 1000, recoveryMs: 500 }
const INSTANCES = ['a', 'b', 'c']

let seq = 0
function op (kind: Operation['kind'], instance: string, start: number, end: number, request: Operation['request'], answer: Operation['answer']): Operation {
  seq++
  return { id: `op${seq}`, client: 'c1', kind, instance, start, end, request, answer }
}

/** A login of user u1 to session s1 (access a0, refresh r0), then each instance answering after the faults. */
function base (): Operation[] {
  return [
    op('login', 'a', 0, 10, { userId: 'u1' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a0', refreshTokenId: 'r0' } }),
    ...INSTANCES.map((i) => op('authenticate', i, 5000, 5010, { sessionId: 's1', accessTokenId: 'a0' }, { status: 200 }))
  ]
}

function history (operations: Operation[], extra: Partial<History> = {}): History {
  return { operations, faults: [{ kind: 'cut', start: 100, end: 4000 }], lags: [], instances: INSTANCES, ...extra }
}

function names (result: ReturnType<typeof check>) {
  return result.violations.map((v) => ({ invariant: v.invariant, operations: v.operations }))
}

t.test('a clean history has no violation', async (t) => {
  const ops = base()
  const refresh = op('refresh', 'b', 100, 120, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a1', refreshTokenId: 'r1' } })
  const use = op('authenticate', 'c', 200, 210, { sessionId: 's1', accessTokenId: 'a1' }, { status: 200 })
  const busy = op('authenticate', 'a', 300, 310, { sessionId: 's1', accessTokenId: 'a1' }, { status: 503, retryAfter: 1 })
  const result = check(history([...base(), refresh, use, busy, ...ops.slice(1)]), OPTIONS)
  t.same(result.violations, [])
  t.same(result.excused, [])
  t.equal(result.counts['no-5xx'].violations, 0)
})

t.test('(a) single successor', async (t) => {
  const first = op('refresh', 'a', 100, 120, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a1', refreshTokenId: 'r1' } })
  t.test('racing refreshes within the grace window sharing one successor are fine', async (t) => {
    const replay = op('refresh', 'b', 110, 140, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a2', refreshTokenId: 'r1' } })
    t.same(check(history([...base(), first, replay]), OPTIONS).violations, [])
  })
  t.test('two different successors are a violation', async (t) => {
    const second = op('refresh', 'b', 110, 140, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a2', refreshTokenId: 'r2' } })
    const result = check(history([...base(), first, second]), OPTIONS)
    t.same(names(result), [{ invariant: 'single-successor', operations: [first.id, second.id] }])
    t.equal(result.counts['single-successor'].violations, 1)
  })
  t.test('the same successor again beyond the grace window is a violation', async (t) => {
    const late = op('refresh', 'b', 1121, 1130, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a2', refreshTokenId: 'r1' } })
    t.same(names(check(history([...base(), first, late]), OPTIONS)), [{ invariant: 'single-successor', operations: [first.id, late.id] }])
  })
})

t.test('(b) a reuse answer ends the session everywhere', async (t) => {
  const reuse = op('refresh', 'a', 2000, 2010, { sessionId: 's1', refreshTokenId: 'rOld' }, { status: 401, code: 'FTS_TOKEN_REUSED' })
  t.test('accepted within the bound: fine', async (t) => {
    const racing = op('authenticate', 'b', 2100, 2105, { sessionId: 's1', accessTokenId: 'a0' }, { status: 200 })
    const refused = op('authenticate', 'b', 2200, 2205, { sessionId: 's1', accessTokenId: 'a0' }, { status: 401, code: 'FTS_SESSION_REVOKED' })
    t.same(check(history([base()[0], reuse, racing, refused, ...okAfter()]), OPTIONS).violations, [])
  })
  t.test('accepted past the bound: a violation', async (t) => {
    const late = op('refresh', 'c', 2111, 2120, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a9', refreshTokenId: 'r9' } })
    t.same(names(check(history([base()[0], reuse, late, ...okAfter()]), OPTIONS)), [{ invariant: 'reuse-ends-session', operations: [reuse.id, late.id] }])
  })
})

/** Answers from every instance after the faults that involve no session. */
function okAfter (): Operation[] {
  return INSTANCES.map((i) => op('login', i, 5000, 5010, { userId: 'u9' }, { status: 200, newTokens: { sessionId: `s-${i}`, accessTokenId: `a-${i}`, refreshTokenId: `r-${i}` } }))
}

t.test('(c) an acknowledged revocation holds on every instance past the bound', async (t) => {
  const logout = op('logout', 'a', 1000, 1020, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 204 })
  t.test('refused after the bound: fine', async (t) => {
    const refused = op('authenticate', 'b', 1200, 1205, { sessionId: 's1', accessTokenId: 'a0' }, { status: 401, code: 'FTS_SESSION_REVOKED' })
    t.same(check(history([base()[0], logout, refused, ...okAfter()]), OPTIONS).violations, [])
  })
  const late = op('authenticate', 'b', 1200, 1205, { sessionId: 's1', accessTokenId: 'a0' }, { status: 200 })
  t.test('accepted after the bound: a violation', async (t) => {
    t.same(names(check(history([base()[0], logout, late, ...okAfter()]), OPTIONS)), [{ invariant: 'revocation-bound', operations: [logout.id, late.id] }])
  })
  t.test("the instance's event-loop lag extends the bound", async (t) => {
    const lags = [{ instance: 'b', at: 1100, lagMs: 90 }]
    t.same(check(history([base()[0], logout, late, ...okAfter()], { lags }), OPTIONS).violations, [])
    const otherInstance = [{ instance: 'c', at: 1100, lagMs: 90 }]
    t.equal(check(history([base()[0], logout, late, ...okAfter()], { lags: otherInstance }), OPTIONS).counts['revocation-bound'].violations, 1)
  })
  t.test('revoke-all ends every earlier session of the user, not a later one', async (t) => {
    const revokeAll = op('revoke-all', 'c', 1000, 1020, { userId: 'u1' }, { status: 204 })
    const later = op('login', 'a', 1030, 1040, { userId: 'u1' }, { status: 200, newTokens: { sessionId: 's2', accessTokenId: 'b0', refreshTokenId: 'q0' } })
    const newOk = op('authenticate', 'b', 1200, 1205, { sessionId: 's2', accessTokenId: 'b0' }, { status: 200 })
    const oldOk = op('authenticate', 'b', 1200, 1205, { sessionId: 's1', accessTokenId: 'a0' }, { status: 200 })
    t.same(names(check(history([base()[0], revokeAll, later, newOk, oldOk, ...okAfter()]), OPTIONS)), [{ invariant: 'revocation-bound', operations: [revokeAll.id, oldOk.id] }])
  })
  t.test('a revoke-all that spares a session (a password change) holds it to nothing', async (t) => {
    const spare = op('revoke-all', 'c', 1000, 1020, { userId: 'u1', sessionId: 's1', exceptSessionId: 's1' }, { status: 204 })
    const ok = op('authenticate', 'b', 1200, 1205, { sessionId: 's1', accessTokenId: 'a0' }, { status: 200 })
    t.same(check(history([base()[0], spare, ok, ...okAfter()]), OPTIONS).violations, [])
    const spareOther = op('revoke-all', 'c', 1000, 1020, { userId: 'u1', sessionId: 's9', exceptSessionId: 's9' }, { status: 204 })
    t.same(names(check(history([base()[0], spareOther, ok, ...okAfter()]), OPTIONS)), [{ invariant: 'revocation-bound', operations: [spareOther.id, ok.id] }])
  })
  t.test('a revocation after Redis forgot the session (its login was lost): excused, with the reason', async (t) => {
    // Redis lost everything at 500; the logout at 1000 finds no session to revoke.
    const forgot = [{ start: 0, end: 500, why: 'Redis restarted without persistence' }]
    const result = check(history([base()[0], logout, late, ...okAfter()]), { ...OPTIONS, excusedLosses: forgot })
    t.same(result.violations, [])
    t.same(result.excused.map((e) => [e.invariant, e.operations, e.why]), [['revocation-bound', [logout.id, late.id], 'Redis restarted without persistence']])
    // A loss before the login: the store knew the session when the logout came.
    const earlier = [{ start: 0, end: 5, why: 'a loss before the login answered' }]
    const login = op('login', 'a', 8, 10, { userId: 'u1' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a0', refreshTokenId: 'r0' } })
    t.equal(check(history([login, logout, late, ...okAfter()]), { ...OPTIONS, excusedLosses: earlier }).counts['revocation-bound'].violations, 1)
  })
})

t.test('(d) a session a 200 left keeps working until something ends it', async (t) => {
  const refresh = op('refresh', 'a', 100, 120, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 200, newTokens: { sessionId: 's1', accessTokenId: 'a1', refreshTokenId: 'r1' } })
  const lost = op('authenticate', 'b', 4500, 4510, { sessionId: 's1', accessTokenId: 'a1' }, { status: 401, code: 'FTS_SESSION_REVOKED' })
  t.test('refused with nothing ending it: a violation', async (t) => {
    t.same(names(check(history([base()[0], refresh, lost, ...okAfter()]), OPTIONS)), [{ invariant: 'session-survives', operations: [refresh.id, lost.id] }])
  })
  t.test('refused after a logout, after expiry, or with 503: fine', async (t) => {
    const logout = op('logout', 'c', 4000, 4600, { sessionId: 's1', refreshTokenId: 'r1' }, { error: 'connection' })
    const expired = op('refresh', 'b', 4500, 4510, { sessionId: 's1', refreshTokenId: 'r1' }, { status: 401, code: 'FTS_TOKEN_EXPIRED' })
    const busy = op('authenticate', 'b', 4500, 4510, { sessionId: 's1', accessTokenId: 'a1' }, { status: 503, retryAfter: 1 })
    t.same(check(history([base()[0], refresh, logout, lost, ...okAfter()]), OPTIONS).violations, [])
    t.same(check(history([base()[0], refresh, expired, busy, ...okAfter()]), OPTIONS).violations, [])
  })
  t.test('refused after a revoke-all that overlapped its login (its stamp may postdate the login): fine', async (t) => {
    const login = op('login', 'a', 1000, 1020, { userId: 'u1' }, { status: 200, newTokens: { sessionId: 's2', accessTokenId: 'b0', refreshTokenId: 'q0' } })
    const revokeAll = op('revoke-all', 'c', 1010, 1015, { userId: 'u1', sessionId: 's1', exceptSessionId: 's1' }, { status: 204 })
    const refused = op('authenticate', 'b', 1100, 1105, { sessionId: 's2', accessTokenId: 'b0' }, { status: 401, code: 'FTS_SESSION_REVOKED' })
    t.same(check(history([base()[0], login, revokeAll, refused, ...okAfter()]), OPTIONS).violations, [])
    const before = op('revoke-all', 'c', 900, 950, { userId: 'u1', sessionId: 's1', exceptSessionId: 's1' }, { status: 204 })
    t.equal(check(history([base()[0], login, before, refused, ...okAfter()]), OPTIONS).counts['session-survives'].violations, 1)
  })
  t.test('a reuse answer after a refresh of the same token answered 503 (it may have run): fine', async (t) => {
    const timedOut = op('refresh', 'c', 200, 1210, { sessionId: 's1', refreshTokenId: 'r1' }, { status: 503, retryAfter: 1 })
    const reused = op('refresh', 'b', 1500, 1510, { sessionId: 's1', refreshTokenId: 'r1' }, { status: 401, code: 'FTS_TOKEN_REUSED' })
    t.same(check(history([base()[0], refresh, timedOut, reused, ...okAfter()]), OPTIONS).violations, [])
  })
  t.test('refused after a refresh of an already rotated token answered 503 (it may have been judged reuse): fine', async (t) => {
    const stale = op('refresh', 'c', 200, 1210, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 503, retryAfter: 1 })
    t.same(check(history([base()[0], refresh, stale, lost, ...okAfter()]), OPTIONS).violations, [])
    const current = op('refresh', 'c', 200, 1210, { sessionId: 's1', refreshTokenId: 'r1' }, { status: 503, retryAfter: 1 })
    const earlier = op('refresh', 'c', 50, 90, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 503, retryAfter: 1 })
    t.equal(check(history([base()[0], refresh, current, lost, ...okAfter()]), OPTIONS).counts['session-survives'].violations, 1, 'not the current token')
    t.equal(check(history([base()[0], earlier, refresh, lost, ...okAfter()]), OPTIONS).counts['session-survives'].violations, 1, 'not before the token was rotated')
  })
  t.test('a reuse answer after a racing refresh of the same token: fine', async (t) => {
    const racer = op('refresh', 'c', 200, 210, { sessionId: 's1', refreshTokenId: 'r1' }, { error: 'connection' })
    const reused = op('refresh', 'b', 1500, 1510, { sessionId: 's1', refreshTokenId: 'r1' }, { status: 401, code: 'FTS_TOKEN_REUSED' })
    t.same(check(history([base()[0], refresh, racer, reused, ...okAfter()]), OPTIONS).violations, [])
    t.equal(check(history([base()[0], refresh, reused, ...okAfter()]), OPTIONS).counts['session-survives'].violations, 1)
  })
  t.test('a loss inside an excused window is reported as excused with its reason', async (t) => {
    const excusedLosses = [{ start: 0, end: 3000, why: 'redis-server restarted without persistence' }]
    const result = check(history([base()[0], refresh, lost, ...okAfter()]), { ...OPTIONS, excusedLosses })
    t.same(result.violations, [])
    t.same(result.excused.map((e) => [e.invariant, e.operations, e.why]), [['session-survives', [refresh.id, lost.id], 'redis-server restarted without persistence']])
    t.same(result.counts['session-survives'], { violations: 0, excused: 1 })
    const before = [{ start: 0, end: 50, why: 'a restart before the write' }]
    t.equal(check(history([base()[0], refresh, lost, ...okAfter()]), { ...OPTIONS, excusedLosses: before }).counts['session-survives'].violations, 1)
    const after = [{ start: 0, end: 4600, why: 'a restart after the refusal was seen' }]
    t.equal(check(history([base()[0], refresh, lost, ...okAfter()]), { ...OPTIONS, excusedLosses: after }).counts['session-survives'].violations, 1)
  })
})

t.test('(e) the only 5xx is a 503 with Retry-After', async (t) => {
  const fine = op('authenticate', 'a', 200, 210, { sessionId: 's1', accessTokenId: 'a0' }, { status: 503, retryAfter: 2 })
  const bare = op('authenticate', 'b', 200, 210, { sessionId: 's1', accessTokenId: 'a0' }, { status: 503 })
  const crash = op('refresh', 'c', 200, 210, { sessionId: 's1', refreshTokenId: 'r0' }, { status: 500 })
  const result = check(history([...base(), fine, bare, crash]), OPTIONS)
  t.same(names(result), [{ invariant: 'no-5xx', operations: [bare.id] }, { invariant: 'no-5xx', operations: [crash.id] }])
  t.match(result.violations[0]?.message, /without Retry-After/)
})

t.test('(g) every request is answered', async (t) => {
  const hung = op('refresh', 'a', 200, 5200, { sessionId: 's1', refreshTokenId: 'r0' }, { error: 'timeout' })
  const killed = op('refresh', 'b', 200, 201, { sessionId: 's1', refreshTokenId: 'r0' }, { error: 'connection' })
  const result = check(history([...base(), hung, killed]), OPTIONS)
  t.same(names(result), [{ invariant: 'no-hang', operations: [hung.id] }])
  t.match(result.violations[0]?.message, /no answer in 5000 ms/)
})

t.test('(f) every instance answers again after the faults', async (t) => {
  const ops = base()
  const stuck = [
    op('authenticate', 'c', 4600, 4610, { sessionId: 's1', accessTokenId: 'a0' }, { status: 503, retryAfter: 1 }),
    op('authenticate', 'c', 4700, 5700, { sessionId: 's1', accessTokenId: 'a0' }, { error: 'connection' })
  ]
  const aAndB = ops.filter((o) => o.instance !== 'c' || o.kind === 'login')
  t.same(names(check(history([...aAndB, ...stuck]), OPTIONS)), [{ invariant: 'recovery', operations: stuck.map((o) => o.id) }])
  const result = check(history(aAndB), OPTIONS)
  t.same(names(result), [{ invariant: 'recovery', operations: [] }])
  t.match(result.violations[0]?.message, /unproven/)
  const refusedIsAnAnswer = op('authenticate', 'c', 4600, 4610, { sessionId: 's1', accessTokenId: 'a0' }, { status: 401, code: 'FTS_SESSION_REVOKED' })
  t.equal(check(history([...aAndB, refusedIsAnAnswer]), OPTIONS).counts.recovery.violations, 0)
})
