import { InvalidOptionError } from './errors.js'

/** Fails registration for a bad option, naming it and the fix (`FTS_INVALID_OPTION`). */
export function fail (option: string, fix: string): never {
  throw new InvalidOptionError(option, fix)
}
