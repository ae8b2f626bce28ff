import t from 'tap'
import { brokenBuild, runFaultScenario } from './helpers/faults.js'

// The harness can fail: a build whose grace window hands a replayed refresh token a second,
// different successor (instead of the one it handed first) is caught as single-successor.

t.test('the harness reports a grace window that hands out a second successor', async (t) => {
  const plugin = brokenBuild(t, 'sessions.js', 'jti: successor,', "jti: outcome.status === 'replayed' ? newRefreshId() : successor,")
  const { result, operations } = await runFaultScenario('no-fault', plugin)
  t.ok(operations > 500, `enough traffic (${operations} operations)`)
  t.ok(result.counts['single-successor'].violations > 0, `single-successor violations: ${result.counts['single-successor'].violations}`)
  const example = result.violations.find((v) => v.invariant === 'single-successor')
  t.match(example?.message, /yielded two successors/)
  t.equal(example?.operations.length, 2, 'names both refreshes')
})

t.test('the same scenario against the build itself reports nothing', async (t) => {
  const { result } = await runFaultScenario('no-fault')
  t.same(result.violations, [])
})
