//! Runs the real `configmirror` binary as a child process, the way it runs
//! in production, scoped by `--watch-namespace` so tests never share a mirror.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{cluster_var, eventually, unique};

pub struct Operator {
    pub member: String,
    child: Option<Child>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    pub metrics_addr: String,
    pub health_addr: String,
}

pub struct OperatorBuilder {
    member: String,
    args: Vec<String>,
    wait_ready: bool,
    kubeconfig: Option<PathBuf>,
}

impl OperatorBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Persistence into the operator's own database at `url` (`--database-url`).
    pub fn database(self, url: &str) -> Self {
        self.arg("--database-url").arg(url)
    }

    pub fn member(mut self, member: &str) -> Self {
        self.member = member.to_string();
        self
    }

    /// Talks to the API with this kubeconfig (another identity or cluster);
    /// as KUBECONFIG, so a PATH-like list of files works too.
    pub fn kubeconfig(mut self, path: &std::path::Path) -> Self {
        self.kubeconfig = Some(path.to_path_buf());
        self
    }

    /// Returns as soon as the endpoints are up, without waiting for /readyz.
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub async fn start(self) -> Operator {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_configmirror"))
            .arg("run")
            .args(["--metrics-bind-address", "127.0.0.1:0"])
            .args(["--health-probe-bind-address", "127.0.0.1:0"])
            .args(["--member-name", &self.member])
            .args(["--log-format", "json"])
            .args(&self.args)
            .env(
                "KUBECONFIG",
                self.kubeconfig
                    .clone()
                    .unwrap_or_else(|| cluster_var("KUBECONFIG").into()),
            )
            // Persistence only where a test asks for it (--database-url).
            .env_remove("DATABASE_URL")
            // CONFIGMIRROR_TEST_LOG=info,configmirror=trace to follow every trigger.
            .env(
                "RUST_LOG",
                std::env::var("CONFIGMIRROR_TEST_LOG")
                    .unwrap_or_else(|_| "info,configmirror=debug".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting configmirror");
        let mut op = Operator {
            member: self.member,
            child: Some(child),
            log,
            _dir: dir,
            metrics_addr: String::new(),
            health_addr: String::new(),
        };
        let (metrics, health) = eventually(
            "the operator to log its addresses",
            Duration::from_secs(30),
            || {
                let found = op.find_log_field("starting", &["metrics", "health"]);
                async move { found.map(|f| (f[0].clone(), f[1].clone())) }
            },
        )
        .await;
        op.metrics_addr = metrics;
        op.health_addr = health;
        if self.wait_ready {
            op.wait_ready(Duration::from_secs(60)).await;
        }
        op
    }
}

impl Operator {
    /// An operator reconciling only mirrors in `namespaces`.
    pub fn scoped(namespaces: &[&str]) -> OperatorBuilder {
        OperatorBuilder {
            member: unique("test-op"),
            args: vec!["--watch-namespace".into(), namespaces.join(",")],
            wait_ready: true,
            kubeconfig: None,
        }
    }

    /// The user agent prefix this operator's writes carry.
    pub fn agent(&self) -> String {
        format!(
            "configmirror/{} member/{}",
            env!("CARGO_PKG_VERSION"),
            self.member
        )
    }

    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    fn find_log_field(&self, message: &str, fields: &[&str]) -> Option<Vec<String>> {
        self.log_lines().into_iter().find_map(|l| {
            (l["message"] == message).then(|| {
                fields
                    .iter()
                    .map(|f| l[f].as_str().unwrap_or_default().to_string())
                    .collect()
            })
        })
    }

    /// Whether any log line mentions `text`.
    pub fn logged_contains(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains(text))
    }

    pub fn logged(&self, message: &str) -> bool {
        self.log_lines().iter().any(|l| l["message"] == message)
    }

    pub async fn get(&self, addr: &str, path: &str) -> Option<(u16, String)> {
        let url = format!("http://{addr}{path}");
        let out = tokio::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--max-time",
                "5",
                &url,
            ])
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_string()))
    }

    pub async fn ready(&self) -> bool {
        matches!(self.get(&self.health_addr, "/readyz").await, Some((200, _)))
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        eventually(
            &format!("operator {} to be ready", self.member),
            timeout,
            || async { self.ready().await.then_some(()) },
        )
        .await;
    }

    pub async fn metrics(&self) -> String {
        self.get(&self.metrics_addr, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The value of one series (exact name with labels as Prometheus renders them).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().await.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    }

    /// Waits until this process has finished a reconcile successfully.
    pub async fn wait_reconciled(&self, timeout: Duration) {
        eventually("the operator to reconcile", timeout, || async {
            self.metric("configmirror_reconcile_total{result=\"success\"}")
                .await
                .filter(|n| *n >= 1.0)
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `kill <sig>` (e.g. "-STOP", "-CONT") to the process.
    pub fn signal(&self, sig: &str) {
        let sent = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {sig} {}", self.pid());
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit; returns its exit status.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn dump_log(&self) {
        // Keep the whole log where a person can read it after the run.
        let keep = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
        if std::fs::create_dir_all(&keep).is_ok() {
            let to = keep.join(format!("{}-{}.log", self.member, self.pid()));
            if std::fs::copy(&self.log, &to).is_ok() {
                eprintln!("---- operator {} log kept at {}", self.member, to.display());
            }
        }
        if let Ok(text) = std::fs::read_to_string(&self.log) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "---- operator {} log (last {} lines) ----\n{}",
                self.member,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_log();
        }
        self.kill();
    }
}
