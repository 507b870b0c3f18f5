//! A private, throw-away PostgreSQL for tests that must stop their database
//! without disturbing the shared one: initdb in a temp dir, a free port.
//! It serves TLS with a certificate of its own CA (`ca_pem`), as the shared
//! one does with the cluster's: a tenant's database Secret defaults to TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

const PASSWORD: &str = "postgres";

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn openssl(args: &[&str], dir: &Path) {
    let mut c = Command::new("openssl");
    c.args(args).current_dir(dir);
    run(c, "openssl");
}

/// A CA of this server's own (in `dir`) and a server certificate it signed
/// (in `dir/data`, the key readable by the server's user only, or
/// PostgreSQL refuses it).
fn make_certificates(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=configmirror-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=configmirror-test-postgres",
            "-keyout",
            "data/server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "server.ext",
            "-out",
            "data/server.crt",
        ],
        dir,
    );
    let key = dir.join("data/server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if running_as_root() {
        let mut c = Command::new("chown");
        c.arg("postgres:postgres")
            .arg(&key)
            .arg(dir.join("data/server.crt"));
        run(c, "chown");
    }
}

impl PrivatePostgres {
    /// initdb and start a new server; it is stopped and removed when dropped.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// A server that offers no TLS at all (`ssl = off`).
    pub fn start_without_tls() -> Self {
        Self::start_with(false)
    }

    fn start_with(tls: bool) -> Self {
        let bin = PathBuf::from(
            std::env::var("CONFIGMIRROR_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into()),
        );
        // Under /tmp so the postgres user can reach it when we are root.
        let dir = tempfile::Builder::new()
            .prefix("configmirror-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if running_as_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let mut initdb = pg_command(&bin, "initdb");
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(initdb, "initdb");
        make_certificates(dir.path());
        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n\
             ssl = {}\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            dir.path().display(),
            if tls { "on" } else { "off" },
        );
        let conf_path = dir.path().join("data/postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).unwrap();
        let pg = Self { dir, bin, port };
        pg.start_server();
        pg
    }

    /// The CA that signed this server's certificate (SANs 127.0.0.1 and
    /// localhost), for `sslrootcert`.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.crt")).expect("the private CA")
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn pg_ctl(&self, args: &[&str], what: &str) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D").arg(self.dir.path().join("data")).args(args);
        run(c, what);
    }

    pub fn start_server(&self) {
        let log = self.dir.path().join("log");
        self.pg_ctl(
            &["-w", "-t", "60", "-l", log.to_str().unwrap(), "start"],
            "pg_ctl start",
        );
    }

    /// Fast shutdown: open connections are cut, as in a real outage.
    pub fn stop_server(&self) {
        self.pg_ctl(&["-w", "-t", "60", "-m", "fast", "stop"], "pg_ctl stop");
    }

    pub fn is_running(&self) -> bool {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D").arg(self.dir.path().join("data")).arg("status");
        c.output().map(|o| o.status.success()).unwrap_or(false)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.is_running() {
            let mut c = pg_command(&self.bin, "pg_ctl");
            c.arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "immediate", "stop"]);
            let _ = c.output();
        }
    }
}
