// size: one small command per RPC method of the contract, plus events: the CLI's table of commands in one place
/**
 * agentctl: the operator's and developer's CLI. It calls RPC methods of a running agent over the
 * real wire protocol (aiozmq over ZeroMQ, src/rpc/aiozmq/AiozmqClient.ts), as manager 19.06 does, and
 * tails the manager event stream by binding a PULL socket.
 *
 *   agentctl ping
 *   agentctl create-kernel --image registry.example/lablup/python:3.6-ubuntu18.04 --slots cpu=1,mem=1g --env K=V
 *   agentctl execute KID 'print(1)'
 *   agentctl execute KID --mode batch --build '*' --exec 'python main.py'
 *   agentctl call get_logs '["KID"]'
 *   agentctl events --bind tcp://0.0.0.0:5002
 *
 * Global flags: `--agent tcp://host:port` (default: `agent.rpc-listen-addr` of `-f agent.toml`,
 * else tcp://127.0.0.1:6001), `--timeout SECONDS`, `--json` (machine-readable output).
 * The entry point is src/agentctl.ts; everything here is testable with {@link AgentctlOutput.layerTest}.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Zmq from "zeromq"
import { loadConfig } from "../config/AgentConfig.ts"
import { parseBinarySize } from "../domain/Units.ts"
import { AgentRpcs, type ExecuteResult } from "../rpc/AgentRpcs.ts"
import { AiozmqClient, AiozmqClientError, AiozmqRemoteError } from "../rpc/aiozmq/AiozmqClient.ts"
import * as Msgpack from "../codec/Msgpack.ts"
import { VERSION } from "../version.ts"

// ---------------------------------------------------------------------------------------------
// Output (stdout/stderr as a service, so tests capture it)

export class AgentctlOutput extends Context.Service<AgentctlOutput, {
  out(text: string): Effect.Effect<void>
  err(text: string): Effect.Effect<void>
}>()("bai-agent/agentctl/AgentctlOutput") {
  static readonly layer: Layer.Layer<AgentctlOutput> = Layer.succeed(
    AgentctlOutput,
    AgentctlOutput.of({
      out: (text) => Effect.sync(() => void process.stdout.write(text)),
      err: (text) => Effect.sync(() => void process.stderr.write(text))
    })
  )

  /** Appends to `sink.out` / `sink.err`. */
  static readonly layerTest = (sink: { out: string; err: string }): Layer.Layer<AgentctlOutput> =>
    Layer.succeed(
      AgentctlOutput,
      AgentctlOutput.of({
        out: (text) => Effect.sync(() => void (sink.out += text)),
        err: (text) => Effect.sync(() => void (sink.err += text))
      })
    )
}

/** A command failed; its message was already printed. The process exits 1. */
export class AgentctlError extends Schema.TaggedError<AgentctlError>()("AgentctlError", {
  message: Schema.String
}) {}

// ---------------------------------------------------------------------------------------------
// Pure helpers (exported for tests)

/** JSON for decoded msgpack values: bytes → `{"$bytes": base64}`, bigint → number or string. */
export const toJson = (value: unknown, indent?: number): string =>
  JSON.stringify(
    value,
    (_k, v: unknown) => {
      if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("base64") }
      if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()
      return v
    },
    indent
  ) ?? "null"

/** `cpu=1,mem=1g,cuda.device=1` → `{cpu: "1", mem: "1073741824", "cuda.device": "1"}` (decimal strings, spec §2.2). */
export const parseSlots = (text: string): Record<string, string> | string => {
  const out: Record<string, string> = {}
  for (const part of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const eq = part.indexOf("=")
    if (eq <= 0) return `slot ${JSON.stringify(part)} is not NAME=VALUE`
    const name = part.slice(0, eq).trim()
    const raw = part.slice(eq + 1).trim()
    if (name === "mem" || name.endsWith(".mem") || name === "disk") {
      const bytes = parseBinarySize(raw)
      if (bytes === undefined) return `slot ${name}: ${JSON.stringify(raw)} is not a size such as 1g or 1073741824`
      out[name] = String(bytes)
    } else {
      if (!/^\d+(\.\d+)?$/.test(raw)) return `slot ${name}: ${JSON.stringify(raw)} is not a decimal number`
      out[name] = raw
    }
  }
  if (Object.keys(out).length === 0) return "no resource slots given"
  return out
}

