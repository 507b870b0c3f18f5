//! What the reconcile module keeps per mirror between passes: one
//! `MirrorState` per mirror UID, in one map. Losing it (a restart) costs at
//! most one extra read or a precondition failure, never a wrong write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::ConfigMirrorStatus;
use crate::plan::{Holder, KnownConflicts, model::older};

/// A write of ours to the mirror object that the mirror cache may not have
/// caught up with yet: believed over the cache while the cached copy is
/// older than the version the API server answered with.
///
/// The replica cache applies the same rule to our own replica writes
/// (`ReplicaCache::observe_own_write` keeps the newer of the two versions,
/// by `plan::model::older`); this is its twin for the mirror's own status
/// and finalizer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OwnWrite<T> {
    pub resource_version: String,
    pub value: T,
}

impl<T> OwnWrite<T> {
    pub(crate) fn new(resource_version: String, value: T) -> Self {
        Self {
            resource_version,
            value,
        }
    }

    /// Whether this write is newer than the cached object at `cached_rv`
    /// (an unparsable version is never newer: the cache wins).
    pub(crate) fn newer_than(&self, cached_rv: &str) -> bool {
        older(cached_rv, &self.resource_version)
    }
}

/// (namespace, name) → who holds it and when we last looked.
type ConflictMemory = HashMap<(String, String), (Holder, Instant)>;

/// Everything the reconcile module remembers of one mirror. Row hashes are
/// the persistence queue's (`crate::persistence`), replicas the replica
/// cache's.
#[derive(Debug, Default)]
pub(crate) struct MirrorState {
    /// Failed reconciles in a row: the backoff.
    failures: u32,
    conflicts: ConflictMemory,
    own_status: Option<OwnWrite<ConfigMirrorStatus>>,
    own_finalizer: Option<OwnWrite<()>>,
    /// The last pass's conflicts and readiness, for the gauge totals.
    conflict_count: usize,
    ready: bool,
    /// The policy's denials of the last pass, by key, and when each was
    /// first seen (`super::denials`).
    denials: HashMap<String, Instant>,
}

/// The per-mirror states, keyed by mirror UID.
#[derive(Default)]
pub(crate) struct Memory {
    mirrors: Mutex<HashMap<String, MirrorState>>,
}

impl Memory {
    fn with<R>(&self, uid: &str, f: impl FnOnce(&mut MirrorState) -> R) -> R {
        f(self
            .mirrors
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default())
    }

    fn peek<R>(&self, uid: &str, f: impl FnOnce(&MirrorState) -> R) -> Option<R> {
        self.mirrors.lock().unwrap().get(uid).map(f)
    }

    /// Counts a failed reconcile; returns how many in a row.
    pub(crate) fn failed(&self, uid: &str) -> u32 {
        self.with(uid, |s| {
            s.failures += 1;
            s.failures
        })
    }

    pub(crate) fn succeeded(&self, uid: &str) {
        if let Some(s) = self.mirrors.lock().unwrap().get_mut(uid) {
            s.failures = 0;
        }
    }

    /// Conflicts found recently enough to be believed without looking again.
    pub(crate) fn known_conflicts(&self, uid: &str, recheck: Duration) -> KnownConflicts {
        let mut all = self.mirrors.lock().unwrap();
        let Some(state) = all.get_mut(uid) else {
            return KnownConflicts::new();
        };
        state
            .conflicts
            .retain(|_, (_, seen)| seen.elapsed() < recheck);
        state
            .conflicts
            .iter()
            .map(|(k, (h, _))| (k.clone(), h.clone()))
            .collect()
    }

    pub(crate) fn remember_conflict(&self, uid: &str, namespace: &str, name: &str, holder: Holder) {
        self.with(uid, |s| {
            s.conflicts.insert(
                (namespace.to_string(), name.to_string()),
                (holder, Instant::now()),
            );
        });
    }

    /// The status this mirror has: ours if we wrote one the cache has not
    /// caught up with yet, else the cached one.
    pub(crate) fn current_status(
        &self,
        uid: &str,
        cached_rv: &str,
        cached: Option<&ConfigMirrorStatus>,
    ) -> Option<ConfigMirrorStatus> {
        let own = self.peek(uid, |s| {
            s.own_status
                .as_ref()
                .filter(|w| w.newer_than(cached_rv))
                .map(|w| w.value.clone())
        });
        own.flatten().or_else(|| cached.cloned())
    }

    pub(crate) fn wrote_status(
        &self,
        uid: &str,
        resource_version: String,
        status: ConfigMirrorStatus,
    ) {
        self.with(uid, |s| {
            s.own_status = Some(OwnWrite::new(resource_version, status));
        });
    }

    /// Whether we added the finalizer at a version the cache has not reached.
    pub(crate) fn added_finalizer(&self, uid: &str, cached_rv: &str) -> bool {
        self.peek(uid, |s| {
            s.own_finalizer
                .as_ref()
                .is_some_and(|w| w.newer_than(cached_rv))
        })
        .unwrap_or(false)
    }

    pub(crate) fn remember_finalizer(&self, uid: &str, resource_version: String) {
        self.with(uid, |s| {
            s.own_finalizer = Some(OwnWrite::new(resource_version, ()));
        });
    }

