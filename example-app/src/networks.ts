import { isIPv4, isIPv6 } from 'node:net'

/**
 * The network a client address belongs to, as every limit of the app counts clients: an
 * IPv4 address is its own network (/32); an IPv6 address counts as its /64, the block one
 * home or host is given, so that an attacker who rotates addresses within it is one client;
 * an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, how a dual-stack server sees an IPv4
 * client) is its IPv4 address. Anything else (never, from a socket) is returned as it is.
 *
 * @example
 * ```ts
 * networkOf('2001:db8:1:2:3:4:5:6')   // '2001:db8:1:2::/64'
 * networkOf('::ffff:192.0.2.1')       // '192.0.2.1'
 * ```
 */
export function networkOf (address: string): string {
  if (isIPv4(address)) return address
  // A zone (`fe80::1%eth0`) names the interface, not the address.
  const bare = address.replace(/%.*$/, '')
  if (!isIPv6(bare)) return address
  const groups = expand(bare)
  const mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff
  if (mapped) return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join('.')
  return `${groups.slice(0, 4).map((group) => group.toString(16)).join(':')}::/64`
}

/** The eight 16-bit groups of a valid IPv6 address (`::` filled in, a dotted IPv4 tail split in two). */
function expand (address: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address)
  const hex = dotted === null
    ? address
    : address.slice(0, dotted.index) + [(Number(dotted[1]) << 8) | Number(dotted[2]), (Number(dotted[3]) << 8) | Number(dotted[4])].map((group) => group.toString(16)).join(':')
  const [head, tail] = hex.split('::')
  const parse = (part: string | undefined): number[] => part === undefined || part === '' ? [] : part.split(':').map((group) => parseInt(group, 16))
  const start = parse(head)
  const end = parse(tail)
  return [...start, ...new Array<number>(8 - start.length - end.length).fill(0), ...end]
}
