// `npm start`: the example app, built first only when the build is not current (see
// build-stamp.mjs), so that a start after the first takes a second, not a build's minute.
// The server runs in this process: signals reach it as they would `node example-app/dist/server.js`.
import { spawnSync } from 'node:child_process'
import { buildIsCurrent } from './build-stamp.mjs'

if (!buildIsCurrent()) {
  process.stderr.write('building (the sources changed since the last build, or nothing is built yet)\n')
  const build = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' })
  if (build.status !== 0) process.exit(build.status ?? 1)
}
await import('../example-app/dist/server.js')
