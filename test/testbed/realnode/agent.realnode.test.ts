// The agent against a REAL node (containerd + kubelet + kube-proxy 1.20, real kernel images, the
// real 19.06 runner mounted from the krunner volume), over the wire: RPC in, events out.
import { assert, layer } from "@effect/vitest"
import { Effect, Queue } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import { Redis } from "ioredis"
import { AgentRpcs } from "../../../src/rpc/AgentRpcs.ts"
import * as Msgpack from "../../../src/codec/Msgpack.ts"
import { projectSummary } from "../../../src/stats/KubeletSummary.ts"
import { summaryOfNamespaces } from "../../../src/stats/SummarySlice.ts"
import {
  kernelConfig, kernelPod, kubectlJson, kubectlRaw, PYTHON_LABELS, RealNodeAgent, realImage, runCode, takeEvent,
} from "./RealNodeSupport.ts"

const MiB = 1024 * 1024

/** Polls `check` every 250 ms until `ok` or `seconds` pass; returns the last value. */
const eventually = <A, E, R>(check: Effect.Effect<A, E, R>, ok: (a: A) => boolean, seconds = 60) =>
  Effect.gen(function*() {
    let last = yield* check
    for (let i = 0; i < seconds * 4 && !ok(last); i++) {
      yield* Effect.sleep("250 millis")
      last = yield* check
    }
    return last
  })

const create = (slots: { cpu: string; mem: string }, image?: ReturnType<typeof realImage>) =>
  Effect.gen(function*() {
    const { client, env } = yield* RealNodeAgent
    const kid = crypto.randomUUID()
    const r = yield* client.invoke(AgentRpcs.create_kernel, kid, kernelConfig(env, slots, image))
    return { kid, r }
  })

const destroy = (kid: string) =>
  Effect.gen(function*() {
    const { client } = yield* RealNodeAgent
    yield* client.invoke(AgentRpcs.destroy_kernel, kid)
    return yield* takeEvent("kernel_terminated", kid)
  })

