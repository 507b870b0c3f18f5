//! The Dockerfile's build stage sees a loadable workspace: what its `COPY`
//! instructions take from the build context, minus what `.dockerignore`
//! drops, is enough for cargo to load the workspace with the committed lock
//! file, offline. No container engine and no cluster: the context is copied
//! into a temporary directory the way the builder would, and `cargo fetch`
//! reads it with the checks `cargo build` makes before compiling.
//!
//! It guards a real failure: `.dockerignore` once dropped `loadtest/` and
//! `benches/`, which `Cargo.toml` names (workspace member, `[[bench]]`), so
//! `docker build` stopped at "failed to load manifest for workspace member".

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The instructions of a Dockerfile, continuation lines joined and comments
/// dropped, as (keyword in upper case, the rest).
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// `COPY` instructions as (sources, destination).
type Copies = Vec<(Vec<String>, String)>;

/// The stage that runs `cargo build`: its WORKDIR and its `COPY`s from the
/// build context, `--from=` copies left out.
fn build_stage(dockerfile: &str) -> (String, Copies) {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions(dockerfile) {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        } else if let Some(stage) = stages.last_mut() {
            stage.push(instruction);
        }
    }
    let stage = stages
        .into_iter()
        .find(|s| {
            s.iter()
                .any(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        })
        .expect("no stage of the Dockerfile runs `cargo build`");
    let mut workdir = "/".to_string();
    let mut copies = Vec::new();
    for (keyword, rest) in stage {
        match keyword.as_str() {
            "WORKDIR" => workdir = Path::new(&workdir).join(rest).display().to_string(),
            "COPY" | "ADD" => {
                let words: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(&rest).expect("COPY in JSON form")
                } else {
                    rest.split_whitespace().map(String::from).collect()
                };
                if words.iter().any(|w| w.starts_with("--from")) {
                    continue;
                }
                let mut paths: Vec<String> =
                    words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let dest = paths.pop().expect("COPY without a destination");
                // Relative to the WORKDIR; a trailing '/' (a directory) is kept.
                let dest = if dest.starts_with('/') {
                    dest
                } else {
                    format!("{workdir}/{dest}")
                };
                copies.push((paths, dest));
            }
            _ => {}
        }
    }
    (workdir, copies)
}

/// The part of `.dockerignore` this repository uses, with Docker's meaning:
/// `#` comments, `!` exceptions, the last matching line wins, a pattern
/// matches a path or any directory above it, `*` and `?` within one path
/// component, `**` across components. Character classes are not supported.
struct DockerIgnore(Vec<(bool, Vec<String>)>);

impl DockerIgnore {
    fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (keep, pattern) = l.strip_prefix('!').map_or((false, l), |p| (true, p));
                let parts = pattern.split('/').filter(|c| !c.is_empty() && *c != ".");
                (keep, parts.map(String::from).collect())
            })
            .collect();
        DockerIgnore(rules)
    }

    fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (keep, pattern) in &self.0 {
            if (1..=parts.len()).any(|n| components_match(pattern, &parts[..n])) {
                excluded = !keep;
            }
        }
        excluded
    }
}

fn components_match(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => {
            components_match(&pattern[1..], path)
                || (!path.is_empty() && components_match(pattern, &path[1..]))
        }
        (Some(p), Some(c)) => {
            glob(p.as_bytes(), c.as_bytes()) && components_match(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Copies `rel` (a file or a directory, relative to the context) to `to`,
/// leaving out what `.dockerignore` excludes; the number of files copied.
fn copy_filtered(context: &Path, rel: &str, to: &Path, ignore: &DockerIgnore) -> usize {
    let from = context.join(rel);
    if ignore.excludes(rel) && !from.is_dir() {
        return 0;
    }
    if from.is_file() {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        return 1;
    }
    let Ok(entries) = std::fs::read_dir(&from) else {
        return 0;
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| copy_filtered(context, &format!("{rel}/{name}"), &to.join(name), ignore))
        .sum()
}

/// What the builder would see at the build stage's WORKDIR.
fn build_context(
    context: &Path,
    dockerfile: &str,
    dockerignore: &str,
    root: &Path,
) -> Result<PathBuf, String> {
    let ignore = DockerIgnore::parse(dockerignore);
    let (workdir, copies) = build_stage(dockerfile);
    let inside = |p: &str| root.join(p.trim_start_matches('/'));
    for (sources, dest) in copies {
        let into_dir = dest.ends_with('/') || sources.len() > 1;
        for source in sources {
            let rel = source.trim_start_matches("./").trim_end_matches('/');
            assert!(
                !rel.contains(['*', '?']),
                "COPY {rel}: wildcards are not supported by this test"
            );
            // Docker's rules: a directory's contents go into the destination;
            // a file goes into it when it is a directory (trailing '/', or
            // several sources), else becomes it.
            let to = match rel.rsplit('/').next() {
                Some(name) if into_dir && !context.join(rel).is_dir() => inside(&dest).join(name),
                _ => inside(&dest),
            };
            if copy_filtered(context, rel, &to, &ignore) == 0 {
                return Err(format!(
                    "COPY {rel}: not found in the build context (missing, or excluded by .dockerignore)"
                ));
            }
        }
    }
    Ok(inside(&workdir))
}

fn cargo(dir: &Path, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo {}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What `cargo build --locked` in the build stage does before it compiles
/// anything: load every member's manifest, refuse a target whose file is
/// missing (a `[[bench]]` too), resolve the dependencies exactly as the lock
/// file says, and find each package the build platform needs, offline.
/// `cargo metadata` checks less: it drops a declared target whose file is
/// missing, and without `--no-deps` wants the packages of every platform.
fn cargo_loads_workspace(dir: &Path) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc).arg("-vV").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host");
    cargo(dir, &["fetch", "--locked", "--offline", "--target", host]).map_err(|e| {
        if e.contains("--offline was specified") {
            format!(
                "{e}\n(this machine has not yet built the whole workspace, so a package is \
                 missing; `cargo build --workspace --all-targets` once fixes that)"
            )
        } else {
            e
        }
    })
}

#[test]
fn the_dockerfile_build_stage_gets_a_workspace_cargo_can_load_offline() {
    let repo = repo();
    let read = |name: &str| std::fs::read_to_string(repo.join(name)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let result = build_context(
        &repo,
        &read("Dockerfile"),
        &read(".dockerignore"),
        tmp.path(),
    )
    .and_then(|workdir| cargo_loads_workspace(&workdir));
    if let Err(error) = result {
        panic!("the Dockerfile's build stage cannot load the workspace:\n{error}");
    }
}

#[test]
fn dockerignore_patterns_mean_what_docker_means() {
    let ignore = DockerIgnore::parse(
        "# comment\ntarget/\n*.log\nloadtest/results/\ndocs/**/*.png\n!docs/keep/**\n",
    );
    for excluded in [
        "target",
        "target/release/x",
        "a.log",
        "loadtest/results/r.json",
        "docs/a/b.png",
    ] {
        assert!(ignore.excludes(excluded), "{excluded} should be excluded");
    }
    for kept in [
        "src/a.log",
        "loadtest/src/main.rs",
        "targets",
        "# comment",
        "docs/a/b.txt",
        "docs/keep/c.png",
    ] {
        assert!(!ignore.excludes(kept), "{kept} should be kept");
    }
}
