/** Small statistics helpers shared by the load generator and the report. */

/** The q-quantile (0..1) of the first `count` values, nearest-rank; NaN when empty. */
export function quantile(values: ArrayLike<number>, q: number, count = values.length): number {
  if (count <= 0) return Number.NaN;
  const sorted = Float64Array.from({ length: count }, (_, i) => values[i] as number).sort();
  const rank = Math.min(count - 1, Math.max(0, Math.ceil(q * count) - 1));
  return sorted[rank] as number;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return quantile(finite, 0.5);
}

/**
 * The median of values that each stand for `weight` results (the p50s of a window's slices,
 * weighted by how many connects each slice made); NaN when the weights are all zero.
 */
export function weightedMedian(
  values: ReadonlyArray<readonly [value: number, weight: number]>,
): number {
  const sorted = [...values].sort((a, b) => a[0] - b[0]);
  const half = sorted.reduce((sum, [, weight]) => sum + weight, 0) / 2;
  if (!(half > 0)) return Number.NaN;
  let seen = 0;
  for (const [value, weight] of sorted) {
    seen += weight;
    if (seen >= half) return value;
  }
  return Number.NaN;
}

/** Round to a number of significant digits, so the JSON does not carry noise digits. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const scale = 10 ** (digits - Math.ceil(Math.log10(Math.abs(value))));
  return Math.round(value * scale) / scale;
}
