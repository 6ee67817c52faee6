//! `fs.toctou_declared_path`: a symlink race on a declared path, between the
//! supervisor's check of the path and the moment the sandbox takes hold of it (the
//! bind on the container tier, the Landlock rule on the process tier).
//!
//! The attacker owns a directory the manifest declares (a workspace). While the check
//! launches sandbox after sandbox, a racer thread on the host swaps, in a tight loop
//! and atomically (`renameat2(RENAME_EXCHANGE)`, so the name never disappears), either
//! the declared path itself or one of its parent components between a real directory
//! and a symlink to a host canary directory. Each launch's probe reads through the
//! declared path. The item fails if any launch ever read the canary; a launch refused
//! at setup because the path was a symlink at that moment failed closed and is only
//! counted.
//!
//! Owns the race tree ([`RaceTree`], under the check's workspace), the racer
//! ([`Racer`]), the probe's side ([`run_probe`]) and the verdict ([`judge`], pure).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::catalog::{ItemResult, Status};
use super::params::ProbeParams;
use super::workspace::{plant, WorkspaceError};
use super::{io_name, sys, verdict};

pub const ITEM: &str = "fs.toctou_declared_path";

/// Reads the probe makes through the declared path in one launch (the racer keeps
/// flipping meanwhile: on the process tier the path is the host's own).
const READS: usize = 200;

/// What the racer flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The declared path itself.
    Leaf,
    /// The declared path's parent directory.
    Parent,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Leaf, Variant::Parent];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Leaf => "declared path",
            Variant::Parent => "parent component",
        }
    }
}

/// What the probe of a race launch is told: the file to read through the declared
/// path, and what the real directory holds there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaceProbe {
    pub read: PathBuf,
    pub expect: String,
}

/// The race's files, under the check's workspace:
///
/// ```text
/// race/canary/secret, race/canary/leaf/secret        the host canary (never granted)
/// race/leaf/declared/secret                          declared (Leaf), real
/// race/leaf/declared.alt -> race/canary              swapped with `declared`
/// race/parent/dir/leaf/secret                        declared: race/parent/dir/leaf
/// race/parent/dir.alt -> race/canary                 swapped with `dir` (Parent)
/// ```
#[derive(Debug, Clone)]
pub struct RaceTree {
    pub root: PathBuf,
    pub canary_value: String,
    pub real_value: String,
}

fn create_err(p: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Create {
        path: p.to_path_buf(),
        source,
    }
}

fn mkdir(p: &Path) -> Result<(), WorkspaceError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(p)
        .map_err(create_err(p))?;
    // Explicit: the umask must not make the tree unreadable for DAC reasons (the
    // sandbox of a root invoker runs as another uid).
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(create_err(p))
}

impl RaceTree {
    /// Make the tree under `root` (which must not exist yet).
    pub fn create(root: PathBuf, tag: &str) -> Result<RaceTree, WorkspaceError> {
        let t = RaceTree {
            canary_value: format!("SKILLSANDBOX-CHECK-RACE-CANARY-{tag}"),
            real_value: format!("skillsandbox-check-race-real-{tag}"),
            root,
        };
        let canary = t.root.join("canary");
        for d in [
            t.root.clone(),
            canary.clone(),
            canary.join("leaf"),
            t.root.join("leaf"),
            t.root.join("leaf/declared"),
            t.root.join("parent"),
            t.root.join("parent/dir"),
            t.root.join("parent/dir/leaf"),
        ] {
            mkdir(&d)?;
        }
        plant(&canary.join("secret"), &t.canary_value)?;
        plant(&canary.join("leaf/secret"), &t.canary_value)?;
        plant(&t.root.join("leaf/declared/secret"), &t.real_value)?;
        plant(&t.root.join("parent/dir/leaf/secret"), &t.real_value)?;
        for v in Variant::ALL {
            let (_, alt) = t.flip_pair(v);
            symlink(&canary, &alt).map_err(create_err(&alt))?;
        }
        Ok(t)
    }

    /// The path the manifest declares (read-only) for `v`.
    pub fn declared(&self, v: Variant) -> PathBuf {
        match v {
            Variant::Leaf => self.root.join("leaf/declared"),
            Variant::Parent => self.root.join("parent/dir/leaf"),
        }
    }

