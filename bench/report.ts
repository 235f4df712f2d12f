/** The results as a terminal table, a Markdown section and an SVG chart. No I/O. */
import { CONTENDER_LABELS, CONTENDERS, type Contender } from "./config.js";
import { type Results, type StormCurve, WORKLOADS } from "./results.js";

/** A number as people read it: thousands grouped, fewer decimals for bigger values. */
export function formatValue(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function formatRatio(ratio: number | undefined): string {
  return ratio === undefined ? "–" : `${ratio.toFixed(2)}×`;
}

function rows(results: Results): string[][] {
  const present = CONTENDERS.filter((c) =>
    Object.values(results.workloads).some((w) => w[c] !== undefined),
  );
  const header = ["workload", ...present.map((c) => CONTENDER_LABELS[c]), "unit"];
  if (present.includes("outpost")) {
    if (present.includes("bare")) header.push("Outpost/bare");
    if (present.includes("socketio")) header.push("Outpost/Socket.IO");
  }
  const body = WORKLOADS.filter((w) => results.workloads[w.key] !== undefined).map((w) => {
    const row = results.workloads[w.key]!;
    const cells = [w.label, ...present.map((c) => formatValue(row[c])), w.unit];
    if (present.includes("outpost")) {
      if (present.includes("bare")) cells.push(formatRatio(results.ratios[w.key]?.bare));
      if (present.includes("socketio")) cells.push(formatRatio(results.ratios[w.key]?.socketio));
    }
    return cells;
  });
  return [header, ...body];
}

/** Which columns hold text (left-aligned) rather than numbers. */
function textColumns(header: string[]): boolean[] {
  return header.map((name) => name === "workload" || name === "unit");
}

/** A fixed-width table for the terminal: text left-aligned, numbers right-aligned. */
export function terminalTable(results: Results): string {
  const table = rows(results);
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] ?? "").length)));
  const left = textColumns(table[0]!);
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (left[i] ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  const [header, ...body] = table;
  return [line(header!), widths.map((w) => "─".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

export function targetLines(results: Results): string[] {
  return results.targets.map((t) => {
    const verdict = t.met === null ? "not measured" : t.met ? "met" : "MISSED";
    const ratio = t.ratio === null ? "–" : `${t.ratio.toFixed(2)}×`;
    return `${t.workload} vs ${CONTENDER_LABELS[t.against]}: ${ratio} (target ${t.target}) ${verdict}`;
  });
}

/** The results table and the targets as Markdown, for BENCHMARKS.md. */
export function markdownResults(results: Results): string {
  const table = rows(results);
  const [header, ...body] = table;
  const md = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const align = textColumns(header!).map((text) => (text ? "---" : "---:"));
  const targets = results.targets.map((t) => {
    const ratio = t.ratio === null ? "–" : `${t.ratio.toFixed(2)}×`;
    const verdict = t.met === null ? "not measured" : t.met ? "met" : "**missed**";
    return md([`${t.workload}`, CONTENDER_LABELS[t.against], t.target, ratio, verdict]);
  });
  return [
    md(header!),
    md(align),
    ...body.map(md),
    "",
    md(["workload", "against", "target (Outpost ÷ other)", "measured", "verdict"]),
    md(["---", "---", "---", "---:", "---"]),
    ...targets,
  ].join("\n");
}

const COLORS: Record<Contender, string> = {
  outpost: "#2563eb",
  bare: "#64748b",
  socketio: "#f59e0b",
};

/** Workloads drawn in the chart: the headline ones, one group each. */
const CHARTED = [
  "connects",
  "connects_hs256",
  "connects_cpu",
  "rpc",
  "rpc_p99",
  "rpc_cpu",
  "rpc_1000",
  "rpc_1000_p99",
  "fanout",
  "memory",
  "refused_cpu",
];

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/**
 * Grouped horizontal bars, each group scaled to its own largest value (units differ), with
 * the value and the ratio to the floor written on every bar.
 */
export function svgChart(results: Results, title: string): string {
  const width = 960;
  const labelWidth = 300;
  const barArea = width - labelWidth - 190;
  const barHeight = 16;
  const groups = CHARTED.filter((k) => results.workloads[k] !== undefined);
  const present = CONTENDERS.filter((c) =>
    groups.some((k) => results.workloads[k]![c] !== undefined),
  );
  const groupHeight = present.length * (barHeight + 4) + 18;
  const top = 70;
  const height = top + groups.length * groupHeight + 20;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="17" font-weight="600" fill="#0f172a">${escapeXml(title)}</text>`,
  ];
  present.forEach((c, i) => {
    const x = 16 + i * 170;
    parts.push(
      `<rect x="${x}" y="40" width="14" height="14" rx="2" fill="${COLORS[c]}"/>`,
      `<text x="${x + 20}" y="52" fill="#334155">${escapeXml(CONTENDER_LABELS[c])}</text>`,
    );
  });
  groups.forEach((key, g) => {
    const row = results.workloads[key]!;
    const y0 = top + g * groupHeight;
    const max = Math.max(...present.map((c) => row[c] ?? 0));
    const hint = row.better === "higher" ? "higher is better" : "lower is better";
    parts.push(
      `<text x="16" y="${y0 + 14}" font-weight="600" fill="#0f172a">${escapeXml(row.label)}</text>`,
      `<text x="16" y="${y0 + 30}" fill="#64748b" font-size="11">${escapeXml(`${row.unit}, ${hint}`)}</text>`,
    );
    present.forEach((c, i) => {
      const value = row[c];
      const y = y0 + i * (barHeight + 4);
      const w = value === undefined || max === 0 ? 0 : Math.max(1, (value / max) * barArea);
      const bare = row.bare;
      const ratio =
        value !== undefined && bare !== undefined && bare !== 0 && c !== "bare"
          ? ` (${(value / bare).toFixed(2)}× bare)`
          : "";
      parts.push(
        `<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" rx="2" fill="${COLORS[c]}"/>`,
        `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 12}" fill="#0f172a" font-size="12">${escapeXml(formatValue(value) + ratio)}</text>`,
      );
    });
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

/**
 * Clients back (with their state) over time since the kill, one line per contender, and a
 * dashed mark where each restarted server was listening again.
 */
export function stormChart(storm: Partial<Record<Contender, StormCurve>>, title: string): string {
  const width = 960;
  const height = 460;
  const left = 70;
  const right = 30;
  const top = 80;
  const bottom = 50;
  const present = CONTENDERS.filter((c) => storm[c] !== undefined);
  const clients = Math.max(1, ...present.map((c) => storm[c]!.clients));
  const lastMs = Math.max(1, ...present.flatMap((c) => storm[c]!.curve));
  // A round number of seconds on the axis, a little past the last client back.
  const spanMs = Math.ceil((lastMs * 1.05) / 1000) * 1000;
  const x = (ms: number) => left + (ms / spanMs) * (width - left - right);
  const y = (n: number) => height - bottom - (n / clients) * (height - top - bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="17" font-weight="600" fill="#0f172a">${escapeXml(title)}</text>`,
  ];
  present.forEach((c, i) => {
    const lx = 16 + i * 170;
    parts.push(
      `<rect x="${lx}" y="40" width="14" height="14" rx="2" fill="${COLORS[c]}"/>`,
      `<text x="${lx + 20}" y="52" fill="#334155">${escapeXml(CONTENDER_LABELS[c])}</text>`,
    );
  });
  parts.push(
    `<text x="${16 + present.length * 170}" y="52" fill="#64748b" font-size="11">dashed: server listening again</text>`,
  );
  // Axes and grid: every 25% of the clients, every second (or every 5 s on long spans).
  for (const share of [0, 0.25, 0.5, 0.75, 1]) {
    const gy = y(share * clients).toFixed(1);
    parts.push(
      `<line x1="${left}" y1="${gy}" x2="${width - right}" y2="${gy}" stroke="#e2e8f0"/>`,
      `<text x="${left - 8}" y="${gy}" dy="4" text-anchor="end" fill="#64748b" font-size="11">${share * 100}%</text>`,
    );
  }
  // The 99% the results table names, labelled on the right so it does not cover 100%.
  const y99 = y(0.99 * clients).toFixed(1);
  parts.push(
    `<line x1="${left}" y1="${y99}" x2="${width - right}" y2="${y99}" stroke="#cbd5e1" stroke-dasharray="2 3"/>`,
    `<text x="${width - right + 3}" y="${y99}" dy="8" fill="#64748b" font-size="10">99%</text>`,
  );
  const tick = spanMs > 20_000 ? 5_000 : 1_000;
  for (let ms = 0; ms <= spanMs; ms += tick) {
    const gx = x(ms).toFixed(1);
    parts.push(
      `<line x1="${gx}" y1="${top}" x2="${gx}" y2="${height - bottom}" stroke="#f1f5f9"/>`,
      `<text x="${gx}" y="${height - bottom + 16}" text-anchor="middle" fill="#64748b" font-size="11">${ms / 1000} s</text>`,
    );
  }
  parts.push(
    `<text x="${(left + width - right) / 2}" y="${height - 12}" text-anchor="middle" fill="#334155">time since the server was killed</text>`,
    `<text x="18" y="${(top + height - bottom) / 2}" transform="rotate(-90 18 ${(top + height - bottom) / 2})" text-anchor="middle" fill="#334155">clients back with their state (of ${clients.toLocaleString("en-US")})</text>`,
  );
  for (const c of present) {
    const s = storm[c]!;
    const lx = x(s.listeningMs).toFixed(1);
    parts.push(
      `<line x1="${lx}" y1="${top}" x2="${lx}" y2="${height - bottom}" stroke="${COLORS[c]}" stroke-dasharray="4 4"/>`,
    );
    // A step line: the count rises at the moment each point's share of clients was back.
    const points = s.curve.map((ms, k) => `${x(ms).toFixed(1)},${y(k * s.step).toFixed(1)}`);
    parts.push(
      `<polyline fill="none" stroke="${COLORS[c]}" stroke-width="2" points="${points.join(" ")}"/>`,
    );
  }
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
