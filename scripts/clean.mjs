// Empties dist/ before a build, so that a file whose source was removed or renamed (or an
// output that a build setting no longer makes, such as source maps) is never packed.
import { rmSync } from 'node:fs'

rmSync(new URL('../dist/', import.meta.url), { recursive: true, force: true })
