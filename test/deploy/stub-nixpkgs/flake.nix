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
        fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        licenses.lgpl3Plus = { shortName = "lgpl3Plus"; spdxId = "LGPL-3.0-or-later"; };
        # module-system subset: options are recorded, mkIf/mkDefault are evaluated eagerly by the test harness
        mkOption = attrs: attrs // { _type = "option"; };
        mkEnableOption = name: { _type = "option"; type = lib.types.bool; default = false; description = "Whether to enable ${name}."; };
        mkIf = condition: content: { _type = "if"; inherit condition content; };
        mkDefault = value: { _type = "override"; priority = 1000; content = value; };
        optional = cond: x: if cond then [ x ] else [ ];
        literalExpression = text: { _type = "literalExpression"; inherit text; };
        types = {
          package = { name = "package"; };
          str = { name = "str"; };
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
          buildNpmPackage = a:
            assert builtins.isString a.npmDepsHash;
            assert a ? pname && a ? version && a ? src && a ? nodejs;
            (drv "${a.pname}-${a.version}" { npmDepsHash = a.npmDepsHash; }) // { meta = a.meta or { }; inherit (a) pname version; };
          nodejs_24 = drv "nodejs-24.0.0" { };
          makeWrapper = drv "make-wrapper" { };
          mkShell = a: drv "nix-shell" { buildInputs = a.packages or [ ]; };
          etcd = drv "etcd" { };
          redis = drv "redis" { };
          python3 = drv "python3" { };
          python3Packages = { pyzmq = drv "pyzmq" { }; msgpack = drv "msgpack" { }; };
          systemd = drv "systemd" { };
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
