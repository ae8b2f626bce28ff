// Both registration orders, on an ioredis 5 standalone client and an ioredis 5 Cluster.
import { Cluster, Redis } from 'ioredis'
import { buildApp } from './app.js'

const standalone = new Redis(process.env.REDIS_URL ?? '')
const cluster = new Cluster((process.env.REDIS_CLUSTER ?? '').split(',').map((port) => ({ host: '127.0.0.1', port: Number(port) })))
const results: Record<string, unknown> = {}
for (const [name, client] of [['standalone', standalone], ['cluster', cluster]] as const) {
  for (const order of ['jwt first', 'plugin first'] as const) {
    const app = await buildApp(client, order)
    const serviceToken = app.jwt.sign({ svc: 'billing' })
    const service = await app.inject({ method: 'GET', url: '/service', headers: { authorization: `Bearer ${serviceToken}` } })
    const logins = await Promise.all(Array.from({ length: 6 }, async () => await app.inject({ method: 'POST', url: '/login', headers: { 'x-token-transport': 'body' } })))
    const { accessToken, refreshToken } = logins[0]?.json() as { accessToken: string, refreshToken: string }
    const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
    const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
    results[`${name}, ${order}`] = { service: service.json(), logins: logins.map((login) => login.statusCode), me: me.json(), refresh: refreshed.statusCode }
    await app.close()
  }
}
console.log(JSON.stringify(results))
await standalone.quit()
await cluster.quit()
