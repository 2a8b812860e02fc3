/**
 * A runner connection whose TCP connect is never answered: its SYNs are dropped.
 *
 * On the real node the first create of a fresh node sometimes waited its whole 120 s create timeout
 * for the runner's `status` answer (the clean-clone CI, 2026-12-01, twice, each time the file's
 * first create). A connect whose SYNs are dropped stays in SYN-SENT and the kernel retransmits the
 * SAME 4-tuple for ~127 s (`tcp_syn_retries` 6) before libzmq hears of it; any state pinned to that
 * tuple in between — a conntrack entry made before kube-proxy's DNAT rule existed
 * (`nf_conntrack_tcp_timeout_syn_sent` 120 s), a full accept queue of kube-proxy's NodePort socket —
 * pins the connection for as long. libzmq's `connectTimeout` gives such a connect up and redials from
 * a new source port, i.e. a new tuple. Here the SYNs are dropped by a listener whose accept queue is
 * full (a python3 peer that never accepts), and the test watches the agent's SYN-SENT sockets in
 * /proc/net/tcp: more than one source port within the bound means the hung connect was given up.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { Effect, Schedule, type Scope } from "effect"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"

const BLACKHOLE = `
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
port = s.getsockname()[1]
fillers = []
for _ in range(3):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fillers.append(c)
print(port, *[c.getsockname()[1] for c in fillers], flush=True)
sys.stdin.read()
`

/** A port whose accept queue is full, so a new connect's SYNs are dropped; and its own fillers' source ports. */
const blackhole: Effect.Effect<{ readonly port: number; readonly fillers: ReadonlySet<number> }, Error, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly fillers: ReadonlySet<number>; readonly kill: () => void }, Error>((resume) => {
    const py = spawn("/usr/bin/python3", ["-c", BLACKHOLE], { stdio: ["pipe", "pipe", "inherit"] })
    py.on("error", (e) => resume(Effect.fail(e)))
    py.stdout.once("data", (d: Buffer) => {
      const [port, ...fillers] = d.toString().trim().split(" ").map(Number)
      resume(Effect.succeed({ port: port!, fillers: new Set(fillers), kill: () => void py.kill() }))
    })
  }),
  (b) => Effect.sync(b.kill)
)

/** Local ports of the SYN-SENT sockets to 127.0.0.1:`port` (/proc/net/tcp: state 02). */
const synSentFrom = (port: number): ReadonlyArray<number> =>
  fs.readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1).flatMap((line) => {
    const f = line.trim().split(/\s+/)
    if (f.length < 4 || f[3] !== "02") return []
    const [, remPort] = f[2]!.split(":")
    return parseInt(remPort!, 16) === port ? [parseInt(f[1]!.split(":")[1]!, 16)] : []
  })

/** Well under the kernel's ~127 s of SYN retransmits on one tuple. */
const BOUND_MILLIS = 12_000

describe("RunnerConnections: a connect whose SYNs are dropped", () => {
  it.live("is given up and redialled from a new source port, not left retransmitting one tuple for two minutes", () =>
    Effect.gen(function*() {
      const replIn = yield* blackhole
      const replOut = yield* blackhole
      const conns = yield* RunnerConnections
      const conn = yield* conns.open("k-dropped", { host: "127.0.0.1", replInPort: replIn.port, replOutPort: replOut.port })
      yield* conn.status("100 millis").pipe(Effect.ignore) // opens the sockets; nobody answers
      const seen = new Set<number>()
      yield* Effect.sync(() => {
        for (const p of synSentFrom(replIn.port)) if (!replIn.fillers.has(p)) seen.add(p)
        return seen.size
      }).pipe(
        Effect.repeat({ until: (n) => n >= 2, schedule: Schedule.spaced("100 millis") }),
        Effect.timeoutOption(`${BOUND_MILLIS} millis`)
      )
      assert.isAtLeast(seen.size, 2, `the REPL-in connect stayed on one source port for ${BOUND_MILLIS / 1000} s: ${[...seen].join(", ")}`)
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)
})
