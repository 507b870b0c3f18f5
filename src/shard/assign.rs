//! The pure assignment: ConfigMirror → member, by consistent hashing with
//! bounded loads, sticky. No database, no clock: given the mirrors, the
//! members and the current owners, it says who should own what.
//!
//! - Each mirror's preference order is the `consistent_hash` ring's
//!   candidate order over the members that may take new mirrors; the first
//!   candidate under the cap, ceil(1.05 × mean), wins.
//! - Sticky: a mirror stays with a live owner as long as that owner is
//!   under the cap (mirrors at their ring home are kept first), so a
//!   recomputation moves only what must move.
//! - A member that is leaving (within its grace) or late on heartbeats
//!   (within TTL + grace) holds its mirrors but takes no new ones; a dead
//!   member's mirrors are reassigned.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use consistent_hash::{DefaultHash, Node, StaticHashRing};

/// Virtual nodes per member: enough for the ring itself to be near even,
/// so the cap rarely has to push a mirror off its first choice.
pub(crate) const VNODES: usize = 160;

/// Headroom over the mean load a member may carry.
pub(crate) const LOAD_FACTOR: f64 = 1.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Alive and active: may own mirrors and take new ones.
    Eligible,
    /// Keeps what it owns, takes nothing new (leaving within its grace, or
    /// heartbeats late but within TTL + grace).
    Holding,
}

pub(crate) fn cap(mirrors: usize, members: usize) -> usize {
    if members == 0 {
        return 0;
    }
    ((LOAD_FACTOR * mirrors as f64 / members as f64).ceil() as usize).max(1)
}

