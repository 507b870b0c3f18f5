//! A private control plane, started by the project's own script with its own
//! state directory, for tests that must do what would disturb everyone else
//! on the shared cluster (deleting the CRD, owning it through Helm). It runs
//! no node (`CONFIGMIRROR_NODE=0`): no pod ever starts in it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivateCluster {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/cluster")
}

impl PrivateCluster {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("configmirror-private-cluster-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        // PostgreSQL runs as its own user and must traverse this directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = Command::new(script())
            .arg("up")
            .env("CONFIGMIRROR_CLUSTER_DIR", dir.path())
            .env("CONFIGMIRROR_NODE", "0")
            .output()
            .expect("deploy/local/cluster up");
        assert!(
            out.status.success(),
            "private cluster did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .env("CONFIGMIRROR_CLUSTER_DIR", self.dir.path())
            .env("CONFIGMIRROR_NODE", "0")
            .output();
    }
}
