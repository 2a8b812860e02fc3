/**
 * The kernel's scratch directory on the agent's side of the scratch volume: `<scratch-root>/<kid>`
 * (mode 0711: only traversable, its listing is the agent's) and `<kid>/work` (the pod's `/home/work`,
 * mode 0700), set explicitly whatever the agent's umask. With `container.kernel-uid`/`kernel-gid`
 * configured, `work` is owned by that uid/gid so the kernel's user (the entrypoint's `work`, created
 * with LOCAL_USER_ID) owns its home and no other user of the node can read it. Giving it to another
 * uid needs CAP_CHOWN (root); the simplest deployment sets kernel-uid to the agent's own uid, which
 * also lets the agent's file RPCs work without any capability.
 */
import { Effect, FileSystem, Schema } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as path from "node:path"

export class ScratchDirError extends Schema.TaggedError<ScratchDirError>()("ScratchDirError", {
  path: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

const KERNEL_DIR_MODE = 0o711
const WORK_DIR_MODE = 0o700

const step = <A>(p: string, what: string, f: Effect.Effect<A, PlatformError>) =>
  Effect.mapError(f, (cause) => new ScratchDirError({ path: p, message: `${what} ${p}: ${cause.message}`, cause }))

/** The uid/gid the 19.06 `entrypoint.sh` gives the kernel's `work` user when LOCAL_USER_ID/GROUP_ID are unset. */
const ENTRYPOINT_DEFAULT_ID = 9001

/**
 * Who must own `work`: `container.kernel-uid`/`kernel-gid` when configured; otherwise the entrypoint's
 * default 9001 when the agent can give it away (root) — without this a root agent left `/home/work`
 * root-owned and the kernel's user could not write it (the runner died at start on a real node);
 * otherwise (-1) the agent's own.
 */
export const kernelDirOwner = (
  configured: { readonly uid: number; readonly gid: number },
  agentUid: number
): { readonly uid: number; readonly gid: number } => {
  const fallback = agentUid === 0 ? ENTRYPOINT_DEFAULT_ID : -1
  return { uid: configured.uid >= 0 ? configured.uid : fallback, gid: configured.gid >= 0 ? configured.gid : fallback }
}

/**
 * What is at `p`, not following a symbolic link: "Missing", or the type. Anything but a directory
 * (a symbolic link or a file planted where a kernel's directory goes) is refused by the caller, so
 * the chmod/chown below never follow it.
 */
const typeAt = (fs: FileSystem.FileSystem, p: string) =>
  fs.lstat(p).pipe(
    Effect.map((info): string => info.type),
    Effect.catchReason("PlatformError", "NotFound", () => Effect.succeed("Missing")),
    Effect.mapError((cause) => new ScratchDirError({ path: p, message: `lstat ${p}: ${cause.message}`, cause }))
  )

const notADirectory = (p: string, type: string) =>
  new ScratchDirError({ path: p, message: `${p} exists and is not a directory (${type}): refusing to follow it` })

/**
 * Makes (or fixes up) `<kernelDir>` and `<kernelDir>/work`; returns the work dir and whether this
 * call made `<kernelDir>`. `uid`/`gid` -1 = not configured: the directories stay the agent's.
 *
 * On the critical path of every create: the calls go out in three rounds (both paths checked
 * together, the mkdir, then modes and owner together), each a trip through the thread pool and the
 * event loop, which on a busy agent costs far more than the system call.
 */
export const prepareScratchDir = (kernelDir: string, owner: { readonly uid: number; readonly gid: number }) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const work = path.join(kernelDir, "work")
    // both checked before anything is made; the kernel's path is reported first
    const [dirType, workType] = yield* Effect.all([typeAt(fs, kernelDir), typeAt(fs, work)], { concurrency: 2 })
    if (dirType !== "Directory" && dirType !== "Missing") return yield* notADirectory(kernelDir, dirType)
    if (workType !== "Directory" && workType !== "Missing") return yield* notADirectory(work, workType)
    yield* step(work, "create", fs.makeDirectory(work, { recursive: true, mode: WORK_DIR_MODE }))
    // mode and owner are separate attributes (and 0700/0711 carry no set-id bits a chown could clear)
    const chown = owner.uid >= 0 || owner.gid >= 0
    yield* Effect.all([
      step(kernelDir, "chmod", fs.chmod(kernelDir, KERNEL_DIR_MODE)),
      chown
        ? step(work, "chown", fs.chown(work, owner.uid, owner.gid)).pipe(
          Effect.mapError((e) =>
            new ScratchDirError({
              path: work,
              message: `cannot give the scratch dir to container.kernel-uid ${owner.uid} / kernel-gid ${owner.gid} (${e.message}): ` +
                "run the agent as that uid, or grant it CAP_CHOWN",
              cause: e
            })
          )
        )
        : Effect.void,
      step(work, "chmod", fs.chmod(work, chown ? WORK_DIR_MODE : 0o755))
    ], { concurrency: 3, discard: true })
    return { work, madeKernelDir: dirType === "Missing" }
  })