    /// The two names the racer swaps for `v`: the real directory's and the symlink's.
    fn flip_pair(&self, v: Variant) -> (PathBuf, PathBuf) {
        match v {
            Variant::Leaf => (
                self.root.join("leaf/declared"),
                self.root.join("leaf/declared.alt"),
            ),
            Variant::Parent => (
                self.root.join("parent/dir"),
                self.root.join("parent/dir.alt"),
            ),
        }
    }

    /// What the probe of a `v` launch reads and expects.
    pub fn probe(&self, v: Variant) -> RaceProbe {
        RaceProbe {
            read: self.declared(v).join("secret"),
            expect: self.real_value.clone(),
        }
    }
}

/// A thread on the host swapping a declared name between the real directory and the
/// symlink to the canary, as fast as it can, until stopped.
pub struct Racer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, Option<i32>)>,
    pair: (PathBuf, PathBuf),
}

/// What the racer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RacerEnd {
    pub flips: u64,
    /// The errno that stopped it early, if any.
    pub error: Option<i32>,
}

impl Racer {
    pub fn start(tree: &RaceTree, v: Variant) -> std::io::Result<Racer> {
        let pair = tree.flip_pair(v);
        let stop = Arc::new(AtomicBool::new(false));
        let (a, b, flag) = (pair.0.clone(), pair.1.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("skillsandbox-check-racer".into())
            .spawn(move || {
                let mut flips = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = sys::rename_exchange(&a, &b) {
                        return (flips, Some(e));
                    }
                    flips += 1;
                }
                (flips, None)
            })?;
        Ok(Racer { stop, handle, pair })
    }

    /// Stop racing and leave the real directory at the declared name.
    pub fn stop(self) -> RacerEnd {
        self.stop.store(true, Ordering::Relaxed);
        let (flips, error) = self.handle.join().unwrap_or((0, Some(libc::EIO)));
        if flips % 2 == 1 {
            let _ = sys::rename_exchange(&self.pair.0, &self.pair.1);
        }
        RacerEnd { flips, error }
    }
}

/// The probe's side, inside one race launch: read the file through the declared path
/// [`READS`] times and say what came back. Anything but the real directory's contents
/// is a failure, and the first such contents are printed (so the check sees them).
pub fn run_probe(p: &ProbeParams) {
    let Some(r) = &p.race else {
        return verdict(ITEM, false, "the check gave no declared path to race");
    };
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut other: Option<String> = None;
    for _ in 0..READS {
        let what = match fs::read(&r.read) {
            Ok(b) if b == r.expect.as_bytes() => "real".to_string(),
            Ok(b) => {
                other.get_or_insert_with(|| {
                    String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned()
                });
                "other".to_string()
            }
            Err(e) => io_name(&e),
        };
        *tally.entry(what).or_default() += 1;
    }
    let counts = tally_text(&tally);
    match other {
        Some(read) => verdict(
            ITEM,
            false,
            format!("{}: {counts}; read {read:?}", r.read.display()),
        ),
        None => verdict(ITEM, true, format!("{}: {counts}", r.read.display())),
    }
}

