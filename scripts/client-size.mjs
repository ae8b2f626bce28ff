// The browser client's size budget: the entry point bundled and minified as an app's
// bundler would, then gzipped. The build fails when it outgrows the budget.
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

/** Bytes, minified and gzipped. */
const BUDGET = 3 * 1024

const result = await build({
  entryPoints: [new URL('../client/index.ts', import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  write: false
})
const code = result.outputFiles[0].contents
const gzipped = gzipSync(code, { level: 9 }).length
console.log(`client: ${code.length} bytes minified, ${gzipped} bytes gzipped (budget ${BUDGET})`)
if (gzipped > BUDGET) {
  console.error(`client: ${gzipped} bytes gzipped is over the budget of ${BUDGET}`)
  process.exit(1)
}
