use super::report::one_line;
use super::*;

const SELECTOR: &str = "app.kubernetes.io/name=configmirror-operator";

fn pod(name: &str, ip: &str) -> PodState {
    PodState {
        name: name.into(),
        phase: "Running".into(),
        ip: Some(ip.into()),
        terminating: false,
    }
}

fn mirror(name: &str, member: Option<&str>) -> MirrorState {
    MirrorState {
        namespace: "team".into(),
        name: name.into(),
        member: member.map(String::from),
        deleting: false,
    }
}

fn ready() -> Probe {
    Probe::Answered {
        code: 200,
        body: "caches: ok (synced)".into(),
    }
}

fn healthy(sharded: bool) -> Observed {
    let (a, b) = if sharded {
        ("cm-0", "cm-1")
    } else {
        ("local", "local")
    };
    Observed {
        pods: Ok(vec![pod("cm-0", "10.0.0.1"), pod("cm-1", "10.0.0.2")]),
        probes: BTreeMap::from([("cm-0".into(), ready()), ("cm-1".into(), ready())]),
        mirrors: Ok(vec![mirror("a", Some(a)), mirror("b", Some(b))]),
    }
}

fn failed(report: &Report) -> Vec<&str> {
    report.failures().map(|o| o.check.as_str()).collect()
}

#[test]
fn a_settled_release_passes() {
    for sharded in [false, true] {
        let r = evaluate(&healthy(sharded), SELECTOR, sharded);
        assert!(r.passed(), "{r}");
        assert!(r.to_string().ends_with("all 5 checks passed"), "{r}");
    }
}

#[test]
fn no_pods_fails_and_says_which_selector() {
    let mut o = healthy(false);
    o.pods = Ok(vec![]);
    o.probes.clear();
    let r = evaluate(&o, SELECTOR, false);
    assert!(!r.passed());
    assert_eq!(failed(&r), ["pods"]);
    assert!(r.to_string().contains(SELECTOR), "{r}");
}

#[test]
fn listing_errors_fail() {
    let mut o = healthy(false);
    o.pods = Err("pods is forbidden".into());
    o.mirrors = Err("the server could not find the requested resource".into());
    let r = evaluate(&o, SELECTOR, false);
    assert_eq!(failed(&r), ["pods", "mirrors"]);
    assert!(r.to_string().contains("forbidden"), "{r}");
}

#[test]
fn pods_must_run_with_an_ip_and_not_be_terminating() {
    let mut o = healthy(false);
    o.pods = Ok(vec![
        pod("cm-0", "10.0.0.1"),
        PodState {
            phase: "Pending".into(),
            ip: None,
            ..pod("cm-1", "")
        },
        PodState {
            ip: None,
            ..pod("cm-2", "")
        },
        PodState {
            terminating: true,
            ..pod("cm-3", "10.0.0.4")
        },
    ]);
    // Only pods with an IP are probed.
    o.probes.remove("cm-1");
    o.probes.insert("cm-3".into(), ready());
    let r = evaluate(&o, SELECTOR, false);
    assert_eq!(
        failed(&r),
        [
            "pod cm-1",
            "pod cm-2",
            "pod cm-3",
            "readyz cm-1",
            "readyz cm-2"
        ]
    );
    let text = r.to_string();
    assert!(text.contains("pod cm-1: Pending (want Running)"), "{text}");
    assert!(
        text.contains("pod cm-2: Running but no pod IP yet"),
        "{text}"
    );
    assert!(
        text.contains("readyz cm-1: not probed: no pod IP"),
        "{text}"
    );
}

#[test]
fn readyz_must_answer_200() {
    let mut o = healthy(false);
    o.probes.insert(
        "cm-0".into(),
        Probe::Answered {
            code: 503,
            body: "caches: ok (synced)\nmembership: failing (fenced)\n".into(),
        },
    );
    o.probes.insert(
        "cm-1".into(),
        Probe::Failed("GET http://10.0.0.2:8081/readyz: connection refused".into()),
    );
    let r = evaluate(&o, SELECTOR, false);
    assert_eq!(failed(&r), ["readyz cm-0", "readyz cm-1"]);
    let text = r.to_string();
    assert!(
        text.contains("readyz cm-0: 503 (caches: ok (synced) membership: failing (fenced))"),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
}

#[test]
fn every_mirror_needs_a_member_and_the_failing_ones_are_named() {
    let mut o = healthy(false);
    o.mirrors = Ok(vec![
        mirror("a", Some("local")),
        mirror("b", None),
        mirror("c", Some("")),
        MirrorState {
            deleting: true,
            ..mirror("gone", None)
        },
    ]);
    let r = evaluate(&o, SELECTOR, false);
    assert_eq!(failed(&r), ["mirrors", "mirror team/b", "mirror team/c"]);
    let text = r.to_string();
    assert!(
        text.contains("[FAIL] mirrors: 1 of 3 have status.shard.member"),
        "{text}"
    );
    assert!(
        text.contains("mirror team/b: no status.shard.member yet"),
        "{text}"
    );
}

#[test]
fn sharded_members_must_be_pods() {
    let mut o = healthy(true);
    o.mirrors = Ok(vec![
        mirror("a", Some("cm-0")),
        mirror("b", Some("cm-7")),
        mirror("c", Some("local")),
    ]);
    let r = evaluate(&o, SELECTOR, true);
    assert_eq!(failed(&r), ["mirrors", "mirror team/b", "mirror team/c"]);
    assert!(
        r.to_string()
            .contains("status.shard.member \"cm-7\" is not one of the pods (cm-0, cm-1)"),
        "{r}"
    );
    // Unsharded, any non-empty member will do.
    assert!(evaluate(&o, SELECTOR, false).passed());
}

#[test]
fn no_mirrors_is_fine_and_many_failures_are_bounded() {
    let mut o = healthy(false);
    o.mirrors = Ok(vec![]);
    assert!(evaluate(&o, SELECTOR, false).passed());

    o.mirrors = Ok((0..50).map(|i| mirror(&format!("m{i:02}"), None)).collect());
    let r = evaluate(&o, SELECTOR, false);
    let listed = r
        .outcomes
        .iter()
        .filter(|o| o.check.starts_with("mirror "))
        .count();
    assert_eq!(listed, MAX_MIRRORS_LISTED);
    assert!(
        r.to_string()
            .contains("… and 30 more without status.shard.member"),
        "{r}"
    );
}

#[test]
fn an_empty_report_does_not_pass() {
    assert!(!Report::default().passed());
}

#[test]
fn readyz_urls() {
    assert_eq!(
        readyz_url("10.0.0.1", 8081).unwrap(),
        "http://10.0.0.1:8081/readyz"
    );
    assert_eq!(
        readyz_url("fd00::1", 8081).unwrap(),
        "http://[fd00::1]:8081/readyz"
    );
    assert!(readyz_url("pod-0", 8081).is_err());
}

#[test]
fn long_bodies_are_cut() {
    let body = "x".repeat(500);
    assert_eq!(one_line(&body).chars().count(), 201);
}
