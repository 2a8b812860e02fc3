/**
 * What the kernel services answer, in the shape the manager receives it (spec §2.1, §2.3, §8.4):
 * the results of create/restart/execute/start_service/list_files/get_logs as Schemas. Wire-independent
 * (the contract in rpc/ encodes them; the 26.x handlers translate them), so the kernel layer needs no
 * import from rpc/.
 */
import { Schema } from "effect"

/** A Python `dict` with str keys (what the msgpack decoder produces for a map). */
const Dict = Schema.Record(Schema.String, Schema.Unknown)

/** A service port of a kernel (K1 shape, spec §2.3). */
export const ServicePort = Schema.Struct({
  name: Schema.String,
  protocol: Schema.String,
  container_port: Schema.Int,
  host_port: Schema.Int
})
export type ServicePort = typeof ServicePort.Type

/** `create_kernel` result (spec §2.3). */
export const CreateKernelResult = Schema.Struct({
  id: Schema.String,
  kernel_host: Schema.String,
  repl_in_port: Schema.Int,
  repl_out_port: Schema.Int,
  stdin_port: Schema.Int,
  stdout_port: Schema.Int,
  service_ports: Schema.Array(ServicePort),
  container_id: Schema.String,
  resource_spec: Schema.String
})
export type CreateKernelResult = typeof CreateKernelResult.Type

/** `restart_kernel` result (D19). */
export const RestartKernelResult = Schema.Struct({
  container_id: Schema.String,
  repl_in_port: Schema.Int,
  repl_out_port: Schema.Int,
  stdin_port: Schema.Int,
  stdout_port: Schema.Int,
  service_ports: Schema.Array(ServicePort)
})
export type RestartKernelResult = typeof RestartKernelResult.Type

/** `execute` result (spec §8.4); API v1 fields are optional. */
export const ExecuteResult = Schema.Struct({
  runId: Schema.String,
  status: Schema.Literals(["continued", "waiting-input", "clean-finished", "build-finished", "finished", "exec-timeout"]),
  exitCode: Schema.NullOr(Schema.Int),
  options: Schema.NullOr(Dict),
  files: Schema.Array(Schema.Unknown),
  console: Schema.optionalKey(Schema.Array(Schema.Unknown)),
  stdout: Schema.optionalKey(Schema.String),
  stderr: Schema.optionalKey(Schema.String),
  media: Schema.optionalKey(Schema.Array(Schema.Unknown)),
  html: Schema.optionalKey(Schema.Array(Schema.Unknown))
})
export type ExecuteResult = typeof ExecuteResult.Type

/** `start_service` result. */
export const StartServiceResult = Schema.Struct({
  status: Schema.Literals(["started", "running", "failed"]),
  error: Schema.optionalKey(Schema.String)
})
export type StartServiceResult = typeof StartServiceResult.Type

/** `list_files` result: `files` is a JSON text of `[{mode,size,ctime,mtime,atime,filename}]`. */
export const ListFilesResult = Schema.Struct({
  files: Schema.String,
  errors: Schema.String,
  abspath: Schema.String
})
export type ListFilesResult = typeof ListFilesResult.Type

/** `get_logs` result. */
export const GetLogsResult = Schema.Struct({ logs: Schema.String })
export type GetLogsResult = typeof GetLogsResult.Type
