/** A V8 `.heapsnapshot` file read for the bench/heap-*.ts tools: the flat arrays and the field offsets. */
import * as fs from "node:fs"

interface Snapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: ReadonlyArray<string>
      readonly node_types: readonly [ReadonlyArray<string>, ...ReadonlyArray<unknown>]
      readonly edge_fields: ReadonlyArray<string>
      readonly edge_types: readonly [ReadonlyArray<string>, ...ReadonlyArray<unknown>]
    }
  }
  readonly nodes: ReadonlyArray<number>
  readonly edges: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

export const readHeapSnapshot = (file: string) => {
  const snap = JSON.parse(fs.readFileSync(file, "utf8")) as Snapshot
  const { meta } = snap.snapshot
  const NF = meta.node_fields.length
  return {
    /** fields per node / per edge */
    NF,
    EF: meta.edge_fields.length,
    nType: meta.node_fields.indexOf("type"),
    nName: meta.node_fields.indexOf("name"),
    nSize: meta.node_fields.indexOf("self_size"),
    nEdges: meta.node_fields.indexOf("edge_count"),
    eType: meta.edge_fields.indexOf("type"),
    eName: meta.edge_fields.indexOf("name_or_index"),
    eTo: meta.edge_fields.indexOf("to_node"),
    nodeTypes: meta.node_types[0],
    edgeTypes: meta.edge_types[0],
    edges: snap.edges,
    nodes: snap.nodes,
    strings: snap.strings,
    /** number of nodes */
    count: snap.nodes.length / NF
  }
}
