// The private redis-server processes of the bench and the load test are the tests' own
// `RedisServer` (test/helpers/redis.ts), so that there is one way to start one. Plain
// Node 20 cannot import TypeScript: the helper is transpiled with the project's own
// `typescript` (a devDependency) into node_modules/.cache, whence `ioredis` resolves.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import ts from 'typescript'

const source = new URL('../../test/helpers/redis.ts', import.meta.url)
const cacheDir = new URL('../../node_modules/.cache/fastify-token-sessions-bench/', import.meta.url)
const target = new URL('redis.mjs', cacheDir)

const { outputText } = ts.transpileModule(readFileSync(source, 'utf8'), {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  fileName: 'redis.ts'
})
mkdirSync(cacheDir, { recursive: true })
writeFileSync(target, outputText)

/** @type {typeof import('../../test/helpers/redis.ts').RedisServer} */
export const RedisServer = (await import(target.href)).RedisServer
