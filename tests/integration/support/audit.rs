//! Reads the API server's audit log (CONFIGMIRROR_AUDIT_LOG) to count the
//! writes one client made, told apart by its user agent.

use std::io::{Read, Seek, SeekFrom};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub stage: String,
    pub verb: String,
    #[serde(default)]
    pub user_agent: String,
    #[serde(default)]
    pub object_ref: ObjectRef,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub response_status: ResponseStatus,
    /// When the request completed, seconds since the epoch.
    #[serde(default, deserialize_with = "timestamp")]
    pub stage_timestamp: Option<f64>,
    /// When the API server received the request, seconds since the epoch.
    #[serde(default, deserialize_with = "timestamp")]
    pub request_received_timestamp: Option<f64>,
}

fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_nanosecond() as f64 / 1e9))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subresource: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl AuditEvent {
    /// The member name in an operator's user agent
    /// (`configmirror/<version> member/<name>`).
    pub fn member(&self) -> Option<&str> {
        self.user_agent
            .strip_prefix("configmirror/")?
            .split_once(" member/")
            .map(|(_, m)| m)
    }

    /// The UID of the pod whose ServiceAccount token made the request: one
    /// process incarnation, where the user agent names only the member
    /// (which a restarted pod keeps).
    pub fn pod_uid(&self) -> Option<&str> {
        self.user
            .extra
            .get("authentication.kubernetes.io/pod-uid")?
            .first()
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: u16,
}

impl AuditEvent {
    /// A write the API server accepted (the request completed with 2xx).
    pub fn accepted(&self) -> bool {
        self.stage == "ResponseComplete" && (200..300).contains(&self.response_status.code)
    }

    /// A request that changes something. (Reads are in the log too: the
    /// pods' service accounts are audited in full.)
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A position in the audit log; events after it are what a test caused.
pub struct AuditCursor {
    path: String,
    offset: u64,
}

impl AuditCursor {
    /// Marks the log's current end.
    pub fn now() -> Self {
        let path = super::cluster_var("CONFIGMIRROR_AUDIT_LOG");
        let offset = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("audit log {path}: {e}"))
            .len();
        Self { path, offset }
    }

    /// Every complete event written since the cursor was taken.
    pub fn events(&self) -> Vec<AuditEvent> {
        let mut file = std::fs::File::open(&self.path).expect("audit log");
        file.seek(SeekFrom::Start(self.offset)).expect("seek");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read audit log");
        text.lines()
            // The last line may still be being written.
            .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
            .collect()
    }

    /// Accepted writes since the cursor by clients whose user agent starts
    /// with `agent`, on objects in one of `namespaces` (empty: any).
    pub fn accepted_writes(&self, agent: &str, namespaces: &[&str]) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.accepted() && e.is_write() && e.user_agent.starts_with(agent))
            .filter(|e| {
                namespaces.is_empty() || namespaces.contains(&e.object_ref.namespace.as_str())
            })
            .collect()
    }

    /// "The operator's writes" as DESIGN.md defines them: accepted create,
    /// update, patch and delete on configmaps and configmirrors (and their
    /// status) in the namespaces under test, by that user agent. Lease
    /// renewals and events are not counted.
    pub fn operator_writes(&self, agent: &str, namespaces: &[&str]) -> Vec<AuditEvent> {
        self.attempted_writes(agent, namespaces)
            .into_iter()
            .filter(AuditEvent::accepted)
            .collect()
    }

    /// Like `operator_writes`, whatever the answer was: every write the
    /// client sent (a fenced client must not even try).
    pub fn attempted_writes(&self, agent: &str, namespaces: &[&str]) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.is_write() && e.user_agent.starts_with(agent))
            .filter(|e| {
                namespaces.is_empty() || namespaces.contains(&e.object_ref.namespace.as_str())
            })
            .filter(|e| {
                matches!(
                    e.object_ref.resource.as_str(),
                    "configmaps" | "configmirrors"
                )
            })
            .collect()
    }
}

/// A short human summary of write events, for assertion messages.
pub fn summary(events: &[AuditEvent]) -> String {
    events
        .iter()
        .map(|e| {
            let sub = if e.object_ref.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", e.object_ref.subresource)
            };
            format!(
                "{} {}{} {}/{}",
                e.verb, e.object_ref.resource, sub, e.object_ref.namespace, e.object_ref.name
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
