/**
 * The Schema of agent.toml (spec §4.4, the keys that apply to Kubernetes, plus `[kubernetes]`,
 * `[stats]` and `[metrics]`). TOML key names are kept as they are (kebab-case) so that the decoded
 * value reads like the file an operator wrote.
 */
import { Effect, Schema, SchemaGetter, SchemaIssue } from "effect"
import { parseBinarySize, parseDurationSeconds, parseHostPort } from "../domain/Units.ts"
import { parseAllowedPeers } from "./Allowlist.ts"

const StringOrNumber = Schema.Union([Schema.String, Schema.Number])

const invalid = (expected: string, input: unknown) =>
  new SchemaIssue.InvalidValue({ message: `expected ${expected}` }, input)

/** Seconds; accepts a number of seconds or a string with a unit ("3s", "500ms", "2m"). */
export const Duration = StringOrNumber.pipe(
  Schema.decodeTo(Schema.Number, {
    decode: SchemaGetter.transformEffect((x: string | number) => {
      const v = parseDurationSeconds(x)
      return v === undefined
        ? Effect.fail(invalid(`a duration such as 3, "3s", "500ms" or "2m"`, x))
        : Effect.succeed(v)
    }),
    encode: SchemaGetter.transform((n: number) => n)
  })
)

/** A duration that must be above zero (loop intervals: zero would make the loop spin). */
export const PositiveDuration = Duration.check(Schema.makeFilter((n) => n > 0 || "expected a duration above zero"))

/** Bytes; accepts an integer or a binary size string ("1G", "512m", "10Gi"). */
export const BinarySize = StringOrNumber.pipe(
  Schema.decodeTo(Schema.Number, {
    decode: SchemaGetter.transformEffect((x: string | number) => {
      const v = parseBinarySize(x)
      return v === undefined
        ? Effect.fail(invalid(`a binary size such as 1073741824, "1G", "512m" or "10Gi"`, x))
        : Effect.succeed(v)
    }),
    encode: SchemaGetter.transform((n: number) => n)
  })
)

const Port = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 }))

export const HostPortStruct = Schema.Struct({ host: Schema.String, port: Port })
export type HostPort = typeof HostPortStruct.Type

/** `{host = "…", port = N}` inline table, or a `"host:port"` string. */
export const HostPort = Schema.Union([Schema.String, Schema.Struct({ host: Schema.optionalKey(Schema.String), port: Port })]).pipe(
  Schema.decodeTo(HostPortStruct, {
    decode: SchemaGetter.transformEffect((x: string | { readonly host?: string; readonly port: number }) => {
      if (typeof x !== "string") return Effect.succeed({ host: x.host ?? "", port: x.port })
      const v = parseHostPort(x)
      return v === undefined ? Effect.fail(invalid(`"host:port" or {host = "…", port = N}`, x)) : Effect.succeed(v)
    }),
    encode: SchemaGetter.transform((a: HostPort) => a)
  })
)

const LogLevel = Schema.Literals(["NOTSET", "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"])

/** Field with a default used when the key is absent. */
const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"]) =>
  schema.pipe(Schema.withDecodingDefaultKey(Effect.succeed(value)))

/** A section that may be omitted entirely (all its keys have defaults). */
const section = <F extends Schema.Struct.Fields>(fields: F) =>
  Schema.Struct(fields).pipe(
    // every field of a section has its own default, so an empty table is a valid encoded section
    Schema.withDecodingDefaultKey(Effect.succeed({} as Schema.Struct<F>["Encoded"]))
  )

export const EtcdSection = Schema.Struct({
  namespace: Schema.String.check(Schema.isNonEmpty()),
  addr: withDefault(HostPort, { host: "127.0.0.1", port: 2379 }),
  user: withDefault(Schema.String, ""),
  password: withDefault(Schema.String, "")
})

