import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { HttpServer } from "effect/http"
import * as InternalHttp from "../../src/http/InternalHttp.ts"
import * as M from "../../src/observability/Metrics.ts"
import { Readiness } from "../../src/observability/Readiness.ts"

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format 0.0.4 (enough for what we emit).

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}
interface Family {
  readonly type: string
  help?: string
  readonly samples: Array<Sample>
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*"
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"`
const VALUE = "(-?(?:[0-9]+(?:\\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\\.[0-9]+)|NaN|\\+Inf|-Inf)"
const sampleLine = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?\\})? ${VALUE}( -?[0-9]+)?$`)
const labelRe = new RegExp(LABEL, "g")

const parseExposition = (text: string): Map<string, Family> => {
  assert.isTrue(text === "" || text.endsWith("\n"), "exposition ends with a newline")
  const families = new Map<string, Family>()
  const familyOf = (sample: string): Family | undefined => {
    for (const suffix of ["", "_bucket", "_sum", "_count", "_total"]) {
      if (suffix !== "" && !sample.endsWith(suffix)) continue
      const f = families.get(sample.slice(0, sample.length - suffix.length))
      if (f) return f
    }
    return undefined
  }
  for (const line of text.split("\n")) {
    if (line === "") continue
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (help) continue
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type) {
      assert.isFalse(families.has(type[1]!), `one TYPE line per family: ${type[1]}`)
      families.set(type[1]!, { type: type[2]!, samples: [] })
      continue
    }
    assert.isFalse(line.startsWith("#"), `unexpected comment line: ${line}`)
    const m = sampleLine.exec(line)
    assert.isNotNull(m, `not a valid sample line: ${JSON.stringify(line)}`)
    const name = m![1]!
    const labels: Record<string, string> = {}
    for (const lm of (m![2] ?? "").matchAll(labelRe)) labels[lm[1]!] = lm[2]!
    const raw = m![m!.length - 2]!
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw)
    const family = familyOf(name)
    assert.isDefined(family, `sample ${name} before its TYPE line`)
    family!.samples.push({ name, labels, value })
  }
  return families
}

const sampleOf = (families: Map<string, Family>, name: string, labels: Record<string, string>) => {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------

const fetchText = (url: string) =>
  Effect.tryPromise(async () => {
    const res = await fetch(url)
    return { status: res.status, body: await res.text(), contentType: res.headers.get("content-type") }
  })

const baseUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address
  assert.notStrictEqual(address._tag, "UnixPathAddress")
  return "port" in address ? `http://127.0.0.1:${address.port}` : ""
})

const serverLayer = InternalHttp.layerAt({ host: "127.0.0.1", port: 0 }).pipe(Layer.provideMerge(Readiness.layerWith({ timeout: "1 second" })))

