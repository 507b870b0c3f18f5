//! The replica watch's side of the cache (see `watches::run`).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::PartialObjectMeta;
use tokio::sync::mpsc;

use super::content::{self, Pending};
use super::{Listed, ReplicaCache, settle};
use crate::plan::ReplicaMeta;
use crate::watches::{Cache, Trigger, TriggerSender};

/// The replica watch's side of the cache. Unlike the other caches it
/// cannot take an object as listed: a replica whose content the list cannot
/// vouch for is read before the list is swapped in (`settle`), and a change
/// is read after a grace (`content`). Its re-list keeps the newer of what
/// it held and what was listed (`reset`), so it does not use `diff`.
pub(super) struct Feed {
    pub(super) cache: Arc<ReplicaCache>,
    pub(super) client: Client,
    pub(super) triggers: TriggerSender,
    /// The reader's only sender: it ends with this watch.
    pub(super) pending: mpsc::UnboundedSender<Pending>,
}

impl Cache for Feed {
    type Object = PartialObjectMeta<ConfigMap>;
    type List = Vec<Listed>;
    /// The mirrors whose replicas changed, appeared or vanished.
    type Changes = BTreeSet<String>;

    fn list(&self, list: &mut Vec<Listed>, obj: Self::Object) {
        if self.cache.keeps(&obj.metadata) {
            list.push(self.cache.listed(&obj.metadata));
        }
    }

    async fn replace(&self, listed: Vec<Listed>) -> BTreeSet<String> {
        let fresh = settle(&self.client, listed).await;
        self.cache.reset(fresh)
    }

    fn relisted(&self, owners: BTreeSet<String>, first: bool) {
        if !first {
            for mirror_uid in owners {
                let _ = self.triggers.send(Trigger::Replica { mirror_uid });
            }
        }
    }

    fn apply(&self, obj: Self::Object) {
        // Another shard's replica, or our own write coming back.
        let m = &obj.metadata;
        if !self.cache.keeps(m) || self.cache.already_seen(m) {
            return;
        }
        // Someone else's change, or our own write not yet
        // recorded: read it after the grace unless recorded by then.
        let _ = self.pending.send(Pending {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone().unwrap_or_default(),
            due: tokio::time::Instant::now() + content::GRACE,
        });
    }

    fn delete(&self, obj: Self::Object) {
        if !self.cache.keeps(&obj.metadata) {
            return;
        }
        let meta = ReplicaMeta::from_parts(&obj.metadata, String::new(), false);
        self.cache.index.write().unwrap().forget(
            &meta.namespace,
            &meta.name,
            &meta.resource_version,
        );
        if let Some(mirror_uid) = meta.mirror_uid {
            let _ = self.triggers.send(Trigger::Replica { mirror_uid });
        }
    }
}
