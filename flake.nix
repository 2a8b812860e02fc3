{
  description = "bai-k8s-agent: Backend.AI compute agent for Kubernetes (manager 19.06 contract), on Effect";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs:
        let
          inherit (pkgs) lib;
          # The npm dependency closure comes from package-lock.json itself (nixpkgs' importNpmLock): every
          # package is a fixed-output fetch keyed by the lock's own `integrity` hash, so there is no
          # npmDepsHash to recompute when the lock changes. Our lock is written without `resolved` URLs
          # (npm's omit-lockfile-registry-resolved); npm then fetches from the registry's conventional
          # tarball path, and so does this: https://registry.npmjs.org/<name>/-/<basename>-<version>.tgz.
          lock = lib.importJSON ./package-lock.json;
          tarballOf = path: m:
            let
              name = m.name or (lib.last (lib.splitString "node_modules/" path));
              base = lib.last (lib.splitString "/" name);
            in
            "https://registry.npmjs.org/${name}/-/${base}-${m.version}.tgz";
          lockWithResolved = lock // {
            packages = lib.mapAttrs
              (path: m:
                if path == "" || m ? resolved || (m.link or false) || !(m ? version) || !(m ? integrity) then m
                else m // { resolved = tarballOf path m; })
              lock.packages;
          };
        in
        rec {
        bai-k8s-agent = pkgs.buildNpmPackage {
          pname = "bai-k8s-agent";
          version = "0.1.0";
          src = self;
          nodejs = pkgs.nodejs_24;
          npmDeps = pkgs.importNpmLock {
            npmRoot = ./.;
            packageLock = lockWithResolved;
          };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;
          # The `node` devDependency fetches a Node binary in its install script; Nix provides nodejs_24
          # instead. zeromq ships its prebuilt addon inside the package, so no script is needed for it.
          npmFlags = [ "--ignore-scripts" ];
          # `npm run build`: tsc, then deploy/bundle.ts (rolldown, a devDependency with prebuilt bindings
          # per platform in package-lock.json) replaces dist/{main,watcher,agentctl}.js by one bundled file
          # each; zeromq, msgpackr, etcd3 (+ @grpc) and ioredis stay in node_modules/, copied below
          npmBuildScript = "build";
          installPhase = ''
            runHook preInstall
            # the runtime closure holds the production dependencies only: vitest, typescript and the
            # `node` devDependency stay out (Node is nodejs_24 from nixpkgs)
            npm prune --omit=dev --no-save --offline --ignore-scripts
            mkdir -p $out/lib/bai-k8s-agent $out/bin
            cp -r dist package.json node_modules config deploy $out/lib/bai-k8s-agent/
            for entry in main watcher agentctl; do
              if [ -f dist/$entry.js ]; then
                # --max-semi-space-size=4 (MiB): a small young generation (RSS 211 → 160 MiB idle
                # without it); 4 rather than 1: 26–28 % less CPU at 1,000 kernels in three same-run
                # comparisons for +1–2 MiB idle (bench/README.md, `memory`, "The semi-space sweep"). MALLOC_MMAP_THRESHOLD_=32768: glibc serves allocations
                # of ≥ 32 KiB with mmap, so V8's freed compiler zones (~22 MiB while it parses the bundle
                # at start-up) go back to the kernel instead of staying in the main arena: idle RSS −21 MiB
                # (131 → 110) at the same CPU (bench/README.md, "Idle RSS, third pass")
                # --heap-growing-percent=35: the old generation's next mark-compact at 1.35 × its live size
                # after the last one, instead of V8's dynamic factor (1.1–4): at 1,000 adopted kernels RSS
                # 158.6 MiB mean of 9 readings against 175.0 of 14 without it (six same-run comparisons,
                # five in its favour), % of one core 5.4 against 6.2 (no cost seen); idle 108.7–109.1 MiB.
                # A growth rate, not a limit (bench/README.md, "Goal 2 at 1,000 kernels, V8's side")
                makeWrapper ${pkgs.nodejs_24}/bin/node $out/bin/bai-$entry \
                  --set-default MALLOC_MMAP_THRESHOLD_ 32768 \
                  --add-flags "--max-semi-space-size=4 --heap-growing-percent=35 $out/lib/bai-k8s-agent/dist/$entry.js"
              fi
            done
            runHook postInstall
          '';
          nativeBuildInputs = [ pkgs.makeWrapper ];
          meta = {
            description = "Backend.AI compute agent for Kubernetes";
            license = pkgs.lib.licenses.lgpl3Plus;
            mainProgram = "bai-main";
          };
        };
        default = bai-k8s-agent;
        });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.system}.default}/bin/bai-main";
        };
      });

      # services.backendai-agent: the agent and its watcher as hardened systemd services (deploy/nixos/module.nix)
      nixosModules.default = import ./deploy/nixos/module.nix { inherit self; };
      nixosModules.backendai-agent = self.nixosModules.default;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.nodejs_24 pkgs.etcd pkgs.redis pkgs.python3 pkgs.python3Packages.pyzmq pkgs.python3Packages.msgpack ];
        };
      });
    };
}
