// agent.pid-file (src/observability/PidFile.ts) and the log layer (src/observability/Logging.ts):
// the pid file is written with the pid and removed when the scope closes (real files); "/dev/null"
// and "" write nothing. The log layer filters by logging.level (lowered by --debug) and writes one
// JSON object per line when not on a terminal (console output captured).
import * as NodeServices from "@effect/platform-node/NodeServices"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Logging from "../../src/observability/Logging.ts"
import * as PidFile from "../../src/observability/PidFile.ts"

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "bai-pidfile-"))

describe("PidFile", () => {
  it.live("written with the pid while the layer lives, removed when its scope closes", () =>
    Effect.gen(function*() {
      const file = path.join(tmp(), "agent.pid")
      const during = yield* Effect.scoped(
        Layer.build(PidFile.layer(file, 4242).pipe(Layer.provide(NodeServices.layer))).pipe(
          Effect.andThen(Effect.sync(() => fs.readFileSync(file, "utf8")))
        )
      )
      assert.strictEqual(during, "4242\n")
      assert.isFalse(fs.existsSync(file))
    }))

  it.live("/dev/null and \"\" write nothing (and /dev/null is not removed)", () =>
    Effect.gen(function*() {
      const dir = tmp()
      yield* Effect.scoped(Layer.build(PidFile.layer("/dev/null", 1).pipe(Layer.provide(NodeServices.layer))))
      yield* Effect.scoped(Layer.build(PidFile.layer("", 1).pipe(Layer.provide(NodeServices.layer))))
      assert.isTrue(fs.existsSync("/dev/null"))
      assert.deepStrictEqual(fs.readdirSync(dir), [])
    }))

  it.live("a pid file that cannot be written fails the layer (the agent does not start half-configured)", () =>
    Effect.gen(function*() {
      const file = path.join(tmp(), "missing-dir", "agent.pid")
      const exit = yield* Effect.scoped(Layer.build(PidFile.layer(file, 1).pipe(Layer.provide(NodeServices.layer)))).pipe(Effect.exit)
      assert.strictEqual(exit._tag, "Failure")
    }))
})

/** The console lines written by `self` under the log layer of `logging`. */
const captured = (
  logging: Parameters<typeof Logging.layer>[0],
  options: { readonly debug: boolean; readonly isTty: boolean },
  self: Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const methods = ["log", "info", "warn", "error", "debug", "trace", "group", "groupEnd"] as const
    const saved = methods.map((m) => [m, console[m]] as const)
    yield* Effect.acquireUseRelease(
      Effect.sync(() => {
        for (const m of methods) {
          ;(console as unknown as Record<string, (...a: Array<unknown>) => void>)[m] = (...a: Array<unknown>) => {
            lines.push(a.map(String).join(" "))
          }
        }
      }),
      () => self.pipe(Effect.provide(Logging.layer(logging, options))),
      () => Effect.sync(() => saved.forEach(([m, f]) => ((console as unknown as Record<string, unknown>)[m] = f)))
    )
    return lines
  })

const logging = (level: "DEBUG" | "INFO" | "WARNING" | "ERROR", format: "auto" | "json" | "pretty") =>
  ({ level, format, drivers: ["console"], "pkg-ns": {} }) as unknown as Parameters<typeof Logging.layer>[0]

const everyLevel = Effect.gen(function*() {
  yield* Effect.logDebug("m-debug")
  yield* Effect.logInfo("m-info")
  yield* Effect.logWarning("m-warn")
  yield* Effect.logError("m-error")
})

describe("Logging", () => {
  it.live("logging.level filters; --debug lowers it to DEBUG", () =>
    Effect.gen(function*() {
      const seen = (lines: ReadonlyArray<string>) => ["m-debug", "m-info", "m-warn", "m-error"].filter((m) => lines.some((l) => l.includes(m)))
      assert.deepStrictEqual(seen(yield* captured(logging("WARNING", "json"), { debug: false, isTty: false }, everyLevel)), ["m-warn", "m-error"])
      assert.deepStrictEqual(seen(yield* captured(logging("INFO", "json"), { debug: false, isTty: false }, everyLevel)), ["m-info", "m-warn", "m-error"])
      assert.deepStrictEqual(seen(yield* captured(logging("ERROR", "json"), { debug: false, isTty: false }, everyLevel)), ["m-error"])
      assert.deepStrictEqual(
        seen(yield* captured(logging("ERROR", "json"), { debug: true, isTty: false }, everyLevel)),
        ["m-debug", "m-info", "m-warn", "m-error"]
      )
    }))

  it.live("not on a terminal (auto) and json: one JSON object per line with the level and message", () =>
    Effect.gen(function*() {
      for (const format of ["auto", "json"] as const) {
        const lines = yield* captured(logging("INFO", format), { debug: false, isTty: false }, Effect.logWarning("disk is full").pipe(Effect.annotateLogs({ kernelId: "k1" })))
        assert.strictEqual(lines.length, 1, JSON.stringify(lines))
        const o = JSON.parse(lines[0]!)
        assert.strictEqual(o.level, "WARN", lines[0])
        assert.deepStrictEqual(o.message, "disk is full")
        assert.strictEqual(o.annotations.kernelId, "k1")
      }
    }))

  it.live("on a terminal (auto) or pretty: not JSON", () =>
    Effect.gen(function*() {
      for (const [format, isTty] of [["auto", true], ["pretty", false]] as const) {
        const lines = yield* captured(logging("INFO", format), { debug: false, isTty }, Effect.logInfo("hello there"))
        assert.isAtLeast(lines.length, 1)
        assert.include(lines.join("\n"), "hello there")
        assert.throws(() => JSON.parse(lines[0]!))
      }
    }))
})
