import { describe, expect, it } from "vitest";
import { weightedMedian } from "../../bench/stats.js";

describe("weightedMedian", () => {
  it("is the value at which half the weight is reached", () => {
    expect(
      weightedMedian([
        [30, 1],
        [10, 1],
        [20, 1],
      ]),
    ).toBe(20);
    // The slice with most results decides, wherever it sorts.
    expect(
      weightedMedian([
        [10, 1],
        [50, 8],
        [20, 1],
      ]),
    ).toBe(50);
    expect(
      weightedMedian([
        [5, 3],
        [9, 1],
      ]),
    ).toBe(5);
  });

  it("is NaN for no values or no weight", () => {
    expect(weightedMedian([])).toBeNaN();
    expect(weightedMedian([[7, 0]])).toBeNaN();
  });
});
