import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const NIX_FLAGS = ["--extra-experimental-features", "nix-command flakes"]
const quiet = (stderr: string) => stderr.split("\n").filter((l) => !l.includes("build-users-group")).join("\n")

describe("flake.nix", () => {
  it("parses with nix-instantiate --parse", () => {
    const r = spawnSync("nix-instantiate", ["--parse", "flake.nix"], { encoding: "utf8" })
    assert.strictEqual(r.error, undefined, "nix-instantiate is missing (apt-get install nix-bin)")
    assert.strictEqual(r.status, 0, r.stderr)
    for (const attr of ["packages", "apps", "devShells", "nixosModules", "buildNpmPackage", "nodejs_24", "importNpmLock", "npmConfigHook"]) {
      assert.include(r.stdout, attr)
    }
    // the wrappers' glibc mmap threshold, as in the systemd unit (deploy/systemd/backendai-agent.service)
    assert.match(fs.readFileSync("flake.nix", "utf8"), /makeWrapper [^\n]*\n\s*--set-default MALLOC_MMAP_THRESHOLD_ 32768 /)
    // no hand-kept hash of the npm closure
    assert.notInclude(r.stdout, "npmDepsHash")
    assert.notInclude(r.stdout, "fakeHash")
    const m = spawnSync("nix-instantiate", ["--parse", "deploy/nixos/module.nix"], { encoding: "utf8" })
    assert.strictEqual(m.status, 0, m.stderr)
  })

  it("passes `nix flake check --no-build` against the stub nixpkgs (offline)", () => {
    // check a copy holding only what the flake reads, so the repository (node_modules…) is not copied to the store
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-flake-"))
    try {
      for (const f of ["flake.nix", "flake.lock", "package.json", "package-lock.json"]) fs.copyFileSync(f, path.join(dir, f))
      fs.cpSync("deploy", path.join(dir, "deploy"), { recursive: true })
      const r = spawnSync(
        "nix",
        [
          ...NIX_FLAGS, "flake", "check", "--no-build", "--no-write-lock-file",
          "--override-input", "nixpkgs", `path:${path.resolve("test/deploy/stub-nixpkgs")}`,
          `path:${dir}`
        ],
        { encoding: "utf8" }
      )
      assert.strictEqual(r.status, 0, quiet(r.stderr))
      // and the outputs have the expected shape
      const show = spawnSync(
        "nix",
        [
          ...NIX_FLAGS, "flake", "show", "--json", "--no-write-lock-file",
          "--override-input", "nixpkgs", `path:${path.resolve("test/deploy/stub-nixpkgs")}`,
          `path:${dir}`
        ],
        { encoding: "utf8" }
      )
      assert.strictEqual(show.status, 0, quiet(show.stderr))
      const outputs = JSON.parse(show.stdout)
      for (const system of ["x86_64-linux", "aarch64-linux"]) {
        assert.strictEqual(outputs.packages[system].default.type, "derivation")
        assert.strictEqual(outputs.packages[system]["bai-k8s-agent"].type, "derivation")
        assert.strictEqual(outputs.apps[system].default.type, "app")
        assert.strictEqual(outputs.devShells[system].default.type, "derivation")
      }
      assert.strictEqual(outputs.nixosModules.default.type, "nixos-module")

      // the npm closure: every package of package-lock.json is fetched from its registry tarball,
      // keyed by the lock's integrity (npm writes no `resolved` URLs here; the flake derives them)
      const ev = spawnSync(
        "nix",
        [
          ...NIX_FLAGS, "eval", "--json", "--no-write-lock-file",
          "--override-input", "nixpkgs", `path:${path.resolve("test/deploy/stub-nixpkgs")}`,
          `path:${dir}#packages.x86_64-linux.bai-k8s-agent.npmDeps.resolved`
        ],
        { encoding: "utf8" }
      )
      assert.strictEqual(ev.status, 0, quiet(ev.stderr))
      const resolved = JSON.parse(ev.stdout) as Record<string, string | null>
      const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8")) as { packages: Record<string, { version?: string; integrity?: string; name?: string }> }
      const fetched = Object.entries(lock.packages).filter(([p, m]) => p !== "" && m.version !== undefined && m.integrity !== undefined)
      assert.isAbove(fetched.length, 50)
      for (const [p, m] of fetched) {
        const name = m.name ?? p.slice(p.lastIndexOf("node_modules/") + "node_modules/".length)
        assert.strictEqual(resolved[p], `https://registry.npmjs.org/${name}/-/${name.split("/").pop()}-${m.version}.tgz`, p)
      }
      assert.strictEqual(resolved["node_modules/@effect/platform-node"], `https://registry.npmjs.org/@effect/platform-node/-/platform-node-${lock.packages["node_modules/@effect/platform-node"]!.version}.tgz`)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
      // the store copies of the flake are garbage (no GC roots); drop them so the store does not grow
      spawnSync("nix", [...NIX_FLAGS, "store", "gc"], { encoding: "utf8" })
    }
  }, 120_000)
})

