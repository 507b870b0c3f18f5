//! Integration tests against the real local control plane and PostgreSQL.
//!
//! One test binary (faster to link than one per file). Run through the
//! README's test command, or by hand after
//! `deploy/local/cluster up && eval "$(deploy/local/cluster env)"`.
//! A test that needs the cluster fails, never skips, when it is missing.

#[allow(dead_code)] // helpers are shared by test modules that each use a part
mod support;

mod admission;
mod bad_input;
mod chart;
mod conflicts;
mod coordination;
mod dockerfile;
mod foundation;
mod health;
mod isolation;
mod kubeconfig;
mod leader;
mod lifecycle;
mod memory;
mod metrics;
mod persistence;
mod pods;
mod policy;
mod replication;
mod rest;
mod sharding;
mod targets;
mod tenancy;
mod tenant_tls;
