// The figures the benchmarks compute from their samples.

/**
 * The value at fraction `p` (0.5: the median) of sorted samples; NaN for none.
 * @param {number[]} sorted
 * @param {number} p
 */
export function percentile (sorted, p) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}