/** The `create_kernel` config manager 19.06 sends (spec §2.2). */
export const kernelConfig = (options: {
  readonly image: string
  readonly digest?: string
  readonly registryName?: string
  readonly registryUrl?: string
  readonly labels?: Readonly<Record<string, string>>
  readonly slots: Readonly<Record<string, string>>
  readonly idleTimeout?: number
  readonly mounts?: ReadonlyArray<readonly [string, string, string, string]>
  readonly environ?: Readonly<Record<string, string>>
}) => {
  const firstSlash = options.image.indexOf("/")
  const head = firstSlash > 0 ? options.image.slice(0, firstSlash) : "index.docker.io"
  const registryName = options.registryName ?? head
  return {
    image: {
      registry: { name: registryName, url: options.registryUrl ?? `https://${registryName}` },
      canonical: options.image,
      digest: options.digest ?? "",
      labels: { ...options.labels }
    },
    resource_slots: { ...options.slots },
    idle_timeout: options.idleTimeout ?? 0,
    mounts: (options.mounts ?? []).map((m) => [...m]),
    environ: { ...options.environ }
  }
}

/** `name:host:folder-id[:perm]` → `[name, host, id, perm]` (perm defaults to `rw`). */
export const parseMount = (text: string): readonly [string, string, string, string] | string => {
  const parts = text.split(":")
  if (parts.length < 3 || parts.length > 4 || parts.some((p) => p === "")) return `mount ${JSON.stringify(text)} is not NAME:HOST:ID[:PERM]`
  const perm = parts[3] ?? "rw"
  if (!["ro", "rw", "wd"].includes(perm)) return `mount ${JSON.stringify(text)}: permission must be ro, rw or wd`
  return [parts[0]!, parts[1]!, parts[2]!, perm]
}

/** Renders `console` items of an execute result for a terminal. */
const renderConsole = (items: ReadonlyArray<unknown>): { out: string; err: string } => {
  let out = ""
  let err = ""
  for (const item of items) {
    if (!Array.isArray(item) || item.length < 2) continue
    const [type, data] = item as [string, unknown]
    if (type === "stdout") out += String(data)
    else if (type === "stderr") err += String(data)
    else if (type === "media" && Array.isArray(data)) out += `[media ${String(data[0])}, ${String(data[1]).length} chars]\n`
    else out += `[${type}] ${typeof data === "string" ? data : toJson(data)}\n`
  }
  return { out, err }
}

// ---------------------------------------------------------------------------------------------
// Shared flags and the client

const rootFlags = {
  agent: Flag.String("agent").pipe(
    Flag.withDescription("RPC endpoint of the agent (default: rpc-listen-addr of -f, else tcp://127.0.0.1:6001)"),
    Flag.optional
  ),
  config: Flag.String("config").pipe(Flag.withAlias("f"), Flag.withDescription("agent.toml to take the RPC address from"), Flag.optional),
  timeout: Flag.Finite("timeout").pipe(Flag.withDescription("Seconds to wait for each answer"), Flag.withDefault(30)),
  json: Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON output"), Flag.withDefault(false))
}

const root = Command.make("agentctl").pipe(
  Command.withSharedFlags(rootFlags),
  Command.withDescription("Call RPC methods of a running bai-k8s-agent, and tail manager events")
)

type RpcError = AiozmqRemoteError | AiozmqClientError

