//! Which cluster, user and namespace the client uses, resolved the way
//! kubectl resolves them: `--kubeconfig`/`KUBECONFIG` may list several files
//! (separated like `PATH`), merged with the first file to set a value
//! winning; files of the list that do not exist are skipped; `--context`
//! picks a context of the merged configuration instead of its
//! `current-context`. Without a kubeconfig: `~/.kube/config` when a context
//! is named (only a kubeconfig has contexts), otherwise kube's inference
//! (`~/.kube/config`, then the pod's service account).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use kube::Config;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::Error;
use crate::config::KubeconfigArgs;

/// The kubeconfig files a `--kubeconfig`/`KUBECONFIG` value names, in order,
/// without empty entries (`a::b` and a trailing `:` are tolerated, as by kubectl).
pub(crate) fn paths(list: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(list)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// The files of `list` merged: the first file to set a value (the
/// current-context, a cluster, user or context of a given name) wins, and
/// later files only add what is new. A listed file that does not exist is
/// skipped, as kubectl skips it; one that exists but cannot be read or
/// parsed is an error. `None` when the list names no existing file.
pub(crate) fn read_merged(list: &OsStr) -> Result<Option<Kubeconfig>, Error> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths(list) {
        if !path.exists() {
            tracing::debug!(path = %path.display(), "kubeconfig file does not exist, skipped");
            continue;
        }
        let file_error = |source| Error::Kubeconfig {
            path: path.display().to_string(),
            source,
        };
        let next = Kubeconfig::read_from(&path).map_err(file_error)?;
        merged = Some(match merged {
            None => next,
            Some(first) => first.merge(next).map_err(file_error)?,
        });
    }
    Ok(merged)
}

/// The client configuration `args` select (see the module's comment).
pub(crate) async fn load(args: &KubeconfigArgs) -> Result<Config, Error> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let list: Option<&OsString> = args.kubeconfig.as_ref().filter(|l| !paths(l).is_empty());
    match list {
        Some(list) => {
            let shown = list.to_string_lossy().into_owned();
            let merged = read_merged(list)?.ok_or_else(|| Error::NoKubeconfig(shown.clone()))?;
            Config::from_custom_kubeconfig(merged, &options)
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: shown,
                    source,
                })
        }
        None if args.context.is_some() => {
            Config::from_kubeconfig(&options)
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: "~/.kube/config".into(),
                    source,
                })
        }
        None => Ok(Config::infer().await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig with one cluster, user and context, all called `name`,
    /// whose server is `server`; `current` is its current-context.
    fn kubeconfig(name: &str, server: &str, current: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {current}\n\
             clusters:\n- name: {name}\n  cluster:\n    server: {server}\n\
             users:\n- name: {name}\n  user:\n    token: t-{name}\n\
             contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: ns-{name}\n"
        )
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, file: &str, content: &str) -> PathBuf {
            let path = self.dir.path().join(file);
            std::fs::write(&path, content).unwrap();
            path
        }

        fn missing(&self, file: &str) -> PathBuf {
            self.dir.path().join(file)
        }
    }

    fn list(paths: &[&PathBuf]) -> OsString {
        std::env::join_paths(paths).unwrap()
    }

    fn args(list: OsString, context: Option<&str>) -> KubeconfigArgs {
        KubeconfigArgs {
            kubeconfig: Some(list),
            context: context.map(str::to_string),
        }
    }

    async fn server(args: &KubeconfigArgs) -> Result<String, String> {
        load(args)
            .await
            .map(|c| c.cluster_url.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_is_split_like_path_and_empty_entries_are_dropped() {
        assert_eq!(
            paths(OsStr::new("/a/one::/b/two:")),
            [PathBuf::from("/a/one"), PathBuf::from("/b/two")]
        );
        assert!(paths(OsStr::new(":")).is_empty());
    }

    #[tokio::test]
    async fn the_first_file_wins_and_later_files_add_contexts() {
        let files = Files::new();
        // Both define a cluster `shared`; only the second defines `other`.
        let first = files.write(
            "first",
            &kubeconfig("shared", "https://first:6443", "shared"),
        );
        let second = files.write(
            "second",
            &format!(
                "{}---\n{}",
                kubeconfig("shared", "https://second:6443", "shared"),
                kubeconfig("other", "https://other:6443", "other")
            ),
        );
        let both = list(&[&first, &second]);

        let merged = read_merged(&both).unwrap().unwrap();
        assert_eq!(merged.current_context.as_deref(), Some("shared"));
        let names: Vec<_> = merged.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["shared", "other"]);

        assert_eq!(
            server(&args(both.clone(), None)).await.unwrap(),
            "https://first:6443/"
        );
        let other = load(&args(both, Some("other"))).await.unwrap();
        assert_eq!(other.cluster_url.to_string(), "https://other:6443/");
        assert_eq!(other.default_namespace, "ns-other");
    }

    #[tokio::test]
    async fn the_current_context_is_the_first_files_even_when_it_does_not_resolve() {
        let files = Files::new();
        let bogus = files.write(
            "bogus",
            "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n",
        );
        let real = files.write("real", &kubeconfig("real", "https://real:6443", "real"));
        let both = list(&[&bogus, &real]);

        let err = server(&args(both.clone(), None)).await.unwrap_err();
        assert!(err.contains("nowhere"), "{err}");
        assert_eq!(
            server(&args(both, Some("real"))).await.unwrap(),
            "https://real:6443/"
        );
    }

    #[tokio::test]
    async fn missing_files_are_skipped_and_a_list_of_none_is_an_error() {
        let files = Files::new();
        let gone = files.missing("gone");
        let real = files.write("real", &kubeconfig("real", "https://real:6443", "real"));
        assert_eq!(
            server(&args(list(&[&gone, &real]), None)).await.unwrap(),
            "https://real:6443/"
        );

        let err = server(&args(list(&[&gone, &files.missing("also-gone")]), None))
            .await
            .unwrap_err();
        assert!(err.contains("gone"), "names the list: {err}");
    }

    #[tokio::test]
    async fn an_unknown_context_and_an_unreadable_file_are_errors() {
        let files = Files::new();
        let real = files.write("real", &kubeconfig("real", "https://real:6443", "real"));
        let err = server(&args(list(&[&real]), Some("typo")))
            .await
            .unwrap_err();
        assert!(err.contains("typo"), "{err}");

        let broken = files.write("broken", "clusters: [this is not: a kubeconfig");
        let err = server(&args(list(&[&real, &broken]), None))
            .await
            .unwrap_err();
        assert!(err.contains("broken"), "names the file: {err}");
    }
}
