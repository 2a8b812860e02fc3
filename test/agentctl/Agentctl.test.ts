// agentctl against the in-process aiozmq RPC server (real ZeroMQ, real framing) with test handlers.
import * as NodeServices from "@effect/platform-node/NodeServices"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { AgentctlOutput, kernelConfig, parseMount, parseSlots, run, toJson } from "../../src/agentctl/Agentctl.ts"
import { KernelNotFound } from "../../src/domain/Errors.ts"
import { AgentEvents, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { AgentRpcHandlers, type ExecuteResult, type PartialAgentRpcHandlers } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"

interface Recorded {
  created: Array<[string, Record<string, unknown>]>
  executes: Array<ReadonlyArray<unknown>>
  uploads: Array<[string, string, Uint8Array]>
  interrupted: Array<string>
  services: Array<[string, string, Record<string, unknown>]>
}

const makeHandlers = (rec: Recorded): PartialAgentRpcHandlers => ({
  create_kernel: (kid, config) =>
    Effect.sync(() => {
      rec.created.push([kid, config])
      return {
        id: kid,
        kernel_host: "10.0.0.7",
        repl_in_port: 30001,
        repl_out_port: 30002,
        stdin_port: 0,
        stdout_port: 0,
        service_ports: [{ name: "jupyter", protocol: "http", container_port: 8080, host_port: 30003 }],
        container_id: "#",
        resource_spec: "{}"
      }
    }),
  execute: (...args) =>
    Effect.sync((): ExecuteResult | null => {
      rec.executes.push(args)
      const [, kid, runId, mode] = args
      if (kid !== KID) return null
      const base = { runId: runId ?? "r", options: null, files: [] }
      if (rec.executes[0]?.[3] === "batch") {
        return mode === "batch"
          ? { ...base, status: "build-finished", exitCode: 0, console: [["stdout", "built\n"]] }
          : { ...base, status: "finished", exitCode: 2, console: [["stderr", "boom\n"]] }
      }
      if (mode === "query") return { ...base, status: "continued", exitCode: null, console: [["stdout", "1\n"]] }
      if (mode === "continue" && rec.executes.length === 2) {
        return { ...base, status: "continued", exitCode: null, console: [["stdout", "2\n"], ["stderr", "warn\n"]] }
      }
      return { ...base, status: "finished", exitCode: 0, console: [["stdout", "3\n"], ["media", ["image/png", "AAAA"]]] }
    }),
  destroy_kernel: (kid) => (kid === KID ? Effect.void : Effect.fail(new KernelNotFound({ kernelId: kid }))),
  list_files: (_kid, p) =>
    Effect.succeed({
      files: JSON.stringify([{ mode: "-rw-r--r--", size: 12, ctime: 1, mtime: 2, atime: 3, filename: "main.py" }]),
      errors: "",
      abspath: `/home/work/${p}`
    }),
  upload_file: (kid, name, data) => Effect.sync(() => void rec.uploads.push([kid, name, data])),
  download_file: () => Effect.succeed(new Uint8Array([1, 2, 3, 4])),
  get_logs: () => Effect.succeed({ logs: "line 1\nline 2" }),
  interrupt_kernel: (kid) => Effect.sync(() => void rec.interrupted.push(kid)),
  get_completions: () => Effect.succeed({ status: "finished", completions: ["print"] }),
  start_service: (kid, name, opts) =>
    Effect.sync(() => {
      rec.services.push([kid, name, opts])
      return name === "jupyter" ? { status: "started" as const } : { status: "failed" as const, error: "invalid service name" }
    })
})

const withServer = <A, E, R>(f: (endpoint: string, rec: Recorded) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const rec: Recorded = { created: [], executes: [], uploads: [], interrupted: [], services: [] }
    const ctx = yield* Layer.build(
      AiozmqServer.layer({ bind: "tcp://127.0.0.1:*", shutdownGrace: "100 millis" }).pipe(
        Layer.provide(AgentRpcHandlers.layer(HealthHandlers, Effect.succeed(makeHandlers(rec))))
      )
    )
    return yield* f(Context.get(ctx, AiozmqServer).endpoint, rec)
  }).pipe(Effect.scoped)

