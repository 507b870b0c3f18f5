//! The requests a reconcile sends to the API server, behind two small
//! traits: the real `kube::Client` sends them (the integration tests count
//! them), and the unit tests' in-memory fakes (`fakes`) answer them.

use std::future::Future;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::apply::FIELD_MANAGER;
use crate::api::{ConfigMirror, ConfigMirrorStatus, keys};
use crate::plan::replica::replica_body;
use crate::plan::{MirrorIdentity, ReplicaMeta, Target};

/// Writes to replica ConfigMaps. Creates and replaces answer with the
/// written object's metadata.
pub(crate) trait ReplicaApi: Sync {
    fn create(
        &self,
        mirror: &MirrorIdentity,
        target: &Target,
    ) -> impl Future<Output = Result<ObjectMeta, kube::Error>> + Send;

    /// A replace guarded by `resource_version` (the body carries it).
    fn replace(
        &self,
        mirror: &MirrorIdentity,
        target: &Target,
        resource_version: String,
    ) -> impl Future<Output = Result<ObjectMeta, kube::Error>> + Send;

    fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ConfigMap>, kube::Error>> + Send;

    /// A delete with preconditions on UID and resourceVersion.
    fn delete(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
        uid: &str,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// Writes to the mirror object itself, and the finalizer's list.
pub(crate) trait MirrorApi: Sync {
    /// Merge patch of the finalizer list, guarded by the resourceVersion
    /// the mirror was read at.
    fn patch_finalizers(
        &self,
        mirror: &ConfigMirror,
        finalizers: Vec<String>,
    ) -> impl Future<Output = Result<ConfigMirror, kube::Error>> + Send;

    /// Server-side apply of the status; answers the written resourceVersion.
    fn apply_status(
        &self,
        id: &MirrorIdentity,
        status: &ConfigMirrorStatus,
    ) -> impl Future<Output = Result<String, kube::Error>> + Send;

    /// Every replica of a mirror, listed from the API by label.
    fn list_replicas(
        &self,
        mirror_uid: &str,
    ) -> impl Future<Output = Result<Vec<ReplicaMeta>, kube::Error>> + Send;
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// What the API server answers to a write: only the metadata is read (the
/// echoed data, up to 1 MiB, is skipped without being allocated).
#[derive(serde::Deserialize)]
struct Written {
    metadata: ObjectMeta,
}

/// Writes a replica with a raw request whose body embeds the source's
/// pre-serialized content (see `replica_body`).
async fn write(
    client: &Client,
    mirror: &MirrorIdentity,
    target: &Target,
    resource_version: Option<String>,
) -> Result<ObjectMeta, kube::Error> {
    let path = format!("/api/v1/namespaces/{}/configmaps", target.namespace);
    let request = kube::core::Request::new(path);
    let replace = resource_version.is_some();
    let body = replica_body(mirror, &target.source, &target.namespace, resource_version);
    let http_request = if replace {
        request.replace(&target.source.name, &post_params(), body)
    } else {
        request.create(&post_params(), body)
    }
    .map_err(kube::Error::BuildRequest)?;
    let written: Written = client.request(http_request).await?;
    Ok(written.metadata)
}

impl ReplicaApi for Client {
    async fn create(
        &self,
        mirror: &MirrorIdentity,
        target: &Target,
    ) -> Result<ObjectMeta, kube::Error> {
        write(self, mirror, target, None).await
    }

    async fn replace(
        &self,
        mirror: &MirrorIdentity,
        target: &Target,
        resource_version: String,
    ) -> Result<ObjectMeta, kube::Error> {
        write(self, mirror, target, Some(resource_version)).await
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, kube::Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.clone(), namespace);
        api.get_opt(name).await
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
        uid: &str,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(resource_version.to_string()),
                uid: Some(uid.to_string()),
            }),
            ..Default::default()
        };
        let api: Api<ConfigMap> = Api::namespaced(self.clone(), namespace);
        api.delete(name, &params).await.map(drop)
    }
}

impl MirrorApi for Client {
    async fn patch_finalizers(
        &self,
        mirror: &ConfigMirror,
        finalizers: Vec<String>,
    ) -> Result<ConfigMirror, kube::Error> {
        let api: Api<ConfigMirror> =
            Api::namespaced(self.clone(), &mirror.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": mirror.resource_version()}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(&mirror.name_any(), &params, &Patch::Merge(&patch))
            .await
    }

    async fn apply_status(
        &self,
        id: &MirrorIdentity,
        status: &ConfigMirrorStatus,
    ) -> Result<String, kube::Error> {
        let api: Api<ConfigMirror> = Api::namespaced(self.clone(), &id.namespace);
        let patch = json!({
            "apiVersion": "mirror.configmirror.io/v1alpha1",
            "kind": "ConfigMirror",
            "metadata": {"name": id.name},
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let written = api
            .patch_status(&id.name, &params, &Patch::Apply(&patch))
            .await?;
        Ok(written.resource_version().unwrap_or_default())
    }

    async fn list_replicas(&self, mirror_uid: &str) -> Result<Vec<ReplicaMeta>, kube::Error> {
        let api: Api<ConfigMap> = Api::all(self.clone());
        let selector = format!("{}={}", keys::MIRROR_UID, mirror_uid);
        let listed = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        Ok(listed
            .items
            .iter()
            .map(|m| ReplicaMeta::from_parts(&m.metadata, String::new(), false))
            .collect())
    }
}
