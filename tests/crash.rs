//! Durability: a `lumen serve` under continuous ingest is killed with SIGKILL
//! at random moments, again and again. After each restart every acknowledged
//! record is present exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

fn batch(prefix: &str, n: usize) -> Vec<u8> {
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!(
                    "{prefix}-{i} some padding to make the record a realistic size"
                ))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("crash".into())),
                    }),
                    key_strindex: 0,
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Sends batches from several threads until `stop`; returns the bodies acknowledged.
fn ingest_until(
    server: &TestServer,
    cycle: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..3)
        .map(|t| {
            let url = server.otlp_http_url("/v1/logs");
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut acked = Vec::new();
                let mut req = 0;
                while !stop.load(Ordering::Relaxed) {
                    let prefix = format!("c{cycle}-t{t}-r{req}");
                    req += 1;
                    let n = 20;
                    let res = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(batch(&prefix, n))
                        .send();
                    if let Ok(r) = res
                        && r.status().is_success()
                    {
                        acked.extend((0..n).map(|i| format!("{prefix}-{i}")));
                    }
                }
                acked
            })
        })
        .collect()
}

#[test]
fn sigkill_under_ingest_loses_and_duplicates_nothing_acknowledged() {
    // Small flushes so kills also land during segment writes and WAL trims.
    let mut server = TestServer::start_with(&[
        "--flush-size",
        "64KiB",
        "--flush-interval",
        "1s",
        "--sql-max-rows",
        "10000000",
    ]);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let cycles = 8;
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = ingest_until(&server, cycle, Arc::clone(&stop));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(300 + seed % 1200);
        std::thread::sleep(wait);
        // Kill while requests are in flight, then let the clients notice.
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            acked.lock().unwrap().extend(w.join().unwrap());
        }
        server = server.restart_after_kill9();
        let expected = acked.lock().unwrap().clone();
        let started = Instant::now();
        let rows = server.sql_rows("SELECT body FROM logs WHERE service_name = 'crash'");
        let bodies: Vec<String> = rows
            .iter()
            .map(|r| {
                let b = r["body"].as_str().unwrap();
                b.trim_end_matches(" some padding to make the record a realistic size")
                    .to_owned()
            })
            .collect();
        let unique: HashSet<&String> = bodies.iter().collect();
        assert_eq!(
            unique.len(),
            bodies.len(),
            "cycle {cycle}: duplicate records after restart"
        );
        let missing: Vec<&String> = expected
            .iter()
            .filter(|b| !unique.contains(b))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} acknowledged records missing, e.g. {missing:?}",
            expected.len() - unique.len().min(expected.len())
        );
        eprintln!(
            "cycle {cycle}: killed after {wait:?}; {} acknowledged so far, {} stored; checked in {:?}",
            expected.len(),
            bodies.len(),
            started.elapsed()
        );
    }
    assert!(
        acked.lock().unwrap().len() > 1000,
        "the test should have acknowledged plenty of records"
    );
    // The many small segments get compacted; the answer stays exactly the same.
    assert!(
        server.eventually(Duration::from_secs(60), || server
            .metric("lumen_compactions_total")
            > 0.0),
        "no compaction happened"
    );
    let n = server.sql_rows(
        "SELECT count(*) AS n, count(DISTINCT body) AS d FROM logs WHERE service_name = 'crash'",
    );
    assert_eq!(n[0]["n"], n[0]["d"], "duplicates after compaction");
    let expected = acked.lock().unwrap().len() as i64;
    assert!(
        n[0]["n"].as_i64().unwrap() >= expected,
        "records lost in compaction: {n:?} < {expected}"
    );
    // A clean shutdown exits 0.
    assert_eq!(server.terminate(), Some(0));
}
