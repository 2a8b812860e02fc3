/**
 * Errors the manager can see. Each is a `Schema.TaggedError` that also knows its Python face:
 * the aiozmq error reply body is `[pythonName, pythonArgs, repr]` (spec §1.1). Names outside
 * `builtins.*` / `asyncio.*` / aiozmq's own arrive at manager 19.06 as `GenericError` and are shown
 * as `AgentError(exc_type, args, repr)`.
 *
 * Adding an error (5 lines):
 *
 *   export class ImagePullFailed extends Schema.TaggedError<ImagePullFailed>()("ImagePullFailed", {
 *     image: Schema.String, message: Schema.String
 *   }) {
 *     get python(): PythonError { return agentException("ImagePullFailed", [this.image, this.message]) }
 *   }
 *
 * and add it to the {@link DomainError} union.
 */
import { Predicate, Schema } from "effect"

/** The Python exception an error is shown as: qualified class name and `exc.args`. */
export interface PythonError {
  readonly name: string
  readonly args: ReadonlyArray<PyArg>
}

/** Values allowed in exception args (they cross the wire with msgpack). */
export type PyArg = string | number | boolean | null | ReadonlyArray<PyArg>

const AGENT_EXCEPTION_MODULE = "ai.backend.agent.exception"

/** An exception of the agent's own module `ai.backend.agent.exception.<name>`. */
const agentException = (name: string, args: ReadonlyArray<PyArg>): PythonError => ({
  name: `${AGENT_EXCEPTION_MODULE}.${name}`,
  args
})

/** The kernel id is unknown to this agent. */
export class KernelNotFound extends Schema.TaggedError<KernelNotFound>()("KernelNotFound", {
  kernelId: Schema.String
}) {
  get python(): PythonError {
    return agentException("KernelNotFound", [this.kernelId])
  }
}

/** The `create_kernel` / `restart_kernel` config cannot be used. */
export class InvalidKernelConfig extends Schema.TaggedError<InvalidKernelConfig>()("InvalidKernelConfig", {
  kernelId: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("InvalidKernelConfig", [this.kernelId, this.message])
  }
}

/** The RPC method exists in the contract but this agent has no handler for it (yet). */
export class NotImplemented extends Schema.TaggedError<NotImplemented>()("NotImplemented", {
  method: Schema.String
}) {
  get python(): PythonError {
    return agentException("NotImplemented", [`${this.method} is not implemented by this agent`])
  }
}

/** The kernel's image cannot be pulled (ErrImagePull, ImagePullBackOff, InvalidImageName…). */
export class ImagePullFailed extends Schema.TaggedError<ImagePullFailed>()("ImagePullFailed", {
  kernelId: Schema.String,
  image: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("ImagePullFailed", [this.kernelId, this.image, this.reason, this.message])
  }
}

/** The scheduler cannot place the kernel's pod (PodScheduled=False, reason Unschedulable). */
export class Unschedulable extends Schema.TaggedError<Unschedulable>()("Unschedulable", {
  kernelId: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("Unschedulable", [this.kernelId, this.message])
  }
}

/** A kernel could not be created (container config error, pod failed, API rejection…). */
export class KernelCreationFailed extends Schema.TaggedError<KernelCreationFailed>()("KernelCreationFailed", {
  kernelId: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("KernelCreationFailed", [this.kernelId, this.reason, this.message])
  }
}

/** The kernel did not become Running with an answering runner within `container.create-timeout`. */
export class KernelCreationTimeout extends Schema.TaggedError<KernelCreationTimeout>()("KernelCreationTimeout", {
  kernelId: Schema.String,
  seconds: Schema.Number,
  lastState: Schema.String
}) {
  get python(): PythonError {
    return agentException("KernelCreationTimeout", [this.kernelId, this.seconds, this.lastState])
  }
}

/** The Kubernetes API server did not answer (unreachable, timeout, 5xx). */
export class KubernetesUnavailable extends Schema.TaggedError<KubernetesUnavailable>()("KubernetesUnavailable", {
  operation: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("KubernetesUnavailable", [this.operation, this.message])
  }
}

/** The Kubernetes API refused the agent's credentials (RBAC): not transient, an operator must act. */
export class KubernetesForbidden extends Schema.TaggedError<KubernetesForbidden>()("KubernetesForbidden", {
  operation: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("KubernetesForbidden", [this.operation, this.message])
  }
}

/** A failed Kubernetes call as the manager sees it: forbidden (permissions) or unavailable (anything else). */
export type KubernetesFailure = KubernetesUnavailable | KubernetesForbidden

export const kubernetesFailure = (e: { readonly reason: string; readonly operation: string; readonly message: string }): KubernetesFailure =>
  e.reason === "Forbidden" || e.reason === "Unauthorized"
    ? new KubernetesForbidden({ operation: e.operation, message: e.message })
    : new KubernetesUnavailable({ operation: e.operation, message: e.message })