const evalModule = (args: string) => {
  const r = spawnSync("nix-instantiate", ["--eval", "--strict", "--json", "-E", `import ./test/deploy/module-eval.nix ${args}`], {
    encoding: "utf8"
  })
  assert.strictEqual(r.status, 0, quiet(r.stderr))
  return JSON.parse(r.stdout)
}

describe("deploy/nixos/module.nix (services.backendai-agent)", () => {
  it("declares enable, package, settings and renders two hardened units", () => {
    const m = evalModule("{}")
    for (const o of ["enable", "package", "settings", "user", "group", "scratchRoot", "openFirewall", "watcher"]) assert.include(m.options, o)
    assert.include(m.watcherOptions, "enable")
    assert.strictEqual(m.enableDefault, false)
    const c = m.config
    assert.match(c.environment.etc["backend.ai/agent.toml"].source, /^\/nix\/store\/.*-agent\.toml$/)
    assert.strictEqual(c.services["backendai-agent"].settings.container["scratch-root"], "/var/lib/backend.ai/scratches")
    assert.strictEqual(c.services["backendai-agent"].settings.watcher["target-service"], "backendai-agent.service")
    assert.isTrue(c.users.users.backendai.isSystemUser)
    assert.include(c.systemd.tmpfiles.rules[0], "/var/lib/backend.ai/scratches")
    const agent = c.systemd.services["backendai-agent"]
    const watcher = c.systemd.services["backendai-agent-watcher"]
    assert.match(agent.serviceConfig.ExecStart, /^\/nix\/store\/[a-z0-9]+-bai-main-launcher$/)
    assert.match(watcher.serviceConfig.ExecStart, /^\/nix\/store\/[a-z0-9]+-bai-watcher-launcher$/)
    assert.isUndefined(agent.serviceConfig.LoadCredential, "no password file configured")
    assert.deepStrictEqual(m.failedAssertions, [])
    for (const unit of [agent, watcher]) {
      const s = unit.serviceConfig
      assert.strictEqual(s.Type, "exec")
      assert.strictEqual(s.User, "backendai")
      assert.isTrue(s.NoNewPrivileges)
      assert.strictEqual(s.ProtectSystem, "strict")
      assert.isTrue(s.ProtectHome)
      assert.isTrue(s.PrivateTmp)
      assert.include(["on-failure", "always"], s.Restart)
      assert.include(unit.wantedBy, "multi-user.target")
    }
    assert.deepStrictEqual(agent.serviceConfig.ReadWritePaths, ["/var/lib/backend.ai/scratches"])
    assert.include(c.security.polkit.extraConfig, "org.freedesktop.systemd1.manage-units")
    assert.deepStrictEqual(c.networking.firewall.allowedTCPPorts, [6001, 6009])
  })

  it("the etcd password comes from a file as a systemd credential, never from the Nix store", () => {
    const m = evalModule(`{ etcdPasswordFile = "/run/secrets/bai-etcd"; }`)
    for (const unit of ["backendai-agent", "backendai-agent-watcher"]) {
      assert.strictEqual(m.config.systemd.services[unit].serviceConfig.LoadCredential, "etcd-password:/run/secrets/bai-etcd", unit)
    }
    assert.include(m.options, "etcdPasswordFile")
    assert.deepStrictEqual(m.failedAssertions, [])
    // the launcher reads the credential into the variable the agent reads (BACKEND_ETCD_PASSWORD)
    const module = fs.readFileSync("deploy/nixos/module.nix", "utf8")
    assert.include(module, `BACKEND_ETCD_PASSWORD="$(cat "$CREDENTIALS_DIRECTORY/etcd-password")"`)
    // a password in settings (rendered into the store) or a password file in the store is refused
    const bad = evalModule(`{ etcdPassword = "pw"; etcdPasswordFile = "/nix/store/aaaa-pw"; }`)
    assert.strictEqual(bad.failedAssertions.length, 2)
    assert.match(bad.failedAssertions[0], /settings\.etcd\.password/)
    assert.match(bad.failedAssertions[1], /must not be in the Nix store/)
  })

  it("without the watcher: no watcher unit, no polkit rule; disabled: nothing", () => {
    const m = evalModule("{ watcher = false; openFirewall = true; }")
    assert.isNull(m.config.systemd.services["backendai-agent-watcher"])
    assert.isNull(m.config.security.polkit.extraConfig)
    assert.deepStrictEqual(m.config.networking.firewall.allowedTCPPorts, [6001])
    assert.isNull(evalModule("{ enable = false; }").config)
  })
})

