// Empties dist/ before a build, so that a file whose source was removed or renamed (or an
// output that a build setting no longer makes, such as source maps) is never packed.
// The build's stamp goes too: until the build ends well, nothing says it is current.
import { rmSync } from 'node:fs'
import { STAMP } from './build-stamp.mjs'

rmSync(new URL('../dist/', import.meta.url), { recursive: true, force: true })
rmSync(new URL(`../${STAMP}`, import.meta.url), { force: true })