const endpointOf = (agent: Option.Option<string>, config: Option.Option<string>) =>
  Effect.gen(function*() {
    if (Option.isSome(agent)) return agent.value.includes("://") ? agent.value : `tcp://${agent.value}`
    if (Option.isSome(config)) {
      const loaded = yield* loadConfig(config.value, process.env).pipe(
        Effect.mapError((e) => new AgentctlError({ message: e.message }))
      )
      const addr = loaded.config.agent["rpc-listen-addr"]
      const host = addr.host === "" || addr.host === "0.0.0.0" ? "127.0.0.1" : addr.host
      return `tcp://${host.includes(":") ? `[${host}]` : host}:${addr.port}`
    }
    return "tcp://127.0.0.1:6001"
  })

/** Runs `f` with a connected client; prints RPC errors and fails with {@link AgentctlError}. */
const withClient = <A, E, R>(
  f: (client: AiozmqClient["Service"], ctx: { readonly json: boolean; readonly out: AgentctlOutput["Service"] }) => Effect.Effect<A, E | RpcError, R>
) =>
  Effect.gen(function*() {
    const flags = yield* root
    const out = yield* AgentctlOutput
    const endpoint = yield* endpointOf(flags.agent, flags.config)
    return yield* Effect.scoped(
      Effect.gen(function*() {
        const client = yield* AiozmqClient.make({ connect: endpoint, timeout: `${flags.timeout} seconds`, lingerMillis: 0 })
        return yield* f(client, { json: flags.json, out })
      })
    ).pipe(
      Effect.catch((e: E | RpcError): Effect.Effect<never, AgentctlError | Exclude<E, RpcError>> => {
        if (e instanceof AiozmqRemoteError) {
          return out.err(`error: ${e.method}: ${e.excType}: ${e.repr}\n`).pipe(
            Effect.andThen(Effect.fail(new AgentctlError({ message: `${e.excType}: ${e.repr}` })))
          )
        }
        if (e instanceof AiozmqClientError) {
          return out.err(`error: ${e.method}: ${e.reason}: ${e.message} (agent at ${endpoint})\n`).pipe(
            Effect.andThen(Effect.fail(new AgentctlError({ message: e.message })))
          )
        }
        return Effect.fail(e as Exclude<E, RpcError>)
      })
    )
  })

const fail = (message: string) =>
  Effect.gen(function*() {
    const out = yield* AgentctlOutput
    yield* out.err(`error: ${message}\n`)
    return yield* new AgentctlError({ message })
  })

/** Prints `value` as JSON (with --json) or as `human(value)`. */
const print = (ctx: { readonly json: boolean; readonly out: AgentctlOutput["Service"] }, value: unknown, human: () => string) =>
  ctx.out.out(ctx.json ? `${toJson(value)}\n` : human())

const kid = Argument.String("kernel-id").pipe(Argument.withDescription("Kernel id (UUID)"))

// ---------------------------------------------------------------------------------------------
// Commands

const ping = Command.make(
  "ping",
  { message: Argument.String("message").pipe(Argument.withDefault("ping")) },
  ({ message }) =>
    withClient((client, ctx) =>
      client.invoke(AgentRpcs.ping, message).pipe(Effect.flatMap((pong) => print(ctx, pong, () => `${pong}\n`)))
    )
).pipe(Command.withDescription("Echo a message through the agent (ping)"))

