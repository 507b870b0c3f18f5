//! Counts the operator's accepted writes from the API server's audit log:
//! create/update/patch/delete on configmaps and configmirrors (and status)
//! in the run's namespaces, by the operator's user agent.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use crate::observe::VerbCounts;

pub struct AuditCursor {
    path: Option<PathBuf>,
    offset: u64,
}

impl AuditCursor {
    pub fn now(path: Option<&PathBuf>) -> Self {
        let offset = path
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        Self {
            path: path.cloned(),
            offset,
        }
    }

    /// Writes since the cursor, by verb (with `/status` for status writes);
    /// `None` when no audit log was given.
    pub fn writes(&self, agent_prefix: &str, namespace_prefix: &str) -> Option<VerbCounts> {
        let path = self.path.as_ref()?;
        let mut file = std::fs::File::open(path).ok()?;
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut counts = VerbCounts::new();
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
            let resource = e["objectRef"]["resource"].as_str().unwrap_or_default();
            if e["stage"] != "ResponseComplete"
                || !(200..300).contains(&code)
                || !e["userAgent"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(agent_prefix)
                || !e["objectRef"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(namespace_prefix)
                || !matches!(resource, "configmaps" | "configmirrors")
            {
                continue;
            }
            let mut key = format!("{} {resource}", e["verb"].as_str().unwrap_or_default());
            if let Some(sub) = e["objectRef"]["subresource"].as_str() {
                key.push('/');
                key.push_str(sub);
            }
            *counts.entry(key).or_default() += 1;
        }
        Some(counts)
    }
}

pub fn total(counts: &VerbCounts) -> u64 {
    counts.values().sum()
}
