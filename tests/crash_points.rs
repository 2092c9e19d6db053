//! Crash consistency at every step of the store's commit protocols: the
//! server is made to abort (as a SIGKILL would) at one named step of a flush,
//! a compaction or a retention pass (`LUMEN_TEST_CRASH_AT`). After a restart,
//! every acknowledged record is there exactly once and every file under
//! `segments/` is one the catalog names (no orphaned or half-written files).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TestServer;
use serde_json::{Value, json};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Posts `bodies` as one OTLP/JSON request at time `t`; true when acknowledged.
fn post(server: &TestServer, bodies: &[String], t: u64) -> bool {
    let records: Vec<Value> = bodies
        .iter()
        .map(|b| json!({"timeUnixNano": t.to_string(), "body": {"stringValue": b}}))
        .collect();
    let payload = json!({"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"crash-points"}}]},
        "scopeLogs":[{"logRecords": records}]}]});
    server
        .client()
        .post(server.otlp_http_url("/v1/logs"))
        .json(&payload)
        .send()
        .is_ok_and(|r| r.status().is_success())
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}-{i} crash point record"))
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every file under `segments/` is named by the catalog, and every file the
/// catalog names exists.
fn assert_files_match_catalog(dir: &Path) {
    // No catalog yet (nothing was ever committed) names no segments.
    let catalog: Value = std::fs::read(dir.join("catalog.json"))
        .map_or(json!({"segments": []}), |b| {
            serde_json::from_slice(&b).unwrap()
        });
    let mut named = HashSet::new();
    for s in catalog["segments"].as_array().unwrap() {
        let path = s["path"].as_str().unwrap().to_owned();
        if s["index_bytes"].as_u64().unwrap_or(0) > 0 {
            named.insert(dir.join(path.replace(".parquet", ".idx")));
        }
        named.insert(dir.join(path));
    }
    let mut files = Vec::new();
    walk(&dir.join("segments"), &mut files);
    let files: HashSet<PathBuf> = files.into_iter().collect();
    assert_eq!(files, named, "files on disk differ from the catalog");
}

