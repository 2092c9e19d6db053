//! A full disk: the data directory on a small tmpfs fills up under ingest.
//! Lumen must refuse with retryable errors (never a 4xx, never a crash),
//! take data again once space returns, and after a SIGKILL hold every
//! acknowledged record exactly once.
//!
//! Needs permission to mount a tmpfs (root, as in CI); where mounting is
//! not permitted the test says so on stderr and passes without running.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;

/// A tmpfs mounted for the test's life.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "disk_full: cannot mount a tmpfs here ({}); not run",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            dir,
            _parent: parent,
        })
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

const BATCH: usize = 500;

fn batch_body(b: usize) -> serde_json::Value {
    let records: Vec<_> = (0..BATCH)
        .map(|i| {
            json!({"timeUnixNano": (1_700_000_000_000_000_000u64 + (b * BATCH + i) as u64).to_string(),
                "severityNumber": 9,
                "body": {"stringValue": format!("disk-full batch {b} record {i} order {} for user-{} took {} ms", b * 7919 + i, i * 31 % 977, (b + i) % 1000)},
                "attributes": [{"key": "batch", "value": {"intValue": b.to_string()}},
                               {"key": "request.id", "value": {"stringValue": format!("{:016x}", ((b * BATCH + i) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))}}]})
        })
        .collect();
    json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "disk"}}]},
        "scopeLogs": [{"logRecords": records}]}]})
}

/// Sends batch `b`: Ok(true) acknowledged, Ok(false) refused retryably.
fn send(s: &TestServer, b: usize) -> Result<bool, String> {
    let r = s
        .client()
        .post(s.otlp_http_url("/v1/logs"))
        .json(&batch_body(b))
        .send()
        .map_err(|e| format!("request failed: {e}"))?;
    let code = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    match code {
        200 => Ok(true),
        429 | 503 if retry_after => Ok(false),
        _ => Err(format!(
            "batch {b}: {code} {}",
            r.text().unwrap_or_default()
        )),
    }
}

fn fill(path: &Path, bytes: u64) {
    let f = std::fs::File::create(path).unwrap();
    // Writing (not set_len) so tmpfs pages are really taken.
    let mut w = std::io::BufWriter::new(f);
    let chunk = vec![0xA5u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if std::io::Write::write_all(&mut w, &chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    let _ = std::io::Write::flush(&mut w);
}

#[test]
fn a_full_disk_refuses_retryably_and_recovers_losing_nothing() {
    let Some(fs) = Tmpfs::mount("96m") else {
        return;
    };
    let data = fs.dir.join("data");
    let args = ["--flush-interval", "1s", "--index-delay", "1s"];
    let mut s = TestServer::start_in(&data, &args);
    // Leave a few MiB beyond what the WAL has preallocated.
    let filler = fs.dir.join("filler");
    fill(&filler, fs.free_bytes().saturating_sub(6 << 20));

    let mut acked = Vec::new();
    let mut refused = 0;
    let mut b = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Until the disk is full: ingest is refused and keeps being refused.
    while refused < 20 {
        assert!(
            Instant::now() < deadline,
            "the disk never filled: {} batches",
            acked.len()
        );
        match send(&s, b).unwrap() {
            true => acked.push(b),
            false => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        b += 1;
    }
    assert!(!acked.is_empty());
    assert!(s.healthy(), "a full disk took the server down");
    // Queries still answer, over what was acknowledged.
    let n = s.count("logs");
    assert_eq!(n as usize, acked.len() * BATCH);

    // Space returns: ingest recovers (the client retries, as SDKs do).
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while recovered < 10 {
        assert!(
            Instant::now() < deadline,
            "ingest did not recover after space returned"
        );
        if send(&s, b).unwrap() {
            acked.push(b);
            recovered += 1;
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
        b += 1;
    }
    // Flushes that failed for want of space are retried and succeed.
    assert!(
        s.eventually(Duration::from_secs(60), || s.metric("lumen_segments") > 0.0),
        "no segment was written after space returned"
    );
    // Failed attempts to preallocate WAL files left nothing behind: only the
    // current file, the spare and unflushed ones remain.
    let wal_files = || -> Vec<String> {
        std::fs::read_dir(data.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        s.eventually(Duration::from_secs(30), || wal_files().len() <= 4),
        "WAL files left over: {:?}",
        wal_files()
    );

    // Every acknowledged record exactly once, after a crash.
    s.kill9();
    let s = TestServer::start_in(&data, &args);
    let rows = s.sql_rows(
        "SELECT count(*) AS n, count(DISTINCT body) AS distinct_bodies, \
         count(DISTINCT log_attributes['batch']) AS batches FROM logs",
    );
    let want = acked.len() * BATCH;
    assert_eq!(
        rows,
        [json!({"n": want, "distinct_bodies": want, "batches": acked.len()})]
    );
    let listed: Vec<i64> = s
        .sql_rows(
            "SELECT DISTINCT CAST(log_attributes['batch'] AS BIGINT) AS b FROM logs ORDER BY b",
        )
        .iter()
        .map(|r| r["b"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, acked.iter().map(|b| *b as i64).collect::<Vec<_>>());
}
