import type { FastifyInstance } from 'fastify'
import { buildApp, StartupError } from './app.js'
import { ConfigError, loadConfig } from './config.js'

/** How long in-flight requests get to finish after SIGINT/SIGTERM before we exit anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000

/**
 * Closes the app on SIGINT or SIGTERM: the server stops accepting connections, in-flight
 * requests finish, onClose hooks quit Redis. A second signal, or a close that hangs,
 * exits at once.
 */
function closeOnSignals (app: FastifyInstance): void {
  let closing = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (closing) {
      app.log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    closing = true
    app.log.info({ signal }, 'shutting down')
    // unref: a clean close lets the process end by itself; the timer only fires if something hangs.
    setTimeout(() => {
      app.log.error('shutdown did not finish in time: exiting')
      process.exit(1)
    }, SHUTDOWN_TIMEOUT_MS).unref()
    app.close().then(
      () => app.log.info('closed'),
      (err: unknown) => {
        app.log.error({ err }, 'error while shutting down')
        process.exitCode = 1
      }
    )
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}

async function main (): Promise<void> {
  const config = loadConfig()
  const app = await buildApp(config)
  closeOnSignals(app)
  await app.listen({ port: config.port, host: config.host })
}

main().catch((error: unknown) => {
  // Config and start-up errors carry a message written for the operator; others are bugs.
  const known = error instanceof ConfigError || error instanceof StartupError
  process.stderr.write(`fatal: ${known ? (error as Error).message : String((error as Error)?.stack ?? error)}\n`)
  process.exit(1)
})
