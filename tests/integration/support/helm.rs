//! Runs the pinned helm (on PATH from `deploy/local/cluster env`) against
//! the chart in helm/configmirror-operator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/configmirror-operator")
}

pub struct HelmResult {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for HelmResult {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// `helm <args>`; with `kubeconfig`, against that cluster.
pub fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> HelmResult {
    let mut c = Command::new("helm");
    c.args(args);
    if let Some(k) = kubeconfig {
        c.arg("--kubeconfig").arg(k);
    }
    c.output()
        .expect("running helm (is deploy/local/cluster env in the environment?)")
        .into()
}

/// `helm <args>` that must succeed.
pub fn helm_ok(kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let r = helm(kubeconfig, args);
    assert!(r.ok, "helm {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}