const createKernel = Command.make(
  "create-kernel",
  {
    kernelId: Argument.String("kernel-id").pipe(Argument.withDescription("Kernel id (default: a new UUID)"), Argument.optional),
    image: Flag.String("image").pipe(Flag.withDescription("Canonical image reference registry/namespace/name:tag")),
    slots: Flag.String("slots").pipe(Flag.withDescription("Resource slots, e.g. cpu=1,mem=1g"), Flag.withDefault("cpu=1,mem=1g")),
    env: Flag.KeyValuePair("env").pipe(Flag.withDescription("Environment variable K=V (repeatable)"), Flag.optional),
    label: Flag.KeyValuePair("label").pipe(Flag.withDescription("Image label K=V (repeatable), e.g. ai.backend.service-ports=…"), Flag.optional),
    digest: Flag.String("digest").pipe(Flag.withDescription("Image digest"), Flag.withDefault("")),
    registryName: Flag.String("registry-name").pipe(Flag.withDescription("Registry name (default: the image's first component)"), Flag.optional),
    registryUrl: Flag.String("registry-url").pipe(Flag.withDescription("Registry URL (default: https://<registry-name>)"), Flag.optional),
    idleTimeout: Flag.Int("idle-timeout").pipe(Flag.withDescription("Idle timeout in seconds (0 = never)"), Flag.withDefault(0)),
    mount: Flag.String("mount").pipe(Flag.withDescription("vfolder NAME:HOST:ID[:PERM] (repeatable)"), Flag.atLeast(0))
  },
  Effect.fn(function*(input) {
    const slots = parseSlots(input.slots)
    if (typeof slots === "string") return yield* fail(slots)
    const mounts: Array<readonly [string, string, string, string]> = []
    for (const m of input.mount) {
      const parsed = parseMount(m)
      if (typeof parsed === "string") return yield* fail(parsed)
      mounts.push(parsed)
    }
    const kernelId = Option.getOrElse(input.kernelId, () => randomUUID())
    const config = kernelConfig({
      image: input.image,
      digest: input.digest,
      ...Option.match(input.registryName, { onNone: () => ({}), onSome: (registryName) => ({ registryName }) }),
      ...Option.match(input.registryUrl, { onNone: () => ({}), onSome: (registryUrl) => ({ registryUrl }) }),
      labels: Option.getOrElse(input.label, () => ({})),
      slots,
      idleTimeout: input.idleTimeout,
      mounts,
      environ: Option.getOrElse(input.env, () => ({}))
    })
    return yield* withClient((client, ctx) =>
      client.invoke(AgentRpcs.create_kernel, kernelId, config).pipe(
        Effect.flatMap((r) =>
          print(ctx, r, () =>
            [
              `kernel ${r.id} created`,
              `  host         ${r.kernel_host}`,
              `  repl ports   in ${r.repl_in_port}, out ${r.repl_out_port}`,
              ...r.service_ports.map((s) => `  service      ${s.name} (${s.protocol}) ${s.container_port} -> ${s.host_port}`),
              ""
            ].join("\n"))
        )
      )
    )
  })
).pipe(Command.withDescription("Create a kernel with the config manager 19.06 sends"))

const execute = Command.make(
  "execute",
  {
    kernelId: kid,
    code: Argument.String("code").pipe(Argument.withDescription("Code (query mode)"), Argument.withDefault("")),
    mode: Flag.Literals("mode", ["query", "batch"]).pipe(Flag.withDefault("query")),
    clean: Flag.String("clean").pipe(Flag.withDescription("Batch: clean command"), Flag.withDefault("")),
    build: Flag.String("build").pipe(Flag.withDescription("Batch: build command ('*' = auto)"), Flag.withDefault("")),
    exec: Flag.String("exec").pipe(Flag.withDescription("Batch: exec command ('*' = auto)"), Flag.withDefault("")),
    runId: Flag.String("run-id").pipe(Flag.optional),
    apiVersion: Flag.Int("api-version").pipe(Flag.withDefault(3)),
    flushTimeout: Flag.Finite("flush-timeout").pipe(Flag.withDescription("Seconds the agent collects output per call"), Flag.withDefault(2))
  },
  Effect.fn(function*(input) {
    const runId = Option.getOrElse(input.runId, () => randomUUID().replace(/-/g, ""))
    const opts = input.mode === "batch" ? { clean: input.clean, build: input.build, exec: input.exec } : {}
    return yield* withClient((client, ctx) =>
      Effect.gen(function*() {
        let mode: string = input.mode
        let code = input.code
        let options: Record<string, unknown> = opts
        const results: Array<ExecuteResult | null> = []
        for (;;) {
          const r = yield* client.invoke(AgentRpcs.execute, input.apiVersion, input.kernelId, runId, mode, code, options, input.flushTimeout)
          results.push(r)
          if (r === null) {
            yield* ctx.out.err("run cancelled by the agent\n")
            break
          }
          if (ctx.json) yield* ctx.out.out(`${toJson(r)}\n`)
          else {
            const rendered = renderConsole(r.console ?? [])
            if (r.stdout !== undefined) rendered.out += r.stdout
            if (r.stderr !== undefined) rendered.err += r.stderr
            if (rendered.out !== "") yield* ctx.out.out(rendered.out)
            if (rendered.err !== "") yield* ctx.out.err(rendered.err)
            if (r.status === "clean-finished" || r.status === "build-finished") {
              yield* ctx.out.err(`[${r.status}, exit code ${r.exitCode}]\n`)
            }
          }
          if (r.status === "finished" || r.status === "exec-timeout") {
            if (!ctx.json) yield* ctx.out.err(`[${r.status}, exit code ${r.exitCode ?? "-"}]\n`)
            break
          }
          if (r.status === "waiting-input") {
            // agentctl is not interactive: answer with an empty line
            mode = "input"
            code = ""
          } else {
            mode = "continue"
            code = ""
          }
          options = {}
        }
        const last = results[results.length - 1]
        if (last !== null && last !== undefined && last.exitCode !== null && last.exitCode !== 0) {
          return yield* new AgentctlError({ message: `exit code ${last.exitCode}` })
        }
      })
    )
  })
).pipe(Command.withDescription("Run code in a kernel, following `continued` results until `finished`"))

const destroy = Command.make(
  "destroy",
  { kernelId: kid, reason: Flag.String("reason").pipe(Flag.optional) },
  ({ kernelId, reason }) =>
    withClient((client, ctx) =>
      (Option.isSome(reason)
        ? client.invoke(AgentRpcs.destroy_kernel, kernelId, reason.value)
        : client.invoke(AgentRpcs.destroy_kernel, kernelId)).pipe(
          Effect.flatMap((r) => print(ctx, r ?? null, () => `kernel ${kernelId} destroyed\n`))
        )
    )
).pipe(Command.withDescription("Destroy a kernel"))

const listFiles = Command.make(
  "list-files",
  { kernelId: kid, path: Argument.String("path").pipe(Argument.withDefault(".")) },
  (input) =>
    withClient((client, ctx) =>
      client.invoke(AgentRpcs.list_files, input.kernelId, input.path).pipe(
        Effect.flatMap((r) => {
          const files = Effect.try({
            try: () => JSON.parse(r.files === "" ? "[]" : r.files) as ReadonlyArray<Record<string, unknown>>,
            catch: () => new AgentctlError({ message: "the agent sent an unreadable file list" })
          })
          return Effect.flatMap(files, (list) =>
            print(ctx, { ...r, files: list }, () =>
              [
                `${r.abspath}:`,
                ...list.map((f) => `${String(f.mode).padEnd(11)} ${String(f.size).padStart(10)}  ${String(f.filename)}`),
                ...(r.errors !== "" ? [`errors: ${r.errors}`] : []),
                ""
              ].join("\n")))
        })
      )
    )
).pipe(Command.withDescription("List files in a kernel's work directory"))

