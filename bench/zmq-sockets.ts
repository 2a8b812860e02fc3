/**
 * `node --expose-gc bench/zmq-sockets.ts [kernels=100] [hwm=16]`
 *
 * What N runner connections cost in RSS without the agent: a PUSH + PULL per kernel (the options of
 * src/kernel/RunnerClient.ts: linger 50 ms, receive HWM), connected to one sink (PULL / PUSH bound on
 * a loopback address), one `status` sent per PUSH; smaps_rollup before, with them open, and after
 * closing them all (each after a full GC) — what kernels whose sockets never open save
 * (src/kernel/runner/RunnerConnection.ts opens them on first use). Isolates the zeromq.js / libzmq share of the agent's per-kernel memory (bench/memory.ts).
 */
import * as zmq from "zeromq"
import { formatSmaps, smapsOf } from "./smaps.ts"

const N = Number(process.argv[2] ?? 100)
const HWM = Number(process.argv[3] ?? 16)
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined)
const ip = `127.78.${1 + Math.floor(Math.random() * 250)}.1`
const pull = new zmq.Pull()
const push = new zmq.Push()
await pull.bind(`tcp://${ip}:2000`)
await push.bind(`tcp://${ip}:2001`)
void (async () => {
  for await (const _ of pull) { /* drained */ }
})()
gc()
console.log(`before: ${formatSmaps(smapsOf("self"))}`)
const sockets: Array<zmq.Push | zmq.Pull> = []
for (let i = 0; i < N; i++) {
  const a = new zmq.Push({ linger: 50 })
  a.connect(`tcp://${ip}:2000`)
  const b = new zmq.Pull({ linger: 50, receiveHighWaterMark: HWM })
  b.connect(`tcp://${ip}:2001`)
  sockets.push(a, b)
  void (async () => {
    for await (const _ of b) { /* nothing comes */ }
  })().catch(() => undefined)
  await a.send(["status", ""])
}
await new Promise((r) => setTimeout(r, 3000))
gc()
console.log(`${N} kernels (${2 * N} sockets): ${formatSmaps(smapsOf("self"))}`)
for (const s of sockets) s.close()
await new Promise((r) => setTimeout(r, 3000))
gc()
console.log(`after closing them: ${formatSmaps(smapsOf("self"))}`)
process.exit(0)
