//! The one place that decides which ConfigMirrors this process reconciles.
//! Everything else asks it. Today: the `--watch-namespace` scope (all
//! namespaces when empty); sharding narrows it to this member's assignment.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;

use crate::api::ConfigMirror;
use crate::kubeclient::WriteDeadline;
use crate::shard::ShardView;
use crate::store::persist::Fence;

#[derive(Clone, Default)]
pub(crate) struct Scope {
    /// Namespaces whose mirrors this process handles; empty means all.
    namespaces: BTreeSet<String>,
    /// Under `--sharding`: this member's assignment.
    shard: Option<Arc<ShardView>>,
    /// Under `--leader-elect`: until when the leader may write.
    lease: Option<Arc<WriteDeadline>>,
}

/// A reconcile in progress: while it lives, a drain of its mirror waits.
pub(crate) struct InFlight {
    shard: Option<(Arc<ShardView>, String)>,
}

impl InFlight {
    /// Resolves when the reconcile must stop at once (sharded: its mirror
    /// was drained away, or the member fenced); never otherwise.
    pub(crate) fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cancelled = self.shard.as_ref().map(|(view, uid)| view.cancelled(uid));
        async move {
            match cancelled {
                Some(c) => c.await,
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((view, uid)) = &self.shard {
            view.end(uid);
        }
    }
}

impl Scope {
    pub(crate) fn new(namespaces: impl IntoIterator<Item = String>) -> Self {
        Self {
            namespaces: namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
            shard: None,
            lease: None,
        }
    }

    pub(crate) fn with_lease(mut self, deadline: Arc<WriteDeadline>) -> Self {
        self.lease = Some(deadline);
        self
    }

    /// Under `--leader-elect`: the leader's write deadline (row writes check
    /// it too, long after the reconcile that queued them).
    pub(crate) fn lease(&self) -> Option<&Arc<WriteDeadline>> {
        self.lease.as_ref()
    }

    pub(crate) fn with_shard(mut self, view: Arc<ShardView>) -> Self {
        self.shard = Some(view);
        self
    }

    pub(crate) fn shard(&self) -> Option<&Arc<ShardView>> {
        self.shard.as_ref()
    }

    /// Starts a reconcile if this process owns the mirror (atomically with
    /// a drain's check, see `ShardView::begin`).
    pub(crate) fn begin(&self, mirror: &ConfigMirror) -> Option<InFlight> {
        if !self.in_namespace_scope(&mirror.namespace().unwrap_or_default()) {
            return None;
        }
        match &self.shard {
            None => Some(InFlight { shard: None }),
            Some(view) => {
                let uid = mirror.uid()?;
                view.begin(&uid).then(|| InFlight {
                    shard: Some((view.clone(), uid)),
                })
            }
        }
    }

    /// Whether the running reconcile of mirror `uid` may send a write now
    /// (sharded: the member's lease holds and the mirror is still its own
    /// at the epoch the reconcile began under, see `ShardView::may_write`;
    /// leader-elected: before the Lease's renew deadline).
    pub(crate) fn may_write(&self, uid: &str) -> bool {
        self.lease.as_ref().is_none_or(|d| d.holds())
            && self.shard.as_ref().is_none_or(|v| v.may_write(uid))
    }

    /// What the running reconcile's row statements carry under sharding:
    /// the epoch it began under (PostgreSQL refuses them once a newer owner
    /// has written). `None` unsharded.
    pub(crate) fn fence(&self, uid: &str) -> Option<Fence> {
        let view = self.shard.as_ref()?;
        Some(Fence {
            // No reconcile in flight (cannot happen when called from one):
            // epoch 0 is older than every assignment, so it is refused.
            epoch: view.in_flight_epoch(uid).unwrap_or(0),
            member: view.member.clone(),
        })
    }

    /// The single namespace to watch mirrors in, when the scope is exactly one.
    pub(crate) fn single_namespace(&self) -> Option<&str> {
        match self.namespaces.len() {
            1 => self.namespaces.iter().next().map(String::as_str),
            _ => None,
        }
    }

    pub(crate) fn in_namespace_scope(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.contains(namespace)
    }

    pub(crate) fn owns(&self, mirror: &ConfigMirror) -> bool {
        self.in_namespace_scope(&mirror.namespace().unwrap_or_default())
            && self
                .shard
                .as_ref()
                .is_none_or(|v| mirror.uid().is_some_and(|uid| v.owns(&uid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(ns: &str) -> ConfigMirror {
        let mut m = ConfigMirror::new("m", Default::default());
        m.metadata.namespace = Some(ns.into());
        m
    }

    #[test]
    fn empty_scope_owns_everything() {
        let s = Scope::new(Vec::<String>::new());
        assert!(s.owns(&mirror("a")) && s.owns(&mirror("b")));
        assert_eq!(s.single_namespace(), None);
    }

    #[test]
    fn a_shard_narrows_the_scope_to_its_assignment() {
        let view = Arc::new(crate::shard::view::tests::fresh_view());
        view.unfence();
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        view.set_owned([crate::shard::view::tests::owned("u1", 1)].into(), later);
        let s = Scope::new(Vec::<String>::new()).with_shard(view.clone());
        let mut mine = mirror("a");
        mine.metadata.uid = Some("u1".into());
        let mut theirs = mirror("a");
        theirs.metadata.uid = Some("u2".into());
        assert!(s.owns(&mine) && !s.owns(&theirs));
        let guard = s.begin(&mine).expect("owned");
        assert!(view.in_flight("u1"));
        drop(guard);
        assert!(!view.in_flight("u1"));
        assert!(s.begin(&theirs).is_none());
    }

    #[test]
    fn namespace_scope_owns_only_its_namespaces() {
        let s = Scope::new(["a".to_string(), "c".to_string()]);
        assert!(s.owns(&mirror("a")) && s.owns(&mirror("c")));
        assert!(!s.owns(&mirror("b")));
        assert_eq!(Scope::new(["a".to_string()]).single_namespace(), Some("a"));
    }
}