export const AgentSection = section({
  "rpc-listen-addr": withDefault(HostPort, { host: "", port: 6001 }),
  id: Schema.optionalKey(Schema.String.check(Schema.isNonEmpty())),
  region: Schema.optionalKey(Schema.String),
  "instance-type": Schema.optionalKey(Schema.String),
  "scaling-group": withDefault(Schema.String, "default"),
  "pid-file": withDefault(Schema.String, "/dev/null"),
  /** Largest RPC frame accepted from the manager (upload_file carries whole files). */
  "rpc-max-frame-size": withDefault(BinarySize, "64m"),
  /** How long in-flight RPCs may take to finish when the agent stops. */
  "shutdown-grace": withDefault(Duration, "10s"),
  /**
   * Manager addresses (IPs or CIDR blocks) allowed to connect to the RPC port (ZeroMQ ZAP); empty =
   * everyone. The 19.06 protocol has no authentication: see docs/security.md.
   */
  "rpc-allowed-peers": withDefault(
    Schema.Array(Schema.String).check(Schema.makeFilter((entries) => {
      const parsed = parseAllowedPeers(entries)
      return typeof parsed === "string" ? `expected IP addresses or CIDR blocks: ${parsed}` : true
    })),
    []
  ),
  /** RPC requests one manager connection may have in flight; more are refused at once. */
  "rpc-max-inflight": withDefault(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), 1024),
  /**
   * Which manager line drives the agent: "19.06" (aiozmq RPC, ZeroMQ PUSH events, instance_heartbeat)
   * or "26" (Callosum RPC, Redis-stream events in DB 4, agent_heartbeat; docs/manager-26.md). The
   * kernel lifecycle, runner client, stats, Kubernetes model and etcd layout are the same for both.
   */
  "manager-contract": withDefault(Schema.Literals(["19.06", "26"]), "19.06"),
  /**
   * Manager 26 only: CURVE on the RPC socket (docs/manager-26.md). The manager's public certificate
   * and the agent's secret certificate (pyzmq format), named as the Python agent names them; both or
   * neither.
   */
  "rpc-auth-manager-public-key": Schema.optionalKey(Schema.String.check(Schema.isNonEmpty())),
  "rpc-auth-agent-keypair": Schema.optionalKey(Schema.String.check(Schema.isNonEmpty()))
})

export const ContainerSection = section({
  "kernel-uid": withDefault(Schema.Int, -1),
  "kernel-gid": withDefault(Schema.Int, -1),
  /** Reported kernel_host; empty = the pod's status.hostIP. */
  "kernel-host": withDefault(Schema.String, ""),
  "port-range": withDefault(
    Schema.Tuple([Port, Port]).check(Schema.makeFilter(([lo, hi]) => lo <= hi || "the lower bound must not exceed the upper bound")),
    [30000, 31000]
  ),
  "sandbox-type": withDefault(Schema.Literals(["docker", "jail"]), "docker"),
  "jail-args": withDefault(Schema.Array(Schema.String), []),
  "scratch-type": withDefault(Schema.Literals(["hostdir", "memory"]), "hostdir"),
  /** Where the agent sees the kernels' scratch dirs (`<scratch-root>/<kid>/work` = the pod's /home/work). */
  "scratch-root": withDefault(Schema.String, "./scratches"),
  "scratch-size": withDefault(BinarySize, 0),
  /** Deadline for a kernel to become Running with a runner that answers. */
  "create-timeout": withDefault(Duration, "5m"),
  /** Cap of download_file's tar archive. */
  "download-max-size": withDefault(BinarySize, "1m")
})

const volumeFields = {
  type: Schema.Literals(["hostPath", "nfs"]),
  /** hostPath directory on the nodes, or the NFS export path. */
  path: Schema.String.check(Schema.isNonEmpty()),
  server: Schema.optionalKey(Schema.String),
  "read-only": Schema.optionalKey(Schema.Boolean)
}
const nfsNeedsServer = Schema.makeFilter((v: { readonly type: string; readonly server?: string | undefined }) =>
  v.type !== "nfs" || (v.server !== undefined && v.server !== "") || "an nfs volume needs `server`"
)
const Volume = Schema.Struct(volumeFields).check(nfsNeedsServer)

/** The krunner volume, plus the `X.Y` of its env's `lib/pythonX.Y` (where the runner package is mounted). */
const KrunnerVolume = Schema.Struct({
  ...volumeFields,
  "python-version": withDefault(
    Schema.String.check(Schema.makeFilter((v: string) => /^[0-9]+\.[0-9]+$/.test(v) || "expected a Python version X.Y such as \"3.6\"")),
    "3.6"
  )
}).check(nfsNeedsServer)

/** An IPv4/IPv6 CIDR (or a bare address, taken as /32 or /128). */
const Cidr = Schema.String.check(Schema.makeFilter((v: string) =>
  /^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)(?:\/[0-9]{1,3})?$/.test(v) || "expected an address or CIDR such as \"10.0.0.5/32\""
))

const RunnerAddressSetting = Schema.String.pipe(
  Schema.decodeTo(Schema.Literals(["node-port", "pod-ip"]), {
    decode: SchemaGetter.transformEffect((x: string) =>
      x === "node-port" || x === "pod-ip"
        ? Effect.succeed<"node-port" | "pod-ip">(x)
        : Effect.fail(invalid(
          `"node-port" (the runner through NodePorts on the pod's node) or "pod-ip" (the pod's own address; the agent must reach the pod network)`,
          x
        ))
    ),
    encode: SchemaGetter.transform((x: "node-port" | "pod-ip") => x)
  })
)