fn stable_hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The desired owner of each mirror. `members` lists the members that are
/// not dead; mirrors whose owner is absent from it are reassigned. Returns
/// uid → member for every mirror that has an owner (none when no member is
/// eligible and the mirror's owner is not holding it).
pub fn assign(
    mirrors: &[String],
    members: &BTreeMap<String, Role>,
    current: &HashMap<String, String>,
) -> HashMap<String, String> {
    let eligible: Vec<&String> = members
        .iter()
        .filter(|(_, r)| **r == Role::Eligible)
        .map(|(m, _)| m)
        .collect();
    let cap = cap(mirrors.len(), members.len());
    let ring = StaticHashRing::new(
        DefaultHash,
        eligible
            .iter()
            .map(|m| Node::new(m.as_str()).quantity(VNODES)),
    );
    let first_choice = |uid: &str| ring.calc_candidates(&uid).next().map(|n| n.key);

    let mut owner: HashMap<String, String> = HashMap::with_capacity(mirrors.len());
    let mut load: HashMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();

    // Held mirrors stay where they are, whatever the cap.
    let mut keepable: Vec<(bool, u64, &String, &String)> = Vec::new();
    let mut unplaced: Vec<(u64, &String)> = Vec::new();
    for uid in mirrors {
        match current.get(uid).and_then(|m| members.get_key_value(m)) {
            Some((m, Role::Holding)) => {
                *load.get_mut(m.as_str()).unwrap() += 1;
                owner.insert(uid.clone(), m.clone());
            }
            Some((m, Role::Eligible)) => {
                let at_home = first_choice(uid) == Some(m.as_str());
                keepable.push((!at_home, stable_hash(uid), uid, m));
            }
            None => unplaced.push((stable_hash(uid), uid)),
        }
    }
    // Stickiness: keep live owners under the cap, mirrors at their ring home first.
    keepable.sort();
    for (_, h, uid, m) in keepable {
        let l = load.get_mut(m.as_str()).unwrap();
        if *l < cap {
            *l += 1;
            owner.insert(uid.clone(), m.clone());
        } else {
            unplaced.push((h, uid));
        }
    }
    // New, orphaned and overflowing mirrors: first ring candidate under the cap.
    unplaced.sort();
    for (_, uid) in unplaced {
        let chosen = ring
            .calc_candidates(&uid.as_str())
            .map(|n| n.key)
            .find(|m| load[m] < cap)
            // Held mirrors can leave no room under the cap: take the least loaded.
            .or_else(|| {
                eligible
                    .iter()
                    .map(|m| m.as_str())
                    .min_by_key(|m| (load[m], *m))
            });
        if let Some(m) = chosen {
            *load.get_mut(m).unwrap() += 1;
            owner.insert(uid.clone(), m.to_string());
        }
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{i:08x}-6b3e-4c1a-9f00-{:012x}", i * 7919))
            .collect()
    }

    fn members(names: &[&str]) -> BTreeMap<String, Role> {
        names
            .iter()
            .map(|n| (n.to_string(), Role::Eligible))
            .collect()
    }

    fn loads(owner: &HashMap<String, String>) -> BTreeMap<String, usize> {
        let mut l = BTreeMap::new();
        for m in owner.values() {
            *l.entry(m.clone()).or_default() += 1;
        }
        l
    }

    fn moved(before: &HashMap<String, String>, after: &HashMap<String, String>) -> usize {
        after
            .iter()
            .filter(|(uid, m)| before.get(*uid).is_some_and(|b| b != *m))
            .count()
    }

    fn bound(m: usize, n_new: usize) -> usize {
        m.div_ceil(n_new) + (m as f64 * 0.02).ceil() as usize
    }

    const NAMES: [&str; 10] = [
        "cm-0", "cm-1", "cm-2", "cm-3", "cm-4", "cm-5", "cm-6", "cm-7", "cm-8", "cm-9",
    ];

    #[test]
    fn every_mirror_gets_one_member_and_no_member_exceeds_the_cap() {
        for m in [300, 1000] {
            for n in 1..=10 {
                let mirrors = uids(m);
                let owner = assign(&mirrors, &members(&NAMES[..n]), &HashMap::new());
                assert_eq!(owner.len(), m);
                let max = loads(&owner).values().copied().max().unwrap();
                assert!(
                    max <= cap(m, n),
                    "M={m} N={n}: max load {max} > cap {}",
                    cap(m, n)
                );
            }
        }
    }

    #[test]
    fn recomputing_with_nothing_changed_moves_nothing() {
        let mirrors = uids(1000);
        let all = members(&NAMES[..4]);
        let first = assign(&mirrors, &all, &HashMap::new());
        assert_eq!(assign(&mirrors, &all, &first), first);
    }

    #[test]
    fn a_join_moves_at_most_its_share_plus_two_percent() {
        for m in [300, 1000] {
            for n in 1..10 {
                let mirrors = uids(m);
                let before = assign(&mirrors, &members(&NAMES[..n]), &HashMap::new());
                let after = assign(&mirrors, &members(&NAMES[..=n]), &before);
                let moves = moved(&before, &after);
                assert!(
                    moves <= bound(m, n + 1),
                    "M={m} {n}->{}: {moves} moves",
                    n + 1
                );
                assert!(loads(&after).values().all(|l| *l <= cap(m, n + 1)));
                assert!(
                    after.values().filter(|o| *o == NAMES[n]).count() > 0,
                    "the new member got nothing"
                );
            }
        }
    }

    #[test]
    fn a_leave_moves_only_about_the_leavers_share() {
        for m in [300, 1000] {
            for n in 2..=10 {
                let mirrors = uids(m);
                let before = assign(&mirrors, &members(&NAMES[..n]), &HashMap::new());
                let gone = NAMES[n / 2];
                let remaining: Vec<&str> =
                    NAMES[..n].iter().copied().filter(|x| *x != gone).collect();
                let after = assign(&mirrors, &members(&remaining), &before);
                assert!(after.values().all(|o| o != gone));
                let moves = moved(&before, &after);
                assert!(
                    moves <= bound(m, n - 1),
                    "M={m} {n}->{}: {moves} moves",
                    n - 1
                );
                assert!(loads(&after).values().all(|l| *l <= cap(m, n - 1)));
            }
        }
    }

    #[test]
    fn a_holding_member_keeps_its_mirrors_and_takes_no_new_ones() {
        let mirrors = uids(300);
        let three = members(&NAMES[..3]);
        let before = assign(&mirrors, &three, &HashMap::new());
        let mut holding = three.clone();
        holding.insert(NAMES[1].to_string(), Role::Holding);
        let mut more = mirrors.clone();
        more.extend(uids(330).into_iter().skip(300));
        let after = assign(&more, &holding, &before);
        for (uid, m) in &before {
            if m == NAMES[1] {
                assert_eq!(after[uid], NAMES[1], "a held mirror moved");
            }
        }
        let new_on_holder = more[300..].iter().filter(|u| after[*u] == NAMES[1]).count();
        assert_eq!(new_on_holder, 0);
    }

    #[test]
    fn with_no_member_alive_only_held_mirrors_have_owners() {
        let mirrors = uids(10);
        let owner = assign(&mirrors, &BTreeMap::new(), &HashMap::new());
        assert!(owner.is_empty());
    }
}
