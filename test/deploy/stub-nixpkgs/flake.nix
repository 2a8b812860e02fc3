# A tiny offline stand-in for nixpkgs, just enough for `nix flake check --no-build` of /work/main/flake.nix
# and for evaluating deploy/nixos/module.nix (test/deploy/flake.test.ts). Derivations are real
# `builtins.derivation`s (instantiated, never built); the module system bits are minimal.
{
  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);

      lib = {
        inherit genAttrs;
        inherit (builtins) mapAttrs;
        importJSON = path: builtins.fromJSON (builtins.readFile path);
        last = l: builtins.elemAt l (builtins.length l - 1);
        splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
        fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        licenses.lgpl3Plus = { shortName = "lgpl3Plus"; spdxId = "LGPL-3.0-or-later"; };
        # module-system subset: options are recorded, mkIf/mkDefault are evaluated eagerly by the test harness
        mkOption = attrs: attrs // { _type = "option"; };
        mkEnableOption = name: { _type = "option"; type = lib.types.bool; default = false; description = "Whether to enable ${name}."; };
        mkIf = condition: content: { _type = "if"; inherit condition content; };
        mkDefault = value: { _type = "override"; priority = 1000; content = value; };
        optional = cond: x: if cond then [ x ] else [ ];
        optionalString = cond: s: if cond then s else "";
        optionalAttrs = cond: a: if cond then a else { };
        hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
        literalExpression = text: { _type = "literalExpression"; inherit text; };
        types = {
          package = { name = "package"; };
          str = { name = "str"; };
          nullOr = t: { name = "nullOr"; inner = t; };
          bool = { name = "bool"; };
          attrs = { name = "attrs"; };
        };
      };

      mkPkgs = system:
        let
          drv = name: args: derivation ({ inherit name system; builder = "/bin/sh"; args = [ "-c" "echo stub > $out" ]; } // args);
        in
        {
          inherit lib system;
          # the closure comes from importNpmLock (npmDeps + its npmConfigHook), never from a hand-kept npmDepsHash
          buildNpmPackage = a:
            assert !(a ? npmDepsHash);
            assert a ? npmDeps && a ? npmConfigHook;
            assert a ? pname && a ? version && a ? src && a ? nodejs;
            (drv "${a.pname}-${a.version}" { npmDeps = a.npmDeps; }) // { meta = a.meta or { }; inherit (a) pname version npmDeps; };
          # importNpmLock { npmRoot, packageLock? }: every package that npm would fetch must have a
          # `resolved` URL (nixpkgs fetches those with the lock's integrity hash and leaves the others to
          # npm, which has no network in the sandbox); `resolved` exposes them to the test
          importNpmLock = {
            __functor = _: { npmRoot ? null, packageLock ? lib.importJSON (npmRoot + "/package-lock.json"), ... }:
              let
                needsFetch = path: m: path != "" && !(m.link or false) && m ? version && m ? integrity;
                unresolved = builtins.filter (p: needsFetch p packageLock.packages.${p} && !(packageLock.packages.${p} ? resolved))
                  (builtins.attrNames packageLock.packages);
              in
              assert unresolved == [ ] || throw "no resolved URL for ${builtins.toJSON unresolved}";
              (drv "npm-deps" { lockHash = builtins.hashString "sha256" (builtins.toJSON packageLock); })
              // { resolved = lib.mapAttrs (_: m: m.resolved or null) packageLock.packages; };
            npmConfigHook = drv "npm-config-hook" { };
          };
          nodejs_24 = drv "nodejs-24.0.0" { };
          makeWrapper = drv "make-wrapper" { };
          mkShell = a: drv "nix-shell" { buildInputs = a.packages or [ ]; };
          etcd = drv "etcd" { };
          redis = drv "redis" { };
          python3 = drv "python3" { };
          python3Packages = { pyzmq = drv "pyzmq" { }; msgpack = drv "msgpack" { }; };
          systemd = drv "systemd" { };
          writeShellScript = name: text: drv name { inherit text; };
          formats.toml = { }: {
            type = lib.types.attrs;
            generate = name: value: drv name { passAsFile = [ "text" ]; text = builtins.toJSON value; };
          };
        };
    in
    {
      inherit lib;
      legacyPackages = genAttrs systems mkPkgs;
    };
}
