# NixOS module: services.backendai-agent (the agent and its watcher as hardened systemd services).
#
#   imports = [ bai-k8s-agent.nixosModules.default ];
#   services.backendai-agent = {
#     enable = true;
#     settings = {
#       etcd = { namespace = "local"; addr = "10.0.0.2:2379"; };
#       agent.rpc-listen-addr = "10.0.0.5:6001";
#       kubernetes.kubeconfig = "/etc/backend.ai/kubeconfig";
#     };
#   };
#
# `settings` is rendered to /etc/backend.ai/agent.toml (the agent.toml schema: README.md, config/sample.toml).
# It lands in the world-readable Nix store: put no secret there. The etcd password comes from a file
# outside the store (`etcdPasswordFile`), handed to both units as a systemd credential and read into
# BACKEND_ETCD_PASSWORD at start; `settings.etcd.password` is refused.
{ self }:
{ config, lib, pkgs, ... }:
let
  cfg = config.services.backendai-agent;
  settingsFormat = pkgs.formats.toml { };
  configFile = settingsFormat.generate "agent.toml" cfg.settings;
  configPath = "/etc/backend.ai/agent.toml";

  # the same hardening as deploy/systemd/*.service
  hardening = {
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictSUIDSGID = true;
    RestrictRealtime = true;
    RestrictNamespaces = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
  };

  # the etcd password from $CREDENTIALS_DIRECTORY (LoadCredential), never from the store
  launcher = name: bin: pkgs.writeShellScript "bai-${name}-launcher" (''
    set -eu
  '' + lib.optionalString (cfg.etcdPasswordFile != null) ''
    BACKEND_ETCD_PASSWORD="$(cat "$CREDENTIALS_DIRECTORY/etcd-password")"
    export BACKEND_ETCD_PASSWORD
  '' + ''
    exec ${cfg.package}/bin/${bin} -f ${configPath}
  '');
  credentials = lib.optionalAttrs (cfg.etcdPasswordFile != null) { LoadCredential = "etcd-password:${cfg.etcdPasswordFile}"; };

  common = {
    Type = "exec";
    User = cfg.user;
    Group = cfg.group;
    WorkingDirectory = "/var/lib/backendai";
    StateDirectory = "backendai";
    KillSignal = "SIGTERM";
    RestartSec = 5;
  };
in
{
  options.services.backendai-agent = {
    enable = lib.mkEnableOption "the Backend.AI agent for Kubernetes (bai-k8s-agent)";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.system}.default;
      defaultText = lib.literalExpression "bai-k8s-agent.packages.\${pkgs.system}.default";
      description = "The bai-k8s-agent package (provides bin/bai-main, bin/bai-watcher, bin/bai-agentctl).";
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      description = "agent.toml contents (TOML key names as in the file, e.g. `etcd.namespace`, `agent.rpc-listen-addr`).";
    };

    user = lib.mkOption {
      type = lib.types.str;
      default = "backendai";
      description = "System user running the agent and the watcher.";
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "backendai";
      description = "Group of that user.";
    };

    scratchRoot = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/backend.ai/scratches";
      description = "container.scratch-root: the only directory the agent may write to besides its state directory.";
    };

    etcdPasswordFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/secrets/backendai-etcd-password";
      description = "File holding the etcd password (read by systemd as a credential; keep it outside the Nix store, e.g. from sops-nix or agenix). null = no password.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the RPC port (6001) and, with the watcher, its port (6009) to the manager.";
    };

    watcher = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = "Run the watcher (HTTP API on [watcher] service-addr, default port 6009) and allow it to control the agent's unit through polkit.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !((cfg.settings.etcd or { }) ? password);
        message = "services.backendai-agent.settings.etcd.password would be written to the world-readable Nix store: use services.backendai-agent.etcdPasswordFile";
      }
      {
        assertion = cfg.etcdPasswordFile == null || !(lib.hasPrefix builtins.storeDir cfg.etcdPasswordFile);
        message = "services.backendai-agent.etcdPasswordFile must not be in the Nix store";
      }
    ];

    services.backendai-agent.settings = {
      container.scratch-root = lib.mkDefault cfg.scratchRoot;
      watcher.target-service = lib.mkDefault "backendai-agent.service";
    };

    environment.etc."backend.ai/agent.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    users.users.${cfg.user} = {
      isSystemUser = true;
      group = cfg.group;
      home = "/var/lib/backendai";
      description = "Backend.AI agent";
    };
    users.groups.${cfg.group} = { };

    systemd.tmpfiles.rules = [ "d ${cfg.scratchRoot} 0755 ${cfg.user} ${cfg.group} -" ];

    systemd.services.backendai-agent = {
      description = "Backend.AI agent for Kubernetes (bai-k8s-agent)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = hardening // common // credentials // {
        ExecStart = "${launcher "main" "bai-main"}";
        Restart = "on-failure";
        TimeoutStopSec = 30;
        RuntimeDirectory = "backendai";
        ReadWritePaths = [ cfg.scratchRoot ];
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" ];
        LimitNOFILE = 65536;
      };
    };

    systemd.services.backendai-agent-watcher = lib.mkIf cfg.watcher.enable {
      description = "Backend.AI agent watcher (bai-k8s-agent)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      path = [ pkgs.systemd ];
      serviceConfig = hardening // common // credentials // {
        ExecStart = "${launcher "watcher" "bai-watcher"}";
        Restart = "always";
        TimeoutStopSec = 10;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
      };
    };

    # the watcher may start/stop/restart/reload the agent's unit, and nothing else
    security.polkit.enable = lib.mkIf cfg.watcher.enable true;
    security.polkit.extraConfig = lib.mkIf cfg.watcher.enable ''
      polkit.addRule(function (action, subject) {
        if (action.id == "org.freedesktop.systemd1.manage-units" && subject.user == "${cfg.user}") {
          var unit = action.lookup("unit");
          var verb = action.lookup("verb");
          if (unit == "backendai-agent.service" &&
              (verb == "start" || verb == "stop" || verb == "restart" || verb == "reload")) {
            return polkit.Result.YES;
          }
        }
      });
    '';

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall ([ 6001 ] ++ lib.optional cfg.watcher.enable 6009);
  };
}
