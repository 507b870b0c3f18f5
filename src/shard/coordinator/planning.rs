//! The coordinator's pure decisions: each member's role from its heartbeat,
//! the assignment changes that bring the table to `assign`'s answer, and
//! when the next role change is due. No database, no clock: tested alone.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::shard::Timing;
use crate::shard::assign::{self, Role};
use crate::store::coordination::{AssignmentRow, MemberRow, Move};

/// What the coordinator wants written.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Changes {
    pub insert: Vec<(String, String, String, String)>,
    /// Straight to a new owner (dead owner, or a forced drain).
    pub reassign: Vec<Move>,
    pub drain: Vec<Move>,
    /// (uid, epoch) of assignments whose mirror is gone.
    pub remove: Vec<(String, i64)>,
    /// Mirrors with no member to own them right now.
    pub orphaned: usize,
    pub per_member: BTreeMap<String, usize>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.insert.is_empty()
            && self.reassign.is_empty()
            && self.drain.is_empty()
            && self.remove.is_empty()
    }
}

/// Who may own mirrors. Members are judged dead only once every live member
/// has had time to heartbeat since the coordinator could see the database
/// (`judge_dead`): after an outage every heartbeat looks old.
pub(crate) fn roles(
    members: &[MemberRow],
    timing: &Timing,
    judge_dead: bool,
) -> BTreeMap<String, Role> {
    let ttl = timing.ttl.as_secs_f64();
    let mut roles = BTreeMap::new();
    for m in members {
        let role = if m.state == "leaving" {
            (m.left_age.unwrap_or(0.0) <= timing.leave_grace.as_secs_f64() || !judge_dead)
                .then_some(Role::Holding)
        } else if m.heartbeat_age <= ttl {
            Some(Role::Eligible)
        } else if m.heartbeat_age <= ttl + timing.grace.as_secs_f64() || !judge_dead {
            Some(Role::Holding)
        } else {
            None
        };
        if let Some(role) = role {
            roles.insert(m.name.clone(), role);
        }
    }
    roles
}

/// The writes that bring the assignments to `assign`'s answer. Pure.
pub(crate) fn plan(
    mirrors: &HashMap<String, (String, String)>,
    roles: &BTreeMap<String, Role>,
    current: &[(AssignmentRow, f64)],
    timing: &Timing,
) -> Changes {
    let rows: HashMap<&str, &(AssignmentRow, f64)> = current
        .iter()
        .map(|r| (r.0.mirror_uid.as_str(), r))
        .collect();
    // A mirror being handed over counts as its next owner's, if that one is alive.
    let owners: HashMap<String, String> = current
        .iter()
        .map(|(r, _)| {
            let owner = match &r.next_member {
                Some(next) if roles.get(next) == Some(&Role::Eligible) => next.clone(),
                _ => r.member.clone(),
            };
            (r.mirror_uid.clone(), owner)
        })
        .collect();
    let mut uids: Vec<String> = mirrors.keys().cloned().collect();
    uids.sort();
    let desired = assign::assign(&uids, roles, &owners);

    let mut c = Changes::default();
    for (uid, (ns, name)) in mirrors {
        let want = desired.get(uid);
        if let Some(m) = want {
            *c.per_member.entry(m.clone()).or_default() += 1;
        } else {
            c.orphaned += 1;
        }
        let Some(want) = want else { continue };
        let Some((row, age)) = rows.get(uid.as_str()) else {
            c.insert
                .push((uid.clone(), ns.clone(), name.clone(), want.clone()));
            continue;
        };
        let to = |forced| Move {
            uid: uid.clone(),
            to: want.clone(),
            epoch: row.epoch,
            forced,
        };
        let owner_alive = roles.contains_key(&row.member);
        if row.state == "draining" {
            if !owner_alive {
                c.reassign.push(to(false));
            } else if *age > timing.drain_timeout.as_secs_f64() {
                c.reassign.push(to(true));
            } else if row.next_member.as_ref() != Some(want) {
                c.drain.push(to(false));
            }
        } else if &row.member != want {
            if owner_alive {
                c.drain.push(to(false));
            } else {
                c.reassign.push(to(false));
            }
        }
    }
    c.remove = current
        .iter()
        .filter(|(r, _)| !mirrors.contains_key(&r.mirror_uid))
        .map(|(r, _)| (r.mirror_uid.clone(), r.epoch))
        .collect();
    c
}

