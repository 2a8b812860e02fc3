/**
 * Pure parts of the manager-26 layer: the 19.06 → 26.x event translation (heartbeat shape, held
 * agent_started, session ids), and the KernelCreationConfig mapping
 * (the 26.x argument binding and Schemas: Contract26.test.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { AgentEvents, type AgentInfo } from "../../src/manager/EventPublisher.ts"
import * as Bai from "../../src/codec/bai/BaiMsgpack.ts"
import { creationInfo26, kernelConfig1906 } from "../../src/manager26/Handlers.ts"
import { CallosumFailure } from "../../src/rpc/callosum/CallosumServer.ts"
import { EMPTY_IMAGES, translate } from "../../src/manager26/StreamEvents.ts"

const info: AgentInfo = {
  ip: "10.0.0.5",
  region: "local",
  addr: "tcp://10.0.0.5:6001",
  resource_slots: { cpu: ["count", "4"], mem: ["bytes", "8589934592"] },
  version: "0.1.0",
  compute_plugins: { cpu: { version: "0.1.0" } },
  images: new Uint8Array([1]),
  scaling_group: "default"
}
const ctx = { sessionOf: (k: string) => `sess-of-${k}`, architecture: "x86_64", publicKey: null, holdStarted: false }

describe("event translation", () => {
  it("agent_started is held until after the first agent_heartbeat", () => {
    const started = translate(AgentEvents.instanceStarted(), ctx)
    assert.deepStrictEqual(started.out, [])
    assert.isTrue(started.holdStarted)
    const first = translate(AgentEvents.instanceHeartbeat(info), { ...ctx, holdStarted: true })
    assert.deepStrictEqual(first.out.map((e) => e.name), ["agent_heartbeat", "agent_started"])
    assert.deepStrictEqual(first.out[1]!.args, ["self-started"])
    const second = translate(AgentEvents.instanceHeartbeat(info), { ...ctx, holdStarted: first.holdStarted })
    assert.deepStrictEqual(second.out.map((e) => e.name), ["agent_heartbeat"])
  })

  it("agent_heartbeat carries every AgentInfo field; slots as a ResourceSlot pickle (ext 8)", () => {
    const hb = translate(AgentEvents.instanceHeartbeat(info), ctx).out[0]!.args[0] as Record<string, unknown>
    assert.deepStrictEqual(Object.keys(hb).sort(), [
      "addr", "architecture", "auto_terminate_abusing_kernel", "available_resource_slots", "compute_plugins", "images",
      "images_opts", "ip", "public_host", "public_key", "region", "scaling_group", "slot_key_and_units", "version"
    ])
    assert.deepStrictEqual(hb["slot_key_and_units"], { cpu: "count", mem: "bytes" })
    assert.deepStrictEqual(hb["images"], EMPTY_IMAGES)
    assert.deepStrictEqual([...EMPTY_IMAGES], [0x78, 0x9c, 0x9b, 0x00, 0x00, 0x00, 0x91, 0x00, 0x91])
    const slots = hb["available_resource_slots"] as Bai.ExtValue
    assert.strictEqual(slots.code, 8)
    // the args tuple encodes and reads back with the manager's ext codec
    const back = Bai.decode(Bai.encode([hb])) as Array<Record<string, unknown>>
    assert.strictEqual((back[0]!["available_resource_slots"] as Bai.ExtValue).code, 8)
  })

  it("kernel events get their session id; the 1-argument kernel_started is left to create_kernels", () => {
    assert.deepStrictEqual(translate(AgentEvents.kernelTerminated("k1", "user-requested", 0), ctx).out, [
      { name: "kernel_terminated", args: ["k1", "sess-of-k1", "user-requested", 0] }
    ])
    assert.deepStrictEqual(translate(AgentEvents.kernelCreating("k1"), ctx).out, [
      { name: "kernel_creating", args: ["k1", "sess-of-k1", "", {}] }
    ])
    assert.deepStrictEqual(translate(AgentEvents.kernelStarted("k1"), ctx).out, [])
    assert.deepStrictEqual(translate(AgentEvents.instanceTerminated("shutdown"), ctx).out, [
      { name: "agent_terminated", args: ["shutdown"] }
    ])
    const passthrough = { name: "image_pull_finished", args: ["img", "i-a", 1, null] }
    assert.deepStrictEqual(translate(passthrough, ctx).out, [passthrough])
  })
})

describe("create_kernels config and creation info", () => {
  it.effect("maps a 26.x KernelCreationConfig onto the 19.06 config; refuses vfolder mounts for now", () =>
    Effect.gen(function*() {
      const { config, slots } = yield* kernelConfig1906("k1", {
        image: {
          canonical: "registry.local/python:3.9",
          digest: "sha256:abc",
          registry: { name: "registry.local", url: "http://registry.local", username: null, password: null },
          labels: { "ai.backend.service-ports": "jupyter:http:8080" },
          auto_pull: "digest"
        },
        resource_slots: { cpu: new Bai.PyDecimal("1"), mem: "1073741824" },
        environ: { BACKENDAI_KERNEL_ID: "k1" },
        mounts: [],
        idle_timeout: 600
      })
      assert.deepStrictEqual(slots, { cpu: "1", mem: "1073741824" })
      assert.strictEqual((config["image"] as Record<string, unknown>)["canonical"], "registry.local/python:3.9")
      assert.strictEqual(config["idle_timeout"], 600)
      const mounted = yield* Effect.exit(kernelConfig1906("k1", {
        image: { canonical: "x/y:z" },
        resource_slots: {},
        mounts: [{ name: "v" }]
      }))
      assert.isTrue(Exit.isFailure(mounted))
      // slot amounts are decimals: a Decimal, a str or a finite number; anything else is refused
      for (const bad of [[1], null, Number.NaN, Number.POSITIVE_INFINITY, { v: 1 }]) {
        const refused = yield* Effect.exit(kernelConfig1906("k1", { image: { canonical: "x/y:z" }, resource_slots: { cpu: bad } }))
        assert.deepStrictEqual(refused, Exit.fail(new CallosumFailure({ exception: "TypeError", message: "resource_slots.cpu must be a decimal" })), String(bad))
      }
      const numeric = yield* kernelConfig1906("k1", { image: { canonical: "x/y:z" }, resource_slots: { cpu: 2, mem: new Bai.PyDecimal("1e9") } })
      assert.deepStrictEqual(numeric.slots, { cpu: "2", mem: "1e9" })
    }))

  it("creation info has the 26.x service-port shape and resource_spec.allocations", () => {
    const ci = creationInfo26(
      {
        id: "k1",
        kernel_host: "10.0.0.7",
        repl_in_port: 30001,
        repl_out_port: 30002,
        stdin_port: 0,
        stdout_port: 0,
        service_ports: [{ name: "jupyter", protocol: "http", container_port: 8080, host_port: 30003 }],
        container_id: "uid-1",
        resource_spec: "{}"
      },
      { cpu: "1", mem: "1073741824" },
      { agentAddr: "tcp://10.0.0.5:6001", scalingGroup: "default" }
    )
    assert.deepStrictEqual(ci.service_ports, [{ name: "jupyter", protocol: "http", container_ports: [8080], host_ports: [30003], is_inference: false }])
    assert.deepStrictEqual(ci.resource_spec.allocations, { cpu: { cpu: { "0": "1" } }, mem: { mem: { root: "1073741824" } } })
  })
})