layer(RealNodeAgent.layer({ graceSeconds: 6 }), { excludeTestServices: true, timeout: "300 seconds" })("an agent whose kernels run on the real node", (it) => {
  it.effect("create → execute → destroy over the wire: the real runner in a real container", () =>
    Effect.gen(function*() {
      const { node, kubeNs, env } = yield* RealNodeAgent
      const { kid, r } = yield* create({ cpu: "0.5", mem: String(512 * MiB) })
      assert.strictEqual(r.kernel_host, node.ip)
      const pod = yield* kernelPod(kid)
      assert.strictEqual(pod.spec.nodeName, node.name)
      assert.match(pod.status.containerStatuses[0].containerID, /^containerd:\/\//)
      // query code runs in the ipykernel the runner (krunner venv python) started from the image's kernelspec
      const out = yield* runCode(kid, "import os\nprint(6*7, os.getuid(), os.environ['FOO'], os.getcwd())")
      assert.strictEqual(out.status, "finished", out.text)
      assert.include(out.text, "42 9001 bar /home/work", out.text) // uid-matched user, manager environ, work dir
      // ipykernel state survives between queries (one kernel process per container)
      yield* runCode(kid, "kept = 'still-here'")
      assert.include((yield* runCode(kid, "print(kept)")).text, "still-here")
      const ev = yield* destroy(kid)
      assert.strictEqual(ev.args[1], "user-requested")
      const left = yield* eventually(kubectlJson(env, ["-n", kubeNs, "get", "pods"]), (l) => l.items.length === 0)
      assert.deepStrictEqual(left.items.map((p: any) => p.metadata.name), [])
    }))

  it.effect("cgroup limits equal the requested slots, inside the kernel and on the host", () =>
    Effect.gen(function*() {
      const { kid } = yield* create({ cpu: "0.5", mem: String(384 * MiB) })
      const out = yield* runCode(kid, [
        "print('mem', open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())",
        "print('quota', open('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read().strip(), open('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read().strip())",
      ].join("\n"))
      assert.include(out.text, `mem ${384 * MiB}`)
      assert.include(out.text, "quota 50000 100000")
      const pod = yield* kernelPod(kid)
      assert.strictEqual(pod.status.qosClass, "Guaranteed")
      const cid = pod.status.containerStatuses[0].containerID.replace("containerd://", "")
      const host = `/sys/fs/cgroup/memory/kubepods/pod${pod.metadata.uid}/${cid}/memory.limit_in_bytes`
      assert.strictEqual(fs.readFileSync(host, "utf8").trim(), String(384 * MiB))
      yield* destroy(kid)
    }))

  it.effect("a kernel allocating past its memory limit ends OOMKilled, and the manager hears oom-killed", () =>
    Effect.gen(function*() {
      const { client } = yield* RealNodeAgent
      const { kid } = yield* create({ cpu: "0.5", mem: String(256 * MiB) })
      // Query code runs in the ipykernel, a CHILD of the runner (PID 1): left alone, the memcg OOM killer
      // picks that biggest process, the runner lives on with a zombie and the query never finishes — the
      // container is not OOMKilled and nobody hears of it (seen on this node; see the realnode report).
      // To exercise the agent's oom-killed path, the code makes PID 1 the preferred victim first
      // (raising an oom_score_adj needs no privilege), as a runaway runner would be.
      const code = "open('/proc/1/oom_score_adj', 'w').write('1000')\nhog = bytearray(1024 * 1024 * 1024)"
      yield* client.invoke(AgentRpcs.execute, 3, kid, crypto.randomUUID(), "query", code, {}, 5).pipe(Effect.ignore)
      const ev = yield* takeEvent("kernel_terminated", kid)
      assert.strictEqual(ev.args[1], "oom-killed", JSON.stringify(ev.args))
    }))

  it.effect("the real kubelet's /stats/summary gives the kernel's Redis stats real CPU and memory numbers", () =>
    Effect.gen(function*() {
      const { env } = yield* RealNodeAgent
      const { kid } = yield* create({ cpu: "1", mem: String(512 * MiB) })
      // burn CPU and hold 100 MiB so the numbers cannot be an idle container's
      yield* runCode(kid, "import time\nheld = bytearray(100 * 1024 * 1024)\nt = time.time()\nwhile time.time() - t < 3: pass\nprint('done')")
      const [host, port] = env.redis.split(":")
      const redis = new Redis({ host: host!, port: Number(port), lazyConnect: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => redis.disconnect()))
      yield* Effect.promise(() => redis.connect())
      const stat = yield* eventually(
        Effect.promise(() => redis.getBuffer(kid)).pipe(Effect.map((b) => (b === null ? undefined : Msgpack.decode(b) as Record<string, { current: string }>))),
        (s) => s !== undefined && Number(s["cpu_used"]?.current ?? 0) >= 2000 && Number(s["mem"]?.current ?? 0) >= 100 * MiB,
        60,
      )
      assert.isDefined(stat, "no stats in Redis")
      assert.isAtLeast(Number(stat!["cpu_used"]!.current), 2000) // msec of CPU: the 3 s busy loop
      assert.isAtLeast(Number(stat!["mem"]!.current), 100 * MiB)
      assert.isBelow(Number(stat!["mem"]!.current), 512 * MiB)
      // the stats loop parses only its namespace's pods: the real kubelet's layout is the one the cut
      // expects (not the whole-document fallback), and the cut gives what the whole document gives
      const { kubeNs, node } = yield* RealNodeAgent
      const raw = Buffer.from(yield* kubectlRaw(env, `/api/v1/nodes/${node.name}/proxy/stats/summary`))
      const cut = summaryOfNamespaces(raw, new Set([kubeNs]))
      assert.isDefined(cut, `the real kubelet's summary is not laid out as SummarySlice expects: ${raw.toString().slice(0, 400)}`)
      const whole = projectSummary(JSON.parse(raw.toString()))
      const part = projectSummary(JSON.parse(cut!))
      assert.isTrue(whole._tag === "Success" && part._tag === "Success")
      if (whole._tag === "Success" && part._tag === "Success") {
        assert.deepStrictEqual(part.success, { ...whole.success, pods: (whole.success.pods ?? []).filter((p) => p.podRef.namespace === kubeNs) })
        assert.isTrue(part.success.pods!.some((p) => p.podRef.name.endsWith(kid)), "the kernel's pod is in the cut")
      }
      yield* destroy(kid)
    }))

  // The real kubelet's pod samples are cAdvisor's, taken every 10–24 s (each pod on its own ticker; the
  // node's root every 10 s), while the stats loop writes every 2 s: a rate taken between two writes of
  // the same sample is 0, and the next one divides ~15 s of CPU by 2 s. A kernel burning one core must
  // read ~100 % in every record once its rate has a full window.
  it.effect("a kernel burning one core reads ~100 % cpu_util in every record, not 0 then a multiple", () =>
    Effect.gen(function*() {
      const { env } = yield* RealNodeAgent
      const { kid } = yield* create({ cpu: "1", mem: String(512 * MiB) })
      const started = yield* runCode(kid, "import threading\ndef burn():\n    while True: pass\nthreading.Thread(target=burn, daemon=True).start()\nprint('burning')")
      assert.include(started.text, "burning")
      const [host, port] = env.redis.split(":")
      const redis = new Redis({ host: host!, port: Number(port), lazyConnect: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => redis.disconnect()))
      yield* Effect.promise(() => redis.connect())
      const pctNow = Effect.promise(() => redis.getBuffer(kid)).pipe(
        Effect.map((b) => b === null ? undefined : (Msgpack.decode(b) as Record<string, { pct: string | null }>)["cpu_util"]?.pct),
        Effect.map((pct) => pct === undefined || pct === null ? 0 : Number(pct))
      )
      // the second distinct non-zero reading is a rate over a window the burn covers whole
      const seen: Array<number> = []
      yield* eventually(pctNow.pipe(Effect.tap((p) => Effect.sync(() => {
        if (p > 0 && seen[seen.length - 1] !== p) seen.push(p)
      }))), () => seen.length >= 2, 100)
      assert.isAtLeast(seen.length, 2, `cpu_util never had a rate over a whole window: ${JSON.stringify(seen)}`)
      // then every record the loop writes for 8 s (four cycles; the next pod sample is ≥ 10 s away)
      const readings: Array<number> = []
      for (let i = 0; i < 16; i++) {
        readings.push(yield* pctNow)
        yield* Effect.sleep("500 millis")
      }
      const all = [...seen.slice(1), ...readings]
      for (const p of all) {
        assert.isAtLeast(p, 30, `cpu_util pct readings ${JSON.stringify(all)} (first non-zero ${seen[0]})`)
        assert.isAtMost(p, 150, `cpu_util pct readings ${JSON.stringify(all)} (first non-zero ${seen[0]})`)
      }
      yield* destroy(kid)
    }))

  it.effect("get_logs returns the container's real log (the 19.06 entrypoint's lines)", () =>
    Effect.gen(function*() {
      const { client } = yield* RealNodeAgent
      const { kid } = yield* create({ cpu: "0.5", mem: String(512 * MiB) })
      const logs = yield* eventually(client.invoke(AgentRpcs.get_logs, kid), (l) => l.logs.includes("executing the main program"), 30)
      assert.include(logs.logs, "Setting up user/group: work (9001:9001)")
      assert.include(logs.logs, "Done, executing the main program...")
      yield* destroy(kid)
    }))

  it.effect("a service port answers through kube-proxy's NodePort on the node IP", () =>
    Effect.gen(function*() {
      const { node } = yield* RealNodeAgent
      const { kid, r } = yield* create({ cpu: "0.5", mem: String(512 * MiB) })
      const myapp = r.service_ports.find((p) => p.name === "myapp")
      assert.isDefined(myapp)
      const out = yield* runCode(kid, [
        "import socket, threading",
        "srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(('0.0.0.0', 8081)); srv.listen()",
        "def serve():",
        "    while True:",
        "        c, _ = srv.accept(); c.sendall(b'hello-from-the-real-node\\n'); c.close()",
        "threading.Thread(target=serve, daemon=True).start()",
        "print('listening')",
      ].join("\n"))
      assert.include(out.text, "listening")
      const greeting = yield* Effect.callback<string, Error>((resume) => {
        const s = net.connect({ host: node.ip, port: myapp!.host_port })
        let got = ""
        s.on("data", (b) => { got += b.toString() })
        s.on("end", () => resume(Effect.succeed(got)))
        s.on("error", (e) => resume(Effect.fail(e)))
      })
      assert.strictEqual(greeting, "hello-from-the-real-node\n")
      yield* destroy(kid)
    }))

  it.effect("destroying a kernel whose PID 1 ignores SIGTERM waits out the configured grace period", () =>
    Effect.gen(function*() {
      const { env, node, graceSeconds, client } = yield* RealNodeAgent
      const labels = { ...PYTHON_LABELS, "ai.backend.base-distro": "ubuntu20.04", "ai.backend.service-ports": "jupyter:http:8080" }
      const { kid } = yield* create({ cpu: "0.5", mem: String(512 * MiB) }, realImage(env, node.sigtermImage, labels))
      // PID 1 of the container ignores SIGTERM (SigIgn bit 15), the runner below it does not
      const sigIgn = yield* runCode(kid, "print('SigIgn', [l.split()[1] for l in open('/proc/1/status') if l.startswith('SigIgn')][0])")
      const mask = /SigIgn ([0-9a-f]{16})/.exec(sigIgn.text)
      assert.isNotNull(mask, sigIgn.text)
      assert.isTrue((BigInt(`0x${mask![1]}`) & (1n << 14n)) !== 0n, `PID 1 SigIgn ${mask![1]}`)
      const t0 = Date.now()
      const pod0 = yield* kernelPod(kid)
      yield* client.invoke(AgentRpcs.destroy_kernel, kid)
      yield* takeEvent("kernel_terminated", kid)
      // the kubelet SIGKILLs only when the grace period is over: a lower bound, not a race
      assert.isAtLeast(Date.now() - t0, graceSeconds * 1000 - 1000)
      assert.strictEqual(pod0.spec.terminationGracePeriodSeconds, graceSeconds)
    }))

  it.effect("an agent restart adopts a running real-node kernel (same container, same interpreter state)", () =>
    Effect.gen(function*() {
      const agent = yield* RealNodeAgent
      const { kid } = yield* create({ cpu: "0.5", mem: String(512 * MiB) })
      yield* runCode(kid, "survivor = 'before-restart'")
      const before = (yield* kernelPod(kid)).status.containerStatuses[0].containerID
      yield* agent.restart
      yield* agent.client.invoke(AgentRpcs.ping_kernel, kid)
      const out = yield* runCode(kid, "print(survivor)")
      assert.include(out.text, "before-restart")
      assert.strictEqual((yield* kernelPod(kid)).status.containerStatuses[0].containerID, before)
      yield* Queue.clear(agent.events)
      yield* destroy(kid)
    }))
})

layer(RealNodeAgent.layer({ pullSecret: "" }), { excludeTestServices: true, timeout: "300 seconds" })("an agent without the pull secret", (it) => {
  it.effect("fails create_kernel with ImagePullFailed: the real node enforces registry credentials", () =>
    Effect.gen(function*() {
      const { client, env } = yield* RealNodeAgent
      // a tag no node has pulled yet (IfNotPresent would skip the pull, and its credential check)
      const tag = `nosecret-${crypto.randomUUID().slice(0, 8)}`
      const { copyTag } = yield* Effect.promise(() => import("./images.ts"))
      yield* Effect.promise(() => copyTag(env.registry, "lablup/python:3.6-ubuntu18.04", `lablup/python:${tag}`))
      const image = realImage(env, `lablup/python:${tag}`, PYTHON_LABELS)
      const err = yield* client.invoke(AgentRpcs.create_kernel, crypto.randomUUID(), kernelConfig(env, { cpu: "0.5", mem: String(512 * MiB) }, image)).pipe(
        Effect.flip,
        Effect.orElseSucceed(() => undefined),
      )
      assert.isDefined(err, "create_kernel succeeded without registry credentials")
      const text = err!._tag === "AiozmqRemoteError" ? `${err!.excType} ${err!.repr}` : String(err)
      assert.include(text, "ImagePullFailed", text)
    }))
})
