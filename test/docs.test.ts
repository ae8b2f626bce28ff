// The docs pages hold together: every error code has its troubleshooting entry, every link
// between the pages reaches a file and a heading that exist, and every registration shown
// names a store (a block that type-checks can still fail at `register`).
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import t from 'tap'
import { ROOT, allCodeBlocks, docPages, readPage, section } from './helpers/docs.js'

/** Every `FTS_*` code that lib/errors.ts defines. */
function errorCodes (): string[] {
  const source = readFileSync(join(ROOT, 'lib', 'errors.ts'), 'utf8')
  return [...new Set([...source.matchAll(/'(FTS_[A-Z0-9_]+)'/g)].map((match) => match[1] as string))]
}

/** GitHub's anchor for a heading: lower case, punctuation dropped but `-` and `_`, spaces as `-`. */
function anchor (heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
}

/** The anchors of a page's headings (outside code blocks). */
function anchors (page: string): Set<string> {
  let fenced = false
  const found = new Set<string>()
  for (const line of readPage(page).split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const heading = /^#{1,6} (.+)$/.exec(line)
    if (!fenced && heading !== null) found.add(anchor(heading[1] as string))
  }
  return found
}

t.test('every FTS_* code of lib/errors.ts has its entry in docs/troubleshooting.md', async (t) => {
  const codes = errorCodes()
  t.ok(codes.length >= 18, `${codes.length} codes`)
  const headings = anchors('docs/troubleshooting.md')
  for (const code of codes) {
    t.ok(headings.has(code.toLowerCase()), `## ${code} (#${code.toLowerCase()})`)
    const entry = section('docs/troubleshooting.md', code)
    t.ok(entry.split('\n').filter((line) => line.trim() !== '').length >= 3, `${code}: its cause and its fix, not only a heading`)
  }
  t.ok(headings.has('development-setups'), 'and the development setups')
})

t.test('the anchors are GitHub\'s', async (t) => {
  t.equal(anchor('FTS_CSRF_REJECTED'), 'fts_csrf_rejected')
  t.equal(anchor('Beside @fastify/jwt'), 'beside-fastifyjwt')
  t.equal(anchor('Native clients with OAuth libraries, and DPoP'), 'native-clients-with-oauth-libraries-and-dpop')
  t.equal(anchor('Binding the session to this browser (DPoP)'), 'binding-the-session-to-this-browser-dpop')
})

t.test('every relative link of the README and the docs pages reaches a file, and a heading', async (t) => {
  let count = 0
  for (const page of docPages()) {
    const text = readPage(page).replace(/^```[\s\S]*?^```/gm, '')
    for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1] as string
      if (/^[a-z]+:/.test(target)) continue
      count++
      const [path, hash] = target.split('#') as [string, string | undefined]
      const file = path === '' ? page : normalize(join(dirname(page), path))
      t.ok(existsSync(join(ROOT, file)), `${page}: ${target}: the file exists`)
      if (hash !== undefined && file.endsWith('.md')) t.ok(anchors(file).has(hash), `${page}: ${target}: the heading exists`)
    }
  }
  t.ok(count > 40, `${count} links checked`)
})

t.test('every registration of the plugin in a code block names its store (redis or store)', async (t) => {
  const registrations = allCodeBlocks().filter((block) => block.code.includes('register(tokenSessions'))
  t.ok(registrations.length >= 5, `${registrations.length} blocks register the plugin`)
  for (const block of registrations) {
    for (const call of block.code.matchAll(/register\(tokenSessions, \{([\s\S]*?)\n?\}\)/g)) {
      t.match(call[1], /\b(redis|store):/, `${block.page}:${block.line}`)
    }
  }
})
