//! The chain and its verification: intact logs pass; edits, deletions,
//! reordering and truncation fail naming the first bad record.

use std::path::{Path, PathBuf};

use serde_json::json;
use skillsandbox_audit::{head_path_for, tail, verify, verify_with, AuditLog, VerifyOptions};

/// A log with `n` records in a fresh temp dir.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for i in 1..=n {
        let kind = if i % 2 == 0 { "session" } else { "run" };
        log.append(kind, json!({"i": i, "note": "ünïcode \"quoted\"\n"}))
            .unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

fn first_bad(path: &Path) -> (u64, String) {
    let r = verify(path).unwrap();
    assert!(!r.ok, "verify passed on a damaged log: {r:?}");
    let bad = r.first_bad.unwrap();
    assert_eq!(bad.line, bad.seq);
    (bad.seq, bad.reason)
}

#[test]
fn intact_log_verifies_and_chains_from_genesis() {
    let (_d, path) = log_with(5);
    let r = verify(&path).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.records, 5);
    assert_eq!(r.first_bad, None);
    let all = tail(&path, 100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].prev_hash, "0".repeat(64));
    for (i, pair) in all.windows(2).enumerate() {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "link {i}");
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert_eq!(r.last_hash.as_deref(), Some(all[4].hash.as_str()));
    let head = r.head.unwrap();
    assert_eq!((head.seq, head.hash.as_str()), (5, all[4].hash.as_str()));
}

#[test]
fn empty_log_verifies() {
    let (_d, path) = log_with(0);
    let r = verify(&path).unwrap();
    assert!(r.ok && r.records == 0, "{r:?}");
}

#[test]
fn hash_covers_the_line_minus_its_hash_member() {
    // The documented recipe: drop the last 75 bytes, append "}", SHA-256.
    use sha2::Digest;
    let (_d, path) = log_with(3);
    for line in lines(&path) {
        let b = line.as_bytes();
        let (head, suffix) = b.split_at(b.len() - 75);
        assert!(suffix.starts_with(b",\"hash\":\""), "{line}");
        let mut hashed = head.to_vec();
        hashed.push(b'}');
        let digest = hex::encode(sha2::Sha256::digest(&hashed));
        let rec: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(rec["hash"], digest);
    }
}

#[test]
fn edited_record_is_named() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"i\":3", "\"i\":4");
    write_lines(&path, &l);
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 3);
    assert!(reason.contains("edited"), "{reason}");
}

#[test]
fn edited_record_with_recomputed_hash_breaks_the_next_link() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    let mut rec: serde_json::Value = serde_json::from_str(&l[2]).unwrap();
    rec["body"]["i"] = json!(99);
    let (line, _) = skillsandbox_audit::encode_record(
        3,
        rec["time"].as_str().unwrap(),
        rec["kind"].as_str().unwrap(),
        &rec["body"],
        rec["prev_hash"].as_str().unwrap(),
    )
    .unwrap();
    l[2] = String::from_utf8(line).unwrap().trim_end().to_owned();
    write_lines(&path, &l);
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 4);
    assert!(reason.contains("prev_hash"), "{reason}");
}

#[test]
fn deleted_line_is_named() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 2);
    assert!(reason.contains("seq is 3, expected 2"), "{reason}");
}

#[test]
fn deleted_first_line_is_named() {
    let (_d, path) = log_with(3);
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(first_bad(&path).0, 1);
}

#[test]
fn swapped_pair_is_named() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.swap(2, 3);
    write_lines(&path, &l);
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 3);
    assert!(reason.contains("seq is 4, expected 3"), "{reason}");
}

#[test]
fn partial_last_line_is_named() {
    let (_d, path) = log_with(4);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 30]).unwrap();
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 4);
    assert!(reason.contains("incomplete last line"), "{reason}");
    // Only the final newline missing: still a cut.
    let (_d2, path2) = log_with(2);
    let bytes = std::fs::read(&path2).unwrap();
    std::fs::write(&path2, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(first_bad(&path2).0, 2);
}

#[test]
fn cleanly_removed_tail_is_caught_by_the_head_file() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.truncate(3);
    write_lines(&path, &l);
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 4);
    assert!(reason.contains("ends at record 5"), "{reason}");
    // The chain alone cannot see it: that is the documented limit.
    let chain_only = VerifyOptions {
        check_head: false,
        anchor: None,
    };
    assert!(verify_with(&path, &chain_only).unwrap().ok);
}

#[test]
fn removed_tail_and_head_file_is_not_ok() {
    let (_d, path) = log_with(3);
    std::fs::remove_file(head_path_for(&path)).unwrap();
    let (seq, reason) = first_bad(&path);
    assert_eq!(seq, 4);
    assert!(reason.contains("head file"), "{reason}");
}

#[test]
fn anchor_catches_a_rewritten_log_and_head() {
    let (_d, path) = log_with(4);
    let anchor = tail(&path, 1).unwrap()[0].hash.clone();
    let opts = VerifyOptions {
        check_head: true,
        anchor: Some(anchor.clone()),
    };
    assert!(verify_with(&path, &opts).unwrap().ok);
    // An attacker replaces the whole log (and head) with a fresh, valid chain.
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(head_path_for(&path)).unwrap();
    let log = AuditLog::open(&path).unwrap();
    for i in 0..4 {
        log.append("run", json!({"forged": i})).unwrap();
    }
    assert!(verify(&path).unwrap().ok);
    let r = verify_with(&path, &opts).unwrap();
    assert!(!r.ok);
    assert!(r.first_bad.unwrap().reason.contains("anchor"));
}

#[test]
fn append_refuses_to_extend_a_damaged_or_cut_log() {
    let (_d, path) = log_with(3);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = AuditLog::open(&path)
        .unwrap()
        .append("run", json!({}))
        .unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");

    let (_d, path) = log_with(3);
    let mut l = lines(&path);
    l.truncate(2);
    write_lines(&path, &l);
    let err = AuditLog::open(&path)
        .unwrap()
        .append("run", json!({}))
        .unwrap_err();
    assert!(err.to_string().contains("head file"), "{err}");
    // And the cut stays visible: nothing was appended over it.
    assert_eq!(lines(&path).len(), 2);
}

#[test]
fn tail_returns_the_last_records_in_order() {
    let (_d, path) = log_with(7);
    let t = tail(&path, 3).unwrap();
    assert_eq!(t.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
    assert_eq!(tail(&path, 0).unwrap().len(), 0);
    assert_eq!(tail(&path, 50).unwrap().len(), 7);
}

#[test]
fn tail_reads_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let big = "x".repeat(7000);
    for i in 0..12 {
        log.append("run", json!({"i": i, "pad": big})).unwrap();
    }
    let t = tail(&path, 5).unwrap();
    assert_eq!(
        t.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![8, 9, 10, 11, 12]
    );
    assert!(verify(&path).unwrap().ok);
}

#[test]
fn log_file_and_dirs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (d, path) = log_with(1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&head_path_for(&path)), 0o600);
    assert_eq!(mode(&d.path().join("state")), 0o700);
}
