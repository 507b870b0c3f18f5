//! Deletions the namespace policy asks for wait for a confirmation. A
//! denial seen once may come from a cache that has not caught up (an
//! `allow-mirrors-from` annotation added a moment ago), so replicas it
//! would remove are kept until a later pass, at least `CONFIRM_AFTER`
//! after the first, sees the same denial again. Nothing is written under a
//! denied source or into a denied target meanwhile: only removal waits.

use std::time::{Duration, Instant};

use super::state::Memory;
use crate::plan::policy::{self, Role};
use crate::plan::{Action, DeleteReason, Denial, ReplicaPlan};

/// How long a denial must last before replicas are deleted for it.
pub(crate) const CONFIRM_AFTER: Duration = Duration::from_secs(2);

/// What this pass held back for lack of confirmation.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// Replica deletions kept for a later pass.
    pub deletes: usize,
    /// The source is denied but not confirmed: rows are left as they are.
    pub source: bool,
}

impl Held {
    /// When to look again: soon, if anything waits for confirmation.
    pub(crate) fn recheck(&self) -> Option<Duration> {
        (self.deletes > 0 || self.source).then_some(CONFIRM_AFTER)
    }
}

/// Removes from `plan` the policy's deletions whose denial is not confirmed.
pub(crate) fn hold_unconfirmed(
    memory: &Memory,
    uid: &str,
    plan: &mut ReplicaPlan,
    now: Instant,
) -> Held {
    let keys: Vec<String> = plan.denials.iter().map(Denial::key).collect();
    let confirmed = memory.confirm_denials(uid, &keys, now, CONFIRM_AFTER);
    let source = plan.denials.iter().find(|d| d.role == Role::Source);
    let before = plan.actions.len();
    plan.actions.retain(|action| match action {
        Action::Delete {
            namespace,
            reason: DeleteReason::Forbidden,
            ..
        } => {
            // A denied source is the reason for every deletion.
            let key = source.map_or_else(|| policy::key(Role::Target, namespace), Denial::key);
            confirmed.contains(&key)
        }
        _ => true,
    });
    Held {
        deletes: before - plan.actions.len(),
        source: source.is_some_and(|d| !confirmed.contains(&d.key())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::policy::Why;

    fn delete(namespace: &str, reason: DeleteReason) -> Action {
        Action::Delete {
            namespace: namespace.into(),
            name: "cfg".into(),
            resource_version: "1".into(),
            uid: "r".into(),
            reason,
        }
    }

    fn denial(role: Role, namespace: &str) -> Denial {
        Denial {
            role,
            namespace: namespace.into(),
            why: Why::Protected,
        }
    }

    fn plan(denials: Vec<Denial>) -> ReplicaPlan {
        ReplicaPlan {
            denials,
            actions: vec![
                delete("kube-system", DeleteReason::Forbidden),
                delete("dev", DeleteReason::SourceGone),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_target_denial_deletes_only_once_confirmed() {
        let memory = Memory::default();
        let t0 = Instant::now();
        let mut first = plan(vec![denial(Role::Target, "kube-system")]);
        let held = hold_unconfirmed(&memory, "u", &mut first, t0);
        assert_eq!(held.deletes, 1);
        assert!(!held.source);
        assert_eq!(held.recheck(), Some(CONFIRM_AFTER));
        assert_eq!(first.actions, vec![delete("dev", DeleteReason::SourceGone)]);

        let mut second = plan(vec![denial(Role::Target, "kube-system")]);
        let held = hold_unconfirmed(&memory, "u", &mut second, t0 + CONFIRM_AFTER);
        assert_eq!(held, Held::default());
        assert_eq!(held.recheck(), None);
        assert_eq!(second.actions.len(), 2);
    }

    #[test]
    fn a_source_denial_holds_every_deletion_and_the_rows() {
        let memory = Memory::default();
        let t0 = Instant::now();
        let mut first = plan(vec![denial(Role::Source, "kube-system")]);
        first.actions.push(delete("prod", DeleteReason::Forbidden));
        let held = hold_unconfirmed(&memory, "u", &mut first, t0);
        assert_eq!((held.deletes, held.source), (2, true));
        // The denial went away in between: a new one starts over.
        hold_unconfirmed(&memory, "u", &mut plan(vec![]), t0 + CONFIRM_AFTER);
        let mut again = plan(vec![denial(Role::Source, "kube-system")]);
        let held = hold_unconfirmed(&memory, "u", &mut again, t0 + 2 * CONFIRM_AFTER);
        assert_eq!((held.deletes, held.source), (1, true));
    }
}
