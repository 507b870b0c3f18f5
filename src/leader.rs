//! `--leader-elect`: one active process per Lease, the others stand by.
//! Losing the Lease ends the process (fail-stop): it never writes without a
//! claim, and its pod restarts as a standby. Before that, writes stop at the
//! Lease's renew deadline (a `WriteDeadline` the client enforces): a process that was paused, or
//! could not renew, writes nothing once a standby may have taken over.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::watcher;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::kubeclient::WriteDeadline;
use crate::telemetry::names;

pub(crate) struct Leadership {
    pub holding: watch::Receiver<bool>,
    /// Until when this process may write as the leader (when this Lease
    /// gates its writes).
    pub deadline: Option<Arc<WriteDeadline>>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    follower: Option<JoinHandle<()>>,
}

/// Takes in the Lease as last seen: held by `member`, writes may go on
/// until its renewal + duration − `margin`; held by anyone else (or
/// nobody), not at all. A standby takes over only after renewal + duration
/// by its own reading of the same record, so a write sent before this
/// deadline never overlaps another leader's.
pub(crate) fn observe(deadline: &WriteDeadline, lease: &Lease, member: &str, margin: Duration) {
    deadline.set(
        deadline_of(lease, member, margin, SystemTime::now()).map(|left| Instant::now() + left),
    );
}

/// How long from `now` (wall clock, the clock the holder wrote its renewal
/// with) `member` may still write under `lease`; `None` when it does not
/// hold it. Pure.
pub(crate) fn deadline_of(
    lease: &Lease,
    member: &str,
    margin: Duration,
    now: SystemTime,
) -> Option<Duration> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(member) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?);
    let until = renewed + duration.checked_sub(margin)?;
    Some(until.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Keeps `deadline` equal to what the Lease says, from a watch of that one
/// object: every renewal is a change. When the watch fails, the deadline
/// stays where the last renewal put it and so runs out. Not a
/// `watches::run` cache: each version, listed or not, sets the deadline
/// as it arrives (a buffered list would hold a renewal back), and with one
/// object there is nothing to diff.
async fn follow(
    api: Api<Lease>,
    lease: String,
    member: String,
    margin: Duration,
    deadline: Arc<WriteDeadline>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={lease}"));
    let mut events = crate::watches::events(api, config, crate::watches::Watch::LeaderLease);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => {
                observe(&deadline, &l, &member, margin)
            }
            Ok(watcher::Event::Delete(_)) => deadline.set(None),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::warn!(error = %e, %lease, "watching the leader Lease"),
        }
    }
}

pub(crate) async fn campaign(
    client: Client,
    namespace: &str,
    lease: &str,
    member: &str,
    duration_seconds: u64,
    deadline: Option<Arc<WriteDeadline>>,
) -> Result<Leadership, LeaseManagerError> {
    let duration = duration_seconds.max(2);
    // The manager renews `grace` before expiry; writes stop halfway
    // through that window, leaving room for a late renewal to land.
    let grace = (duration / 3).max(1);
    let margin = Duration::from_secs(grace).div_f64(2.0);
    let manager = LeaseManagerBuilder::new(client.clone(), lease)
        .with_namespace(namespace)
        .with_identity(member)
        .with_duration(duration)
        .with_grace(grace)
        .build()
        .await?;
    // Followed only when this Lease gates writes (not the coordinator's).
    let follower = deadline.clone().map(|deadline| {
        deadline.set(None);
        let follow = follow(
            Api::namespaced(client, namespace),
            lease.to_string(),
            member.to_string(),
            margin,
            deadline,
        );
        tokio::spawn(follow.instrument(tracing::info_span!("lease_deadline", lease)))
    });
    let (holding, task) = manager.watch().await;
    Ok(Leadership {
        holding,
        deadline,
        task,
        follower,
    })
}

pub(crate) fn set_status(leader: bool, lease: &str) {
    metrics::gauge!(names::LEADER_ELECTION_MASTER_STATUS, "name" => lease.to_string())
        .set(if leader { 1.0 } else { 0.0 });
}

impl Leadership {
    /// Waits until this process holds the Lease.
    pub(crate) async fn acquired(&mut self) -> bool {
        self.holding.wait_for(|held| *held).await.is_ok()
    }

    /// Resolves when the Lease is lost (or its manager stopped).
    pub(crate) fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.holding.clone();
        async move {
            let _ = rx.wait_for(|held| !*held).await;
        }
    }

    /// Gives the Lease up so a standby takes over at once.
    pub(crate) async fn release(self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
        if let Some(deadline) = &self.deadline {
            deadline.set(None);
        }
        drop(self.holding);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease"),
            _ => tracing::warn!("timed out releasing the leader Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: SystemTime, seconds: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.try_into().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_deadline_is_the_renewal_plus_the_duration_less_the_margin() {
        let now = SystemTime::now();
        let margin = Duration::from_millis(2500);
        let renewed = now - Duration::from_secs(4);
        let left = deadline_of(&lease("me", renewed, 15), "me", margin, now);
        assert_eq!(left, Some(Duration::from_millis(8500)));
        // A renewal long past: the deadline has passed (a paused process
        // wakes up to this).
        let old = now - Duration::from_secs(60);
        assert_eq!(
            deadline_of(&lease("me", old, 15), "me", margin, now),
            Some(Duration::ZERO)
        );
        // Someone else's Lease, or none recorded: no deadline at all.
        assert_eq!(
            deadline_of(&lease("other", now, 15), "me", margin, now),
            None
        );
        assert_eq!(deadline_of(&Lease::default(), "me", margin, now), None);
    }

    #[test]
    fn a_process_that_observed_an_old_renewal_does_not_hold() {
        let d = WriteDeadline::closed();
        assert!(!d.holds(), "nothing observed yet");
        let now = SystemTime::now();
        let margin = Duration::from_secs(2);
        observe(&d, &lease("me", now, 15), "me", margin);
        assert!(d.holds());
        observe(
            &d,
            &lease("me", now - Duration::from_secs(14), 15),
            "me",
            margin,
        );
        assert!(!d.holds());
        observe(&d, &lease("other", now, 15), "me", margin);
        assert!(!d.holds());
    }
}
