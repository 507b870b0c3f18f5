//! The operator under test: one this tool starts (scoped to the run), or
//! one already running (by pid or metrics URL). Memory and CPU come from
//! /proc by pid, or from its metrics.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Cli;
use crate::cluster::Run;

pub struct Operator {
    child: std::sync::Mutex<Option<Child>>,
    pub pid: Option<u32>,
    pub metrics: Option<String>,
    /// User-agent prefix of its writes.
    pub agent: String,
    pub log: Option<PathBuf>,
}

/// GET over plain HTTP/1.0: enough for /metrics and /readyz on loopback.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(host))
            .await
            .ok()?
            .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut buf))
        .await
        .ok()?
        .ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Resident memory of a process, from /proc.
pub(crate) fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Operator {
    pub async fn attach(cli: &Cli, run: &Run) -> anyhow::Result<Self> {
        let Some(bin) = &cli.spawn_operator else {
            return Ok(Self {
                child: Default::default(),
                pid: cli.operator_pid,
                metrics: cli.operator_metrics.clone(),
                agent: cli.operator_agent.clone(),
                log: None,
            });
        };
        // The run's home namespace must exist before a scoped operator starts.
        run.create_namespaces(&[run.home()]).await?;
        std::fs::create_dir_all(&cli.out)?;
        let member = format!("loadtest-{}", run.id);
        let log = cli.out.join(format!("operator-{}.log", run.id));
        let mut command = Command::new(bin);
        command
            .arg("run")
            .args(["--watch-namespace", &run.home()])
            .args(["--member-name", &member])
            .args([
                "--metrics-bind-address",
                "127.0.0.1:0",
                "--health-probe-bind-address",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "json"])
            .args(&cli.operator_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(k) = &cli.kubeconfig {
            command.env("KUBECONFIG", k);
        }
        let child = command.spawn()?;
        let pid = child.id();
        let (metrics, health) = wait_for_addresses(&log, Duration::from_secs(30))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&format!("http://{health}/readyz"))
            .await
            .map(|(c, _)| c)
            != Some(200)
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the spawned operator did not become ready; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child: std::sync::Mutex::new(Some(child)),
            pid: Some(pid),
            metrics: Some(format!("http://{metrics}/metrics")),
            agent: format!("configmirror/{} member/{member}", env!("CARGO_PKG_VERSION")),
            log: Some(log),
        })
    }

    /// Resident memory in bytes.
    pub async fn rss(&self) -> Option<u64> {
        if let Some(pid) = self.pid {
            return rss_of(pid);
        }
        let (_, body) = http_get(self.metrics.as_ref()?).await?;
        metric(&body, "process_resident_memory_bytes").map(|v| v as u64)
    }

    /// CPU seconds used so far.
    pub async fn cpu_seconds(&self) -> Option<f64> {
        if let Some(pid) = self.pid {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            return Some(ticks / 100.0);
        }
        let (_, body) = http_get(self.metrics.as_ref()?).await?;
        metric(&body, "process_cpu_seconds_total")
    }

    pub async fn stop(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn wait_for_addresses(
    log: &std::path::Path,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(file) = std::fs::File::open(log) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["message"] == "starting" {
                    return Ok((
                        v["metrics"].as_str().unwrap_or_default().to_string(),
                        v["health"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the spawned operator did not start; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
