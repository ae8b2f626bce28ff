// The slot functions ioredis itself routes keys by (no types of their own).
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0 to 16383) of a key, its hash tag honoured. */
  export default function calculateSlot (key: string | Buffer): number
}
