//! A PostgreSQL server of the tests' own, for machines where none is named.
//!
//! When `COUNTERSIGN_TEST_POSTGRES_URL` is unset, the first test process
//! that needs PostgreSQL runs `initdb` and `pg_ctl start` from the installed
//! server binaries into `$TMPDIR/countersign-test-pg-<uid>` (loopback only,
//! a random port, trust authentication, no fsync: a throwaway), and every
//! later test process — nextest runs each test in its own — finds it
//! there under a file lock and reuses it. A watchdog shell started with
//! the server stops it once no test has asked for it for
//! [`IDLE_STOP_SECS`], so nothing is left running after the suite.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Seconds without a test asking for the server before its watchdog stops it.
pub const IDLE_STOP_SECS: u64 = 900;

/// The URL of the throwaway server, started if it is not running.
pub fn url() -> Result<String, String> {
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("countersign-test-pg-{uid}"));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = File::create(dir.join("lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", dir.display()))?;
    File::create(dir.join("heartbeat")).map_err(|e| e.to_string())?;
    if let Some(port) = running_port(&dir) {
        return Ok(server_url(port));
    }
    let bin = bin_dir().ok_or_else(|| {
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: \
         install PostgreSQL (Debian: apt-get install postgresql) or name a server in \
         COUNTERSIGN_TEST_POSTGRES_URL"
            .to_string()
    })?;
    // PostgreSQL refuses to run as root: run it as `postgres` then.
    let as_root = uid == 0;
    if as_root {
        run(Command::new("chown").args(["postgres:postgres"]).arg(&dir))?;
    }
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        let _ = fs::remove_dir_all(&data);
        run(server_cmd(as_root, &bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .arg("--pgdata")
            .arg(&data))?;
    }
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=500 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        dir.display()
    );
    run(server_cmd(as_root, &bin.join("pg_ctl"))
        .args(["start", "--wait", "--silent", "--timeout=60"])
        .arg("--pgdata")
        .arg(&data)
        .arg("--log")
        .arg(dir.join("server.log"))
        .args(["-o", &options]))?;
    fs::write(dir.join("port"), port.to_string()).map_err(|e| e.to_string())?;
    spawn_watchdog(&dir, &bin, as_root);
    Ok(server_url(port))
}

fn server_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// The port of a server this module started and that still answers.
fn running_port(dir: &Path) -> Option<u16> {
    let port: u16 = fs::read_to_string(dir.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !dir.join("data/postmaster.pid").exists() {
        return None;
    }
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .ok()
        .map(|_| port)
}

/// Where `initdb` and `pg_ctl` live: `PATH` first, then Debian's layout
/// (newest version).
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn server_cmd(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A detached shell that stops the server after [`IDLE_STOP_SECS`]
/// without a heartbeat (or exits when the server is gone).
fn spawn_watchdog(dir: &Path, bin: &Path, as_root: bool) {
    let stop = if as_root {
        "runuser -u postgres -- \"$1/pg_ctl\" stop --pgdata \"$0/data\" --mode=fast --silent"
    } else {
        "\"$1/pg_ctl\" stop --pgdata \"$0/data\" --mode=fast --silent"
    };
    let script = format!(
        "while [ -f \"$0/data/postmaster.pid\" ]; do \
           sleep 10; \
           idle=$(( $(date +%s) - $(stat -c %Y \"$0/heartbeat\" 2>/dev/null || echo 0) )); \
           if [ \"$idle\" -gt {IDLE_STOP_SECS} ]; then {stop}; break; fi; \
         done"
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}
