// Part of the build: the Redis store's Lua scripts are read at run time from
// dist/stores/lua/, beside the compiled store, so they are copied there as they are.
import { cpSync, rmSync } from 'node:fs'

const from = new URL('../lib/stores/lua/', import.meta.url)
const to = new URL('../dist/stores/lua/', import.meta.url)
rmSync(to, { recursive: true, force: true })
cpSync(from, to, { recursive: true })
