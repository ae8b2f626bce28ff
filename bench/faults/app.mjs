// One app instance of a fault-injection run, in a process of its own so that the harness
// can kill it, restart it and shift its clock. Started by bench/faults/run.mjs with:
//
// - FAULTS_INSTANCE: its name in the history; FAULTS_PORT: the loopback port it listens on
//   (the same after a restart, as behind a load balancer);
// - FAULTS_REDIS: how it reaches Redis, as JSON: `{ kind: 'standalone', host, port }`,
//   `{ kind: 'sentinel', sentinels, name }` or `{ kind: 'cluster', nodes }`;
// - FAULTS_PLUGIN (optional): the built plugin to load, `dist/index.js` by default: the
//   harness's self-tests point it at a deliberately broken copy;
// - FAULTS_OPTIONS (optional): JSON merged into the plugin's options (`revocationFeed`).
//
// Routes: the plugin's own under `/auth` (body transport: no cookies), `POST /login`
// (`{ userId }`: the password check is not what is under test), `GET /me` behind
// `authenticate`, and `POST /revoke-all` as a password change does it (every other session
// of the caller's user). It prints `ready <port>` once listening, then a line
// `lag <epoch ms> <ms>` every 250 ms with the largest event-loop delay seen in that time
// (epoch from the monotonic clock, which a shifted `Date.now` does not move).
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import Fastify from 'fastify'
import { Redis, Cluster } from 'ioredis'

export const SECRET = 'faults-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
const STORE_TIMEOUT = 1000
const LAG_REPORT_MS = 250
const LAG_TICK_MS = 20

/**
 * The ioredis client for the topology, failing fast during an outage as the plugin's own
 * client does (`commandTimeout` = `storeTimeout`, one retry).
 * @param {{ kind: 'standalone', host: string, port: number } | { kind: 'sentinel', sentinels: { host: string, port: number }[], name: string } | { kind: 'cluster', nodes: { host: string, port: number }[] }} redis
 */
function redisClient (redis) {
  const common = { commandTimeout: STORE_TIMEOUT, maxRetriesPerRequest: 1 }
  if (redis.kind === 'cluster') return new Cluster(redis.nodes, { redisOptions: common })
  if (redis.kind === 'sentinel') return new Redis({ sentinels: redis.sentinels, name: redis.name, ...common })
  return new Redis({ host: redis.host, port: redis.port, ...common })
}

/** Reports the largest event-loop delay of each period on stdout. */
function reportLag () {
  let max = 0
  let due = performance.now() + LAG_TICK_MS
  const tick = setInterval(() => {
    const now = performance.now()
    max = Math.max(max, now - due)
    due = now + LAG_TICK_MS
  }, LAG_TICK_MS)
  const report = setInterval(() => {
    process.stdout.write(`lag ${Math.round(performance.timeOrigin + performance.now())} ${Math.round(max)}\n`)
    max = 0
  }, LAG_REPORT_MS)
  tick.unref()
  report.unref()
}

async function main () {
  const env = process.env
  if (env.FAULTS_REDIS === undefined || env.FAULTS_PORT === undefined) {
    console.error('bench/faults/app.mjs is started by bench/faults/run.mjs (it needs FAULTS_REDIS and FAULTS_PORT)')
    process.exit(2)
  }
  const pluginPath = resolve(env.FAULTS_PLUGIN ?? new URL('../../dist/index.js', import.meta.url).pathname)
  const { default: tokenSessions, tokenResponse } = await import(pathToFileURL(pluginPath).href)
  const redis = redisClient(JSON.parse(env.FAULTS_REDIS))
  // Connection errors are the point of the run; the plugin reports what matters.
  redis.on('error', () => {})

  const app = Fastify({ logger: { level: 'error' } })
  await app.register(tokenSessions, {
    secret: SECRET,
    redis,
    storeTimeout: STORE_TIMEOUT,
    cookies: false,
    routes: { prefix: '/auth' },
    ...JSON.parse(env.FAULTS_OPTIONS ?? '{}')
  })
  app.post('/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sessionId: request.user.sessionId }))
  app.post('/revoke-all', { onRequest: app.authenticate }, async (request, reply) => {
    await app.tokenSessions.revokeAllSessions(request.user.id, { except: request.user.sessionId, reason: 'password-change', request })
    return reply.code(204).send()
  })

  const stop = async () => {
    await app.close()
    redis.disconnect()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('disconnect', stop)
  await app.listen({ host: '127.0.0.1', port: Number(env.FAULTS_PORT) })
  reportLag()
  process.stdout.write(`ready ${env.FAULTS_PORT}\n`)
}

await main()
