// Reads the README and the docs pages: their sections, their code blocks and the markers that
// say a block is a fragment; type-checks blocks the way an adopter's strict project would.
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** The pages whose code blocks are checked: the README, then docs/*.md. */
export function docPages (): string[] {
  const docs = readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)
  return ['README.md', ...docs]
}

/** A page's text, by its path from the project's root (`docs/browsers.md`). */
export function readPage (page: string): string {
  return readFileSync(join(ROOT, page), 'utf8')
}

/**
 * The text of one section: from its heading line (`## Redis ACL`, any level) to the next
 * heading of the same or a higher level. Throws when the heading is not there, so a test
 * that reads a section fails loudly when the page is reorganised.
 */
export function section (page: string, heading: string): string {
  const lines = readPage(page).split('\n')
  const start = lines.findIndex((line) => /^#{1,6} /.test(line) && line.replace(/^#+ /, '') === heading)
  if (start === -1) throw new Error(`${page} has no heading "${heading}"`)
  const level = (/^#+/.exec(lines[start] as string) as RegExpExecArray)[0].length
  const end = lines.findIndex((line, index) => index > start && new RegExp(`^#{1,${level}} `).test(line) && !insideFence(lines, index))
  return lines.slice(start, end === -1 ? undefined : end).join('\n')
}

/** Whether line `index` is inside a fenced code block (a `#` comment in a sh block is no heading). */
function insideFence (lines: string[], index: number): boolean {
  return lines.slice(0, index).filter((line) => line.startsWith('```')).length % 2 === 1
}

export type Language = 'ts' | 'js'

/** One fenced code block of a page. */
export interface CodeBlock {
  page: string
  /** The page's line of the block's first line of code (1-based). */
  line: number
  language: Language
  code: string
  /**
   * From the marker on the line before the fence: `<!-- fragment with: <declarations> -->`
   * gives the declarations it is checked with; `<!-- fragment: <why> -->` (or a bare
   * `<!-- fragment -->`) means it is not checked, and why.
   */
  context?: string
  unchecked?: string
}

const LANGUAGES: Record<string, Language> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' }

/** The TypeScript and JavaScript blocks of a text (a page, or a section of one), in order. */
export function codeBlocks (text: string, page = ''): CodeBlock[] {
  const lines = text.split('\n')
  const blocks: CodeBlock[] = []
  for (let index = 0; index < lines.length; index++) {
    const fence = /^```(\S*)\s*$/.exec(lines[index] as string)
    if (fence === null) continue
    const close = lines.findIndex((line, at) => at > index && line.startsWith('```'))
    if (close === -1) throw new Error(`${page}: a code block opened at line ${index + 1} is never closed`)
    const language = LANGUAGES[fence[1] as string]
    if (language !== undefined) {
      const block: CodeBlock = { page, line: index + 2, language, code: `${lines.slice(index + 1, close).join('\n')}\n` }
      const marker = /^<!-- fragment(?:( with)?: ?([\s\S]*?))? -->$/.exec((lines[index - 1] ?? '').trim())
      if (marker !== null) {
        if (marker[1] !== undefined) block.context = marker[2] as string
        else block.unchecked = marker[2] ?? 'a fragment'
      }
      blocks.push(block)
    }
    index = close
  }
  return blocks
}

/** Every TypeScript and JavaScript block of the README and the docs pages. */
export function allCodeBlocks (): CodeBlock[] {
  return docPages().flatMap((page) => codeBlocks(readPage(page), page))
}

/**
 * The compiler options a block is checked with: strict, `nodenext`, no `skipLibCheck`, the
 * DOM's types beside Node's (pages show browser and server code), JavaScript checked too;
 * the package's entry points are its sources in this checkout, never a stale build.
 */
export const COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
  types: ['node'],
  typeRoots: [join(ROOT, 'node_modules', '@types')],
  strict: true,
  exactOptionalPropertyTypes: true,
  skipLibCheck: false,
  allowJs: true,
  checkJs: true,
  noEmit: true,
  paths: {
    'fastify-token-sessions': [join(ROOT, 'lib', 'index.ts')],
    'fastify-token-sessions/client': [join(ROOT, 'client', 'index.ts')],
    'fastify-token-sessions/client/dpop': [join(ROOT, 'client', 'dpop.ts')]
  }
}

/**
 * JavaScript blocks: the same, less `noImplicitAny` (JavaScript has no annotations to give);
 * what is checked is every use of a typed API, and every name.
 */
const JS_OPTIONS: ts.CompilerOptions = { ...COMPILER_OPTIONS, noImplicitAny: false }

/**
 * Declaration files that only the package's sources load, never its published types (which
 * the `test/consumers-*.test.ts` files check without `skipLibCheck`): cluster-key-slot's has
 * an error of its own under nodenext (TS2309), which no adopter's program meets.
 */
const SOURCES_ONLY = [`${join('node_modules', 'cluster-key-slot')}/`]

/** What tsc said about one block: its messages, with the page's line numbers. */
export interface Verdict {
  block: CodeBlock
  errors: string[]
}

/**
 * Type-checks each block that is not marked unchecked, each in a program of its own (a
 * block may augment the package's types, as an app does, and must not change another's).
 * A TypeScript block's context goes on a line before its code; a JavaScript block's, into
 * a declaration file beside it. The package's own sources are checked by `npm run
 * typecheck` under the project's settings; here the blocks are, and every declaration file
 * they load (no `skipLibCheck`), each the first time a program loads it.
 */
export function typecheckBlocks (blocks: CodeBlock[]): Verdict[] {
  const dir = mkdtempSync(join(tmpdir(), 'fts-docs-'))
  try {
    // ES modules, as in an app with "type": "module"; imports resolve to the project's modules.
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n')
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    const host = cachingHost(COMPILER_OPTIONS, dir)
    const libChecked = new Set<string>()
    let previous: ts.Program | undefined
    const verdicts: Verdict[] = []
    blocks.forEach((block, index) => {
      if (block.unchecked !== undefined) return
      const name = `${block.page.replace(/[^A-Za-z0-9]+/g, '-')}-${index}`
      const file = join(dir, `${name}.${block.language}`)
      const roots = [file]
      let offset = 0
      if (block.context !== undefined && block.language === 'ts') {
        writeFileSync(file, `${block.context.replace(/\n/g, ' ')}\n${block.code}`)
        offset = 1
      } else {
        writeFileSync(file, block.code)
        if (block.context !== undefined) {
          roots.push(join(dir, `${name}.context.d.ts`))
          writeFileSync(roots[1] as string, `${block.context}\n`)
        }
      }
      const options = block.language === 'js' ? JS_OPTIONS : COMPILER_OPTIONS
      const program = ts.createProgram({ rootNames: roots, options, host, ...(previous === undefined ? {} : { oldProgram: previous }) })
      previous = program
      const diagnostics: ts.Diagnostic[] = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
      for (const source of program.getSourceFiles()) {
        const own = roots.includes(source.fileName)
        const declaration = source.isDeclarationFile && !libChecked.has(source.fileName) && !SOURCES_ONLY.some((path) => source.fileName.includes(path))
        if (!own && !declaration) continue
        if (declaration) libChecked.add(source.fileName)
        diagnostics.push(...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source))
      }
      verdicts.push({ block, errors: diagnostics.map((diagnostic) => describe(diagnostic, block, file, offset)) })
    })
    return verdicts
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A compiler host that parses each file outside the blocks' directory once for all programs. */
function cachingHost (options: ts.CompilerOptions, dir: string): ts.CompilerHost {
  const host = ts.createCompilerHost(options, true)
  const cache = new Map<string, ts.SourceFile | undefined>()
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    if (fileName.startsWith(dir)) return getSourceFile(fileName, languageVersion, onError, shouldCreate)
    const key = `${fileName}\0${JSON.stringify(languageVersion)}`
    if (!cache.has(key)) cache.set(key, getSourceFile(fileName, languageVersion, onError, shouldCreate))
    return cache.get(key)
  }
  return host
}

/** One diagnostic as `page:line: TSnnnn message`, at the block's line in its page. */
function describe (diagnostic: ts.Diagnostic, block: CodeBlock, file: string, offset: number): string {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
  if (diagnostic.file === undefined || diagnostic.start === undefined) return `TS${diagnostic.code} ${message}`
  const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
  if (diagnostic.file.fileName !== file) return `${relative(ROOT, diagnostic.file.fileName)}:${line + 1}: TS${diagnostic.code} ${message}`
  const where = line < offset ? `${block.page}:${block.line - 1} (its context)` : `${block.page}:${block.line + line - offset}`
  return `${where}: TS${diagnostic.code} ${message}`
}