/** Runs agentctl with captured output; returns the output and whether it succeeded. */
const agentctl = (...argv: Array<string>) =>
  Effect.gen(function*() {
    const sink = { out: "", err: "" }
    const exit = yield* Effect.exit(run(argv).pipe(Effect.provide(AgentctlOutput.layerTest(sink)), Effect.provide(NodeServices.layer)))
    return { ...sink, ok: Exit.isSuccess(exit) }
  })

describe("agentctl helpers", () => {
  it("parses slots into decimal strings and builds the manager 19.06 config", () => {
    assert.deepStrictEqual(parseSlots("cpu=1,mem=1g"), { cpu: "1", mem: "1073741824" })
    assert.deepStrictEqual(parseSlots("cpu=0.5, mem=512m, cuda.device=1"), { cpu: "0.5", mem: "536870912", "cuda.device": "1" })
    assert.isString(parseSlots("cpu=lots"))
    assert.isString(parseSlots("mem=1 parsec"))
    assert.isString(parseSlots(""))
    assert.deepStrictEqual(parseMount("data:local:ab12"), ["data", "local", "ab12", "rw"])
    assert.isString(parseMount("data:local"))
    assert.isString(parseMount("data:local:ab12:xx"))
    assert.deepStrictEqual(
      kernelConfig({ image: "registry.local:5000/lablup/python:3.6-ubuntu18.04", slots: { cpu: "1", mem: "1073741824" } }),
      {
        image: {
          registry: { name: "registry.local:5000", url: "https://registry.local:5000" },
          canonical: "registry.local:5000/lablup/python:3.6-ubuntu18.04",
          digest: "",
          labels: {}
        },
        resource_slots: { cpu: "1", mem: "1073741824" },
        idle_timeout: 0,
        mounts: [],
        environ: {}
      }
    )
    assert.strictEqual(toJson({ b: new Uint8Array([1, 2]), n: 5n }), `{"b":{"$bytes":"AQI="},"n":5}`)
  })
})

