/** `agent.pid-file`: written once start-up is done, removed when the scope closes. */
import { Effect, FileSystem, Layer } from "effect"

export const layer = (file: string, pid: number) =>
  file === "/dev/null" || file === ""
    ? Layer.empty
    : Layer.effectDiscard(
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        yield* Effect.acquireRelease(
          fs.writeFileString(file, `${pid}\n`).pipe(
            Effect.tap(() => Effect.logDebug(`pid ${pid} written to ${file}`))
          ),
          () => fs.remove(file).pipe(Effect.ignore)
        )
      })
    )