const upload = Command.make(
  "upload",
  { kernelId: kid, local: Argument.String("local"), remote: Argument.String("remote").pipe(Argument.optional) },
  (input) =>
    Effect.gen(function*() {
      const data = yield* Effect.try({
        try: () => new Uint8Array(fs.readFileSync(input.local)),
        catch: (e) => new AgentctlError({ message: `cannot read ${input.local}: ${(e as Error).message}` })
      }).pipe(Effect.catch((e) => fail(e.message)))
      const remote = Option.getOrElse(input.remote, () => path.basename(input.local))
      return yield* withClient((client, ctx) =>
        client.invoke(AgentRpcs.upload_file, input.kernelId, remote, data).pipe(
          Effect.flatMap(() => print(ctx, { uploaded: remote, bytes: data.length }, () => `uploaded ${input.local} as ${remote} (${data.length} bytes)\n`))
        )
      )
    })
).pipe(Command.withDescription("Upload a local file into the kernel's work directory"))

const download = Command.make(
  "download",
  {
    kernelId: kid,
    path: Argument.String("path"),
    output: Flag.String("output").pipe(Flag.withAlias("o"), Flag.withDescription("Where to write the tar archive (default: <name>.tar)"), Flag.optional)
  },
  (input) =>
    withClient((client, ctx) =>
      client.invoke(AgentRpcs.download_file, input.kernelId, input.path).pipe(
        Effect.flatMap((data) => {
          if (data === null) return print(ctx, { downloaded: null }, () => "the agent returned no data\n")
          const target = Option.getOrElse(input.output, () => `${path.basename(input.path) || "download"}.tar`)
          return Effect.try({
            try: () => fs.writeFileSync(target, data),
            catch: (e) => new AgentctlError({ message: `cannot write ${target}: ${(e as Error).message}` })
          }).pipe(Effect.andThen(print(ctx, { downloaded: target, bytes: data.length }, () => `wrote ${target} (${data.length} bytes, tar)\n`)))
        })
      )
    )
).pipe(Command.withDescription("Download a file or directory of the kernel (tar archive)"))

const logs = Command.make("logs", { kernelId: kid }, ({ kernelId }) =>
  withClient((client, ctx) =>
    client.invoke(AgentRpcs.get_logs, kernelId).pipe(
      Effect.flatMap((r) => print(ctx, r, () => (r.logs.endsWith("\n") || r.logs === "" ? r.logs : `${r.logs}\n`)))
    )
  )).pipe(Command.withDescription("Print a kernel's container logs"))

const interrupt = Command.make("interrupt", { kernelId: kid }, ({ kernelId }) =>
  withClient((client, ctx) =>
    client.invoke(AgentRpcs.interrupt_kernel, kernelId).pipe(
      Effect.flatMap(() => print(ctx, null, () => `kernel ${kernelId} interrupted\n`))
    )
  )).pipe(Command.withDescription("Interrupt the code running in a kernel"))

const complete = Command.make(
  "complete",
  { kernelId: kid, text: Argument.String("text") },
  ({ kernelId, text }) =>
    withClient((client, ctx) =>
      // raw call: the contract's result schema (None | dict) is for the server side, decode nothing here
      client.call(AgentRpcs.get_completions.name, [kernelId, text, {}]).pipe(
        Effect.flatMap((r) => print(ctx, r ?? null, () => `${toJson(r ?? null, 2)}\n`))
      )
    )
).pipe(Command.withDescription("Ask a kernel for completions"))

const startService = Command.make(
  "start-service",
  {
    kernelId: kid,
    name: Argument.String("service"),
    opts: Flag.String("opts").pipe(Flag.withDescription("Service options as a JSON object"), Flag.withDefault("{}"))
  },
  (input) =>
    Effect.gen(function*() {
      const opts = yield* Effect.try({
        try: () => JSON.parse(input.opts) as unknown,
        catch: () => new AgentctlError({ message: "--opts is not JSON" })
      })
      if (opts === null || typeof opts !== "object" || Array.isArray(opts)) return yield* fail("--opts must be a JSON object")
      return yield* withClient((client, ctx) =>
        client.invoke(AgentRpcs.start_service, input.kernelId, input.name, opts as Record<string, unknown>).pipe(
          Effect.flatMap((r) =>
            print(ctx, r, () => `${input.name}: ${r.status}${r.error !== undefined ? ` (${r.error})` : ""}\n`).pipe(
              Effect.andThen(r.status === "failed" ? Effect.fail(new AgentctlError({ message: r.error ?? "failed" })) : Effect.void)
            )
          )
        )
      )
    })
).pipe(Command.withDescription("Start a service (e.g. jupyter) in a kernel"))

