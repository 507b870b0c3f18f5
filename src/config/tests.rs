//! Flag parsing: defaults, names and derived settings.

use std::time::Duration;

use super::*;
use crate::store::databases::DefaultDatabase;
use crate::telemetry::LogFormat;

fn parse(args: &[&str]) -> RunArgs {
    let mut all = vec!["configmirror", "run"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all).unwrap().command {
        Command::Run(r) => *r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_match_the_reference() {
    let a = parse(&[]);
    assert_eq!(a.metrics_bind_address, ":8080");
    assert_eq!(a.health_probe_bind_address, ":8081");
    assert!(!a.leader_elect);
    let policy = a.namespace_policy();
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        a.namespace.as_str(),
    ] {
        assert!(policy.excluded.contains(ns), "{ns} excluded");
        assert!(policy.protected.contains(ns), "{ns} protected");
    }
    assert!(!policy.require_source_opt_in);
}

#[test]
fn protection_can_be_changed_or_lifted() {
    let a = parse(&[
        "--protected-namespaces",
        "secrets-vault",
        "--require-source-opt-in",
        "--namespace",
        "ops",
    ]);
    let policy = a.namespace_policy();
    assert_eq!(
        policy.protected.iter().collect::<Vec<_>>(),
        ["ops", "secrets-vault"]
    );
    assert!(policy.require_source_opt_in);
    let open = parse(&["--allow-protected-namespaces"]).namespace_policy();
    assert!(open.protected.is_empty());
    assert!(open.excluded.contains("kube-system"));
}

#[test]
fn flags_parse() {
    let a = parse(&[
        "--watch-namespace",
        "a,b",
        "--leader-elect",
        "--member-name",
        "pod-1",
        "--kube-api-qps",
        "50",
        "--log-format",
        "text",
    ]);
    assert_eq!(a.watch_namespace, ["a", "b"]);
    assert!(a.leader_elect);
    assert_eq!(a.member(), "pod-1");
    assert_eq!(a.kube_api_qps, 50.0);
    assert_eq!(a.log_format, LogFormat::Text);
}

#[test]
fn stuck_after_defaults_to_five_minutes_and_is_never_zero() {
    assert_eq!(parse(&[]).stuck_after(), Duration::from_secs(300));
    let a = parse(&["--stuck-after-seconds", "0"]);
    assert_eq!(a.stuck_after(), Duration::from_secs(1));
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert!(parse_duration("1w").is_err());
    assert!(parse_duration("soon").is_err());
}

#[test]
fn database_flags_parse() {
    let a = parse(&[
        "--database-secret",
        "ns/db",
        "--database-secret-namespaces",
        "shared,platform",
    ]);
    assert!(matches!(
        a.database.default_database(),
        Ok(DefaultDatabase::Secret { .. })
    ));
    assert_eq!(a.database_secret_namespaces, ["shared", "platform"]);
    let bad = parse(&["--database-secret", "no-slash"]);
    assert!(bad.database.default_database().is_err());
}

#[test]
fn check_flags_parse() {
    let all = [
        "configmirror",
        "check",
        "--namespace",
        "cm",
        "--selector",
        "app=x",
        "--watch-namespace",
        "a,b",
        "--sharding",
        "--timeout-seconds",
        "30",
    ];
    let Command::Check(c) = Cli::try_parse_from(all).unwrap().command else {
        panic!("not check")
    };
    assert_eq!(c.namespace, "cm");
    assert_eq!(c.selector, "app=x");
    assert_eq!(c.health_port, 8081);
    assert_eq!(c.watch_namespace, ["a", "b"]);
    assert!(c.sharding);
    assert_eq!(c.timeout_seconds, 30);
    assert!(Cli::try_parse_from(["configmirror", "check"]).is_err());
}

#[test]
fn generated_member_names_are_unique_per_process() {
    let a = parse(&[]);
    assert_ne!(a.member(), a.member());
}

#[test]
fn allowed_database_hosts_are_checked_as_the_flags_are_parsed() {
    let a = parse(&["--database-allowed-hosts=10.0.0.0/8,db.example.org"]);
    assert_eq!(a.database_allowed_hosts, ["10.0.0.0/8", "db.example.org"]);
    assert_ne!(a.allowed_hosts(), Default::default());
    assert_eq!(parse(&[]).allowed_hosts(), Default::default());
    let e = Cli::try_parse_from([
        "configmirror",
        "run",
        "--database-allowed-hosts=10.0.0.0/33",
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("10.0.0.0/33"), "{e}");
}

/// Every argument of every subcommand says what it is for in `--help`.
#[test]
fn every_flag_has_help() {
    use clap::CommandFactory;

    fn missing(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", command.get_name());
        for arg in command.get_arguments() {
            // clap's own --help and --version carry clap's text.
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if !builtin && help.trim().is_empty() {
                out.push(format!("{path} --{}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            missing(sub, &path, out);
        }
    }

    let command = Cli::command();
    let mut out = Vec::new();
    missing(&command, "", &mut out);
    assert!(out.is_empty(), "arguments without help: {out:?}");
    // The walk reaches the flags it is meant to check.
    let run = command.find_subcommand("run").unwrap();
    for flag in ["log-format", "kubeconfig", "context"] {
        assert!(
            run.get_arguments().any(|a| a.get_long() == Some(flag)),
            "run --{flag}"
        );
    }
}

#[test]
fn kubeconfig_keeps_a_list_whole_and_context_has_its_own_variable() {
    let a = parse(&["--kubeconfig", "/a/one:/b/two", "--context", "real"]);
    assert_eq!(a.kube.kubeconfig.as_deref(), Some("/a/one:/b/two".as_ref()));
    assert_eq!(a.kube.context.as_deref(), Some("real"));
    let run = <Cli as clap::CommandFactory>::command();
    let context = run
        .find_subcommand("run")
        .unwrap()
        .get_arguments()
        .find(|a| a.get_long() == Some("context"))
        .unwrap()
        .get_env()
        .map(|e| e.to_os_string());
    assert_eq!(context, Some("CONFIGMIRROR_CONTEXT".into()));
}
