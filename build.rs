//! Sets CONFIGMIRROR_COMMIT for `configmirror_build_info`: the environment's
//! value when given (a release workflow or `docker build --build-arg`), else
//! the checkout's `git rev-parse --short HEAD`, else "unknown" (the Docker
//! build context has no .git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=CONFIGMIRROR_COMMIT");
    let commit = std::env::var("CONFIGMIRROR_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // A new commit or a checkout moves HEAD or the branch it names
            // (a worktree keeps its HEAD apart from the shared refs).
            for name in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", name]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(path) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={path}");
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CONFIGMIRROR_COMMIT={commit}");
}
