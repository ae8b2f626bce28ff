// The plugin's metrics (METRICS=true) as Prometheus text, through OpenTelemetry's SDK and
// its Prometheus exporter: on a port of their own (METRICS_PORT), or outside production on
// the app's port at /metrics.
import type { FastifyInstance } from 'fastify'
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import type { Config } from './config.js'

/** Where Prometheus reads the metrics. */
export const METRICS_PATH = '/metrics'

/** The app's metrics: the provider the plugin records to, and how to stop serving them. */
export interface Metrics {
  readonly meterProvider: MeterProvider
  /** Serves `/metrics` on the app's port, when no METRICS_PORT was given. */
  readonly route: ((app: FastifyInstance) => void) | undefined
  readonly close: () => Promise<void>
}

/**
 * Starts the metrics when the config asks for them: with METRICS_PORT, the exporter's own
 * HTTP server on it (at the app's HOST), which serves nothing else; without, a route of
 * the app's, which the config allows outside production only.
 */
export async function startMetrics (config: Config): Promise<Metrics | undefined> {
  if (!config.metrics) return undefined
  const port = config.metricsPort
  const exporter = new PrometheusExporter({ preventServerStart: true, endpoint: METRICS_PATH, ...(port === undefined ? {} : { port, host: config.host }) })
  const meterProvider = new MeterProvider({ readers: [exporter] })
  if (port !== undefined) await exporter.startServer()
  const serializer = new PrometheusSerializer()
  return {
    meterProvider,
    route: port !== undefined
      ? undefined
      : (app) => {
          app.get(METRICS_PATH, { logLevel: 'warn', config: { public: true }, schema: { hide: true } }, async (_request, reply) => {
            const { resourceMetrics } = await exporter.collect()
            return await reply.type('text/plain; version=0.0.4; charset=utf-8').send(serializer.serialize(resourceMetrics))
          })
        },
    // Stops the exporter's server too.
    close: async () => { await meterProvider.shutdown() }
  }
}