/** The kernel's runner cannot be reached or does not answer (reason: Timeout, Closed, Protocol). */
export class RunnerUnavailable extends Schema.TaggedError<RunnerUnavailable>()("RunnerUnavailable", {
  kernelId: Schema.String,
  reason: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("RunnerUnavailable", [this.kernelId, this.reason, this.message])
  }
}

/** `execute` in mode `continue`/`input` names a run this kernel does not know (finished or never started). */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", {
  kernelId: Schema.String,
  runId: Schema.String
}) {
  get python(): PythonError {
    return agentException("RunNotFound", [this.kernelId, this.runId])
  }
}

/** Arguments of a kernel RPC that cannot be used (unknown execute mode, missing run id…). */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  method: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("InvalidRequest", [this.method, this.message])
  }
}

/** A file path escapes the kernel's work dir (`..`, absolute elsewhere, symlink pointing out). */
export class PathOutsideWorkDir extends Schema.TaggedError<PathOutsideWorkDir>()("PathOutsideWorkDir", {
  kernelId: Schema.String,
  path: Schema.String
}) {
  get python(): PythonError {
    return agentException("PathOutsideWorkDir", [this.kernelId, this.path])
  }
}

/** `download_file` would produce an archive larger than `container.download-max-size`. */
export class DownloadTooLarge extends Schema.TaggedError<DownloadTooLarge>()("DownloadTooLarge", {
  kernelId: Schema.String,
  path: Schema.String,
  limit: Schema.Number
}) {
  get python(): PythonError {
    return agentException("DownloadTooLarge", [this.kernelId, this.path, this.limit])
  }
}

/** A file operation in the kernel's work dir failed (missing file, not a directory, I/O error). */
export class FileOperationFailed extends Schema.TaggedError<FileOperationFailed>()("FileOperationFailed", {
  kernelId: Schema.String,
  path: Schema.String,
  message: Schema.String
}) {
  get python(): PythonError {
    return agentException("FileOperationFailed", [this.kernelId, this.path, this.message])
  }
}

/** Every error a handler may fail with. Extend this union when adding an error above. */
export type DomainError =
  | KernelNotFound
  | InvalidKernelConfig
  | NotImplemented
  | ImagePullFailed
  | Unschedulable
  | KernelCreationFailed
  | KernelCreationTimeout
  | KubernetesUnavailable
  | KubernetesForbidden
  | RunnerUnavailable
  | RunNotFound
  | InvalidRequest
  | PathOutsideWorkDir
  | DownloadTooLarge
  | FileOperationFailed

/** Anything carrying a Python face (all {@link DomainError}s). */
export interface HasPython {
  readonly python: PythonError
}

export const hasPython = (u: unknown): u is HasPython =>
  Predicate.hasProperty(u, "python") && Predicate.isObject(u.python) &&
  Predicate.hasProperty(u.python, "name") && typeof u.python.name === "string" &&
  Predicate.hasProperty(u.python, "args") && Array.isArray(u.python.args)

// ---------------------------------------------------------------------------------------------
// Python repr, for the third element of the error body

const reprStr = (s: string): string => {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'"
  let out = quote
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === "\\") out += "\\\\"
    else if (ch === quote) out += `\\${quote}`
    else if (ch === "\n") out += "\\n"
    else if (ch === "\r") out += "\\r"
    else if (ch === "\t") out += "\\t"
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`
    else out += ch
  }
  return out + quote
}

/** Python `repr()` of a plain value (str, int, float, None, bool, list). */
const pyRepr = (v: PyArg): string => {
  if (v === null) return "None"
  if (typeof v === "boolean") return v ? "True" : "False"
  if (typeof v === "string") return reprStr(v)
  if (typeof v === "number") return String(v)
  return `[${v.map(pyRepr).join(", ")}]`
}

/** Python `repr(exc)`: `ClassName('a', 1)`. */
export const pyExceptionRepr = (error: PythonError): string => {
  const cls = error.name.slice(error.name.lastIndexOf(".") + 1)
  return `${cls}(${error.args.map(pyRepr).join(", ")})`
}

/** The aiozmq error body `[qualified name, args, repr]`. */
export const toErrorBody = (error: PythonError): readonly [string, ReadonlyArray<PyArg>, string] => [
  error.name,
  error.args,
  pyExceptionRepr(error)
]

// aiozmq's and Python's built-in exceptions the transport answers with

export const notFoundError = (method: string): PythonError => ({ name: "aiozmq.rpc.base.NotFoundError", args: [method] })
export const parametersError = (message: string): PythonError => ({
  name: "aiozmq.rpc.base.ParametersError",
  args: [message]
})
export const runtimeError = (message: string): PythonError => ({ name: "builtins.RuntimeError", args: [message] })
