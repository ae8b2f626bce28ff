/**
 * An error as the logs may show it: its type, message, code and stack, and of a store
 * command only its name. A Redis client's errors carry the command's arguments (user ids,
 * token hashes, IPs, user agents), which have no place in a log. Exported for apps that
 * log their own Redis errors.
 *
 * @example
 * ```ts
 * request.log.error({ err: loggable(redisError) }, 'could not read the user')  // no command arguments
 * ```
 */
export function loggable (error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) }
  const { code, command } = error as { code?: unknown, command?: { name?: unknown } }
  return {
    type: error.name,
    message: error.message,
    stack: error.stack,
    ...(code === undefined ? {} : { code }),
    ...(typeof command?.name === 'string' ? { command: command.name } : {})
  }
}

/** How often a store connection's errors are logged at most, in ms: ioredis reports every reconnect attempt of an outage. */
export const CONNECTION_ERROR_LOG_INTERVAL = 10_000

/**
 * Wraps `report` so that it runs at most `perInterval` times in each `intervalMs` (a window
 * that starts at the first report after the last one ended), with the number of values left
 * out since it last ran: a Redis outage makes every connection report an error on every
 * reconnect attempt, and a stream of requests can make every one of them a log line; either
 * would flood the log.
 *
 * @example
 * ```ts
 * client.on('error', rateBound((err, skipped) => log.warn({ err: loggable(err), skipped }, 'Redis connection error')))
 * ```
 */
export function rateBound<T = Error> (
  report: (value: T, skipped: number) => void,
  intervalMs = CONNECTION_ERROR_LOG_INTERVAL,
  now: () => number = Date.now,
  perInterval = 1
): (value: T) => void {
  let windowStart = Number.NEGATIVE_INFINITY
  let reported = 0
  let skipped = 0
  return (value) => {
    const at = now()
    if (at - windowStart >= intervalMs) {
      windowStart = at
      reported = 0
    }
    if (reported >= perInterval) {
      skipped++
      return
    }
    reported++
    report(value, skipped)
    skipped = 0
  }
}
