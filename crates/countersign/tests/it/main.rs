//! End-to-end tests of the real `countersign` executable.
// Tests print one summary line each (kills, requests, effects) on purpose.
#![allow(clippy::print_stderr)]

mod audit;
mod calibration;
mod cli;
mod crash;
mod crash_connectors;
mod eval;
mod export;
mod multinode;
mod newcomer;
mod reference;
mod slack_map;
mod traces;
mod users;
mod wait_feed;

use std::path::{Path, PathBuf};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_countersign"))
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "countersign-it-{label}-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `GET {base}/healthz` until it answers 200, for at most a minute.
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{base} did not become healthy within a minute");
}

/// Creates an admin token in the SQLite database under `dir` with the CLI
/// and returns its secret.
pub fn token(dir: &TempDir) -> String {
    let out = std::process::Command::new(bin())
        .args([
            "token",
            "create",
            "--name",
            "e2e",
            "--scopes",
            "admin",
            "--database",
            &format!("sqlite://{}", dir.0.join("cs.db").display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child `countersign` process, SIGKILLed and reaped on drop.
pub struct Proc {
    child: std::process::Child,
}

impl Proc {
    /// Starts `countersign ARGS…` with extra environment variables; logs at
    /// `warn` to this test's stderr. `COUNTERSIGN_DATABASE_URL` is removed
    /// so every test names its database. The fakes land every call within
    /// its timeout, so a short in-flight margin (unless `env` sets one)
    /// keeps restarts after a kill quick.
    pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Proc {
        Proc::spawn_with(args, env, None)
    }

    /// As [`Proc::spawn`]; with `log`, the log goes to that file at
    /// `debug` (everything the server would ever say).
    fn spawn_with(args: &[&str], env: &[(&str, String)], log: Option<&Path>) -> Proc {
        let (level, stderr) = match log {
            Some(path) => (
                "debug",
                std::process::Stdio::from(std::fs::File::create(path).expect("log file")),
            ),
            None => ("warn", std::process::Stdio::inherit()),
        };
        let child = std::process::Command::new(bin())
            .args(args)
            .env("COUNTERSIGN_IN_FLIGHT_MARGIN", "200ms")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("COUNTERSIGN_LOG", level)
            .env_remove("COUNTERSIGN_DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn countersign");
        Proc { child }
    }

    /// `countersign serve` on `port` over the SQLite database and the
    /// `workflows` folder in `dir`.
    pub fn serve(dir: &TempDir, port: u16, env: &[(&str, String)]) -> Proc {
        let args = Proc::serve_args(dir, port);
        Proc::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    }

    /// [`Proc::serve`], logging at `debug` to `log`.
    pub fn serve_logged(dir: &TempDir, port: u16, env: &[(&str, String)], log: &Path) -> Proc {
        let args = Proc::serve_args(dir, port);
        Proc::spawn_with(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            env,
            Some(log),
        )
    }

    fn serve_args(dir: &TempDir, port: u16) -> Vec<String> {
        vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--database".into(),
            format!("sqlite://{}", dir.0.join("cs.db").display()),
            "--workflows".into(),
            dir.0.join("workflows").display().to_string(),
        ]
    }

    /// SIGKILL (on Unix) and wait for the process to go.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: asks for a graceful stop.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll countersign")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
    }
}
