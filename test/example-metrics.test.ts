// The example app's metrics (METRICS=true): the plugin's, as Prometheus text at /metrics, on
// a port of their own (METRICS_PORT) or, outside production, on the app's.
import t from 'tap'
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { loadConfig } from '../example-app/src/config.js'
import { StoreUnavailableError, TokenReusedError } from '../lib/errors.js'
import { loadTelemetry, type StoreCallEnd, type Telemetry } from '../lib/telemetry.js'
import { SERIES, STORE_OPERATIONS } from './helpers/metrics.js'
import { PASSWORD, appStarter, call, loginNative, refreshNative, register } from './helpers/example-app.js'
import { freePort, startRedis } from './helpers/redis.mjs'

const redis = await startRedis(t)
const startApp = appStarter(redis)

/** A Prometheus text exposition's samples, by series (name and labels), as numbers. */
function samples (text: string): Map<string, number> {
  const found = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    found.set(line.slice(0, at).replace(/,?otel_scope_name="[^"]*"/, '').replace('{}', ''), Number(line.slice(at + 1)))
  }
  return found
}

t.test('METRICS and METRICS_PORT are read and checked', async (t) => {
  t.match(loadConfig({}), { metrics: false, metricsPort: undefined }, 'off by default')
  t.match(loadConfig({ METRICS: 'true' }), { metrics: true, metricsPort: undefined })
  t.match(loadConfig({ METRICS: 'true', METRICS_PORT: '9464' }), { metrics: true, metricsPort: 9464 })
  t.throws(() => loadConfig({ METRICS: 'yes' }), { name: 'ConfigError', message: /^METRICS must be true or false/ })
  for (const bad of ['0', '65536', 'http', '94 64']) {
    t.throws(() => loadConfig({ METRICS: 'true', METRICS_PORT: bad }), { name: 'ConfigError', message: /^METRICS_PORT must be a whole number from 1 to 65535/ }, `METRICS_PORT=${bad}`)
  }
  t.throws(() => loadConfig({ METRICS: 'true', PORT: '9464', METRICS_PORT: '9464' }), { name: 'ConfigError', message: /METRICS_PORT \(9464\) must differ from PORT/ })
  t.throws(() => loadConfig({ METRICS_PORT: '9464' }), { name: 'ConfigError', message: /METRICS_PORT is set but METRICS is not true/ }, 'a port without METRICS is a mistake')
  const production = { NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(48) }
  t.throws(() => loadConfig({ ...production, METRICS: 'true' }), { name: 'ConfigError', message: /METRICS=true in production needs METRICS_PORT/ },
    'in production, never on the app\'s public port')
  t.match(loadConfig({ ...production, METRICS: 'true', METRICS_PORT: '9464' }), { metrics: true, metricsPort: 9464 })
})

t.test('outside production without METRICS_PORT, /metrics on the app\'s port moves with what happens', async (t) => {
  const { url } = await startApp(t, { METRICS: 'true' })
  await register(url, 'metrics-alice')
  const tokens = await loginNative(url, 'metrics-alice')
  const refreshed = await refreshNative(url, tokens.refreshToken)
  t.equal(refreshed.status, 200)
  t.equal((await refreshNative(url, tokens.refreshToken + 'x')).status, 401)
  const response = await fetch(`${url}/metrics`)
  t.equal(response.status, 200, 'public: no token needed, even with deny-by-default')
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await response.text()
  const series = samples(text)
  t.equal(series.get('token_sessions_sessions_started_total{transport="body"}'), 1, 'the login')
  t.equal(series.get('token_sessions_refreshes_total{outcome="rotated"}'), 1, 'the refresh')
  t.equal(series.get('token_sessions_refreshes_total{outcome="invalid"}'), 1, 'the forged one')
  t.equal(series.get('token_sessions_store_duration_count{operation="create",outcome="ok"}'), 1, 'the login\'s store call, timed')
  t.equal(series.get('token_sessions_feed_up'), 1, 'the feed is up')
  t.ok(series.has('token_sessions_store_duration_bucket{operation="rotate",outcome="ok",le="0.0001"}'), 'in buckets from 0.1 ms')
  for (const secret of ['metrics-alice', tokens.accessToken.slice(-20), tokens.refreshToken.slice(-20), PASSWORD, '127.0.0.1']) {
    t.notOk(text.includes(secret), `the metrics say nothing of ${secret.slice(0, 12)}…`)
  }
})

t.test('with METRICS_PORT, /metrics is served there alone, and stops with the app', async (t) => {
  const port = await freePort()
  const { app, url } = await startApp(t, { METRICS: 'true', METRICS_PORT: String(port) })
  t.equal((await call(url, 'GET', '/metrics')).status, 404, 'not on the app\'s port')
  const response = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(response.status, 200)
  t.equal(samples(await response.text()).get('token_sessions_feed_up'), 1, 'the plugin\'s metrics')
  t.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 404, 'and nothing else of the app')
  await app.close()
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'closed with the app')
})

t.test('without METRICS there is no /metrics', async (t) => {
  const { url } = await startApp(t)
  t.equal((await call(url, 'GET', '/metrics')).status, 404)
})

t.test('the series the dashboard may query are exactly those the plugin exports', async (t) => {
  // Every instrument of the plugin, each moved once with each of its fixed attributes, read
  // through the exporter the example app uses.
  const exporter = new PrometheusExporter({ preventServerStart: true })
  const meterProvider = new MeterProvider({ readers: [exporter] })
  t.teardown(async () => { await meterProvider.shutdown() })
  const telemetry = await loadTelemetry({ meterProvider }) as Telemetry
  telemetry.sessionStarted('cookie')
  telemetry.sessionStarted('body')
  telemetry.refreshed('rotated')
  telemetry.refreshed('grace_replay')
  telemetry.refreshFailed(new TokenReusedError())
  telemetry.loggedOut(true)
  telemetry.revoked('reuse', false)
  telemetry.refused(new StoreUnavailableError())
  telemetry.challenged()
  for (const operation of STORE_OPERATIONS) {
    for (const how of ['ok', 'error', 'timeout', 'late'] as StoreCallEnd[]) telemetry.storeCall(operation as Parameters<Telemetry['storeCall']>[0])?.end(how)
  }
  telemetry.feedLag(1)
  telemetry.reloaded(1)
  telemetry.observeFeed(() => ({ aliveAt: Date.now(), downSince: undefined, size: 0 }), { onOutage: 'check-store', maxOutageMs: 5000 })
  const text = new PrometheusSerializer().serialize((await exporter.collect()).resourceMetrics)
  const names = new Set<string>()
  const strays: string[] = []
  for (const line of text.split('\n')) {
    const match = /^(token_sessions_\w+?)(_bucket|_sum|_count)?(\{.*\})? /.exec(line)
    if (match === null) continue
    const base = SERIES[`${match[1] as string}${match[2] ?? ''}`] === undefined ? match[1] as string : `${match[1] as string}${match[2] ?? ''}`
    names.add(base)
    const series = SERIES[base]
    for (const [, label, value] of (match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)) {
      if (label === 'otel_scope_name' || label === 'le') continue
      const allowed = series?.labels[label as string]
      if (series === undefined || !(label as string in series.labels) || (allowed !== undefined && !allowed.includes(value as string))) strays.push(`${base} ${label as string}="${value as string}"`)
    }
  }
  t.same([...names].sort(), Object.keys(SERIES).sort(), 'every series, and no other')
  t.same(strays, [], 'with the labels and values the list gives')
})
