/**
 * Paths derived from a kernel id, checked before any `mkdir` / `rm`: `<scratch-root>/<kernel id>` must
 * be a direct child of the scratch root. Kernel ids are UUIDs at the RPC edge (`AgentRpcs.KernelId`);
 * this is the second fence for every other source of an id (pod labels at adoption, future callers).
 */
import * as path from "node:path"
import { Effect, Schema } from "effect"

/** A path derived from a kernel id would leave its root. */
export class ScratchPathOutsideRoot extends Schema.TaggedError<ScratchPathOutsideRoot>()("ScratchPathOutsideRoot", {
  kernelId: Schema.String,
  root: Schema.String
}) {
  override get message(): string {
    return `the scratch dir of kernel id ${JSON.stringify(this.kernelId.slice(0, 80))} would not be a direct child of ${this.root}`
  }
}

/** `<root>/<kernelId>` when the id is one plain path component, else `undefined`. `root` must be absolute. */
export const kernelDirUnder = (root: string, kernelId: string): string | undefined => {
  if (kernelId === "" || kernelId === "." || kernelId === ".." || /[/\\\0]/.test(kernelId)) return undefined
  const base = path.resolve(root)
  const dir = path.resolve(base, kernelId)
  return path.dirname(dir) === base && path.basename(dir) === kernelId ? dir : undefined
}

/** {@link kernelDirUnder} as an effect: fails with {@link ScratchPathOutsideRoot} before anything touches the disk. */
export const kernelDir = (root: string, kernelId: string): Effect.Effect<string, ScratchPathOutsideRoot> =>
  Effect.suspend(() => {
    const dir = kernelDirUnder(root, kernelId)
    return dir === undefined ? Effect.fail(new ScratchPathOutsideRoot({ kernelId, root })) : Effect.succeed(dir)
  })

/** `<root>/<kernelId>/work`, checked like {@link kernelDir}. */
export const kernelWorkDir = (root: string, kernelId: string): Effect.Effect<string, ScratchPathOutsideRoot> =>
  Effect.map(kernelDir(root, kernelId), (dir) => path.join(dir, "work"))