    /// Records the denials of this pass (forgetting those no longer seen)
    /// and returns the ones confirmed: seen on an earlier pass too, at
    /// least `after` ago.
    pub(crate) fn confirm_denials(
        &self,
        uid: &str,
        keys: &[String],
        now: Instant,
        after: Duration,
    ) -> BTreeSet<String> {
        self.with(uid, |s| {
            s.denials.retain(|k, _| keys.contains(k));
            keys.iter()
                .filter(|k| {
                    let first = *s.denials.entry((*k).clone()).or_insert(now);
                    first < now && now.duration_since(first) >= after
                })
                .cloned()
                .collect()
        })
    }

    /// Records this mirror's conflict count and readiness; returns the
    /// totals over all mirrors for the gauges.
    pub(crate) fn record_outcome(
        &self,
        uid: &str,
        conflicts: usize,
        ready: bool,
    ) -> (usize, usize) {
        let mut all = self.mirrors.lock().unwrap();
        let state = all.entry(uid.to_string()).or_default();
        state.conflict_count = conflicts;
        state.ready = ready;
        totals(&all)
    }

    /// Forgets mirrors that are gone (deleted without our finalizer).
    pub(crate) fn retain(&self, live: &BTreeSet<String>) {
        self.mirrors
            .lock()
            .unwrap()
            .retain(|uid, _| live.contains(uid));
    }

    /// Forgets a deleted mirror; returns the gauge totals without it.
    pub(crate) fn forget(&self, uid: &str) -> (usize, usize) {
        let mut all = self.mirrors.lock().unwrap();
        all.remove(uid);
        totals(&all)
    }
}

/// (conflicts, ready mirrors) over all mirrors.
fn totals(all: &HashMap<String, MirrorState>) -> (usize, usize) {
    let conflicts = all.values().map(|s| s.conflict_count).sum();
    let ready = all.values().filter(|s| s.ready).count();
    (conflicts, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_conflicts_expire() {
        let m = Memory::default();
        m.remember_conflict("u", "dev", "cfg", Holder::Unmanaged);
        assert_eq!(m.known_conflicts("u", Duration::from_secs(60)).len(), 1);
        assert!(m.known_conflicts("u", Duration::ZERO).is_empty());
    }

    #[test]
    fn an_own_write_is_believed_until_the_cache_reaches_it() {
        let w = OwnWrite::new("10".to_string(), ());
        assert!(w.newer_than("9"));
        assert!(!w.newer_than("10"));
        assert!(!w.newer_than("11"));
        assert!(!w.newer_than("not-a-number"));
    }

    #[test]
    fn own_status_and_finalizer_follow_the_same_rule() {
        let m = Memory::default();
        let ours = ConfigMirrorStatus {
            sources: 7,
            ..Default::default()
        };
        m.wrote_status("u", "10".into(), ours.clone());
        m.remember_finalizer("u", "10".into());
        let cached = ConfigMirrorStatus::default();
        assert_eq!(m.current_status("u", "9", Some(&cached)), Some(ours));
        assert_eq!(m.current_status("u", "10", Some(&cached)), Some(cached));
        assert!(m.added_finalizer("u", "9"));
        assert!(!m.added_finalizer("u", "10"));
        assert!(!m.added_finalizer("other", "1"));
    }

    #[test]
    fn gauge_totals_sum_over_mirrors_and_drop_forgotten_ones() {
        let m = Memory::default();
        assert_eq!(m.record_outcome("a", 2, true), (2, 1));
        assert_eq!(m.record_outcome("b", 3, false), (5, 1));
        assert_eq!(m.record_outcome("a", 0, true), (3, 1));
        assert_eq!(m.forget("b"), (0, 1));
        m.failed("c");
        m.retain(&BTreeSet::from(["a".to_string()]));
        assert_eq!(m.failed("c"), 1, "a gone mirror's failures are forgotten");
    }

    #[test]
    fn a_denial_is_confirmed_by_a_later_pass_and_forgotten_when_gone() {
        let m = Memory::default();
        let after = Duration::from_secs(2);
        let t0 = Instant::now();
        let keys = ["source/b".to_string(), "target/kube-system".to_string()];
        assert!(m.confirm_denials("u", &keys, t0, after).is_empty());
        let early = m.confirm_denials("u", &keys, t0 + Duration::from_secs(1), after);
        assert!(early.is_empty(), "a second pass too soon confirms nothing");
        let t2 = t0 + after;
        assert_eq!(m.confirm_denials("u", &keys, t2, after).len(), 2);
        // Gone for one pass: the count starts over.
        assert!(m.confirm_denials("u", &keys[1..], t2, after).len() == 1);
        let back = m.confirm_denials("u", &keys, t2 + after, after);
        assert_eq!(back, BTreeSet::from([keys[1].clone()]));
    }

    #[test]
    fn failures_count_in_a_row_until_a_success() {
        let m = Memory::default();
        assert_eq!(m.failed("u"), 1);
        assert_eq!(m.failed("u"), 2);
        m.succeeded("u");
        assert_eq!(m.failed("u"), 1);
    }
}
