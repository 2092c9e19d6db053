//! SQL over buffers and segments together, with time pruning that never
//! changes an answer.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::json;

fn post_logs(server: &TestServer, body: &str, time_ns: u64) {
    let payload = json!({"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"sql-test"}}]},
        "scopeLogs":[{"logRecords":[{"timeUnixNano": time_ns.to_string(), "body":{"stringValue": body}}]}]}]});
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/logs"))
        .json(&payload)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn time_filters_prune_segments_without_changing_answers() {
    let server = TestServer::start_with(&["--flush-interval", "1s"]);
    let hour = 3_600_000_000_000u64;
    let base = 1_700_000_000_000_000_000u64;
    // Three flushes: each hour's records land in their own segment.
    for h in 0..3u64 {
        for i in 0..5 {
            post_logs(&server, &format!("h{h}-{i}"), base + h * hour + i);
        }
        let want = (h + 1) as f64;
        assert!(
            server.eventually(Duration::from_secs(20), || server.metric("lumen_segments")
                >= want),
            "flush {h} did not happen"
        );
    }
    // And some still in the buffer.
    post_logs(&server, "fresh", base + 3 * hour);

    let q = |filter: &str| {
        server.sql_rows(&format!("SELECT count(*) AS n FROM logs WHERE {filter}"))[0]["n"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(q("true"), 16);
    let lo = "TIMESTAMP '2023-11-14T23:13:20Z'"; // base + 1h
    assert_eq!(q(&format!("timestamp >= {lo}")), 11);
    assert_eq!(q(&format!("timestamp < {lo}")), 5);
    assert_eq!(
        q(&format!(
            "timestamp BETWEEN {lo} AND {lo} + INTERVAL '1 hour'"
        )),
        6
    );
    // The same bounds in a form pruning does not understand give the same answers.
    let lo_ns = base + hour;
    assert_eq!(q(&format!("CAST(timestamp AS BIGINT) >= {lo_ns}")), 11);
    // An answer from buffer and segments together, newest first.
    let rows = server.sql_rows("SELECT body FROM logs ORDER BY timestamp DESC LIMIT 2");
    assert_eq!(
        rows,
        vec![json!({"body": "fresh"}), json!({"body": "h2-4"})]
    );
}

#[test]
fn retention_drops_expired_hours_and_their_files() {
    let server = TestServer::start_with(&["--flush-interval", "1s", "--retention-logs", "2h"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let hour = 3_600_000_000_000u64;
    post_logs(&server, "five hours ago", now - 5 * hour);
    post_logs(&server, "just now", now);
    // The old hour is flushed, then dropped; the fresh record stays.
    assert!(
        server.eventually(Duration::from_secs(30), || {
            server.sql_rows("SELECT body FROM logs") == vec![json!({"body": "just now"})]
        }),
        "{:?}",
        server.sql_rows("SELECT body FROM logs")
    );
    // Its files are gone from disk too, and the catalog no longer names them.
    let old_partition = {
        let secs = (now - 5 * hour) / 1_000_000_000;
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let dir = server.data_dir().join("segments/logs").join(&old_partition);
    assert!(
        server.eventually(Duration::from_secs(10), || !dir.exists()),
        "{} still exists",
        dir.display()
    );
    let catalog = std::fs::read_to_string(server.data_dir().join("catalog.json")).unwrap();
    assert!(!catalog.contains(&old_partition), "{catalog}");
}
