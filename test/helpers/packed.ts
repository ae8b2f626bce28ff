// The package as adopters install it (npm pack, unpacked into a project's node_modules),
// and app processes started from the outside: for the consumer projects and the image test.
import { execFileSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readdirSync, renameSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
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
 * fastify-token-sessions (with its own ioredis 6 below it), and every other package linked
 * from this checkout's node_modules, `ioredis` being the version `ioredis` names.
 */
export function installPacked (dir: string, tarball: string, ioredis: 'ioredis' | 'ioredis5' = 'ioredis'): void {
  const modules = join(dir, 'node_modules')
  mkdirSync(modules, { recursive: true })
  for (const entry of readdirSync(MODULES)) {
    if (entry.startsWith('.') || entry === 'ioredis' || entry === 'ioredis5') continue
    symlinkSync(join(MODULES, entry), join(modules, entry))
  }
  symlinkSync(join(MODULES, ioredis), join(modules, 'ioredis'))
  execFileSync('tar', ['-xzf', tarball, '-C', dir])
  renameSync(join(dir, 'package'), join(modules, 'fastify-token-sessions'))
  mkdirSync(join(modules, 'fastify-token-sessions', 'node_modules'))
  symlinkSync(join(MODULES, 'ioredis'), join(modules, 'fastify-token-sessions', 'node_modules', 'ioredis'))
}

/** The URL an app process says it listens at (Fastify's log line); undefined if it ends first. */
export async function listeningUrl (child: ChildProcess): Promise<string | undefined> {
  for await (const line of createInterface({ input: child.stdout as NodeJS.ReadableStream })) {
    const listening = /Server listening at (http:\/\/[^"\s]+)/.exec(line)
    if (listening !== null) return listening[1]
  }
  return undefined
}