fn bodies(server: &TestServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for row in server.sql_rows("SELECT body FROM logs") {
        *counts
            .entry(row["body"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// Waits for the server to abort at its crash point.
fn wait_for_crash(server: &TestServer, point: &str) {
    assert!(
        server.eventually(Duration::from_secs(60), || !server.healthy()),
        "the server did not reach crash point {point}"
    );
}

/// Restarts on the same data, then checks exactly-once and the files.
fn check_after_restart(server: TestServer, acked: &[String], gone: &[String], point: &str) {
    check_after_restart_with(server, acked, &[], gone, point);
}

/// As [`check_after_restart`], where `unanswered` is a request the crash cut
/// off before its answer: it may have been made durable, so its records are
/// there exactly once or not at all, all of them or none (one WAL record).
fn check_after_restart_with(
    server: TestServer,
    acked: &[String],
    unanswered: &[String],
    gone: &[String],
    point: &str,
) {
    let server = server.restart_after_kill9();
    let mut counts = bodies(&server);
    let kept: Vec<Option<usize>> = unanswered.iter().map(|b| counts.remove(b)).collect();
    assert!(
        kept.iter().all(|c| *c == Some(1)) || kept.iter().all(Option::is_none),
        "{point}: an unanswered request must be there once, whole, or not at all: {kept:?}"
    );
    for b in acked {
        assert_eq!(
            counts.get(b),
            Some(&1),
            "{point}: {b} must be there exactly once"
        );
    }
    for b in gone {
        assert_eq!(
            counts.get(b),
            None,
            "{point}: expired {b} must stay dropped"
        );
    }
    assert_eq!(counts.len(), acked.len(), "{point}: unexpected records");
    // The restarted server may start a merge at once; after a clean shutdown
    // the files must be exactly the catalog's.
    let dir = server.data_dir().to_owned();
    let mut server = server;
    assert_eq!(server.terminate(), Some(0));
    assert_files_match_catalog(&dir);
}

#[test]
fn a_crash_at_any_step_of_a_flush_loses_and_duplicates_nothing() {
    for point in [
        "segment-parquet-written",
        "flush-before-commit",
        "flush-after-commit",
    ] {
        let server = TestServer::start_with_env(
            &["--flush-interval", "1s"],
            &[("LUMEN_TEST_CRASH_AT", point)],
        );
        let acked = batch(point, 200);
        assert!(post(&server, &acked, now_ns()));
        wait_for_crash(&server, point);
        check_after_restart(server, &acked, &[], point);
    }
}

#[test]
fn a_crash_at_any_step_of_a_compaction_loses_and_duplicates_nothing() {
    // Indexes are built by compaction, so its index step is tested here.
    for point in [
        "segment-index-written",
        "compaction-before-commit",
        "compaction-after-commit",
    ] {
        let server = TestServer::start_with_env(
            &["--flush-interval", "1s"],
            &[("LUMEN_TEST_CRASH_AT", point)],
        );
        // Five flushes of one partition: five small segments, one merge.
        let t = now_ns();
        let mut acked = Vec::new();
        let mut unanswered = Vec::new();
        for round in 0..5 {
            let b = batch(&format!("{point}-{round}"), 100);
            // The merge (and the crash) may come before the last round, even
            // between this request's fsync and its answer.
            if !post(&server, &b, t + round) {
                unanswered = b;
                break;
            }
            acked.extend(b);
            std::thread::sleep(Duration::from_millis(1500));
        }
        wait_for_crash(&server, point);
        check_after_restart_with(server, &acked, &unanswered, &[], point);
    }
}

#[test]
fn a_crash_while_indexing_a_flushed_segment_in_place_loses_and_duplicates_nothing() {
    for point in ["index-in-place-written", "index-in-place-committed"] {
        // A lone flushed segment gets its index after a second.
        let server = TestServer::start_with_env(
            &["--flush-interval", "1s", "--index-delay", "1s"],
            &[("LUMEN_TEST_CRASH_AT", point)],
        );
        let acked = batch(point, 200);
        assert!(post(&server, &acked, now_ns()));
        wait_for_crash(&server, point);
        check_after_restart(server, &acked, &[], point);
    }
}

#[test]
fn a_crash_while_concatenating_indexed_segments_loses_and_duplicates_nothing() {
    for point in ["concat-parquet-written", "concat-index-written"] {
        // Every flush is indexed alone after a second; four indexed segments
        // of one size are then concatenated (however small, by the hook).
        let server = TestServer::start_with_env(
            &["--flush-interval", "1s", "--index-delay", "1s"],
            &[
                ("LUMEN_TEST_CRASH_AT", point),
                ("LUMEN_TEST_CONCAT_MIN_ROWS", "1"),
            ],
        );
        let t = now_ns();
        let mut acked = Vec::new();
        let mut unanswered = Vec::new();
        for round in 0..8 {
            let b = batch(&format!("{point}-{round}"), 100);
            if !post(&server, &b, t + round) {
                unanswered = b;
                break;
            }
            acked.extend(b);
            std::thread::sleep(Duration::from_millis(2500));
        }
        wait_for_crash(&server, point);
        check_after_restart_with(server, &acked, &unanswered, &[], point);
    }
}

#[test]
fn a_crash_in_retention_keeps_live_data_and_drops_expired_data_for_good() {
    let point = "retention-after-commit";
    let server = TestServer::start_with_env(
        &["--flush-interval", "1s", "--retention-logs", "1h"],
        &[("LUMEN_TEST_CRASH_AT", point)],
    );
    let old = batch("expired", 100);
    let live = batch("live", 100);
    assert!(post(&server, &old, now_ns() - 3 * 3_600_000_000_000));
    assert!(post(&server, &live, now_ns()));
    wait_for_crash(&server, point);
    check_after_restart(server, &live, &old, point);
}
