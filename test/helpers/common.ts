// What the plugin's tests and the example app's tests share: nothing here loads the plugin,
// so each side type-checks against its own declarations (the example app declares claims).
import { Writable } from 'node:stream'

/** A 48-byte test secret. */
export const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

/** Collects every log line the app writes, to check what it says and what it never says. */
export class LogCapture extends Writable {
  readonly lines: string[] = []
  override _write (chunk: Buffer, _encoding: string, callback: () => void): void {
    this.lines.push(...chunk.toString().split('\n').filter(Boolean))
    callback()
  }

  get text (): string {
    return this.lines.join('\n')
  }

  entries (): Array<Record<string, unknown>> {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  }
}
