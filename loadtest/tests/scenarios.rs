//! Every scenario, at a tiny size, against the local control plane, with
//! the real operator: so the load generator cannot rot. (The sizes that
//! mean something are in RESULTS.md.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `deploy/local/cluster up && eval \"$(deploy/local/cluster env)\"` or the README's test command")
    })
}

/// The operator binary of this workspace, built if the test run did not build it.
fn operator() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = root.join("target/debug/configmirror");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bin", "configmirror"])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

/// Runs a scenario; returns its JSON report.
fn run(args: &[&str]) -> serde_json::Value {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_configmirror-loadtest"))
        .args(["--quiet", "--timeout-seconds", "180", "--spawn-operator"])
        .arg(operator())
        .arg("--out")
        .arg(out.path())
        .args(args)
        .env("KUBECONFIG", var("KUBECONFIG"))
        .env("CONFIGMIRROR_AUDIT_LOG", var("CONFIGMIRROR_AUDIT_LOG"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    let svgs = std::fs::read_dir(out.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    report
        .as_object()
        .unwrap()
        .get("data")
        .cloned()
        .map(|mut d| {
            d["svgs"] = svgs.into();
            d["latency"] = report["latency"].clone();
            d
        })
        .unwrap()
}

#[test]
fn fanout_runs_and_measures() {
    let d = run(&["fanout", "--targets", "3"]);
    assert!(d["converged_seconds"].as_f64().unwrap() > 0.0);
    assert!(d["ceiling_per_second"].as_f64().unwrap() > 0.0);
    assert!(d["ratio_to_ceiling"].as_f64().unwrap() > 0.0);
    // 3 creates + the finalizer + one status write.
    assert_eq!(d["writes"]["create configmaps"], 3);
    assert_eq!(d["latency"]["count"], 3);
    assert_eq!(d["svgs"], 2, "a latency and a convergence plot");
    assert!(d["operator_rss_bytes"].as_u64().unwrap() > 1_000_000);
}

#[test]
fn mirrors_runs_and_measures() {
    let d = run(&[
        "mirrors",
        "--mirrors",
        "2",
        "--sources",
        "2",
        "--targets",
        "2",
    ]);
    assert_eq!(d["writes"]["create configmaps"], 8);
    assert!(d["converged_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn updates_runs_and_measures() {
    let d = run(&[
        "updates",
        "--targets",
        "2",
        "--rate",
        "4",
        "--duration-seconds",
        "2",
    ]);
    assert_eq!(d["updates"], 8);
    // Each replica writes at most once per source update.
    assert!(d["writes"]["update configmaps"].as_u64().unwrap() <= 16);
    assert!(d["latency"]["count"].as_u64().unwrap() >= 2);
}

#[test]
fn idle_counts_no_writes_at_rest() {
    let d = run(&["idle", "--targets", "3", "--seconds", "5"]);
    assert_eq!(
        d["writes"],
        serde_json::json!({}),
        "the operator wrote at rest"
    );
}

#[test]
fn noise_reads_memory_before_and_after() {
    let d = run(&[
        "noise",
        "--configmaps",
        "40",
        "--targets",
        "2",
        "--settle-seconds",
        "1",
    ]);
    assert!(d["rss_before_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(d["rss_after_bytes"].as_u64().unwrap() > 1_000_000);
}

#[test]
fn ceiling_measures_creates_per_second() {
    let d = run(&["ceiling", "--count", "30"]);
    assert!(d["creates_per_second"].as_f64().unwrap() > 1.0);
}

#[test]
fn fairness_times_small_mirrors_during_a_fan_out() {
    let d = run(&[
        "fairness",
        "--targets",
        "20",
        "--fanouts",
        "2",
        "--probes",
        "2",
        "--small-targets",
        "2",
        "--probe-interval-ms",
        "50",
    ]);
    assert!(d["baseline_seconds"].as_f64().unwrap() > 0.0);
    let probes = d["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 2);
    assert!(probes.iter().all(|p| p["seconds"].as_f64().unwrap() > 0.0));
    assert!(d["converged_seconds"].as_f64().unwrap() > 0.0);
    assert!(d["ratio_to_ceiling"].as_f64().unwrap() > 0.0);
    // Both fan-outs and the two small mirrors (the baseline came before).
    assert_eq!(d["writes"]["create configmaps"], 2 * 20 + 2 * 2);
    assert_eq!(d["latency"]["count"], 2 * 20);
}

/// The sharded scenarios start their own members on a database of their own.
fn run_sharded(args: &[&str]) -> serde_json::Value {
    let url = var("DATABASE_URL");
    let mut all = vec![
        "--database-url",
        &url,
        "--operator-arg=--leave-grace-seconds=3",
    ];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn chaos_runs_and_measures() {
    let d = run_sharded(&[
        "chaos",
        "--members",
        "3",
        "--mirrors",
        "12",
        "--targets",
        "1",
        "--duration-seconds",
        "14",
        "--update-rate",
        "3",
        "--action-every-seconds",
        "4",
        "--lone-mirrors",
        "3",
    ]);
    assert!(d["failover_seconds"].as_f64().unwrap() > 0.0);
    assert!(d["failover_mirrors"].as_u64().unwrap() >= 1);
    assert_eq!(
        d["restart_moves"],
        serde_json::json!({}),
        "a rolling restart moved mirrors"
    );
    assert!(
        d["leave_moves"]["failover"].as_i64().unwrap() >= 1,
        "{:?}",
        d["leave_moves"]
    );
    assert_eq!(d["new_mirror_latency"]["count"], 12);
    assert!(d["chaos_staleness"]["count"].as_u64().unwrap() >= 30);
    assert!(d["chaos_actions"].as_array().unwrap().len() >= 2);
    let loads: i64 = d["loads"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(loads, 12 + 3, "the fleet and the lone mirrors");
    assert_eq!(d["lone_mirror_latency"]["count"], 3);
}

#[test]
fn scale_runs_and_measures() {
    let d = run_sharded(&[
        "scale",
        "--members",
        "2",
        "--mirrors",
        "10",
        "--rounds",
        "1",
    ]);
    assert!(d["throughput_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(d["loads"].as_object().unwrap().len(), 2);
    assert_eq!(d["member_rss_bytes"].as_object().unwrap().len(), 2);
}
