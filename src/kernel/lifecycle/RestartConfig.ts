/**
 * Concern: what a restart re-creates from. Manager 19.06 sends `mounts: []` ("recovered from
 * container config") and no `idle_timeout` (registry.py 819–834), and the Docker agent takes both
 * from the old kernel's resource spec. So do we: an empty mount list and a missing (or null) idle
 * timeout mean "as before". The old kernel's spec comes from the pod's recovery annotation: it is
 * decoded like the manager's config, and ignored when it does not decode.
 */
import { Option, Schema } from "effect"
import { KernelConfig as KernelConfigSchema, type KernelConfig } from "../../spec/KernelConfig.ts"

export const restartConfig = (raw: unknown, decoded: KernelConfig, old: { readonly resourceSpec: string; readonly idleTimeout: number }): KernelConfig => {
  const sentIdle = typeof raw === "object" && raw !== null && (raw as { readonly idle_timeout?: unknown }).idle_timeout != null
  const oldMounts = decoded.mounts.length > 0 ? Option.none() : decodeOldMounts(old.resourceSpec)
  return {
    ...decoded,
    ...(sentIdle ? {} : { idle_timeout: old.idleTimeout }),
    ...(Option.isSome(oldMounts) ? { mounts: oldMounts.value } : {})
  }
}

const OldSpec = Schema.fromJsonString(Schema.Struct({ mounts: KernelConfigSchema.fields.mounts }))
const decodeOldSpec = Schema.decodeUnknownOption(OldSpec)
const decodeOldMounts = (resourceSpec: string): Option.Option<KernelConfig["mounts"]> =>
  Option.map(decodeOldSpec(resourceSpec), (s) => s.mounts)
