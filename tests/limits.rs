//! Attribute limits: past `--max-attributes` a record's extra attributes are
//! dropped and counted in its `dropped_attributes_count`, values longer than
//! `--max-attribute-length` are cut, and both are counted in `/metrics`;
//! the record itself is accepted.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::json;

fn post_logs(s: &TestServer, body: &serde_json::Value) -> reqwest::blocking::Response {
    s.client()
        .post(s.otlp_http_url("/v1/logs"))
        .json(body)
        .send()
        .unwrap()
}

#[test]
fn extra_attributes_are_dropped_and_counted_long_values_cut() {
    let s = TestServer::start_with(&["--max-attributes", "5", "--max-attribute-length", "100"]);
    let attrs: Vec<_> = (0..8)
        .map(|i| json!({"key": format!("a{i}"), "value": {"stringValue": if i == 0 { "v".repeat(500) } else { format!("v{i}") }}}))
        .collect();
    let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "limits"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": "b".repeat(1000)},
            "attributes": attrs, "droppedAttributesCount": 1}]}]}]});
    let r = post_logs(&s, &body);
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let rows = s.sql_rows(
        "SELECT cardinality(map_keys(log_attributes)) AS n, dropped_attributes_count AS d, \
         length(log_attributes['a0']) AS a0, length(body) AS b FROM logs",
    );
    assert_eq!(rows, vec![json!({"n": 5, "d": 4, "a0": 100, "b": 100})]);
    assert_eq!(s.metric("lumen_attributes_dropped_total"), 3.0);
    assert_eq!(s.metric("lumen_attribute_values_truncated_total"), 2.0);
}

/// A client that sends headers and then trickles (or stops sending) its
/// body is answered 408 at the deadline; the server stays up.
#[test]
fn a_trickling_body_gets_408_at_the_deadline() {
    use std::io::{Read, Write};
    let s = TestServer::start_with(&["--body-timeout", "1s"]);
    let mut c = std::net::TcpStream::connect(&s.otlp_http_addr).unwrap();
    write!(
        c,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"resourceLogs\""
    )
    .unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert!(s.healthy());
}

/// Past `--max-concurrent-queries`, a query is refused with a retryable
/// 503 while the others run; it succeeds once they are done.
#[test]
fn queries_past_the_concurrency_limit_get_a_retryable_503() {
    let s = TestServer::start_with(&["--max-concurrent-queries", "1"]);
    let lines: Vec<_> = (0..700)
        .map(|i| json!({"timeUnixNano": "1700000000000000000", "body": {"stringValue": format!("line {i}")}}))
        .collect();
    let r = s
        .client()
        .post(s.otlp_http_url("/v1/logs"))
        .json(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": lines}]}]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    std::thread::scope(|scope| {
        // 700³ row triples to compare: long enough to overlap the probes.
        let slow = scope.spawn(|| s.sql_raw("SELECT count(*) AS n FROM logs a, logs b, logs c WHERE a.body < b.body AND b.body < c.body"));
        // Let the slow query take the only slot first.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut refused = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while refused.is_none() && std::time::Instant::now() < deadline && !slow.is_finished() {
            let r = s.client().get(s.url("/api/v1/labels")).send().unwrap();
            if r.status().as_u16() == 503 {
                refused = Some(
                    r.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (code, body) = slow.join().unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            refused,
            Some(Some("1".to_owned())),
            "no request was refused while the slow one ran"
        );
    });
    let (code, _) = s.get_json("/api/v1/labels", &[]);
    assert_eq!(code, 200);
    assert!(s.healthy(), "/health is never limited");
}

/// A value nested past `--max-value-depth` is cut there, the record kept.
#[test]
fn values_nested_too_deep_are_cut_at_the_depth_limit() {
    let s = TestServer::start_with(&["--max-value-depth", "4"]);
    let mut v = json!({"stringValue": "leaf"});
    for _ in 0..10 {
        v = json!({"arrayValue": {"values": [v]}});
    }
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1700000000000000000", "body": v, "attributes": [{"key": "shallow", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}}]}]}]}]});
    let r = post_logs(&s, &body);
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let rows = s.sql_rows("SELECT body, log_attributes['shallow'] AS shallow FROM logs");
    assert_eq!(rows, vec![json!({"body": "[[[[]]]]", "shallow": "[1]"})]);
    assert_eq!(s.metric("lumen_attribute_values_truncated_total"), 1.0);
}
