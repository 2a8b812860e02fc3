// kubernetes.runner-address = "pod-ip" against the REAL node (containerd + CNI bridge + kubelet +
// kube-proxy 1.20, the real 19.06 runner): the agent process on this host reaches the runner at the
// pod's address on the CNI bridge, no NodePort exists for 2000/2001, the service port still answers
// through kube-proxy's NodePort at the reported kernel_host; an agent restarted in node-port mode
// adopts the kernel as recorded (same container, same interpreter state).
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as net from "node:net"
import { AgentRpcs } from "../../../src/rpc/AgentRpcs.ts"
import { kernelConfig, kernelPod, kubectlJson, RealNodeAgent, runCode, takeEvent } from "./RealNodeSupport.ts"
import { POD_CIDR } from "./node.ts"

const MiB = 1024 * 1024

const readLine = (host: string, port: number) =>
  Effect.callback<string, Error>((resume) => {
    const s = net.connect({ host, port })
    let got = ""
    s.on("data", (b) => { got += b.toString() })
    s.on("end", () => resume(Effect.succeed(got)))
    s.on("error", (e) => resume(Effect.fail(e)))
  })

layer(RealNodeAgent.layer({ runnerAddress: "pod-ip" }), { excludeTestServices: true, timeout: "420 seconds" })("a pod-ip agent on the real node", (it) => {
  it.effect("runs code through podIP:2000/2001 with no runner NodePort; service ports keep their NodePorts; a node-port restart adopts it", () =>
    Effect.gen(function*() {
      const agent = yield* RealNodeAgent
      const { client, env, kubeNs, node } = agent
      const kid = crypto.randomUUID()
      const r = yield* client.invoke(AgentRpcs.create_kernel, kid, kernelConfig(env, { cpu: "0.5", mem: String(512 * MiB) }))
      const pod = yield* kernelPod(kid)
      // the pod's address is on the node's CNI bridge, not the node's
      const prefix = POD_CIDR.split(".").slice(0, 3).join(".") + "."
      assert.isTrue(String(pod.status.podIP).startsWith(prefix), `podIP ${pod.status.podIP} outside ${POD_CIDR}`)
      assert.strictEqual(r.kernel_host, node.ip)
      assert.deepStrictEqual([r.repl_in_port, r.repl_out_port], [2000, 2001])
      // no NodePort for the runner: only the image's service ports
      const svc = yield* kubectlJson(env, ["-n", kubeNs, "get", "service", `kernel-${kid}`])
      assert.deepStrictEqual((svc.spec.ports as Array<{ port: number }>).map((p) => p.port), [8080, 8081])
      assert.deepStrictEqual(r.service_ports.map((p) => p.container_port), [8080, 8081])
      // the real runner answers at the pod address: query code runs, state persists
      const out = yield* runCode(kid, "import os\nsurvivor = 'before-restart'\nprint(6*7, os.getcwd())")
      assert.strictEqual(out.status, "finished", out.text)
      assert.include(out.text, "42 /home/work", out.text)
      // a service port still answers at kernel_host:host_port (kube-proxy's NodePort)
      const myapp = r.service_ports.find((p) => p.name === "myapp")!
      const served = yield* runCode(kid, [
        "import socket, threading",
        "srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(('0.0.0.0', 8081)); srv.listen()",
        "def serve():",
        "    while True:",
        "        c, _ = srv.accept(); c.sendall(b'hello-pod-ip\\n'); c.close()",
        "threading.Thread(target=serve, daemon=True).start()",
        "print('listening')",
      ].join("\n"))
      assert.include(served.text, "listening")
      assert.strictEqual(yield* readLine(r.kernel_host, myapp.host_port), "hello-pod-ip\n")

      // the agent comes back in node-port mode: the kernel is adopted at its recorded pod address
      const container = pod.status.containerStatuses[0].containerID
      yield* agent.restartWithRunnerAddress("node-port")
      yield* client.invoke(AgentRpcs.ping_kernel, kid)
      const after = yield* runCode(kid, "print(survivor)")
      assert.include(after.text, "before-restart", after.text)
      assert.strictEqual((yield* kernelPod(kid)).status.containerStatuses[0].containerID, container)

      yield* client.invoke(AgentRpcs.destroy_kernel, kid)
      assert.strictEqual((yield* takeEvent("kernel_terminated", kid)).args[1], "user-requested")
    }))
})
