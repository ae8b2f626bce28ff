// The browser client's size budgets: each entry point bundled and minified as an app's
// bundler would, then gzipped. The build fails when one outgrows its budget.
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

/** Bytes, minified and gzipped, of each entry point. */
const BUDGETS = { index: 3.5 * 1024, dpop: 1024 }

let over = false
for (const [entry, budget] of Object.entries(BUDGETS)) {
  const result = await build({
    entryPoints: [new URL(`../client/${entry}.ts`, import.meta.url).pathname],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    write: false
  })
  const code = result.outputFiles[0].contents
  const gzipped = gzipSync(code, { level: 9 }).length
  const name = entry === 'index' ? 'client' : `client/${entry}`
  console.log(`${name}: ${code.length} bytes minified, ${gzipped} bytes gzipped (budget ${budget})`)
  if (gzipped > budget) {
    console.error(`${name}: ${gzipped} bytes gzipped is over the budget of ${budget}`)
    over = true
  }
}
if (over) process.exit(1)
