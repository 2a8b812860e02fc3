// A minimal agent-side kernel-runner client for tests: PUSH to the repl-in port, PULL from repl-out,
// two-frame messages (spec §8.1).
import * as zmq from "zeromq"

export interface RunnerRecord { readonly type: string; readonly data: Buffer }

export class RunnerClient {
  private readonly push = new zmq.Push({ linger: 50 })
  private readonly pull = new zmq.Pull({ linger: 50 })
  constructor(host: string, replInPort: number, replOutPort: number, timeoutMs = 15_000) {
    this.push.connect(`tcp://${host}:${replInPort}`)
    this.pull.connect(`tcp://${host}:${replOutPort}`)
    this.pull.receiveTimeout = timeoutMs
    this.push.sendTimeout = timeoutMs
  }

  send(type: string, payload: string | Buffer = ""): Promise<void> { return this.push.send([type, payload]) }

  /** Receives records until one whose type is in `until` (inclusive). */
  collect(until: ReadonlyArray<string>): Promise<Array<RunnerRecord>> {
    return this.collectUntil((recs) => until.includes(recs[recs.length - 1]!.type))
  }

  /** Receives records until `done(all records so far)` holds (output may arrive in any chunking). */
  async collectUntil(done: (records: ReadonlyArray<RunnerRecord>) => boolean): Promise<Array<RunnerRecord>> {
    const out: Array<RunnerRecord> = []
    for (;;) {
      const [type, data] = await this.pull.receive()
      out.push({ type: type!.toString(), data: data ?? Buffer.alloc(0) })
      if (done(out)) return out
    }
  }

  close(): void { this.push.close(); this.pull.close() }
}

export const textOf = (records: ReadonlyArray<RunnerRecord>, type: string): string =>
  records.filter((r) => r.type === type).map((r) => r.data.toString("utf8")).join("")

export const exitCodeOf = (records: ReadonlyArray<RunnerRecord>): number =>
  (JSON.parse(records[records.length - 1]!.data.toString()) as { exitCode: number }).exitCode
