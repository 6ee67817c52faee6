//! A real PostgreSQL server for tests: `$SKILLSANDBOX_TEST_PG` (an admin URL) when
//! set, else a throwaway cluster started once per test binary (initdb into a temp
//! dir as the `postgres` user when we are root, `pg_ctl start` on a free loopback
//! port, socket dir inside the temp dir). A watchdog process stops the cluster and
//! removes the dir when the test binary exits. Each call of [`database`] creates a
//! fresh database. Unavailable: with `SKILLSANDBOX_TEST_REQUIRE=full` that is a
//! failure, else the test prints `skipped: <reason>` and returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

static ADMIN: OnceLock<Result<String, String>> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A URL to a new, empty database; `None` (after printing why) when no server
/// can be had and the host is not required to have one.
pub fn database() -> Option<String> {
    let admin = match ADMIN.get_or_init(admin_url) {
        Ok(u) => u.clone(),
        Err(why) => return unavailable(why),
    };
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut c = match postgres::Client::connect(&admin, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => return unavailable(&format!("cannot connect to the test server: {e}")),
    };
    if let Err(e) = c.batch_execute(&format!("CREATE DATABASE {name}")) {
        return unavailable(&format!("cannot create a test database: {e}"));
    }
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

fn unavailable(why: &str) -> Option<String> {
    if std::env::var("SKILLSANDBOX_TEST_REQUIRE").as_deref() == Ok("full") {
        panic!("PostgreSQL is required (SKILLSANDBOX_TEST_REQUIRE=full): {why}");
    }
    eprintln!("skipped: {why}");
    None
}

fn admin_url() -> Result<String, String> {
    if let Ok(u) = std::env::var("SKILLSANDBOX_TEST_PG") {
        if !u.is_empty() {
            return Ok(u);
        }
    }
    let bin = bin_dir().ok_or("no PostgreSQL server binaries (apt-get install postgresql)")?;
    let dir = std::env::temp_dir().join(format!("skillsandbox-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let root = is_root();
    if root {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !ok.success() {
            return Err("chown postgres: failed (no postgres user?)".into());
        }
    }
    let data = dir.join("data");
    let as_pg = |prog: &str| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
            c
        } else {
            Command::new(bin.join(prog))
        };
        c.stdin(Stdio::null());
        c
    };
    let out = as_pg("initdb")
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
        dir.display()
    );
    let out = as_pg("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-o", &opts, "start"])
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        return Err(format!("pg_ctl start failed: {log}"));
    }
    watchdog(&bin, &data, &dir, root);
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// Stops the cluster and removes its dir once this process is gone.
fn watchdog(bin: &Path, data: &Path, dir: &Path, root: bool) {
    let stop = format!(
        "{}{} -D {} -m immediate stop",
        if root { "runuser -u postgres -- " } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn bin_dir() -> Option<PathBuf> {
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if p.join("initdb").exists() {
            return Some(p);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}
