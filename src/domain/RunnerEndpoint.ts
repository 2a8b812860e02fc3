/**
 * Where a kernel's runner is reached: the REPL-in/REPL-out ports on a host (the node's address and
 * NodePorts, or the pod's own address and 2000/2001 with `kubernetes.runner-address = "pod-ip"`).
 * Computed by kube/KernelObjects.ts, dialled by kernel/runner/.
 */
export interface RunnerEndpoint {
  readonly host: string
  readonly replInPort: number
  readonly replOutPort: number
}
