// Generated kubelet Summary documents for the decoding test (KubeletSummary.test.ts) and the seeded
// PRNG of the stats tests: kubelet-like summaries with random fields present, then random edits at random
// paths (another JSON type, removed, extra keys), as JSON.parse gives them.

/** mulberry32: a small seeded PRNG. */
export const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

export const generated = (rnd: () => number) => {
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rnd() * xs.length)]!
  const maybe = (p: number) => rnd() < p
  const num = () => pick([0, 1, 12345, 2.5, -3, 1e15, Math.floor(rnd() * 1e9)])
  const nums = (keys: ReadonlyArray<string>) => {
    const o: Record<string, unknown> = maybe(0.8) ? { time: pick(["2026-11-30T22:00:00Z", "2026-11-30T22:00:13.25Z"]) } : {}
    for (const k of keys) if (maybe(0.8)) o[k] = num()
    return o
  }
  const anyJson = (): unknown => pick([null, true, "x", 7, [], {}, [1, "a"], { name: "v" }])
  const doc: Record<string, unknown> = {
    node: {
      nodeName: "n1",
      systemContainers: [],
      ...(maybe(0.8) ? { cpu: nums(["usageNanoCores", "usageCoreNanoSeconds"]) } : {}),
      ...(maybe(0.8) ? { memory: nums(["availableBytes", "usageBytes", "workingSetBytes", "rssBytes"]) } : {}),
      ...(maybe(0.8) ? { network: { ...nums(["rxBytes", "txBytes"]), interfaces: [{ name: "eth0", rxBytes: 1 }] } } : {}),
      ...(maybe(0.8) ? { fs: nums(["availableBytes", "capacityBytes", "usedBytes", "inodes"]) } : {})
    }
  }
  if (maybe(0.9)) {
    doc.pods = Array.from({ length: Math.floor(rnd() * 4) }, (_, i) => ({
      podRef: { name: `p${i}`, namespace: "ns", uid: `u${i}` },
      startTime: "2026-11-30T22:00:00Z",
      containers: [{ name: "kernel", cpu: nums(["usageNanoCores"]) }],
      ...(maybe(0.8) ? { cpu: nums(["usageNanoCores", "usageCoreNanoSeconds"]) } : {}),
      ...(maybe(0.8) ? { memory: nums(["availableBytes", "usageBytes", "workingSetBytes"]) } : {}),
      ...(maybe(0.8) ? { network: nums(["rxBytes", "txBytes"]) } : {}),
      ...(maybe(0.7) ? { volume: Array.from({ length: Math.floor(rnd() * 3) }, (_, j) => ({ name: `v${j}`, ...nums(["usedBytes", "capacityBytes"]) })) } : {}),
      ...(maybe(0.7) ? { "ephemeral-storage": nums(["availableBytes", "capacityBytes", "usedBytes"]) } : {})
    }))
  }
  // random edits: every container (and the document itself) can be hit
  const containers: Array<Record<string, unknown> | Array<unknown>> = []
  const walk = (v: unknown) => {
    if (typeof v !== "object" || v === null) return
    containers.push(v as Record<string, unknown>)
    for (const x of Object.values(v)) walk(x)
  }
  walk(doc)
  for (let edits = Math.floor(rnd() * 3); edits > 0; edits--) {
    const c = pick(containers)
    const keys = Object.keys(c)
    if (keys.length === 0) continue
    const k = pick(keys)
    const r = rnd()
    if (r < 0.4) (c as Record<string, unknown>)[k] = anyJson()
    else if (r < 0.7) delete (c as Record<string, unknown>)[k]
    else if (!Array.isArray(c)) c.extra = anyJson()
  }
  return JSON.parse(JSON.stringify(maybe(0.02) ? pick([null, [], "summary", 1]) : doc)) as unknown
}

