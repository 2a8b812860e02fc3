/**
 * Test support for the file RPCs against a hostile kernel: a host-side process playing the kernel
 * that swaps entries of its work dir for symlinks pointing out.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Effect } from "effect"

/**
 * A host-side process swapping, as fast as it can, `f` between a regular file and a symlink to the
 * canary, and `d` between a directory and a symlink to the outside dir (renameat2 RENAME_EXCHANGE:
 * the name always exists, it just changes what it is); `d` itself holds `link`, a symlink to the
 * canary (a directory download must store it as a link, never follow it). Prints "swapping" once it runs; killed with
 * the scope.
 */
export const SWAPPER = `
import ctypes, os, sys
work, outside = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
def j(n): return os.path.join(work, n).encode()
def exchange(a, b):
    if libc.renameat2(-100, j(a), -100, j(b), 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2 " + a + " " + b)
with open(os.path.join(work, "f"), "w") as fh: fh.write("inside")
os.makedirs(os.path.join(work, "d"), exist_ok=True)
# inside the directory too: a download of d that followed this link would carry the canary
os.symlink(os.path.join(outside, "canary"), os.path.join(work, "d", "link"))
os.symlink(os.path.join(outside, "canary"), os.path.join(work, ".l"))
os.symlink(outside, os.path.join(work, ".dl"))
print("swapping", flush=True)
n = 0
canary = os.path.join(outside, "canary")
while True:
    if not (os.path.islink(j("f")) or os.path.islink(j(".l"))):
        # an upload replaced the link: put it back
        os.unlink(j(".l")); os.symlink(canary, j(".l"))
    exchange("f", ".l")
    exchange("d", ".dl")
    n += 1
`
/** Starts {@link SWAPPER} on `work` and waits until it swaps; killed (SIGKILL) with the scope. */
export const swapper = (work: string, outside: string) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess, Error>((resume) => {
      const child = spawn("python3", ["-c", SWAPPER, work, outside], { stdio: ["ignore", "pipe", "inherit"] })
      child.stdout.once("data", () => resume(Effect.succeed(child)))
      child.once("exit", (code) => resume(Effect.fail(new Error(`the swapper exited (${code}) before swapping`))))
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )
