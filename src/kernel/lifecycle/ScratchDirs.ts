/**
 * Concern: the kernels' scratch directories on the agent's side of the scratch volume, on Effect's
 * `FileSystem`. Every path comes from `ScratchPath` (a kernel id is one plain component directly
 * under `container.scratch-root`, checked before anything touches the disk) and `ScratchDir`
 * (modes 0711/0700, owner, never following a symbolic link planted at the kernel's path).
 */
import { Context, Effect, FileSystem, Layer } from "effect"
import * as path from "node:path"
import { AgentConfig } from "../../config/AgentConfig.ts"
import { KernelCreationFailed } from "../../domain/Errors.ts"
import { kernelDirOwner, prepareScratchDir } from "../../kube/ScratchDir.ts"
import { kernelDir, kernelWorkDir } from "../ScratchPath.ts"

export interface ScratchDirsShape {
  /** Absolute `container.scratch-root`. */
  readonly root: string
  /** `<root>/<kid>/work` (the pod's `/home/work`), checked. */
  readonly workDir: (kernelId: string) => Effect.Effect<string, KernelCreationFailed>
  /**
   * Makes (or fixes up) the kernel's directories; `true` when this call made the kernel's directory
   * (a create that fails removes only what it made).
   */
  readonly prepare: (kernelId: string) => Effect.Effect<boolean, KernelCreationFailed>
  /** Removes the kernel's directory; a failure is logged, never raised. */
  readonly remove: (kernelId: string) => Effect.Effect<void>
}

const scratchFailure = (kernelId: string) => (e: { readonly message: string }) =>
  new KernelCreationFailed({ kernelId, reason: "ScratchDir", message: e.message })

export class ScratchDirs extends Context.Service<ScratchDirs, ScratchDirsShape>()("bai-agent/kernel/lifecycle/ScratchDirs") {
  static readonly layer = Layer.effect(
    ScratchDirs,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      const fs = yield* FileSystem.FileSystem
      const root = path.resolve(config.container["scratch-root"])
      // modes 0711 / 0700, owned by the kernel's user (src/kube/ScratchDir.ts)
      const owner = kernelDirOwner({ uid: config.container["kernel-uid"], gid: config.container["kernel-gid"] }, process.getuid?.() ?? -1)

      const prepare = (kernelId: string) =>
        Effect.gen(function*() {
          const dir = yield* kernelDir(root, kernelId)
          const { madeKernelDir } = yield* prepareScratchDir(dir, owner)
          return madeKernelDir
        }).pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.mapError(scratchFailure(kernelId)))

      const remove = (kernelId: string) =>
        kernelDir(root, kernelId).pipe(
          Effect.flatMap((dir) => fs.remove(dir, { recursive: true, force: true })),
          Effect.catch((e) => Effect.logWarning(`cannot remove the scratch dir of ${kernelId}: ${e.message}`))
        )

      return ScratchDirs.of({
        root,
        workDir: (kernelId) => kernelWorkDir(root, kernelId).pipe(Effect.mapError(scratchFailure(kernelId))),
        prepare,
        remove
      })
    })
  )
}
