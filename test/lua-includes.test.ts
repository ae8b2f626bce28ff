import t from 'tap'
import { inlineIncludes } from '../lib/stores/redis.js'

t.test('--@include lines are replaced by their parts, with LF or CRLF line ends, indented or not', async (t) => {
  const parts: Record<string, string> = { now: 'local now = 1', judge: 'local function judge() end' }
  const part = (name: string): string => parts[name] as string
  t.equal(inlineIncludes('--@include now\nreturn now\n', part), 'local now = 1\nreturn now\n')
  t.equal(inlineIncludes('--@include now\r\nreturn now\r\n', part), 'local now = 1\nreturn now\r\n', 'a CRLF checkout')
  t.equal(inlineIncludes('if x then\r\n  --@include judge\r\nend\r\n', part), 'if x then\r\nlocal function judge() end\nend\r\n', 'indented, inside a branch')
  t.equal(inlineIncludes('-- see --@include now\n', part), '-- see --@include now\n', 'only a line of its own')
})
