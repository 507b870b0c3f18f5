//! What `run` derives from its flags: member name, timing, limits.

use std::time::Duration;

use super::RunArgs;

impl RunArgs {
    /// The member name: `--member-name`, else the host name with a random
    /// suffix, drawn anew on every call (two processes on one host never
    /// share a name). `run` calls it once and passes the name along.
    pub(crate) fn member(&self) -> String {
        self.member_name
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME")
                    .ok()
                    .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "configmirror".into());
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                format!("{host}-{}", &suffix[..6])
            })
    }

    /// `--database-allowed-hosts`, each entry already checked by its parser.
    pub(crate) fn allowed_hosts(&self) -> crate::store::hosts::AllowedHosts {
        crate::store::hosts::AllowedHosts::parse(&self.database_allowed_hosts)
            .expect("every entry was checked as the flags were parsed")
    }

    /// The namespace policy every mirror is held to.
    pub(crate) fn namespace_policy(&self) -> crate::plan::NamespacePolicy {
        let own = || std::iter::once(self.namespace.clone());
        let protected = if self.allow_protected_namespaces {
            Default::default()
        } else {
            self.protected_namespaces
                .iter()
                .cloned()
                .chain(own())
                .collect()
        };
        crate::plan::NamespacePolicy {
            excluded: self
                .excluded_namespaces
                .iter()
                .cloned()
                .chain(own())
                .collect(),
            protected,
            require_source_opt_in: self.require_source_opt_in,
        }
    }

    pub(crate) fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(1))
    }

    pub(crate) fn stuck_after(&self) -> Duration {
        Duration::from_secs(self.stuck_after_seconds.max(1))
    }

    pub(crate) fn timing(&self) -> crate::shard::Timing {
        let s = |v: f64| Duration::from_secs_f64(v.max(0.05));
        crate::shard::Timing {
            heartbeat: s(self.heartbeat_seconds),
            ttl: s(self.member_ttl_seconds),
            margin: s(self.fence_margin_seconds),
            grace: s(self.member_grace_seconds),
            leave_grace: s(self.leave_grace_seconds),
            poll: s(self.assignment_poll_seconds),
            retention: self.coordination_retention,
            ..Default::default()
        }
    }

    pub(crate) fn deadlines(&self) -> crate::store::Deadlines {
        crate::store::Deadlines::from_statement(Duration::from_secs_f64(
            self.database_timeout_seconds.max(0.1),
        ))
    }

    pub(crate) fn persistence_limits(&self) -> crate::persistence::Limits {
        crate::persistence::Limits {
            concurrency: self.persistence_concurrency.max(1),
            per_database: self.persistence_per_database.max(1),
        }
    }

    pub(crate) fn retention(&self) -> crate::store::persist::Retention {
        crate::store::persist::Retention {
            max_age: self.revision_max_age,
            max_per_configmap: self.revision_max_per_configmap,
        }
    }
}
