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

fn unavailable<T>(why: &str) -> Option<T> {
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
    // The shared cluster lives as long as the test binary (its watchdog stops it).
    let c = Cluster::start("shared")?;
    let url = c.url("postgres");
    std::mem::forget(c);
    Ok(url)
}

/// A throwaway cluster of this test's own, for tests that stop and start the
/// server; `None` (after printing why) when there is no PostgreSQL and the host is
/// not required to have one.
pub fn private_cluster(name: &str) -> Option<Cluster> {
    match Cluster::start(name) {
        Ok(c) => Some(c),
        Err(why) => unavailable(&why),
    }
}

/// A PostgreSQL cluster in a temp dir on a loopback port. Dropping it does not stop
/// it: the watchdog does, when the test binary exits.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    root: bool,
}

impl Cluster {
    fn start(name: &str) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("no PostgreSQL server binaries (apt-get install postgresql)")?;
        let dir =
            std::env::temp_dir().join(format!("skillsandbox-pg-{}-{name}", std::process::id()));
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let c = Cluster {
            bin,
            dir,
            port,
            root,
        };
        let out = c
            .as_pg("initdb")
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
            .arg(c.data())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        c.start_server()?;
        watchdog(&c.bin, &c.data(), &c.dir, root);
        Ok(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_pg(&self, prog: &str) -> Command {
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(prog));
            c
        } else {
            Command::new(self.bin.join(prog))
        };
        c.stdin(Stdio::null());
        c
    }

    /// A URL to database `db` (which must exist) as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server (again), on the same port and data.
    pub fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let out = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {log}"));
        }
        Ok(())
    }

    /// Stops the server the way a crash or a failover does (`-m immediate`: every
    /// connection dropped at once, no checkpoint).
    pub fn stop_server(&self) -> Result<(), String> {
        let out = self
            .as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }
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
