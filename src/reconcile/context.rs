//! What every reconcile shares: the client, the caches, the policy, and the
//! small bits of memory that keep the operator from repeating itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::Recorder;

use crate::api::ConfigMirrorStatus;
use crate::persistence::Persistence;
use crate::plan::{Holder, KnownConflicts, TargetPolicy, model::older};
use crate::scope::Scope;
use crate::telemetry::liveness::Liveness;
use crate::watches::{NamespaceCache, ReplicaCache, SourceCache};

use super::apply::fair::{ReconcileSlots, WriteBudget};

/// Tunables of the controller, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: TargetPolicy,
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
            policy: TargetPolicy::default(),
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

pub struct Context {
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
    pub memory: Memory,
}

/// (namespace, name) → who holds it and when we last looked.
type ConflictMemory = HashMap<(String, String), (Holder, Instant)>;

/// Per-mirror memory, keyed by mirror UID. Losing it (a restart) costs at
/// most one extra read or a precondition failure, never a wrong write.
#[derive(Default)]
pub struct Memory {
    failures: Mutex<HashMap<String, u32>>,
    conflicts: Mutex<HashMap<String, ConflictMemory>>,
    own_status: Mutex<HashMap<String, (String, ConfigMirrorStatus)>>,
    own_finalizer: Mutex<HashMap<String, String>>,
    conflict_counts: Mutex<HashMap<String, usize>>,
    ready: Mutex<BTreeSet<String>>,
}

impl Memory {
    /// Counts a failed reconcile; returns how many in a row.
    pub fn failed(&self, uid: &str) -> u32 {
        let mut f = self.failures.lock().unwrap();
        let n = f.entry(uid.to_string()).or_default();
        *n += 1;
        *n
    }

    pub fn succeeded(&self, uid: &str) {
        self.failures.lock().unwrap().remove(uid);
    }

    /// Conflicts found recently enough to be believed without looking again.
    pub fn known_conflicts(&self, uid: &str, recheck: Duration) -> KnownConflicts {
        let mut all = self.conflicts.lock().unwrap();
        let Some(entries) = all.get_mut(uid) else {
            return KnownConflicts::new();
        };
        entries.retain(|_, (_, seen)| seen.elapsed() < recheck);
        entries
            .iter()
            .map(|(k, (h, _))| (k.clone(), h.clone()))
            .collect()
    }

    pub fn remember_conflict(&self, uid: &str, namespace: &str, name: &str, holder: Holder) {
        self.conflicts
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default()
            .insert(
                (namespace.to_string(), name.to_string()),
                (holder, Instant::now()),
            );
    }

    /// The status this mirror has: ours if we wrote one the cache has not
    /// caught up with yet, else the cached one.
    pub fn current_status(
        &self,
        uid: &str,
        cached_rv: &str,
        cached: Option<&ConfigMirrorStatus>,
    ) -> Option<ConfigMirrorStatus> {
        let own = self.own_status.lock().unwrap();
        match own.get(uid) {
            Some((rv, status)) if older(cached_rv, rv) => Some(status.clone()),
            _ => cached.cloned(),
        }
    }

    pub fn wrote_status(&self, uid: &str, resource_version: String, status: ConfigMirrorStatus) {
        self.own_status
            .lock()
            .unwrap()
            .insert(uid.to_string(), (resource_version, status));
    }

    /// Whether we added the finalizer at a version the cache has not reached.
    pub fn added_finalizer(&self, uid: &str, cached_rv: &str) -> bool {
        self.own_finalizer
            .lock()
            .unwrap()
            .get(uid)
            .is_some_and(|rv| older(cached_rv, rv))
    }

    pub fn remember_finalizer(&self, uid: &str, resource_version: String) {
        self.own_finalizer
            .lock()
            .unwrap()
            .insert(uid.to_string(), resource_version);
    }

    /// Records this mirror's conflict count and readiness; returns the
    /// totals over all mirrors for the gauges.
    pub fn record_outcome(&self, uid: &str, conflicts: usize, ready: bool) -> (usize, usize) {
        let mut counts = self.conflict_counts.lock().unwrap();
        counts.insert(uid.to_string(), conflicts);
        let mut r = self.ready.lock().unwrap();
        if ready {
            r.insert(uid.to_string());
        } else {
            r.remove(uid);
        }
        (counts.values().sum(), r.len())
    }

    /// Forgets mirrors that are gone (deleted without our finalizer).
    pub fn retain(&self, live: &BTreeSet<String>) {
        let mut gone: BTreeSet<String> = self.failures.lock().unwrap().keys().cloned().collect();
        gone.extend(self.conflict_counts.lock().unwrap().keys().cloned());
        gone.extend(self.own_status.lock().unwrap().keys().cloned());
        for uid in gone.difference(live) {
            self.forget(uid);
        }
    }

    /// Forgets a deleted mirror.
    pub fn forget(&self, uid: &str) -> (usize, usize) {
        self.failures.lock().unwrap().remove(uid);
        self.conflicts.lock().unwrap().remove(uid);
        self.own_status.lock().unwrap().remove(uid);
        self.own_finalizer.lock().unwrap().remove(uid);
        let mut counts = self.conflict_counts.lock().unwrap();
        counts.remove(uid);
        let mut r = self.ready.lock().unwrap();
        r.remove(uid);
        (counts.values().sum(), r.len())
    }
}

/// Exponential backoff with ±20 % jitter, so failing mirrors do not retry in
/// lockstep.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn known_conflicts_expire() {
        let m = Memory::default();
        m.remember_conflict("u", "dev", "cfg", Holder::Unmanaged);
        assert_eq!(m.known_conflicts("u", Duration::from_secs(60)).len(), 1);
        assert!(m.known_conflicts("u", Duration::ZERO).is_empty());
    }
}
