/** Agent version reported in heartbeats and by --version. */
export const VERSION = "0.1.0"

const MIN_NODE = [22, 19] as const

/** Refuse an older Node with a one-line message, before anything else runs. */
export const checkNodeVersion = (version: string): void => {
  const [major = 0, minor = 0] = version.split(".").map(Number)
  if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
    process.stderr.write(
      `bai-agent needs Node >= ${MIN_NODE.join(".")} (found ${version}); run it with node_modules/.bin/node or Node 24 LTS\n`
    )
    process.exit(1)
  }
}
