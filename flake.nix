{
  description = "bai-k8s-agent: Backend.AI compute agent for Kubernetes (manager 19.06 contract), on Effect";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        bai-k8s-agent = pkgs.buildNpmPackage {
          pname = "bai-k8s-agent";
          version = "0.1.0";
          src = self;
          nodejs = pkgs.nodejs_24;
          # npmDepsHash pins the npm dependency closure (the fixed-output derivation of package-lock.json).
          # It is fakeHash until someone with network access computes it; every change of package-lock.json
          # needs a new one:
          #   nix run nixpkgs#prefetch-npm-deps -- package-lock.json     # prints sha256-…
          # or build once (`nix build .#bai-k8s-agent`): the hash mismatch error prints the expected value.
          # The build runs offline from that closure (no npm registry access at build time).
          npmDepsHash = pkgs.lib.fakeHash;
          # The `node` devDependency fetches a Node binary in its install script; Nix provides nodejs_24
          # instead. zeromq ships its prebuilt addon inside the package, so no script is needed for it.
          npmFlags = [ "--ignore-scripts" ];
          npmBuildScript = "build";
          installPhase = ''
            runHook preInstall
            mkdir -p $out/lib/bai-k8s-agent $out/bin
            cp -r dist package.json node_modules config deploy $out/lib/bai-k8s-agent/
            for entry in main watcher agentctl; do
              if [ -f dist/$entry.js ]; then
                makeWrapper ${pkgs.nodejs_24}/bin/node $out/bin/bai-$entry \
                  --add-flags $out/lib/bai-k8s-agent/dist/$entry.js
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
