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