fn tally_text(t: &BTreeMap<String, usize>) -> String {
    t.iter()
        .map(|(k, n)| format!("{n}×{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How one race launch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Not set up: the supervisor's check saw a symlink at the declared path. Failed
    /// closed.
    RefusedByCheck,
    /// Not set up: the path passed the check, then the no-symlink open that takes hold
    /// of it (the bind, the Landlock rule) met the symlink. Failed closed, inside the
    /// race window.
    RefusedAtOpen,
    /// Not set up, for another reason (the message).
    RefusedOther(String),
    /// The probe ran: everything it printed, and its result line if any.
    Ran {
        stdout: String,
        result: Option<ItemResult>,
    },
}

/// Classify a setup failure's message.
pub fn refused(message: &str) -> Launch {
    let m = message.to_ascii_lowercase();
    if m.contains("is a symlink to") {
        Launch::RefusedByCheck
    } else if m.contains("symlink") || m.contains("symbolic link") {
        Launch::RefusedAtOpen
    } else {
        Launch::RefusedOther(message.to_string())
    }
}

/// One variant's launches and what the racer did meanwhile.
#[derive(Debug, Clone)]
pub struct Raced {
    pub variant: Variant,
    pub launches: Vec<Launch>,
    pub racer: RacerEnd,
}

/// The verdict over every launch of every variant. FAIL when any launch's output
/// holds the canary, any probe read something other than the real directory's
/// contents, a probe that ran gave no result, a launch failed to set up for a reason
/// other than the symlink, or a racer stopped early (then the race was not run as
/// claimed). Pure.
pub fn judge(raced: &[Raced], canary_value: &str) -> ItemResult {
    let mut held = true;
    let mut parts = Vec::new();
    for r in raced {
        let mut read_canary = 0;
        let (mut by_check, mut at_open) = (0, 0);
        let mut other_refused: Vec<&str> = Vec::new();
        let mut ran_real = 0;
        let mut no_result = 0;
        let mut reads: BTreeMap<String, usize> = BTreeMap::new();
        let mut evidence: Option<String> = None;
        for l in &r.launches {
            match l {
                Launch::RefusedByCheck => by_check += 1,
                Launch::RefusedAtOpen => at_open += 1,
                Launch::RefusedOther(m) => other_refused.push(m),
                Launch::Ran { stdout, result } => {
                    let ok = result.as_ref().is_some_and(|x| x.status == Status::Pass);
                    if stdout.contains(canary_value) || (result.is_some() && !ok) {
                        read_canary += 1;
                        evidence.get_or_insert_with(|| {
                            result.as_ref().map_or_else(
                                || "the canary in its output".into(),
                                |x| x.detail.clone(),
                            )
                        });
                    } else if let Some(x) = result.as_ref().filter(|_| ok) {
                        ran_real += 1;
                        add_tally(&mut reads, &x.detail);
                    } else {
                        no_result += 1;
                    }
                }
            }
        }
        // A launch that failed for another reason says nothing about the race (all of
        // them failing that way would be a PASS that never raced): not a pass either.
        held &= read_canary == 0
            && no_result == 0
            && other_refused.is_empty()
            && r.racer.error.is_none();
        let mut s = format!(
            "{}: {} launches raced ({} flips): {read_canary} read the canary, \
             {} refused at setup (symlink: {by_check} by the supervisor's check, {at_open} by \
             the no-symlink open), {ran_real} ran on the real directory",
            r.variant.name(),
            r.launches.len(),
            r.racer.flips,
            by_check + at_open,
        );
        if !reads.is_empty() {
            s.push_str(&format!(" (reads: {})", tally_text(&reads)));
        }
        if !other_refused.is_empty() {
            s.push_str(&format!(
                ", {} failed to set up otherwise (first: {})",
                other_refused.len(),
                other_refused[0]
            ));
        }
        if no_result > 0 {
            s.push_str(&format!(", {no_result} ran without a result"));
        }
        if let Some(e) = evidence {
            s.push_str(&format!(" — {e}"));
        }
        if let Some(e) = r.racer.error {
            s.push_str(&format!(
                " — the racer stopped early: {}",
                super::errno_name(e)
            ));
        }
        parts.push(s);
    }
    ItemResult {
        id: ITEM.to_string(),
        status: if held && !raced.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        },
        detail: parts.join("; "),
    }
}

/// Add a probe detail's `N×what` counts (after the path's `: `) to `t`.
fn add_tally(t: &mut BTreeMap<String, usize>, detail: &str) {
    let counts = detail.rsplit_once(": ").map_or(detail, |(_, c)| c);
    for part in counts.split(", ") {
        if let Some((n, what)) = part.split_once('×') {
            if let Ok(n) = n.parse::<usize>() {
                *t.entry(what.to_string()).or_default() += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const CANARY: &str = "SKILLSANDBOX-CHECK-RACE-CANARY-t";

    fn ran(status: Status, detail: &str, stdout_extra: &str) -> Launch {
        let result = ItemResult {
            id: ITEM.into(),
            status,
            detail: detail.into(),
        };
        Launch::Ran {
            stdout: format!(
                "{}\n{stdout_extra}",
                serde_json::to_string(&result).unwrap()
            ),
            result: Some(result),
        }
    }

    fn raced(launches: Vec<Launch>) -> Vec<Raced> {
        vec![Raced {
            variant: Variant::Leaf,
            launches,
            racer: RacerEnd {
                flips: 1000,
                error: None,
            },
        }]
    }

    #[test]
    fn refusals_and_real_reads_pass_with_counts() {
        let r = judge(
            &raced(vec![
                Launch::RefusedByCheck,
                Launch::RefusedAtOpen,
                ran(
                    Status::Pass,
                    "/w/race/leaf/declared/secret: 150×real, 50×EACCES",
                    "",
                ),
                ran(Status::Pass, "/w/race/leaf/declared/secret: 200×real", ""),
            ]),
            CANARY,
        );
        assert_eq!(r.status, Status::Pass, "{}", r.detail);
        assert_eq!(
            r.detail,
            "declared path: 4 launches raced (1000 flips): 0 read the canary, 2 refused at \
             setup (symlink: 1 by the supervisor's check, 1 by the no-symlink open), 2 ran \
             on the real directory (reads: 50×EACCES, 350×real)"
        );
    }

    #[test]
    fn a_launch_that_read_the_canary_fails_the_item() {
        // The probe said so.
        let said = judge(
            &raced(vec![
                Launch::RefusedByCheck,
                ran(
                    Status::Fail,
                    &format!("/w/x/secret: 199×real, 1×other; read \"{CANARY}\""),
                    "",
                ),
            ]),
            CANARY,
        );
        assert_eq!(said.status, Status::Fail);
        assert!(said.detail.contains("1 read the canary"), "{}", said.detail);
        // The probe claimed PASS, but the canary is in what it printed.
        let hidden = judge(
            &raced(vec![ran(Status::Pass, "/w/x/secret: 200×real", CANARY)]),
            CANARY,
        );
        assert_eq!(hidden.status, Status::Fail, "{}", hidden.detail);
    }

    #[test]
    fn no_result_or_a_stalled_racer_is_not_a_pass() {
        let silent = judge(
            &raced(vec![Launch::Ran {
                stdout: String::new(),
                result: None,
            }]),
            CANARY,
        );
        assert_eq!(silent.status, Status::Fail, "{}", silent.detail);
        let mut stalled = raced(vec![Launch::RefusedAtOpen]);
        stalled[0].racer.error = Some(libc::ENOENT);
        let s = judge(&stalled, CANARY);
        assert_eq!(s.status, Status::Fail, "{}", s.detail);
        assert!(
            s.detail.contains("racer stopped early: ENOENT"),
            "{}",
            s.detail
        );
        assert_eq!(judge(&[], CANARY).status, Status::Fail);
        // Launches that fail to set up for another reason never raced.
        let other = judge(
            &raced(vec![refused("/w/d is not readable for uid 65534")]),
            CANARY,
        );
        assert_eq!(other.status, Status::Fail, "{}", other.detail);
        assert!(
            other.detail.contains("1 failed to set up otherwise"),
            "{}",
            other.detail
        );
    }

    #[test]
    fn setup_messages_are_classified() {
        assert_eq!(
            refused("declared path /w/d is a symlink to /w/c; declare /w/c instead"),
            Launch::RefusedByCheck
        );
        assert_eq!(
            refused(
                "mounts: openat2(/oldroot/w/d, O_PATH, RESOLVE_NO_SYMLINKS) => Too many \
                 levels of symbolic links (os error 40)"
            ),
            Launch::RefusedAtOpen
        );
        assert!(matches!(refused("cgroup: EBUSY"), Launch::RefusedOther(_)));
    }

    #[test]
    fn the_racer_flips_and_leaves_the_real_directory_in_place() {
        let base = std::env::temp_dir().join(format!(
            "skillsandbox-race-test-{}",
            super::super::workspace::random_hex().unwrap()
        ));
        let tree = RaceTree::create(base.clone(), "t").unwrap();
        for v in Variant::ALL {
            let racer = Racer::start(&tree, v).unwrap();
            let mut seen = BTreeMap::<String, usize>::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while seen.len() < 2 && std::time::Instant::now() < deadline {
                let what = match fs::read_to_string(tree.probe(v).read) {
                    Ok(s) if s == tree.real_value => "real",
                    Ok(s) if s == tree.canary_value => "canary",
                    Ok(_) => "other",
                    Err(_) => "error",
                };
                *seen.entry(what.into()).or_default() += 1;
            }
            let end = racer.stop();
            assert_eq!(end.error, None);
            assert!(end.flips > 0);
            // Unconfined, the host sees both sides of the race.
            assert!(
                seen.contains_key("real") && seen.contains_key("canary"),
                "{seen:?}"
            );
            let md = fs::symlink_metadata(tree.flip_pair(v).0).unwrap();
            assert!(
                md.is_dir(),
                "{v:?}: the real directory is not back in place"
            );
        }
        fs::remove_dir_all(&base).unwrap();
    }
}
