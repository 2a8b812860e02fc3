/**
 * `node bench/scale-svg.ts <points.json> <out.svg>`: plots the points of `bench/run.ts memory --out
 * <points.json>` as an SVG (no dependency): agent RSS (and its anonymous part) and agent CPU share of
 * one core (every window as a dot, the median joined) against the number of kernels. The dashed grey
 * line in each panel is the linear extrapolation of the first two points (growth at or below it is at
 * most linear); the CPU panel also draws the 5 % goal.
 */
import * as fs from "node:fs"

interface Point {
  readonly kernels: number
  readonly corePercent: ReadonlyArray<number>
  readonly smaps: { readonly rss: number; readonly anon: number }
}
const [input, output] = process.argv.slice(2)
if (input === undefined || output === undefined) {
  console.error("usage: node bench/scale-svg.ts <points.json> <out.svg>")
  process.exit(2)
}
const data = JSON.parse(fs.readFileSync(input, "utf8")) as { readonly points: ReadonlyArray<Point>; readonly nodeArgs: ReadonlyArray<string> }
const points = [...data.points].sort((a, b) => a.kernels - b.kernels)
const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2
}

const W = 420
const H = 300
const M = { l: 56, r: 16, t: 36, b: 44 }
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;")
const niceMax = (v: number) => {
  const p = 10 ** Math.floor(Math.log10(v))
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v)!
}

interface Series {
  readonly name: string
  readonly color: string
  readonly ys: ReadonlyArray<number>
  readonly dots?: ReadonlyArray<ReadonlyArray<number>>
}
const panel = (x0: number, title: string, yLabel: string, series: ReadonlyArray<Series>, goal?: number): string => {
  const xMax = niceMax(Math.max(...points.map((p) => p.kernels)))
  const all = series.flatMap((s) => [...s.ys, ...(s.dots ?? []).flat()])
  const yMax = niceMax(Math.max(...all, goal ?? 0) * 1.1)
  const sx = (x: number) => x0 + M.l + (x / xMax) * (W - M.l - M.r)
  const sy = (y: number) => M.t + (1 - y / yMax) * (H - M.t - M.b)
  const out: Array<string> = []
  out.push(`<text x="${x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(title)}</text>`)
  for (let i = 0; i <= 5; i++) {
    const y = (yMax * i) / 5
    const x = (xMax * i) / 5
    out.push(`<line x1="${sx(0)}" x2="${sx(xMax)}" y1="${sy(y)}" y2="${sy(y)}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${sx(0) - 6}" y="${sy(y) + 4}" text-anchor="end">${+y.toFixed(2)}</text>`)
    out.push(`<text x="${sx(x)}" y="${H - M.b + 16}" text-anchor="middle">${+x.toFixed(0)}</text>`)
  }
  out.push(`<line x1="${sx(0)}" x2="${sx(xMax)}" y1="${sy(0)}" y2="${sy(0)}" stroke="#333"/>`)
  out.push(`<line x1="${sx(0)}" x2="${sx(0)}" y1="${sy(0)}" y2="${sy(yMax)}" stroke="#333"/>`)
  out.push(`<text x="${x0 + M.l + (W - M.l - M.r) / 2}" y="${H - 8}" text-anchor="middle">kernels</text>`)
  out.push(`<text transform="translate(${x0 + 14},${M.t + (H - M.t - M.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`)
  if (goal !== undefined) {
    out.push(`<line x1="${sx(0)}" x2="${sx(xMax)}" y1="${sy(goal)}" y2="${sy(goal)}" stroke="#c00" stroke-dasharray="2 3"/>`)
    out.push(`<text x="${sx(xMax) - 2}" y="${sy(goal) - 4}" text-anchor="end" fill="#c00">goal ${goal} %</text>`)
  }
  series.forEach((s, k) => {
    if (points.length >= 2) {
      // linear extrapolation of the first two points
      const slope = (s.ys[1]! - s.ys[0]!) / (points[1]!.kernels - points[0]!.kernels)
      const at = (x: number) => s.ys[0]! + slope * (x - points[0]!.kernels)
      out.push(`<line x1="${sx(points[0]!.kernels)}" y1="${sy(at(points[0]!.kernels))}" x2="${sx(xMax)}" y2="${sy(Math.min(yMax, at(xMax)))}" stroke="#999" stroke-dasharray="5 4"/>`)
    }
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points.map((p, i) => `${sx(p.kernels)},${sy(s.ys[i]!)}`).join(" ")}"/>`)
    points.forEach((p, i) => {
      for (const d of s.dots?.[i] ?? []) out.push(`<circle cx="${sx(p.kernels)}" cy="${sy(d)}" r="2.5" fill="none" stroke="${s.color}"/>`)
      out.push(`<circle cx="${sx(p.kernels)}" cy="${sy(s.ys[i]!)}" r="3.5" fill="${s.color}"/>`)
    })
    out.push(`<text x="${sx(0) + 8}" y="${M.t + 14 + 16 * k}" fill="${s.color}">${esc(s.name)}</text>`)
  })
  return out.join("\n")
}

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${panel(0, "agent memory", "MiB", [
  { name: "RSS", color: "#1f77b4", ys: points.map((p) => p.smaps.rss) },
  { name: "anonymous", color: "#ff7f0e", ys: points.map((p) => p.smaps.anon) }
])}
${panel(W, "agent CPU (heartbeat + stats + keep-alives)", "% of one core", [
  { name: "median of windows (dots: each window)", color: "#2ca02c", ys: points.map((p) => median(p.corePercent)), dots: points.map((p) => p.corePercent) }
], 5)}
</svg>
`
fs.writeFileSync(output, svg)
console.log(`wrote ${output} (${points.length} points)`)
