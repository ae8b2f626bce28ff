// Every TypeScript and JavaScript block of the README and docs/*.md, type-checked as an
// adopter's strict project would (nodenext, no skipLibCheck) against this checkout's
// sources, so that a snippet cannot rot. Fragments say so with a marker (see the README's
// "Contributing to the docs"); those not checked at all are counted, and kept few.
import t from 'tap'
import { allCodeBlocks, codeBlocks, typecheckBlocks } from './helpers/docs.js'

/** The most blocks that may go unchecked (`<!-- fragment: why -->`). */
const MAX_UNCHECKED = 3

const blocks = allCodeBlocks()

t.test('the pages have code blocks, and few go unchecked', async (t) => {
  t.ok(blocks.length >= 12, `${blocks.length} TypeScript and JavaScript blocks found`)
  for (const page of ['README.md', 'docs/browsers.md', 'docs/native-clients.md', 'docs/options.md', 'docs/security.md', 'docs/sessions.md']) {
    t.ok(blocks.some((block) => block.page === page), `${page} has blocks`)
  }
  const unchecked = blocks.filter((block) => block.unchecked !== undefined)
  const withContext = blocks.filter((block) => block.context !== undefined)
  t.comment(`${blocks.length} blocks: ${blocks.length - unchecked.length} type-checked (${withContext.length} of them with declared context), ${unchecked.length} unchecked`)
  for (const block of unchecked) t.comment(`unchecked: ${block.page}:${block.line} (${block.unchecked ?? ''})`)
  t.ok(unchecked.length <= MAX_UNCHECKED, `at most ${MAX_UNCHECKED} unchecked fragments (${unchecked.length})`)
})

t.test('every block type-checks as written', async (t) => {
  for (const { block, errors } of typecheckBlocks(blocks)) {
    t.same(errors, [], `${block.page}:${block.line} (${block.language}${block.context === undefined ? '' : ', with its declared context'})`)
  }
})

t.test('the check can fail: a wrong type, a missing option\'s type, a name without context', async (t) => {
  const page = [
    '```ts',
    "import { tokenResponse } from 'fastify-token-sessions'",
    'export const wrong: number = tokenResponse',
    '```',
    '',
    '<!-- fragment with: declare const known: string -->',
    '```ts',
    'export const fine: string = known',
    'export const missing: string = unknownName',
    '```',
    '',
    '```js',
    "import { createSessionClient } from 'fastify-token-sessions/client'",
    'createSessionClient({ refreshPath: 42 })',
    '```',
    '',
    '<!-- fragment: not code -->',
    '```ts',
    'this is not TypeScript',
    '```'
  ].join('\n')
  const found = codeBlocks(page, 'probe.md')
  t.same(found.map((block) => [block.line, block.language, block.context, block.unchecked]),
    [[2, 'ts', undefined, undefined], [8, 'ts', 'declare const known: string', undefined], [13, 'js', undefined, undefined], [19, 'ts', undefined, 'not code']])
  const verdicts = typecheckBlocks(found)
  t.equal(verdicts.length, 3, 'the unchecked block is skipped')
  t.match(verdicts[0]?.errors, [/^probe\.md:3: TS2322 /], 'a wrong type, at its line in the page')
  t.match(verdicts[1]?.errors, [/^probe\.md:9: TS2304 .*unknownName/], 'the declared context is there, an undeclared name is not')
  t.match(verdicts[2]?.errors, [/^probe\.md:14: TS2322 /], 'JavaScript is checked against the package\'s types')
})