describe("InternalHttp", () => {
  it.live("serves /metrics in Prometheus text format with the agent's metrics", () =>
    Effect.gen(function*() {
      const base = yield* baseUrl
      yield* Effect.succeed("pong").pipe(M.trackRpc("ping"))
      yield* Effect.exit(Effect.fail("nope").pipe(M.trackRpc("destroy_kernel")))
      yield* Metric.update(M.heartbeatsSentTotal, 1)
      yield* Metric.update(M.heartbeatsFailedTotal, 1)
      yield* M.setKernelsByState({ running: 2, pending: 1 })
      yield* M.recordKernelStartPhase("scheduled", "250 millis")
      yield* M.recordKernelStartPhase("runner-ready", "2 seconds")
      yield* M.markWatchRestart("pods")
      yield* M.markWatchEvent("pods")
      yield* Metric.update(M.statsCycleSeconds, 0.2)

      const res = yield* fetchText(`${base}/metrics`)
      assert.strictEqual(res.status, 200)
      assert.include(res.contentType ?? "", "text/plain")
      assert.include(res.contentType ?? "", "version=0.0.4")
      const families = parseExposition(res.body)

      assert.strictEqual(families.get("bai_rpc_requests_total")?.type, "counter")
      assert.isAtLeast(sampleOf(families, "bai_rpc_requests_total", { method: "ping", outcome: "ok" })?.value ?? 0, 1)
      assert.isAtLeast(sampleOf(families, "bai_rpc_requests_total", { method: "destroy_kernel", outcome: "error" })?.value ?? 0, 1)
      assert.strictEqual(families.get("bai_rpc_duration_seconds")?.type, "histogram")
      const inf = sampleOf(families, "bai_rpc_duration_seconds_bucket", { method: "ping", outcome: "ok", le: "+Inf" })
      const count = sampleOf(families, "bai_rpc_duration_seconds_count", { method: "ping", outcome: "ok" })
      assert.isDefined(inf)
      assert.strictEqual(inf?.value, count?.value)
      assert.isAtLeast(sampleOf(families, "bai_heartbeats_sent_total", {})?.value ?? 0, 1)
      assert.isAtLeast(sampleOf(families, "bai_heartbeats_failed_total", {})?.value ?? 0, 1)
      assert.strictEqual(families.get("bai_kernels")?.type, "gauge")
      assert.strictEqual(sampleOf(families, "bai_kernels", { state: "running" })?.value, 2)
      assert.strictEqual(sampleOf(families, "bai_kernels", { state: "pending" })?.value, 1)
      // the unit is seconds: 250 ms lands in le=0.25 and not in le=0.1; 2 s in le=2 and not in le=1
      // (a value recorded in ms, or µs, lands in the wrong bucket), and the sum is 2 s per sample
      const bucket = (phase: string, le: string) =>
        sampleOf(families, "bai_kernel_start_phase_seconds_bucket", { phase, le })?.value
      assert.strictEqual(bucket("scheduled", "0.1"), 0)
      assert.strictEqual(bucket("scheduled", "0.25"), 1)
      assert.strictEqual(bucket("runner-ready", "1"), 0)
      assert.strictEqual(bucket("runner-ready", "2"), 1)
      assert.strictEqual(sampleOf(families, "bai_kernel_start_phase_seconds_count", { phase: "runner-ready" })?.value, 1)
      assert.strictEqual(sampleOf(families, "bai_kernel_start_phase_seconds_sum", { phase: "runner-ready" })?.value, 2)
      assert.strictEqual(sampleOf(families, "bai_kernel_start_phase_seconds_sum", { phase: "scheduled" })?.value, 0.25)
      assert.isAtLeast(sampleOf(families, "bai_kube_watch_restarts_total", { resource: "pods" })?.value ?? 0, 1)
      const age = sampleOf(families, "bai_kube_watch_last_event_age_seconds", { resource: "pods" })
      assert.isDefined(age)
      assert.isAtLeast(age!.value, 0)
      assert.isBelow(age!.value, 3600)
      assert.isAtLeast(sampleOf(families, "bai_stats_cycle_seconds_count", {})?.value ?? 0, 1)
      // registered at start even before any update
      assert.isDefined(sampleOf(families, "bai_events_dropped_total", {}))
      // every family is ours or Effect's, and every name is valid
      for (const name of families.keys()) assert.match(name, /^[a-zA-Z_:][a-zA-Z0-9_:]*$/)
    }).pipe(Effect.provide(serverLayer)))

  it.live("/health is 200 ok; /ready reflects the registered checks", () =>
    Effect.gen(function*() {
      const base = yield* baseUrl
      const health = yield* fetchText(`${base}/health`)
      assert.strictEqual(health.status, 200)
      assert.strictEqual(health.body.trim(), "ok")

      const empty = yield* fetchText(`${base}/ready`)
      assert.strictEqual(empty.status, 200)
      assert.deepStrictEqual(JSON.parse(empty.body), { ready: true, checks: {} })

      const readiness = yield* Readiness
      yield* readiness.registerForever("etcd", Effect.succeed(true))
      yield* readiness.registerForever("events", Effect.void)
      const ok = yield* fetchText(`${base}/ready`)
      assert.strictEqual(ok.status, 200)
      assert.deepStrictEqual(JSON.parse(ok.body), { ready: true, checks: { etcd: { ok: true }, events: { ok: true } } })

      yield* Effect.scoped(
        Effect.gen(function*() {
          yield* readiness.register("kube", Effect.fail(new Error("connect ECONNREFUSED 127.0.0.1:6443")))
          yield* readiness.register("slow", Effect.never)
          yield* readiness.register("false", Effect.succeed(false))
          const bad = yield* fetchText(`${base}/ready`)
          assert.strictEqual(bad.status, 503)
          const body = JSON.parse(bad.body)
          assert.strictEqual(body.ready, false)
          assert.deepStrictEqual(body.checks.etcd, { ok: true })
          assert.deepStrictEqual(body.checks.kube, { ok: false, error: "connect ECONNREFUSED 127.0.0.1:6443" })
          assert.strictEqual(body.checks.slow.ok, false)
          assert.include(body.checks.slow.error, "no answer within")
          assert.deepStrictEqual(body.checks.false, { ok: false, error: "check returned false" })
        })
      )
      // the scoped checks are gone with their scope
      const again = yield* fetchText(`${base}/ready`)
      assert.strictEqual(again.status, 200)
      assert.deepStrictEqual(yield* readiness.names, ["etcd", "events"])

      const notFound = yield* fetchText(`${base}/nope`)
      assert.strictEqual(notFound.status, 404)
    }).pipe(Effect.provide(serverLayer)))
})