export const KubernetesSection = section({
  namespace: withDefault(Schema.String.check(Schema.isNonEmpty()), "backend-ai"),
  /** Path of a kubeconfig; absent = in-cluster service account when available, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig: Schema.optionalKey(Schema.String),
  /** Label selector choosing the worker nodes (empty = every schedulable node). */
  "node-selector": withDefault(Schema.String, ""),
  registry: section({
    /** Base URL of the private registry the nodes pull from, e.g. "https://registry.example:5000". */
    url: withDefault(Schema.String, ""),
    "pull-secret": withDefault(Schema.String, "backend-ai-registry-secret"),
    /** Check the registry's TLS certificate (false only for a self-signed test registry). */
    "verify-tls": withDefault(Schema.Boolean, true)
  }),
  "krunner-volume": withDefault(KrunnerVolume, { type: "hostPath", path: "/opt/backend.ai" }),
  /** The node-side location of `container.scratch-root` (hostPath dir or NFS export). */
  "scratch-volume": Schema.optionalKey(Volume),
  /**
   * The fence around kernel pods (NetworkPolicies): the runner ports 2000/2001 only from the agent,
   * user service ports only from `service-sources`. Needs a network plugin that enforces NetworkPolicy.
   */
  "network-policy": section({
    enabled: withDefault(Schema.Boolean, true),
    /** Who may reach 2000/2001; empty = this host's own addresses (each as /32 or /128). */
    "agent-sources": withDefault(Schema.Array(Cidr), []),
    /** Who may reach the kernels' service ports (the manager's app proxy). */
    "service-sources": withDefault(Schema.Array(Cidr), ["0.0.0.0/0", "::/0"])
  }),
  /**
   * How the agent reaches a kernel's runner (2000/2001): "node-port" (default) through two NodePorts on
   * the pod's node; "pod-ip" at the pod's own address, for agents inside the cluster network (or on a
   * node routed to it): the runner ports then get no NodePort at all.
   */
  "runner-address": withDefault(RunnerAddressSetting, "node-port"),
  /** Grace period given to kernel pods on destroy. */
  "termination-grace": withDefault(Duration, "5s"),
  /** Full relist of watched objects, on top of the watch. */
  "relist-interval": withDefault(PositiveDuration, "5m"),
  /** Timeout of one Kubernetes API request. */
  "request-timeout": withDefault(PositiveDuration, "10s")
})

export const LoggingSection = section({
  level: withDefault(LogLevel, "INFO"),
  drivers: withDefault(Schema.Array(Schema.Literals(["console", "file", "logstash"])), ["console"]),
  "pkg-ns": withDefault(Schema.Record(Schema.String, LogLevel), {}),
  /** auto: human-readable on a terminal, JSON lines otherwise. */
  format: withDefault(Schema.Literals(["auto", "json", "pretty"]), "auto")
})

export const ResourceSection = section({
  "reserved-cpu": withDefault(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0)), 0),
  "reserved-mem": withDefault(BinarySize, 0),
  "reserved-disk": withDefault(BinarySize, 0)
})

export const DebugSection = section({
  enabled: withDefault(Schema.Boolean, false),
  "skip-container-deletion": withDefault(Schema.Boolean, false),
  "heartbeat-interval": withDefault(PositiveDuration, 3)
})

export const WatcherSection = section({
  "service-addr": withDefault(HostPort, { host: "0.0.0.0", port: 6009 }),
  "ssl-enabled": withDefault(Schema.Boolean, false),
  "ssl-cert": Schema.optionalKey(Schema.String),
  "ssl-privkey": Schema.optionalKey(Schema.String),
  "target-service": withDefault(Schema.String, "backendai-agent.service"),
  "soft-reset-available": withDefault(Schema.Boolean, false)
})

export const StatsSection = section({
  enabled: withDefault(Schema.Boolean, true),
  interval: withDefault(PositiveDuration, 2),
  ttl: withDefault(PositiveDuration, 30),
  /** Nodes queried at once. */
  concurrency: withDefault(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), 8),
  /**
   * Between two reads of one node's kubelet summary (its samples are cAdvisor's: every 10 s for the
   * node, 10–20 s for a pod); kept between `interval` and `ttl / 2`.
   */
  "summary-interval": withDefault(PositiveDuration, 10)
})

export const MetricsSection = section({
  enabled: withDefault(Schema.Boolean, true),
  "service-addr": withDefault(HostPort, { host: "127.0.0.1", port: 6019 })
})

export const AgentConfigSchema = Schema.Struct({
  etcd: EtcdSection,
  agent: AgentSection,
  container: ContainerSection,
  kubernetes: KubernetesSection,
  logging: LoggingSection,
  resource: ResourceSection,
  debug: DebugSection,
  watcher: WatcherSection,
  stats: StatsSection,
  metrics: MetricsSection
})

export type AgentConfigData = typeof AgentConfigSchema.Type