describe("deploy/systemd units", () => {
  const units = ["backendai-agent.service", "backendai-agent-watcher.service"]

  it("are hardened Type=exec services of the backendai user and pass systemd-analyze verify", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-units-"))
    try {
      for (const u of units) {
        const text = fs.readFileSync(path.join("deploy/systemd", u), "utf8")
        const keys = new Map<string, string>()
        for (const line of text.split("\n")) {
          const m = /^([A-Za-z]+)=(.*)$/.exec(line)
          if (m) keys.set(m[1]!, m[2]!)
        }
        assert.strictEqual(keys.get("Type"), "exec", u)
        assert.strictEqual(keys.get("User"), "backendai", u)
        for (const k of ["NoNewPrivileges", "ProtectHome", "PrivateTmp"]) assert.strictEqual(keys.get(k), "yes", `${u} ${k}`)
        assert.strictEqual(keys.get("ProtectSystem"), "strict", u)
        assert.match(keys.get("Restart") ?? "", /^(on-failure|always)$/)
        assert.match(keys.get("ExecStart") ?? "", /^\/usr\/bin\/node (--max-semi-space-size=4 --heap-growing-percent=35 \/opt\/bai-k8s-agent\/dist\/main|\/opt\/bai-k8s-agent\/dist\/watcher)\.js -f \/etc\/backend\.ai\/agent\.toml$/)
        // the binary need not exist here: verify the unit with a stand-in
        fs.writeFileSync(path.join(dir, u), text.replace(/^ExecStart=\/usr\/bin\/node /m, "ExecStart=/bin/echo "))
      }
      assert.include(fs.readFileSync("deploy/systemd/backendai-agent.service", "utf8"), "ReadWritePaths=/var/lib/backend.ai/scratches")
      // glibc serves allocations of 32 KiB and more with mmap, so V8's freed parser zones go back to the
      // kernel instead of staying in the main arena (bench/README.md, "Idle RSS, third pass")
      assert.match(fs.readFileSync("deploy/systemd/backendai-agent.service", "utf8"), /^Environment=MALLOC_MMAP_THRESHOLD_=32768$/m)
      const r = spawnSync("systemd-analyze", ["verify", ...units.map((u) => path.join(dir, u))], {
        encoding: "utf8",
        env: { ...process.env, SYSTEMD_LOG_LEVEL: "warning" }
      })
      // never skipped: .ci/run installs Debian's systemd package, which ships systemd-analyze
      assert.strictEqual(r.error, undefined, "systemd-analyze is missing (apt-get install systemd)")
      assert.strictEqual(r.status, 0, r.stderr)
      assert.strictEqual(r.stderr.trim(), "", "no warnings")
      // and their exposure score stays what deploy/README.md states (lower is better; 10 = unprotected)
      const readme = fs.readFileSync("deploy/README.md", "utf8")
      for (const u of units) {
        const sec = spawnSync("systemd-analyze", ["security", "--offline=yes", "--no-pager", path.join(dir, u)], { encoding: "utf8" })
        assert.strictEqual(sec.error, undefined)
        const m = /Overall exposure level for \S+: ([0-9.]+)/.exec(sec.stdout)
        assert.isNotNull(m, sec.stdout + sec.stderr)
        const score = Number(m![1])
        assert.isAtMost(score, 3.5, `${u} exposure ${score}`)
        assert.include(readme, `| \`${u}\` | ${m![1]} |`, `deploy/README.md states the score of ${u}`)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
