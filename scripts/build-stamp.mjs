// Whether the build is current, judged by content: a digest of every file the build reads
// (the sources, their compiler settings, the build's scripts and the locked dependencies),
// which `npm run build` writes beside its output as its last step. A file's time says
// nothing here: a checkout, a copy or an editor's save may change it without its content,
// or keep it while changing the content.
//
// The build's last step, `node scripts/stamp-build.mjs`, writes the stamp.
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What the build reads: folders (every file in them) and single files, from the root. */
export const BUILD_INPUTS = [
  'lib', 'client', 'example-app/src', 'scripts',
  'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.client.json', 'example-app/tsconfig.json'
]
/** What the build makes that the example app needs to start. */
export const BUILD_OUTPUTS = ['dist/index.js', 'dist/client/index.js', 'example-app/dist/server.js']
/**
 * Where the stamp is: beside the example app's build (the package's dist/ is packed), and
 * removed by the build's first step (clean.mjs), so that a failed build leaves none.
 */
export const STAMP = 'example-app/dist/.build-inputs'

/** `path` (relative to `root`) if it is a file, else every file under it, as relative paths with `/`. */
function filesOf (root, path) {
  const full = join(root, path)
  if (!existsSync(full)) return []
  if (!statSync(full).isDirectory()) return [path]
  return readdirSync(full).flatMap((name) => filesOf(root, `${path}/${name}`))
}

/** The digest of the build's inputs under `root`: each file's path and content, in order. */
export function inputsDigest (root = ROOT) {
  const hash = createHash('sha256')
  for (const file of BUILD_INPUTS.flatMap((input) => filesOf(root, input)).sort()) {
    hash.update(file).update('\0').update(readFileSync(join(root, file))).update('\0')
  }
  return hash.digest('hex')
}

/** True when every output is there and the stamp names the inputs as they are now. */
export function buildIsCurrent (root = ROOT) {
  if (!BUILD_OUTPUTS.every((output) => existsSync(join(root, output)))) return false
  const stamp = join(root, STAMP)
  return existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === inputsDigest(root)
}

/** Records that the build just made matches the inputs as they are now. */
export function writeStamp (root = ROOT) {
  writeFileSync(join(root, STAMP), inputsDigest(root) + '\n')
}
