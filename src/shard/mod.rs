//! Sharding: N replicas split the ConfigMirrors between them.
//!
//! - `view`: what this member owns right now (and whether it is fenced);
//!   the `Scope` asks it, and reconciles register with it.
//! - `membership`: registration, heartbeats with the database's clock,
//!   self-fencing, leaving on SIGTERM.
//! - `worker`: learns assignments (LISTEN/NOTIFY, polling as a fallback)
//!   and hands drained mirrors over once their in-flight work is done.
//! - `coordinator`: the Lease-elected member that assigns mirrors (`assign`)
//!   under a coordinator epoch.

pub mod assign;
pub mod coordinator;
pub(crate) mod membership;
pub(crate) mod view;
pub(crate) mod worker;

use std::time::Duration;

pub(crate) use view::ShardView;

/// Timing of membership. Defaults keep a crashed member's mirrors moving
/// within ~8 s, and tolerate ~3 missed heartbeats on a loaded 2-core
/// machine before a member fences itself.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How often a member heartbeats.
    pub heartbeat: Duration,
    /// A member whose heartbeat is older than this is no longer live.
    pub ttl: Duration,
    /// A member fences itself when it could not heartbeat for `ttl - margin`.
    pub margin: Duration,
    /// After the TTL, a silent member's mirrors are held this much longer.
    pub grace: Duration,
    /// A member that left (SIGTERM) holds its mirrors this long, so a
    /// rolling restart under the same name moves nothing.
    pub leave_grace: Duration,
    /// Assignments are re-read this often even without a NOTIFY.
    pub poll: Duration,
    /// A drain not acknowledged in this long is forced.
    pub drain_timeout: Duration,
    /// Assignment history, and members silent this long that own nothing,
    /// are pruned by the coordinator.
    pub retention: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            ttl: Duration::from_secs(4),
            margin: Duration::from_secs(1),
            grace: Duration::from_secs(2),
            leave_grace: Duration::from_secs(20),
            poll: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Timing {
    /// A member acts on a read of its assignments for this long after the
    /// read began; reads repeat every `poll` (sooner on NOTIFY), so one
    /// failed read costs nothing. A forced move holds its new owner back as
    /// long, so the old owner, alive but not answering its drain, has
    /// certainly stopped first.
    pub fn ownership_valid(&self) -> Duration {
        self.poll * 2 + self.heartbeat
    }

    /// Without a heartbeat for this long, a member stops writing.
    pub(crate) fn fence_after(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }

    /// A registration's deadline. It renews no lease (the member writes
    /// nothing before it, and its lease counts from when it began), so it
    /// may wait for the heartbeat connection to open on a loaded database;
    /// bounded, so a partition in the middle of it is retried.
    pub(crate) fn registration_timeout(&self) -> Duration {
        (self.ttl * 2).max(self.heartbeat_timeout())
    }

    /// One heartbeat's own deadline: within the margin, so a heartbeat cut
    /// off mid-statement fails while the lease it would renew still holds.
    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        self.margin
            .min(self.heartbeat)
            .max(Duration::from_millis(100))
    }
}
