# Evaluates deploy/nixos/module.nix with the stub nixpkgs (test/deploy/stub-nixpkgs) and a fake
# config, resolving mkIf/mkDefault by hand (no NixOS module system offline). Used by flake.test.ts:
#   nix-instantiate --eval --strict --json test/deploy/module-eval.nix
{ enable ? true, watcher ? true, openFirewall ? true, etcdPasswordFile ? null, etcdPassword ? null }:
let
  stub = (import ./stub-nixpkgs/flake.nix).outputs { self = stub; };
  pkgs = stub.legacyPackages.x86_64-linux;
  inherit (pkgs) lib;
  package = pkgs.nodejs_24;
  module = import ../../deploy/nixos/module.nix { self = { packages.x86_64-linux.default = package; }; };
  cfg = {
    inherit enable openFirewall package;
    settings = {
      etcd = { namespace = "local"; addr = "10.0.0.2:2379"; } // (if etcdPassword == null then { } else { password = etcdPassword; });
      agent.rpc-listen-addr = "10.0.0.5:6001";
    };
    inherit etcdPasswordFile;
    user = "backendai";
    group = "backendai";
    scratchRoot = "/var/lib/backend.ai/scratches";
    watcher.enable = watcher;
  };
  evaluated = module { config.services.backendai-agent = cfg; inherit lib pkgs; };
  isDrv = v: builtins.isAttrs v && (v.type or null) == "derivation";
  resolve = v:
    if isDrv v then v.outPath
    else if builtins.isAttrs v && v ? _type then
      (if v._type == "if" then (if v.condition then resolve v.content else null)
       else if v._type == "override" then resolve v.content
       else v)
    else if builtins.isAttrs v then builtins.mapAttrs (_: resolve) v
    else if builtins.isList v then map resolve v
    else v;
  out = resolve evaluated.config;
  opts = evaluated.options.services.backendai-agent;
in
{
  options = builtins.attrNames opts;
  watcherOptions = builtins.attrNames opts.watcher;
  enableDefault = opts.enable.default;
  config = out;
  # the module's assertions (resolved: a list of { assertion, message })
  failedAssertions = if out == null then [ ] else map (a: a.message) (builtins.filter (a: !a.assertion) out.assertions);
}
