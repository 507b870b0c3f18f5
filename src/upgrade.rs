//! `configmirror prepare-upgrade`: what the chart runs before every `helm
//! upgrade` and `helm rollback`. Leader election keeps the replicas of one
//! mode apart, and the coordinator's epochs keep sharded members apart,
//! but nothing keeps a leader-elected controller apart from sharded
//! members: a rolling update from one mode to the other would run both for
//! a while, each writing the same mirrors. So when the release changes
//! mode, the old mode stops first: its StatefulSet is scaled to zero and
//! its pods are waited for; the upgrade then starts the new mode. Replicas
//! pause for that gap (seconds), which is the price of never writing twice.
//! A release that keeps its mode is left alone (its rolling update is safe).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

use crate::config::PrepareUpgradeArgs;
use crate::kubeclient;

/// How the operator's pods run, as the chart's arguments say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `--leader-elect`: one active controller.
    LeaderElect,
    /// `--sharding`: members under a coordinator.
    Sharded,
}

/// The mode a StatefulSet's operator container runs (the one with `run`).
pub(crate) fn mode_of(sts: &StatefulSet) -> Option<Mode> {
    let containers = &sts.spec.as_ref()?.template.spec.as_ref()?.containers;
    let args = containers
        .iter()
        .filter_map(|c| c.args.as_ref())
        .find(|a| a.first().map(String::as_str) == Some("run"))?;
    Some(if args.iter().any(|a| a == "--sharding") {
        Mode::Sharded
    } else {
        Mode::LeaderElect
    })
}

/// What the upgrade needs before it may start the pods of `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// No StatefulSet yet, or the same mode: the rolling update is safe.
    Nothing,
    /// Another mode runs `replicas` pods: stop them first.
    StopOldMode { replicas: i32 },
}

pub(crate) fn step(current: Option<&StatefulSet>, next: Mode) -> Step {
    let Some(sts) = current else {
        return Step::Nothing;
    };
    match mode_of(sts) {
        Some(mode) if mode != next => Step::StopOldMode {
            replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        },
        _ => Step::Nothing,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] kubeclient::Error),
    #[error("reading or scaling statefulset {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the old mode's pods were still there after {0:?}; scaled back, nothing changed")]
    Timeout(Duration),
}

/// `configmirror prepare-upgrade`.
pub async fn run(args: PrepareUpgradeArgs) -> Result<(), Error> {
    let client = kubeclient::for_command(args.kube.clone(), "prepare-upgrade").await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &args.namespace);
    let kube_err = |source| Error::Kube {
        name: args.statefulset.clone(),
        source,
    };
    let current = sets.get_opt(&args.statefulset).await.map_err(kube_err)?;
    let Step::StopOldMode { replicas } = step(current.as_ref(), args.mode) else {
        println!(
            "{}: mode unchanged ({:?}); the rolling update is safe",
            args.statefulset, args.mode
        );
        return Ok(());
    };
    println!(
        "{}: switching to {:?}; stopping its {replicas} pod(s) of the old mode first",
        args.statefulset, args.mode
    );
    scale(&sets, &args.statefulset, 0).await.map_err(kube_err)?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    let selector = current
        .and_then(|s| s.spec)
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if pods_gone(&client, &args.namespace, &selector, timeout).await {
        println!("{}: the old mode's pods are gone", args.statefulset);
        return Ok(());
    }
    // The upgrade fails; the old mode goes on as it was.
    scale(&sets, &args.statefulset, replicas)
        .await
        .map_err(kube_err)?;
    Err(Error::Timeout(timeout))
}

async fn scale(sets: &Api<StatefulSet>, name: &str, replicas: i32) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    sets.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

async fn pods_gone(client: &Client, namespace: &str, selector: &str, timeout: Duration) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match pods
            .list_metadata(&ListParams::default().labels(selector))
            .await
        {
            Ok(list) if list.items.is_empty() => return true,
            Ok(list) => tracing::info!(left = list.items.len(), "waiting for the old mode's pods"),
            Err(e) => tracing::warn!(error = %e, "listing the old mode's pods"),
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(args: &[&str], replicas: i32) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "x"}},
                "serviceName": "x",
                "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "s", "args": ["--sharding"]},
                    {"name": "operator", "image": "o", "args": args},
                ]}},
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_mode_comes_from_the_operator_containers_arguments() {
        assert_eq!(
            mode_of(&sts(&["run", "--leader-elect"], 1)),
            Some(Mode::LeaderElect)
        );
        assert_eq!(
            mode_of(&sts(&["run", "--sharding"], 3)),
            Some(Mode::Sharded)
        );
        // A sidecar's arguments do not count.
        assert_eq!(mode_of(&sts(&["run"], 1)), Some(Mode::LeaderElect));
        assert_eq!(mode_of(&sts(&["crdgen"], 1)), None);
    }

    #[test]
    fn only_a_change_of_mode_stops_the_old_pods_first() {
        assert_eq!(step(None, Mode::Sharded), Step::Nothing);
        let leader = sts(&["run", "--leader-elect"], 1);
        let sharded = sts(&["run", "--sharding"], 3);
        assert_eq!(step(Some(&leader), Mode::LeaderElect), Step::Nothing);
        assert_eq!(step(Some(&sharded), Mode::Sharded), Step::Nothing);
        assert_eq!(
            step(Some(&leader), Mode::Sharded),
            Step::StopOldMode { replicas: 1 }
        );
        assert_eq!(
            step(Some(&sharded), Mode::LeaderElect),
            Step::StopOldMode { replicas: 3 }
        );
    }
}
