/**
 * Nearest-rank percentile of an ascending array: the smallest value with at least p% of the values at
 * or below it. The rank is rounded before `ceil`, so float error (99.9 / 100 × 1000 = 999.0000000000001)
 * cannot push it one rank up (p99.9 of 1,000 values is the 999th, not the maximum).
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(Math.round((p / 100) * sorted.length * 1e6) / 1e6);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}
