//! What `configmirror check` judges: the observed pods, their `/readyz`
//! answers and the mirrors, turned into a [`Report`] by [`evaluate`] with no
//! client and no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Failing mirrors listed one by one; the rest are counted.
pub(crate) const MAX_MIRRORS_LISTED: usize = 20;

/// An operator pod as the check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodState {
    pub name: String,
    /// `status.phase` (`Pending`, `Running`, ...), empty when unknown.
    pub phase: String,
    pub ip: Option<String>,
    /// It has a deletionTimestamp.
    pub terminating: bool,
}

/// The answer of one pod's `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// An HTTP answer: its status code and (the start of) its body.
    Answered { code: u16, body: String },
    /// No HTTP answer: refused, timed out, no address.
    Failed(String),
}

/// A ConfigMirror as the check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MirrorState {
    pub namespace: String,
    pub name: String,
    /// `status.shard.member`, if any.
    pub member: Option<String>,
    /// Being deleted: its status no longer matters.
    pub deleting: bool,
}

/// Everything one attempt observed.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    /// The pods the selector matched, or why they could not be listed.
    pub pods: Result<Vec<PodState>, String>,
    /// `/readyz` per pod name (pods without an IP are absent).
    pub probes: BTreeMap<String, Probe>,
    /// The ConfigMirrors in scope, or why they could not be listed.
    pub mirrors: Result<Vec<MirrorState>, String>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    fn push(&mut self, check: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.outcomes.push(Outcome {
            check: check.into(),
            ok,
            detail: detail.into(),
        });
    }

    pub(crate) fn passed(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(|o| o.ok)
    }

    pub(crate) fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| !o.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for o in &self.outcomes {
            writeln!(
                f,
                "{} {}: {}",
                if o.ok { "[ok]  " } else { "[FAIL]" },
                o.check,
                o.detail
            )?;
        }
        let failed = self.failures().count();
        if failed == 0 {
            write!(f, "all {} checks passed", self.outcomes.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.outcomes.len())
        }
    }
}

/// Judges one attempt. `sharding`: each mirror's member must be one of the
/// pods (not only non-empty).
pub(crate) fn evaluate(observed: &Observed, selector: &str, sharding: bool) -> Report {
    let mut report = Report::default();
    let pods = judge_pods(observed, selector, &mut report);
    judge_probes(observed, pods, &mut report);
    match &observed.mirrors {
        Ok(mirrors) => judge_mirrors(mirrors, pods, sharding, &mut report),
        Err(e) => report.push("mirrors", false, format!("listing ConfigMirrors: {e}")),
    }
    report
}

/// The pods found, each Running with an IP and not terminating.
fn judge_pods<'a>(observed: &'a Observed, selector: &str, report: &mut Report) -> &'a [PodState] {
    let pods = match &observed.pods {
        Ok(pods) => pods.as_slice(),
        Err(e) => {
            report.push("pods", false, format!("listing pods ({selector}): {e}"));
            &[]
        }
    };
    if observed.pods.is_ok() && pods.is_empty() {
        report.push(
            "pods",
            false,
            format!("no pod matches {selector}: is the release installed, with replicaCount ≥ 1?"),
        );
    }
    for pod in pods {
        let (ok, detail) = match (&pod.phase[..], &pod.ip, pod.terminating) {
            (_, _, true) => (false, format!("{}, terminating", phase_name(&pod.phase))),
            ("Running", Some(ip), false) => (true, format!("Running, {ip}")),
            ("Running", None, false) => (false, "Running but no pod IP yet".into()),
            (phase, _, false) => (false, format!("{} (want Running)", phase_name(phase))),
        };
        report.push(format!("pod {}", pod.name), ok, detail);
    }
    pods
}

/// Each pod's /readyz answer.
fn judge_probes(observed: &Observed, pods: &[PodState], report: &mut Report) {
    for pod in pods {
        let (ok, detail) = match observed.probes.get(&pod.name) {
            None if pod.ip.is_none() => (false, "not probed: no pod IP".to_string()),
            None => (false, "not probed".to_string()),
            Some(Probe::Answered { code: 200, .. }) => (true, "200".to_string()),
            Some(Probe::Answered { code, body }) => {
                let why = one_line(body);
                if why.is_empty() {
                    (false, code.to_string())
                } else {
                    (false, format!("{code} ({why})"))
                }
            }
            Some(Probe::Failed(e)) => (false, e.clone()),
        };
        report.push(format!("readyz {}", pod.name), ok, detail);
    }
}

/// Every mirror not being deleted names its member (one of the pods when
/// sharded); at most `MAX_MIRRORS_LISTED` offenders are listed by name.
fn judge_mirrors(mirrors: &[MirrorState], pods: &[PodState], sharding: bool, report: &mut Report) {
    let pod_names: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for m in mirrors.iter().filter(|m| !m.deleting) {
        checked += 1;
        let problem = match m.member.as_deref() {
            None | Some("") => Some("no status.shard.member yet".to_string()),
            Some(member) if sharding && !pod_names.contains(member) => Some(format!(
                "status.shard.member {member:?} is not one of the pods ({})",
                pod_names.iter().copied().collect::<Vec<_>>().join(", ")
            )),
            Some(_) => None,
        };
        if let Some(p) = problem {
            problems.push((format!("mirror {}/{}", m.namespace, m.name), p));
        }
    }
    let wanted = if sharding {
        "status.shard.member naming one of the pods"
    } else {
        "status.shard.member"
    };
    if checked == 0 {
        report.push("mirrors", true, "no ConfigMirrors yet: nothing to check");
    } else {
        report.push(
            "mirrors",
            problems.is_empty(),
            format!("{} of {checked} have {wanted}", checked - problems.len()),
        );
    }
    let more = problems.len().saturating_sub(MAX_MIRRORS_LISTED);
    for (check, detail) in problems.into_iter().take(MAX_MIRRORS_LISTED) {
        report.push(check, false, detail);
    }
    if more > 0 {
        report.push(
            "mirrors",
            false,
            format!("… and {more} more without {wanted}"),
        );
    }
}

fn phase_name(phase: &str) -> &str {
    if phase.is_empty() { "no phase" } else { phase }
}

/// A /readyz body on one line, bounded.
pub(crate) fn one_line(body: &str) -> String {
    let joined = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &joined[..i]),
        None => joined,
    }
}
