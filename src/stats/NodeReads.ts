/**
 * Which nodes' kubelet summaries a stats cycle reads, and which summaries it counts (StatsCollector's
 * read schedule; issue 17 goal 4).
 *
 * A summary holds cAdvisor's last samples, taken every 10 s for the node and every 10–20 s for each pod
 * (measured on the real node, each pod on its own ticker): a read every 2 s mostly returns the samples
 * the last one did. So each node is read every `summaryIntervalMs` (`stats.summary-interval`, 10 s): its
 * turn comes round every `summaryIntervalMs / nominalMs` cycles, nodes assigned to the cycles in turn as
 * they first appear (the reads spread evenly); a node not read yet, and one whose last read failed, is
 * read every cycle, and a node a pod was just placed on (the caller's `urgent`) in the next one. The
 * other nodes count with their last summary, whose samples (at the kubelet's times: StatFormat) change
 * nothing (a summary holds only the pods of the agent's kernels' namespaces: the reads ask for those).
 * Nodes no longer listed are forgotten.
 *
 * Mutable, for one cycle at a time (the collector's loop runs one cycle at a time).
 */
import type { NodeResult } from "./StatFormat.ts"

/** The summary interval in millis: `summarySeconds` (default: the cycle), kept between the cycle and half the TTL. */
export const summaryIntervalMsOf = (intervalSeconds: number, ttlSeconds: number, summarySeconds: number | undefined): number =>
  Math.round(Math.max(intervalSeconds, Math.min(summarySeconds ?? intervalSeconds, ttlSeconds / 2)) * 1000)

export class NodeReads {
  /** The cycles a node's turn takes to come round. */
  private readonly turnCycles: number
  /** Per listed node: its last successful read (the kernels' namespaces' pods only). */
  private readonly kept = new Map<string, NodeResult>()
  /** Per listed node: the cycle its turn comes in, modulo `turnCycles`. */
  private readonly turnOf = new Map<string, number>()
  private nextTurn = 0
  private cycle = 0

  constructor(summaryIntervalMs: number, nominalMs: number) {
    this.turnCycles = Math.max(1, Math.round(summaryIntervalMs / nominalMs))
  }

  /** The nodes of `nodes` to read in this cycle (and counts the cycle); `urgent` ones whatever their turn. */
  due(nodes: ReadonlyArray<string>, urgent: ReadonlySet<string> = new Set()): Array<string> {
    const cycle = this.cycle++
    const due: Array<string> = []
    for (const node of nodes) {
      let turn = this.turnOf.get(node)
      if (turn === undefined) this.turnOf.set(node, turn = this.nextTurn++ % this.turnCycles)
      if (!this.kept.has(node) || cycle % this.turnCycles === turn || urgent.has(node)) due.push(node)
    }
    return due
  }

  /**
   * Takes this cycle's reads and returns what the cycle counts, in the order of `nodes`: a node read
   * this cycle as read (a failure: no summary; a success: kept), the others with their last summary.
   */
  results(nodes: ReadonlyArray<string>, read: ReadonlyArray<NodeResult>): Array<NodeResult> {
    const failed = new Map<string, NodeResult>()
    for (const r of read) {
      if (r.summary === undefined) {
        this.kept.delete(r.node)
        failed.set(r.node, r)
      } else {
        this.kept.set(r.node, r)
      }
    }
    const listed = new Set(nodes)
    for (const node of this.kept.keys()) if (!listed.has(node)) this.kept.delete(node)
    for (const node of this.turnOf.keys()) if (!listed.has(node)) this.turnOf.delete(node)
    const results: Array<NodeResult> = []
    for (const node of nodes) {
      const r = failed.get(node) ?? this.kept.get(node)
      if (r !== undefined) results.push(r)
    }
    return results
  }
}
