// The series the plugin's metrics are as Prometheus text, as the example app serves them:
// what the dashboard may query, checked against what the exporter writes.

/**
 * The series the example app exports as Prometheus text (METRICS=true), by name, with
 * their labels and, where the plugin fixes them, the labels' values; every series also
 * carries `otel_scope_name`, and Prometheus adds `job` and `instance`. A histogram's
 * series are its name with `_bucket` (and `le`), `_sum` and `_count`.
 */
export const STORE_OPERATIONS = ['create', 'rotate', 'step_up', 'revoke', 'revoke_all', 'is_live', 'remember_proof', 'ping', 'list']
export const SERIES: Record<string, { type: 'counter' | 'histogram' | 'gauge', labels: Record<string, readonly string[] | undefined> }> = {
  token_sessions_sessions_started_total: { type: 'counter', labels: { transport: ['cookie', 'body'] } },
  token_sessions_refreshes_total: { type: 'counter', labels: { outcome: ['rotated', 'grace_replay', 'reused', 'expired', 'revoked', 'invalid', 'proof_refused', 'nonce_required', 'missing', 'unavailable'] } },
  token_sessions_logouts_total: { type: 'counter', labels: { scope: ['session', 'all'] } },
  token_sessions_revocations_total: { type: 'counter', labels: { reason: ['logout', 'logout-all', 'revoked', 'reuse', 'limit', 'claims', 'password-change', 'admin', 'other'], scope: ['session', 'all'] } },
  token_sessions_authenticate_refusals_total: { type: 'counter', labels: { code: undefined } },
  token_sessions_step_up_challenges_total: { type: 'counter', labels: {} },
  token_sessions_store_errors_total: { type: 'counter', labels: { operation: STORE_OPERATIONS, error: ['timeout', 'error', 'late'] } },
  token_sessions_store_duration: { type: 'histogram', labels: { operation: STORE_OPERATIONS, outcome: ['ok', 'error', 'timeout', 'late'] } },
  token_sessions_feed_lag: { type: 'histogram', labels: {} },
  token_sessions_feed_reload_duration: { type: 'histogram', labels: {} },
  token_sessions_feed_up: { type: 'gauge', labels: {} },
  token_sessions_feed_since_alive: { type: 'gauge', labels: {} },
  token_sessions_feed_outage_policy_active: { type: 'gauge', labels: { policy: ['check-store', 'accept', 'reject'] } },
  token_sessions_revocation_list_size: { type: 'gauge', labels: {} }
}