/// How long until the next member's role changes with no heartbeat from
/// it: live → holding at the TTL, holding → dead after the grace, leaving
/// → gone after the leave grace. Pure.
pub(crate) fn next_role_change(members: &[MemberRow], timing: &Timing) -> Option<Duration> {
    let (ttl, grace) = (timing.ttl.as_secs_f64(), timing.grace.as_secs_f64());
    members
        .iter()
        .flat_map(|m| {
            if m.state == "leaving" {
                vec![timing.leave_grace.as_secs_f64() - m.left_age.unwrap_or(0.0)]
            } else {
                vec![ttl - m.heartbeat_age, ttl + grace - m.heartbeat_age]
            }
        })
        .filter(|left| *left > 0.0)
        .min_by(f64::total_cmp)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, state: &str, heartbeat_age: f64, left_age: Option<f64>) -> MemberRow {
        MemberRow {
            name: name.into(),
            state: state.into(),
            heartbeat_age,
            left_age,
        }
    }

    fn row(uid: &str, member: &str, next: Option<&str>) -> (AssignmentRow, f64) {
        (
            AssignmentRow {
                mirror_uid: uid.into(),
                mirror_namespace: "ns".into(),
                mirror_name: uid.into(),
                member: member.into(),
                state: if next.is_some() { "draining" } else { "active" }.into(),
                next_member: next.map(String::from),
                epoch: 1,
            },
            0.5,
        )
    }

    #[test]
    fn roles_follow_heartbeats_leaving_and_grace() {
        let t = Timing::default();
        let members = [
            member("fresh", "active", 0.5, None),
            member("late", "active", 5.0, None),
            member("dead", "active", 30.0, None),
            member("restarting", "leaving", 30.0, Some(3.0)),
            member("gone", "leaving", 60.0, Some(60.0)),
        ];
        let r = roles(&members, &t, true);
        assert_eq!(r.get("fresh"), Some(&Role::Eligible));
        assert_eq!(r.get("late"), Some(&Role::Holding));
        assert_eq!(r.get("restarting"), Some(&Role::Holding));
        assert!(!r.contains_key("dead") && !r.contains_key("gone"));
        // Right after an outage nobody is judged dead yet.
        let r = roles(&members, &t, false);
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn new_mirrors_are_inserted_and_gone_ones_removed() {
        let t = Timing::default();
        let mirrors = HashMap::from([("a".to_string(), ("ns".to_string(), "a".to_string()))]);
        let roles = BTreeMap::from([("m0".to_string(), Role::Eligible)]);
        let c = plan(&mirrors, &roles, &[row("old", "m0", None)], &t);
        assert_eq!(
            c.insert,
            vec![("a".into(), "ns".into(), "a".into(), "m0".into())]
        );
        assert_eq!(c.remove, vec![("old".to_string(), 1)]);
    }

    #[test]
    fn a_dead_owner_is_replaced_directly_a_live_one_drains() {
        let t = Timing::default();
        let mirrors: HashMap<String, (String, String)> = (0..40)
            .map(|i| (format!("u{i}"), ("ns".to_string(), format!("u{i}"))))
            .collect();
        let two = BTreeMap::from([
            ("m0".to_string(), Role::Eligible),
            ("m1".to_string(), Role::Eligible),
        ]);
        // Everything on m0, m1 alive: about half drains to m1.
        let rows: Vec<_> = mirrors.keys().map(|u| row(u, "m0", None)).collect();
        let c = plan(&mirrors, &two, &rows, &t);
        assert!(c.reassign.is_empty());
        assert!(
            c.drain.len() >= 15 && c.drain.iter().all(|m| m.to == "m1" && m.epoch == 1),
            "{:?}",
            c.drain.len()
        );
        // m0 dead: all straight to m1.
        let one = BTreeMap::from([("m1".to_string(), Role::Eligible)]);
        let c = plan(&mirrors, &one, &rows, &t);
        assert_eq!(c.reassign.len(), 40);
        assert!(c.reassign.iter().all(|m| !m.forced));
        assert!(c.drain.is_empty());
    }

    #[test]
    fn a_drain_in_progress_is_left_alone_until_it_goes_stale() {
        let t = Timing::default();
        let mirrors = HashMap::from([("a".to_string(), ("ns".to_string(), "a".to_string()))]);
        let roles = BTreeMap::from([
            ("m0".to_string(), Role::Eligible),
            ("m1".to_string(), Role::Eligible),
        ]);
        let desired = assign::assign(&["a".to_string()], &roles, &HashMap::new())["a"].clone();
        let other = if desired == "m0" { "m1" } else { "m0" };
        let mut r = row("a", other, Some(&desired));
        assert!(plan(&mirrors, &roles, std::slice::from_ref(&r), &t).is_empty());
        r.1 = 1000.0;
        let c = plan(&mirrors, &roles, &[r], &t);
        assert_eq!(c.reassign.len(), 1);
        assert!(c.reassign[0].forced);
    }

    #[test]
    fn the_next_step_comes_when_a_silent_member_turns_dead() {
        let timing = Timing::default(); // TTL 4 s, grace 2 s, leave grace 20 s
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        // A member silent for 5.3 s is dead 0.7 s from now; one that
        // heartbeated 0.5 s ago stops being live in 3.5 s.
        let members = [
            member("live", "active", 0.5, None),
            member("silent", "active", 5.3, None),
        ];
        assert_eq!(ms(next_role_change(&members, &timing)), Some(700));
        // Leaving 19 s ago: gone in 1 s (its heartbeats no longer matter).
        let members = [
            member("live", "active", 0.5, None),
            member("leaving", "leaving", 0.2, Some(19.0)),
        ];
        assert_eq!(ms(next_role_change(&members, &timing)), Some(1000));
        // Nothing left to change: dead long ago.
        assert_eq!(
            next_role_change(&[member("dead", "active", 60.0, None)], &timing),
            None
        );
    }
}