const call = Command.make(
  "call",
  {
    method: Argument.String("method"),
    args: Argument.String("json-args").pipe(Argument.withDescription("Positional arguments as a JSON array"), Argument.withDefault("[]"))
  },
  (input) =>
    Effect.gen(function*() {
      const args = yield* Effect.try({
        try: () => JSON.parse(input.args) as unknown,
        catch: () => new AgentctlError({ message: "json-args is not JSON" })
      }).pipe(Effect.catch((e) => fail(e.message)))
      if (!Array.isArray(args)) return yield* fail("json-args must be a JSON array")
      return yield* withClient((client, ctx) =>
        client.call(input.method, args).pipe(
          Effect.flatMap((r) => ctx.out.out(`${toJson(r ?? null, ctx.json ? undefined : 2)}\n`))
        )
      )
    })
).pipe(Command.withDescription("Call any RPC method with JSON positional arguments (generic)"))

const events = Command.make(
  "events",
  {
    bind: Flag.String("bind").pipe(
      Flag.withDescription("Address to bind the PULL socket on (the agent's event_addr points here)"),
      Flag.withDefault("tcp://127.0.0.1:5002")
    ),
    count: Flag.Int("count").pipe(Flag.withDescription("Exit after this many events"), Flag.optional)
  },
  (input) =>
    Effect.gen(function*() {
      const flags = yield* root
      const out = yield* AgentctlOutput
      const endpoint = input.bind.includes("://") ? input.bind : `tcp://${input.bind}`
      yield* Effect.scoped(
        Effect.gen(function*() {
          const socket = yield* Effect.acquireRelease(
            Effect.tryPromise({
              try: async () => {
                const s = new Zmq.Pull({ linger: 0 })
                await s.bind(endpoint)
                return s
              },
              catch: (e) => new AgentctlError({ message: `cannot bind ${endpoint}: ${(e as Error).message}` })
            }),
            (s) => Effect.sync(() => s.close())
          )
          if (!flags.json) yield* out.err(`listening for events on ${endpoint}\n`)
          const limit = Option.getOrElse(input.count, () => Infinity)
          for (let n = 0; n < limit; n++) {
            const frames = yield* Effect.tryPromise({
              try: () => socket.receive(),
              catch: (e) => new AgentctlError({ message: `receive failed: ${(e as Error).message}` })
            })
            const name = frames[0]?.toString("utf8") ?? "?"
            const agent = frames[1]?.toString("utf8") ?? "?"
            const args = frames[2] === undefined ? [] : yield* Msgpack.decodeEffect(frames[2]).pipe(
              Effect.orElseSucceed(() => ({ $undecodable: frames[2]!.toString("base64") }))
            )
            yield* out.out(
              flags.json
                ? `${toJson({ name, agent, args })}\n`
                : `${new Date().toISOString()} ${agent} ${name} ${toJson(args)}\n`
            )
          }
        })
      ).pipe(Effect.tapError((e) => out.err(`error: ${e.message}\n`)))
    })
).pipe(Command.withDescription("Tail manager events: bind a PULL socket and print decoded events"))

/** The whole CLI. */
export const command = root.pipe(
  Command.withSubcommands([ping, createKernel, execute, destroy, listFiles, upload, download, logs, interrupt, complete, startService, call, events])
)

/** Runs agentctl on `argv` (without `node agentctl.js`); the entry point and tests use it. */
export const run = (argv: ReadonlyArray<string>) => Command.runWith(command, { version: VERSION })(argv)
