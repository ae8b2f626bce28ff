// The package as adopters install it (npm pack, unpacked into a project's node_modules),
// and app processes started from the outside: for the consumer projects and the image test.
import { execFileSync, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync } from 'node:fs'
import { basename, dirname, join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const MODULES = join(ROOT, 'node_modules')

/** `npm pack` of this checkout (built already) into `dir`: the tarball and the files it holds. */
export function pack (dir: string): { tarball: string, files: string[] } {
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' })) as
    Array<{ filename: string, files: Array<{ path: string }> }>
  if (packed === undefined) throw new Error('npm pack made no tarball')
  return { tarball: join(dir, packed.filename), files: packed.files.map((file) => file.path) }
}

/**
 * A project's node_modules as npm would lay it out: the tarball unpacked as
 * fastify-token-sessions (with its own ioredis 6 below it), and the other packages from
 * this checkout's node_modules, `ioredis` being the version `ioredis` names. `linked`:
 * every package, linked. `copied`: only what the project's and the plugin's dependencies
 * need at run time, copied, as `npm install --omit=dev` leaves it: readable by another
 * user whatever the checkout's permissions, and nothing there that the project does not
 * ask for.
 */
export function installPacked (dir: string, tarball: string, ioredis: 'ioredis' | 'ioredis5' = 'ioredis', layout: 'linked' | 'copied' = 'linked'): void {
  const modules = join(dir, 'node_modules')
  mkdirSync(modules, { recursive: true })
  execFileSync('tar', ['-xzf', tarball, '-C', dir])
  const plugin = join(modules, 'fastify-token-sessions')
  renameSync(join(dir, 'package'), plugin)
  const place = layout === 'linked'
    ? (from: string, to: string) => symlinkSync(from, to)
    : (from: string, to: string) => cpSync(from, to, { recursive: true, dereference: true })
  const packages = layout === 'linked' ? readdirSync(MODULES).filter((entry) => !entry.startsWith('.')) : runTimeClosure([dir, plugin], ioredis)
  for (const name of packages) {
    if (name === 'ioredis' || name === 'ioredis5') continue
    mkdirSync(dirname(join(modules, name)), { recursive: true })
    place(join(MODULES, name), join(modules, name))
  }
  place(join(MODULES, ioredis), join(modules, 'ioredis'))
  mkdirSync(join(plugin, 'node_modules'))
  place(join(MODULES, 'ioredis'), join(plugin, 'node_modules', 'ioredis'))
}

/**
 * The names, under this checkout's node_modules, of the packages that the projects in
 * `dirs` depend on and of everything those depend on (a package nested below another
 * comes with it): `ioredis` stands for `ioredis` in a project, and the plugin's own
 * ioredis 6 is among them.
 */
function runTimeClosure (dirs: string[], ioredis: 'ioredis' | 'ioredis5'): string[] {
  const names = new Set<string>()
  const visited = new Set<string>()
  const pending = [join(MODULES, 'ioredis'), ...dirs.flatMap((dir) => dependencies(dir, { ioredis }))]
  for (let at = pending.pop(); at !== undefined; at = pending.pop()) {
    if (visited.has(at)) continue
    visited.add(at)
    const name = relative(MODULES, at)
    if (!name.includes('node_modules')) names.add(name)
    pending.push(...dependencies(at))
  }
  return [...names]
}

/**
 * Where Node finds, from the package.json at `dir`, each of its dependencies (a missing one
 * is an error) and each of its optional ones that is installed; `alias` renames some.
 */
function dependencies (dir: string, alias: Record<string, string> = {}): string[] {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>, optionalDependencies?: Record<string, string> }
  const optional = Object.keys(manifest.optionalDependencies ?? {})
  const required = Object.keys(manifest.dependencies ?? {}).filter((name) => !optional.includes(name)).map((name) => {
    const found = resolveFrom(dir, alias[name] ?? name)
    if (found === undefined) throw new Error(`${name}, a dependency of ${dir}, is not installed`)
    return found
  })
  return [...required, ...optional.flatMap((name) => resolveFrom(dir, name) ?? [])]
}

/** Where Node finds package `name` in this checkout's node_modules from a package at `dir`. */
function resolveFrom (dir: string, name: string): string | undefined {
  for (let at = dir; at.startsWith(MODULES); at = dirname(at)) {
    const candidate = join(at, 'node_modules', name)
    if (basename(at) !== 'node_modules' && existsSync(candidate)) return candidate
  }
  const hoisted = join(MODULES, name)
  return existsSync(hoisted) ? hoisted : undefined
}

/** The URL an app process says it listens at (Fastify's log line); undefined if it ends first. */
export async function listeningUrl (child: ChildProcess): Promise<string | undefined> {
  for await (const line of createInterface({ input: child.stdout as NodeJS.ReadableStream })) {
    const listening = /Server listening at (http:\/\/[^"\s]+)/.exec(line)
    if (listening !== null) return listening[1]
  }
  return undefined
}
