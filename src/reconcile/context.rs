//! What every reconcile shares: the client, the caches, the policy, and the
//! small bits of memory that keep the operator from repeating itself.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Recorder;

use crate::persistence::Persistence;
use crate::plan::NamespacePolicy;
use crate::scope::Scope;
use crate::telemetry::liveness::Liveness;
use crate::watches::{NamespaceCache, ReplicaCache, SourceCache};

use super::apply::fair::{ReconcileSlots, WriteBudget};
pub(crate) use super::state::Memory;

/// Tunables of the controller, from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub policy: NamespacePolicy,
    pub adopt_reference_replicas: bool,
    /// Replica writes in flight at once, over all mirrors.
    pub write_concurrency: usize,
    /// A successful reconcile is repeated after this long (a safety net; it
    /// writes nothing when nothing changed).
    pub resync: Duration,
    /// How long a name found held by someone else is believed before the
    /// operator looks again.
    pub conflict_recheck: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A deleted mirror's rows in the operator's own database are retried
    /// this long after the deletion started, then recorded as orphaned.
    pub orphan_rows_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: NamespacePolicy::default(),
            adopt_reference_replicas: false,
            write_concurrency: 32,
            resync: Duration::from_secs(600),
            conflict_recheck: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            orphan_rows_after: Duration::from_secs(300),
        }
    }
}

pub(crate) struct Context {
    pub client: Client,
    pub settings: Settings,
    pub scope: Scope,
    pub namespaces: Arc<NamespaceCache>,
    pub replicas: Arc<ReplicaCache>,
    pub sources: Arc<SourceCache>,
    pub recorder: Recorder,
    pub persistence: Arc<Persistence>,
    /// `--write-concurrency`, shared fairly between mirrors.
    pub writes: WriteBudget,
    /// `--concurrency`: reconciles reading, planning or writing status at once.
    pub slots: ReconcileSlots,
    /// Progress for /healthz.
    pub liveness: Arc<Liveness>,
    /// One `MirrorState` per mirror (see `state`).
    pub memory: Memory,
}

/// Exponential backoff with ±20 % jitter, so failing mirrors do not retry in
/// lockstep.
pub(crate) fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for (n, nominal) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (40, 60.0),
        ] {
            let d = backoff(n, base, max).as_secs_f64();
            assert!(
                d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                "{n}: {d}"
            );
        }
        let samples: BTreeSet<u128> = (0..20).map(|_| backoff(3, base, max).as_millis()).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }
}