describe("agentctl over the wire", () => {
  it.live("ping, create-kernel (manager 19.06 config), destroy, errors and exit status", () =>
    withServer((endpoint, rec) =>
      Effect.gen(function*() {
        const ping = yield* agentctl("--agent", endpoint, "ping", "hello")
        assert.isTrue(ping.ok)
        assert.strictEqual(ping.out, "hello\n")
        const pingJson = yield* agentctl("--agent", endpoint, "--json", "ping")
        assert.strictEqual(JSON.parse(pingJson.out), "ping")

        const created = yield* agentctl(
          "--agent", endpoint, "--json", "create-kernel", KID,
          "--image", "registry.local:5000/lablup/python:3.6-ubuntu18.04",
          "--slots", "cpu=2,mem=1g", "--env", "A=1", "--env", "B=two",
          "--label", "ai.backend.service-ports=jupyter:http:8080",
          "--idle-timeout", "600", "--mount", "data:local:ab12:ro"
        )
        assert.isTrue(created.ok, created.err)
        assert.strictEqual(JSON.parse(created.out).repl_in_port, 30001)
        assert.strictEqual(rec.created.length, 1)
        const [kid, config] = rec.created[0]!
        assert.strictEqual(kid, KID)
        assert.deepStrictEqual(config, {
          image: {
            registry: { name: "registry.local:5000", url: "https://registry.local:5000" },
            canonical: "registry.local:5000/lablup/python:3.6-ubuntu18.04",
            digest: "",
            labels: { "ai.backend.service-ports": "jupyter:http:8080" }
          },
          resource_slots: { cpu: "2", mem: "1073741824" },
          idle_timeout: 600,
          mounts: [["data", "local", "ab12", "ro"]],
          environ: { A: "1", B: "two" }
        })
        const human = yield* agentctl("--agent", endpoint, "create-kernel", "--image", "lablup/python:3.6")
        assert.isTrue(human.ok)
        assert.match(human.out, /^kernel [0-9a-f-]{36} created\n/)
        assert.include(human.out, "jupyter (http) 8080 -> 30003")

        const destroyed = yield* agentctl("--agent", endpoint, "destroy", KID)
        assert.isTrue(destroyed.ok)
        const missing = yield* agentctl("--agent", endpoint, "destroy", "7c0a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11")
        assert.isFalse(missing.ok)
        assert.include(missing.err, "ai.backend.agent.exception.KernelNotFound")
        // kernel ids are UUIDs: agentctl refuses anything else before sending it
        const notUuid = yield* agentctl("--agent", endpoint, "destroy", "nope")
        assert.isFalse(notUuid.ok)
        assert.include(notUuid.err, "kernel_id must be a UUID")
        const badSlots = yield* agentctl("--agent", endpoint, "create-kernel", "--image", "x/y:z", "--slots", "cpu=many")
        assert.isFalse(badSlots.ok)
        assert.include(badSlots.err, "cpu")
      })
    ))

  it.live("execute follows continued results until finished, printing output as it arrives; batch mode", () =>
    withServer((endpoint, rec) =>
      Effect.gen(function*() {
        const r = yield* agentctl("--agent", endpoint, "execute", KID, "print(1)", "--run-id", "run1")
        assert.isTrue(r.ok, r.err)
        assert.strictEqual(r.out, "1\n2\n3\n[media image/png, 4 chars]\n")
        assert.include(r.err, "warn\n")
        assert.include(r.err, "[finished, exit code 0]")
        assert.deepStrictEqual(rec.executes.map((a) => [a[0], a[1], a[2], a[3], a[4]]), [
          [3, KID, "run1", "query", "print(1)"],
          [3, KID, "run1", "continue", ""],
          [3, KID, "run1", "continue", ""]
        ])

        rec.executes.length = 0
        const batch = yield* agentctl("--agent", endpoint, "--json", "execute", KID, "--mode", "batch", "--build", "make", "--exec", "./a.out")
        assert.isFalse(batch.ok, `a non-zero exit code fails the command: ${batch.out} ${batch.err}`)
        const lines = batch.out.trim().split("\n").map((l) => JSON.parse(l))
        assert.deepStrictEqual(lines.map((l) => l.status), ["build-finished", "finished"])
        assert.deepStrictEqual(rec.executes[0]!.slice(3, 6), ["batch", "", { clean: "", build: "make", exec: "./a.out" }])
        assert.strictEqual(rec.executes[1]![3], "continue")
      })
    ))

  it.live("list-files, upload, download, logs, interrupt, complete, start-service and the generic call", () =>
    withServer((endpoint, rec) =>
      Effect.gen(function*() {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agentctl-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))

        const ls = yield* agentctl("--agent", endpoint, "list-files", KID, "src")
        assert.isTrue(ls.ok, ls.err)
        assert.include(ls.out, "/home/work/src:")
        assert.include(ls.out, "main.py")
        const lsJson = yield* agentctl("--agent", endpoint, "--json", "list-files", KID)
        assert.strictEqual(JSON.parse(lsJson.out).files[0].filename, "main.py")

        const local = path.join(dir, "data.bin")
        fs.writeFileSync(local, Buffer.from([0, 255, 7]))
        const up = yield* agentctl("--agent", endpoint, "upload", KID, local, "in/data.bin")
        assert.isTrue(up.ok, up.err)
        assert.deepStrictEqual(rec.uploads.map(([k, n, d]) => [k, n, [...d]]), [[KID, "in/data.bin", [0, 255, 7]]])

        const target = path.join(dir, "out.tar")
        const down = yield* agentctl("--agent", endpoint, "download", KID, "out", "-o", target)
        assert.isTrue(down.ok, down.err)
        assert.deepStrictEqual([...fs.readFileSync(target)], [1, 2, 3, 4])

        assert.strictEqual((yield* agentctl("--agent", endpoint, "logs", KID)).out, "line 1\nline 2\n")
        assert.isTrue((yield* agentctl("--agent", endpoint, "interrupt", KID)).ok)
        assert.deepStrictEqual(rec.interrupted, [KID])
        // agentctl prints whatever comes back (the contract's result schema for get_completions is None | dict):
        // the handler answers a dict, so a null here means the dict was lost on the way
        const completions = yield* agentctl("--agent", endpoint, "--json", "complete", KID, "pri")
        assert.isTrue(completions.ok, completions.err)
        assert.deepStrictEqual(JSON.parse(completions.out), { status: "finished", completions: ["print"] })

        const svc = yield* agentctl("--agent", endpoint, "start-service", KID, "jupyter", "--opts", `{"x":1}`)
        assert.isTrue(svc.ok, svc.err)
        assert.strictEqual(svc.out, "jupyter: started\n")
        assert.deepStrictEqual(rec.services, [[KID, "jupyter", { x: 1 }]])
        assert.isFalse((yield* agentctl("--agent", endpoint, "start-service", KID, "nope")).ok)

        const generic = yield* agentctl("--agent", endpoint, "--json", "call", "get_logs", `["${KID}"]`)
        assert.deepStrictEqual(JSON.parse(generic.out), { logs: "line 1\nline 2" })
        const unknown = yield* agentctl("--agent", endpoint, "call", "no_such_method", "[]")
        assert.isFalse(unknown.ok)
        assert.include(unknown.err, "aiozmq.rpc.base.NotFoundError")
        const notImplemented = yield* agentctl("--agent", endpoint, "call", "reset_agent")
        assert.isFalse(notImplemented.ok)
        assert.isFalse((yield* agentctl("--agent", endpoint, "call", "ping", "{}")).ok)
      })
    ))

  it.live("takes the endpoint from -f agent.toml and fails with a timeout when nothing answers", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "agentctl-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const toml = path.join(dir, "agent.toml")
      fs.writeFileSync(toml, `[etcd]\nnamespace = "x"\n[agent]\nrpc-listen-addr = "127.0.0.1:1"\n`)
      const r = yield* agentctl("-f", toml, "--timeout", "0.5", "ping")
      assert.isFalse(r.ok)
      assert.include(r.err, "Timeout")
      assert.include(r.err, "tcp://127.0.0.1:1")
    }).pipe(Effect.scoped))

  it.live("events binds a PULL socket and prints the decoded events an EventPublisher sends", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) => {
            const s = net.createServer().listen(0, "127.0.0.1", () => {
              const p = (s.address() as net.AddressInfo).port
              s.close(() => resolve(p))
            })
          })
      )
      const fiber = yield* agentctl("--json", "events", "--bind", `tcp://127.0.0.1:${port}`, "--count", "2").pipe(Effect.forkChild)
      yield* Effect.scoped(
        Effect.gen(function*() {
          const publisher = yield* EventPublisher
          yield* publisher.publish(AgentEvents.kernelStarted(KID))
          yield* publisher.publish(AgentEvents.kernelTerminated(KID, "user-requested", 0))
          yield* Fiber.await(fiber).pipe(Effect.timeout("20 seconds"))
        }).pipe(Effect.provide(EventPublisher.layer({ eventAddr: `127.0.0.1:${port}`, agentId: "i-test" })))
      )
      const r = yield* Fiber.join(fiber)
      assert.isTrue(r.ok, r.err)
      assert.deepStrictEqual(r.out.trim().split("\n").map((l) => JSON.parse(l)), [
        { name: "kernel_started", agent: "i-test", args: [KID] },
        { name: "kernel_terminated", agent: "i-test", args: [KID, "user-requested", 0] }
      ])
    }))
})
