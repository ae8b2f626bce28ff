import t from 'tap'
import { brokenBuild, runFaultScenario } from './helpers/faults.js'

// The harness can fail: a build whose revocation feed never judges a heartbeat late (its
// liveness check off) keeps trusting a black-holed subscriber, and accepts sessions other
// instances revoked past the bound: caught as revocation-bound.

t.test('the harness reports a revocation feed whose liveness check is off', async (t) => {
  const plugin = brokenBuild(t, 'stores/feed-heartbeat.js', '#judge(beat) {', '#judge(beat) { return;')
  const { result } = await runFaultScenario('subscriber-black-holed', plugin)
  const bound = result.counts['revocation-bound'].violations + result.counts['reuse-ends-session'].violations
  t.ok(bound > 0, `revocations missed past the bound: ${bound}`)
  t.match(result.violations.find((v) => v.invariant === 'revocation-bound' || v.invariant === 'reuse-ends-session')?.message, /accepted session .* after/)
})

t.test('the same scenario against the build itself reports nothing', async (t) => {
  const { result } = await runFaultScenario('subscriber-black-holed')
  t.same(result.violations, [])
})
