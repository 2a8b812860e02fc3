// Kernel runner (spec §8): PULL socket for the "2000" (REPL in) role, PUSH socket for the "2001"
// (REPL out) role, every message two frames [type, payload]. Really runs what it is sent: `code`
// through python3, `clean`/`build`/`exec` through `sh -c`, one at a time.
//
// Started by the simulated kubelet with cwd = the kernel's work dir. Its own stdout is a control
// channel to the kubelet (JSON lines): first {"replIn": port, "replOut": port}, later
// {"service": {"name", "port", "local"}} for each started service. Env BAI_RUNNER_LOG names the
// file where stdout/stderr records are appended (served as the container log).
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as zmq from "zeromq"

const INPUT_MARK = "\x00bai-waiting-input:"
const startedAt = Number(process.hrtime.bigint()) / 1e9
const logPath = process.env.BAI_RUNNER_LOG
const logFd = logPath !== undefined ? fs.openSync(logPath, "a") : undefined

const control = (msg: unknown): void => { process.stdout.write(`${JSON.stringify(msg)}\n`) }
const appendLog = (data: Buffer | string): void => {
  if (logFd !== undefined) fs.writeSync(logFd, typeof data === "string" ? Buffer.from(data) : data)
}

// ---- sockets ---------------------------------------------------------------------------------------
const input = new zmq.Pull()
const output = new zmq.Push({ linger: 100 })
await input.bind("tcp://127.0.0.1:*")
await output.bind("tcp://127.0.0.1:*")
const portOf = (s: zmq.Socket): number => Number(new URL(s.lastEndpoint ?? "").port)

let sending: Promise<void> = Promise.resolve()
/** Queues one two-frame record; stdout/stderr also go to the log file. */
const send = (type: string, payload: Buffer | string): void => {
  if (type === "stdout" || type === "stderr") appendLog(payload)
  sending = sending.then(() => output.send([type, payload])).catch(() => undefined)
}
const sendJson = (type: string, value: unknown): void => send(type, JSON.stringify(value))

/** msgpack {"started_at": float64} (hand-encoded so the value is always a float). */
const statusPayload = (): Buffer => {
  const key = Buffer.from("started_at")
  const b = Buffer.alloc(1 + 1 + key.length + 9)
  b[0] = 0x81; b[1] = 0xa0 | key.length; key.copy(b, 2)
  b[2 + key.length] = 0xcb; b.writeDoubleBE(startedAt, 3 + key.length)
  return b
}

// ---- child processes -------------------------------------------------------------------------------
const childEnv: NodeJS.ProcessEnv = { ...process.env, LANG: "C.UTF-8", SHELL: "/bin/sh", HOME: process.cwd(), PYTHONUNBUFFERED: "1" }
delete childEnv.BAI_RUNNER_LOG
let current: ChildProcess | undefined

const PY_WRAPPER = `
import builtins, getpass, os, sys
_src = os.fdopen(3, 'rb').read().decode('utf-8')
def _ask(prompt, password):
    sys.stdout.write(str(prompt) + ${JSON.stringify(INPUT_MARK)} + ('1' if password else '0') + '\\x00')
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError('EOF when reading a line')
    return line[:-1] if line.endswith('\\n') else line
builtins.input = lambda prompt='': _ask(prompt, False)
getpass.getpass = lambda prompt='Password: ', stream=None: _ask(prompt, True)
del builtins, getpass, os
sys.argv = ['<input>']
exec(compile(_src, '<input>', 'exec'), {'__name__': '__main__', '__builtins__': __builtins__})
`

/** Streams stdout (scanning for the input marker) and stderr; resolves with the exit code. */
const run = (cmd: string, args: ReadonlyArray<string>, stdinData?: string): Promise<number> =>
  new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: process.cwd(), env: childEnv, detached: true,
      stdio: stdinData !== undefined ? ["pipe", "pipe", "pipe", "pipe"] : ["pipe", "pipe", "pipe"],
    })
    current = child
    if (stdinData !== undefined) {
      const fd3 = child.stdio[3] as NodeJS.WritableStream
      fd3.end(stdinData)
    }
    let pending = Buffer.alloc(0)
    child.stdout!.on("data", (chunk: Buffer) => {
      let buf = Buffer.concat([pending, chunk])
      for (;;) {
        const i = buf.indexOf(INPUT_MARK)
        if (i < 0) break
        const end = buf.indexOf(0, i + INPUT_MARK.length)
        if (end < 0) break
        if (i > 0) send("stdout", buf.subarray(0, i))
        sendJson("waiting-input", { is_password: buf.subarray(i + INPUT_MARK.length, end).toString() === "1" })
        buf = buf.subarray(end + 1)
      }
      // keep a possible marker prefix for the next chunk
      const keep = buf.lastIndexOf(0)
      if (keep >= 0 && INPUT_MARK.startsWith(buf.subarray(keep).toString("latin1").slice(0, INPUT_MARK.length))) {
        if (keep > 0) send("stdout", buf.subarray(0, keep))
        pending = Buffer.from(buf.subarray(keep))
      } else {
        if (buf.length > 0) send("stdout", buf)
        pending = Buffer.alloc(0)
      }
    })
    child.stderr!.on("data", (chunk: Buffer) => send("stderr", chunk))
    child.stdin!.on("error", () => undefined)
    child.on("error", (e) => { send("stderr", `${e.message}\n`) })
    child.on("close", (code, signal) => {
      if (pending.length > 0) send("stdout", pending)
      if (current === child) current = undefined
      resolve(code ?? (signal !== null ? 128 + (signalNumbers[signal] ?? 1) : 1))
    })
  })

