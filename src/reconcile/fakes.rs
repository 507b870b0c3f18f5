//! In-memory stand-ins for the API server and the persistence queue, for
//! the unit tests of apply, report, persist and the finalizer. Each records
//! what was sent, and answers from what the test put in.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::core::Status;

use super::apply::Effects;
use super::persist::RowQueue;
use super::remote::{MirrorApi, ReplicaApi};
use crate::api::{ConfigMirror, ConfigMirrorStatus};
use crate::persistence::{Job, Report};
use crate::plan::{Holder, MirrorIdentity, ReplicaMeta, Target};

/// An API error as the API server sends it.
pub(crate) fn api_error(code: u16, reason: &str) -> kube::Error {
    kube::Error::Api(Status::failure(reason, reason).with_code(code).boxed())
}

pub(crate) fn conflict() -> kube::Error {
    api_error(409, "Conflict")
}

pub(crate) fn already_exists() -> kube::Error {
    api_error(409, "AlreadyExists")
}

pub(crate) fn not_found() -> kube::Error {
    api_error(404, "NotFound")
}

/// A request the fake received, by verb and (namespace, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Create(String, String),
    Replace(String, String, String),
    Get(String, String),
    Delete(String, String, String),
    Finalizers(Vec<String>),
    Status,
}

/// The fake API server: answers are queued per verb (an empty queue
/// answers success), every request is recorded.
#[derive(Default)]
pub(crate) struct FakeApi {
    pub sent: Mutex<Vec<Sent>>,
    pub errors: Mutex<HashMap<&'static str, VecDeque<kube::Error>>>,
    /// What `get` finds.
    pub existing: Mutex<Option<ConfigMap>>,
    pub next_rv: Mutex<u64>,
}

impl FakeApi {
    pub(crate) fn fail(&self, verb: &'static str, error: kube::Error) {
        let mut errors = self.errors.lock().unwrap();
        errors.entry(verb).or_default().push_back(error);
    }

    pub(crate) fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    fn answer(&self, verb: &'static str, sent: Sent) -> Result<String, kube::Error> {
        self.sent.lock().unwrap().push(sent);
        if let Some(e) = self
            .errors
            .lock()
            .unwrap()
            .get_mut(verb)
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        let mut rv = self.next_rv.lock().unwrap();
        *rv += 1;
        Ok(rv.to_string())
    }

    fn written(&self, target: &Target, rv: String) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(target.namespace.clone()),
            name: Some(target.source.name.clone()),
            resource_version: Some(rv),
            uid: Some("replica-uid".into()),
            ..Default::default()
        }
    }
}

impl ReplicaApi for FakeApi {
    async fn create(&self, _: &MirrorIdentity, target: &Target) -> Result<ObjectMeta, kube::Error> {
        let sent = Sent::Create(target.namespace.clone(), target.source.name.clone());
        let rv = self.answer("create", sent)?;
        Ok(self.written(target, rv))
    }

    async fn replace(
        &self,
        _: &MirrorIdentity,
        target: &Target,
        resource_version: String,
    ) -> Result<ObjectMeta, kube::Error> {
        let (ns, name) = (target.namespace.clone(), target.source.name.clone());
        let rv = self.answer("replace", Sent::Replace(ns, name, resource_version))?;
        Ok(self.written(target, rv))
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, kube::Error> {
        self.answer("get", Sent::Get(namespace.into(), name.into()))?;
        Ok(self.existing.lock().unwrap().clone())
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        rv: &str,
        _: &str,
    ) -> Result<(), kube::Error> {
        self.answer(
            "delete",
            Sent::Delete(namespace.into(), name.into(), rv.into()),
        )
        .map(drop)
    }
}

impl MirrorApi for FakeApi {
    async fn patch_finalizers(
        &self,
        mirror: &ConfigMirror,
        finalizers: Vec<String>,
    ) -> Result<ConfigMirror, kube::Error> {
        let rv = self.answer("finalizers", Sent::Finalizers(finalizers.clone()))?;
        let mut patched = mirror.clone();
        patched.metadata.finalizers = Some(finalizers);
        patched.metadata.resource_version = Some(rv);
        Ok(patched)
    }

    async fn apply_status(
        &self,
        _: &MirrorIdentity,
        _: &ConfigMirrorStatus,
    ) -> Result<String, kube::Error> {
        self.answer("status", Sent::Status)
    }

    async fn list_replicas(&self, _: &str) -> Result<Vec<ReplicaMeta>, kube::Error> {
        Ok(Vec::new())
    }
}

/// What a write told the operator besides its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Told {
    Observed(String, String, String),
    Deleted(String, String, String),
    Conflict(String, String, Holder),
}

/// The fake scope and caches: `may_write` answers from a queue (then
/// `fenced`), and what the writes tell is recorded.
#[derive(Default)]
pub(crate) struct FakeEffects {
    pub fenced: Mutex<bool>,
    pub may_write_answers: Mutex<VecDeque<bool>>,
    pub told: Mutex<Vec<Told>>,
}

impl FakeEffects {
    pub(crate) fn told(&self) -> Vec<Told> {
        self.told.lock().unwrap().clone()
    }
}

impl Effects for FakeEffects {
    fn may_write(&self) -> bool {
        let next = self.may_write_answers.lock().unwrap().pop_front();
        next.unwrap_or(!*self.fenced.lock().unwrap())
    }

    fn observed(&self, meta: ReplicaMeta) {
        let told = Told::Observed(meta.namespace, meta.name, meta.resource_version);
        self.told.lock().unwrap().push(told);
    }

    fn deleted(&self, namespace: &str, name: &str, resource_version: &str) {
        let told = Told::Deleted(namespace.into(), name.into(), resource_version.into());
        self.told.lock().unwrap().push(told);
    }

    fn conflict(&self, namespace: &str, name: &str, holder: Holder) {
        let told = Told::Conflict(namespace.into(), name.into(), holder);
        self.told.lock().unwrap().push(told);
    }
}

/// The fake persistence queue: records the jobs, answers a set report.
pub(crate) struct FakeQueue {
    pub jobs: Mutex<Vec<Job>>,
    pub report: Report,
}

impl FakeQueue {
    pub(crate) fn new(report: Report) -> Self {
        Self {
            jobs: Mutex::new(Vec::new()),
            report,
        }
    }
}

impl RowQueue for FakeQueue {
    fn submit(&self, job: Job) {
        self.jobs.lock().unwrap().push(job);
    }

    fn report(&self, _: &str) -> Report {
        self.report.clone()
    }
}