const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 }
const sh = (cmd: string): Promise<number> => run("/bin/sh", ["-c", cmd])

// ---- batch / query task queue ----------------------------------------------------------------------
let buildSuccess = true
const heuristic = (op: "clean" | "build" | "exec"): string | undefined => {
  if (op === "build" && fs.existsSync("Makefile")) return "make"
  if (op === "exec" && fs.existsSync("main.py")) return "python3 main.py"
  return undefined
}

const tasks: Array<() => Promise<void>> = []
let draining = false
const enqueue = (task: () => Promise<void>): void => {
  tasks.push(task)
  if (draining) return
  draining = true
  void (async () => {
    while (tasks.length > 0) await tasks.shift()!().catch((e) => send("stderr", `runner: ${String(e)}\n`))
    draining = false
  })()
}

const batch = (op: "clean" | "build" | "exec", text: string): void =>
  enqueue(async () => {
    const reply = op === "clean" ? "clean-finished" : op === "build" ? "build-finished" : "finished"
    let exitCode = 0
    if (op === "exec" && !buildSuccess) exitCode = 127
    else {
      const cmd = text === "*" ? heuristic(op) : text
      if (cmd !== undefined && cmd !== "") exitCode = await sh(cmd)
    }
    if (op === "build") buildSuccess = exitCode === 0
    if (op === "exec") buildSuccess = true
    sendJson(reply, { exitCode })
  })

// ---- completions and services ----------------------------------------------------------------------
const PY_NAMES = ("False None True and as assert async await break class continue def del elif else except finally for from " +
  "global if import in is lambda nonlocal not or pass raise return try while with yield abs all any ascii bin bool breakpoint " +
  "bytearray bytes callable chr classmethod compile complex copyright credits delattr dict dir divmod enumerate eval exec exit " +
  "filter float format frozenset getattr globals hasattr hash help hex id input int isinstance issubclass iter len license list " +
  "locals map max memoryview min next object oct open ord pow print property quit range repr reversed round set setattr slice " +
  "sorted staticmethod str sum super tuple type vars zip").split(" ")

const complete = (payload: string): Array<string> => {
  let text = payload
  try { const o = JSON.parse(payload) as { code?: unknown }; if (typeof o.code === "string") text = o.code } catch { /* raw */ }
  const word = /[A-Za-z_][A-Za-z0-9_]*$/.exec(text)?.[0] ?? ""
  return word === "" ? [] : PY_NAMES.filter((n) => n.startsWith(word)).map((n) => (["print", "input", "len"].includes(n) ? `${n}(` : n))
}

const services = new Map<string, net.Server>()
const startService = async (payload: string): Promise<void> => {
  let spec: { name?: string; port?: number; protocol?: string }
  try { spec = JSON.parse(payload) as typeof spec } catch { return sendJson("service-result", { status: "failed", error: "bad request" }) }
  const name = String(spec.name ?? "service")
  if (services.has(name)) return sendJson("service-result", { status: "running" })
  const server: net.Server = spec.protocol === "http"
    ? http.createServer((_req, res) => res.end(`${name} service (testbed runner)\n`))
    : net.createServer((s) => { s.on("error", () => undefined); s.end(`${name} service (testbed runner)\n`) })
  services.set(name, server)
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  control({ service: { name, port: Number(spec.port), local: (server.address() as net.AddressInfo).port } })
  sendJson("service-result", { status: "started" })
}

// ---- main loop -------------------------------------------------------------------------------------
const dispatch = async (type: string, data: Buffer): Promise<void> => {
  const text = data.toString("utf8")
  switch (type) {
    case "clean": case "build": case "exec": return batch(type, text)
    case "code": return enqueue(async () => sendJson("finished", { exitCode: await run("python3", ["-u", "-c", PY_WRAPPER], text) }))
    case "input": current?.stdin?.write(`${text}\n`); return
    case "interrupt": if (current?.pid !== undefined) try { process.kill(-current.pid, "SIGINT") } catch { /* gone */ } return
    case "status": return send("status", statusPayload())
    case "complete": return sendJson("completion", complete(text))
    case "start-service": return startService(text)
    case "get-apps": return sendJson("apps-result", { status: "done", data: [] })
    default: return // unknown operations are ignored, as the base runner does
  }
}

const shutdown = (): void => {
  if (current?.pid !== undefined) try { process.kill(-current.pid, "SIGKILL") } catch { /* gone */ }
  process.exit(0)
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)
const parent = process.ppid
setInterval(() => { if (process.ppid !== parent) shutdown() }, 1000).unref()

control({ replIn: portOf(input), replOut: portOf(output) })
appendLog(`testbed runner started (pid ${process.pid}, work dir ${process.cwd()})\n`)
for await (const frames of input) {
  if (frames.length !== 2) continue
  await dispatch(frames[0]!.toString("latin1"), frames[1]!)
}
