//! Log search and histograms over real OTLP/HTTP ingest, across indexed
//! segments, unindexed segments and the fresh buffer: every answer is
//! checked against the same question asked in SQL (a brute-force scan).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};

const BASE: u64 = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z
const SERVICES: &[&str] = &["checkout", "payments", "search"];
const BODIES: &[&str] = &[
    "request timeout after 30 ms",
    "connection refused by upstream",
    "user login ok",
    "payment declined card expired",
    "cache miss for key user 42",
    "slow query took 1200 ms",
];
const SEVERITIES: &[(i32, &str)] = &[(9, "INFO"), (13, "WARN"), (17, "ERROR")];

/// One batch of `n` records starting at record number `first`; record i has
/// time BASE + i ms and everything else derived from i.
fn post_batch(server: &TestServer, first: u64, n: u64) {
    let mut by_service: Vec<Vec<Value>> = vec![Vec::new(); SERVICES.len()];
    for i in first..first + n {
        let (sev, sev_text) = SEVERITIES[(i % 3) as usize];
        let method = if i % 4 == 0 { "POST" } else { "GET" };
        by_service[(i % 3) as usize].push(json!({
            "timeUnixNano": (BASE + i * 1_000_000).to_string(),
            "severityNumber": sev,
            "severityText": sev_text,
            "body": {"stringValue": format!("{} #{i}", BODIES[(i % 6) as usize])},
            "traceId": format!("{:032x}", 0xabc000 + i / 4),
            "spanId": format!("{:016x}", 0x5000 + i),
            "attributes": [
                {"key": "http.method", "value": {"stringValue": method}},
                {"key": "route", "value": {"stringValue": format!("/api/v{}/items", i % 2)}},
            ],
        }));
    }
    let resource_logs: Vec<Value> = SERVICES
        .iter()
        .zip(by_service)
        .map(|(svc, records)| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                "scopeLogs": [{"scope": {"name": "search-test"}, "logRecords": records}],
            })
        })
        .collect();
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/logs"))
        .json(&json!({ "resourceLogs": resource_logs }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

fn get(server: &TestServer, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    server.get_json(path, params)
}

/// Every page of a search (`limit` per page), concatenated: the bodies.
fn search_all(server: &TestServer, q: &str, extra: &[(&str, &str)], limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let limit_s = limit.to_string();
    for _ in 0..1000 {
        let mut params = vec![("q", q), ("limit", limit_s.as_str())];
        params.extend_from_slice(extra);
        if let Some(c) = &cursor {
            params.push(("cursor", c.as_str()));
        }
        let (status, page) = get(server, "/api/v1/logs/search", &params);
        assert_eq!(status, 200, "{q}: {page}");
        let logs = page["logs"].as_array().unwrap();
        assert!(logs.len() <= limit);
        out.extend(logs.iter().map(|l| l["body"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("{q}: pagination never ended");
}

/// The bodies SQL finds for `filter`, newest first.
fn sql_bodies(server: &TestServer, filter: &str) -> Vec<String> {
    server
        .sql_rows(&format!(
            "SELECT body FROM logs WHERE {filter} ORDER BY timestamp DESC"
        ))
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Search queries and the SQL filter that means the same on this data.
const CASES: &[(&str, &str)] = &[
    ("", "true"),
    ("timeout", "body LIKE '%timeout%'"),
    ("TIMEOUT", "body LIKE '%timeout%'"),
    ("\"connection refused\"", "body LIKE '%connection refused%'"),
    ("\"refused connection\"", "false"),
    ("user", "body LIKE '%user%'"),
    (
        "user -login",
        "body LIKE '%user%' AND body NOT LIKE '%login%'",
    ),
    (
        "user AND NOT login",
        "body LIKE '%user%' AND body NOT LIKE '%login%'",
    ),
    (
        "timeout OR declined",
        "(body LIKE '%timeout%' OR body LIKE '%declined%')",
    ),
    (
        "(timeout OR declined) service:payments",
        "(body LIKE '%timeout%' OR body LIKE '%declined%') AND service_name = 'payments'",
    ),
    ("service:checkout", "service_name = 'checkout'"),
    ("service:pay*", "service_name LIKE 'pay%'"),
    ("severity:error", "severity_number BETWEEN 17 AND 20"),
    ("severity>=warn", "severity_number >= 13"),
    ("level<warn", "severity_number < 13"),
    (
        "attr.http.method:POST",
        "log_attributes['http.method'] = 'POST'",
    ),
    (
        "attr.route:/api/v1/*",
        "log_attributes['route'] LIKE '/api/v1/%'",
    ),
    ("attr.service.name:search", "service_name = 'search'"),
    (
        "trace_id:00000000000000000000000000ABC007",
        "trace_id = '00000000000000000000000000abc007'",
    ),
    ("span_id:0000000000005003", "span_id = '0000000000005003'"),
    ("decl*", "body LIKE '%declined%'"),
    ("ms -slow", "body LIKE '% ms%' AND body NOT LIKE '%slow%'"),
    ("nothingmatches", "false"),
];

#[test]
fn search_equals_sql_across_indexed_segments_and_the_buffer() {
    let server = TestServer::start_with(&["--flush-interval", "1s", "--index-delay", "1s"]);
    // Two flushes that get indexed, then records left in the buffer.
    post_batch(&server, 0, 120);
    assert!(
        server.eventually(Duration::from_secs(30), || server.metric("lumen_segments")
            >= 1.0)
    );
    post_batch(&server, 120, 120);
    assert!(server.eventually(Duration::from_secs(60), || {
        server.metric("lumen_segments") >= 1.0
            && server.metric("lumen_segments_unindexed") == 0.0
            && server.count("logs") == 240
            && server.metric("lumen_index_bytes") > 0.0
    }));
    // Segments without a match are not planned at all (checked while every
    // record is in an indexed segment: nothing new can be flushed meanwhile).
    let plan = |filter: &str| {
        server
            .sql_rows(&format!("EXPLAIN SELECT body FROM logs WHERE {filter}"))
            .iter()
            .map(|r| r["plan"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(plan("body LIKE '%nothingmatches%'").contains(".parquet"));
    assert!(!plan("matches(body, 'nothingmatches')").contains(".parquet"));
    // Fresh records: newer than the indexed ones, still in the buffer.
    post_batch(&server, 240, 30);
    assert_eq!(server.count("logs"), 270);

    for (q, filter) in CASES {
        let want = sql_bodies(&server, filter);
        assert_eq!(search_all(&server, q, &[], 7), want, "query {q:?}");
        assert_eq!(
            search_all(&server, q, &[], 1000),
            want,
            "query {q:?} in one page"
        );
    }
    assert!(!sql_bodies(&server, "body LIKE '%timeout%'").is_empty());

    // The same text queries through SQL's matches(), which the indexes answer
    // for segments and a scan for the buffer.
    let mut text_cases = 0;
    for (q, filter) in CASES {
        if q.contains(':') || q.contains('>') || q.contains('<') {
            continue;
        }
        text_cases += 1;
        let lit = q.replace('\'', "''");
        assert_eq!(
            sql_bodies(&server, &format!("matches(body, '{lit}')")),
            sql_bodies(&server, filter),
            "matches(body, {q:?})"
        );
    }
    assert!(text_cases >= 10);
    assert_eq!(
        sql_bodies(
            &server,
            "matches(body, 'timeout') AND service_name = 'payments'"
        ),
        sql_bodies(
            &server,
            "body LIKE '%timeout%' AND service_name = 'payments'"
        )
    );
    // matches() works on any text column, by scan.
    assert_eq!(
        server.sql_rows("SELECT count(*) AS n FROM logs WHERE matches(service_name, 'check*')")[0]
            ["n"],
        90
    );
    // Field queries, syntax errors and non-literal queries are refused clearly.
    for bad in [
        "SELECT * FROM logs WHERE matches(body, 'service:checkout')",
        "SELECT * FROM logs WHERE matches(body, '(timeout')",
        "SELECT * FROM logs WHERE matches(body, body)",
        "SELECT matches(body) FROM logs",
    ] {
        let (status, v) = server.sql_raw(bad);
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().len() > 10, "{v}");
    }

    // A time range: start and end are inclusive.
    let start = "1700000000.010"; // record 10
    let end = "2023-11-14T22:13:20.100Z"; // record 100
    assert_eq!(
        search_all(
            &server,
            "severity>=warn",
            &[("start", start), ("end", end)],
            9
        ),
        sql_bodies(
            &server,
            "severity_number >= 13 AND timestamp BETWEEN TIMESTAMP '2023-11-14T22:13:20.010Z' AND TIMESTAMP '2023-11-14T22:13:20.100Z'"
        )
    );

    // Every result carries the record's fields.
    let (_, page) = get(
        &server,
        "/api/v1/logs/search",
        &[("q", "span_id:0000000000005003")],
    );
    let rec = &page["logs"][0];
    assert_eq!(rec["service_name"], "checkout");
    assert_eq!(rec["severity_text"], "INFO");
    assert_eq!(rec["severity_number"], 9);
    assert_eq!(rec["trace_id"], "00000000000000000000000000abc000");
    assert_eq!(rec["attributes"]["http.method"], "GET");
    assert_eq!(rec["resource_attributes"]["service.name"], "checkout");
    assert_eq!(rec["timestamp"], "2023-11-14T22:13:20.003000000Z");
}

#[test]
fn pages_stay_stable_while_records_arrive() {
    let server = TestServer::start_with(&["--flush-interval", "1s", "--index-delay", "1s"]);
    post_batch(&server, 0, 60);
    let (_, first) = get(
        &server,
        "/api/v1/logs/search",
        &[("q", "user"), ("limit", "5")],
    );
    let mut seen: Vec<String> = first["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["body"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // Newer matching records arrive between pages (and a flush may move
    // the older ones into a segment): the following pages continue where
    // the first ended.
    post_batch(&server, 60, 60);
    loop {
        let (status, page) = get(
            &server,
            "/api/v1/logs/search",
            &[("q", "user"), ("limit", "5"), ("cursor", &cursor)],
        );
        assert_eq!(status, 200);
        seen.extend(
            page["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["body"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let want: Vec<String> = sql_bodies(
        &server,
        "body LIKE '%user%' AND timestamp < TIMESTAMP '2023-11-14T22:13:20.060Z'",
    );
    assert_eq!(seen, want);
}

#[test]
fn histograms_count_what_sql_counts() {
    let server = TestServer::start_with(&["--flush-interval", "1s", "--index-delay", "1s"]);
    post_batch(&server, 0, 100);
    assert!(server.eventually(Duration::from_secs(60), || {
        server.metric("lumen_segments") >= 1.0 && server.metric("lumen_segments_unindexed") == 0.0
    }));
    post_batch(&server, 100, 20);
    let (status, h) = get(
        &server,
        "/api/v1/logs/histogram",
        &[
            ("q", "severity:error"),
            ("start", "1700000000"),
            ("end", "1700000000.119999999"),
            ("buckets", "12"),
        ],
    );
    assert_eq!(status, 200, "{h}");
    let buckets = h["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 12);
    assert_eq!(h["interval_ms"], 10.0);
    assert_eq!(buckets[1]["start"], "2023-11-14T22:13:20.010000000Z");
    for (i, b) in buckets.iter().enumerate() {
        let lo = BASE + i as u64 * 10_000_000;
        let n = server.sql_rows(&format!(
            "SELECT count(*) AS n FROM logs WHERE severity_number BETWEEN 17 AND 20 \
             AND timestamp >= to_timestamp_nanos({lo}) AND timestamp < to_timestamp_nanos({})",
            lo + 10_000_000
        ))[0]["n"]
            .as_u64()
            .unwrap();
        assert_eq!(b["count"].as_u64().unwrap(), n, "bucket {i}");
    }
    // Unbounded: the range is the data's.
    let (_, all) = get(&server, "/api/v1/logs/histogram", &[("buckets", "5")]);
    let total: u64 = all["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 120);
    // From the first record (record 0) to the last (record 119, 119 ms later).
    assert_eq!(all["buckets"][0]["start"], "2023-11-14T22:13:20.000000000Z");
    assert!(all["buckets"][4]["count"].as_u64().unwrap() > 0);
    assert_eq!(all["interval_ms"], 23.800001); // (119 ms + 1 ns) / 5, rounded up
}

#[test]
fn bad_searches_get_400_with_a_position_and_the_server_stays_up() {
    let server = TestServer::start();
    post_batch(&server, 0, 10);
    // (endpoint, parameters, what the error must say)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("/api/v1/logs/search", &[("q", "a (b")], "never closed"),
        ("/api/v1/logs/search", &[("q", "\"abc")], "closing"),
        ("/api/v1/logs/search", &[("q", "a OR")], "expected a term"),
        (
            "/api/v1/logs/search",
            &[("q", "severity:loud")],
            "expected a severity",
        ),
        ("/api/v1/logs/search", &[("q", "trace_id:ab*")], "wildcards"),
        (
            "/api/v1/logs/search",
            &[("q", &"(".repeat(500))],
            "nests deeper",
        ),
        ("/api/v1/logs/search", &[("limit", "0")], "limit"),
        ("/api/v1/logs/search", &[("limit", "lots")], "limit"),
        ("/api/v1/logs/search", &[("limit", "100001")], "limit"),
        ("/api/v1/logs/search", &[("cursor", "garbage")], "cursor"),
        ("/api/v1/logs/search", &[("start", "yesterday")], "start"),
        ("/api/v1/logs/search", &[("end", "now-5y")], "unknown unit"),
        (
            "/api/v1/logs/search",
            &[("start", "now"), ("end", "now-1h")],
            "start is after end",
        ),
        (
            "/api/v1/logs/search",
            &[("frobnicate", "1")],
            "unknown parameter",
        ),
        ("/api/v1/logs/histogram", &[("buckets", "0")], "buckets"),
        ("/api/v1/logs/histogram", &[("q", ")")], "expected a term"),
        ("/api/v1/logs/search", &[("q", "a)")], "no matching"),
    ];
    for (path, params, want) in cases {
        let (status, body) = get(&server, path, params);
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(want), "{path} {params:?}: {msg}");
    }
    let (_, body) = get(&server, "/api/v1/logs/search", &[("q", "a (b")]);
    assert_eq!(body["position"], 2);
    assert!(server.healthy());
    assert_eq!(search_all(&server, "", &[], 100).len(), 10);
}

/// A segment not indexed yet is scanned a batch at a time: matches past the
/// first batch (8,192 rows) come back as the right records.
#[test]
fn an_unindexed_segment_larger_than_a_batch_is_searched_right() {
    let server = TestServer::start_with(&["--flush-interval", "1s", "--index-delay", "1h"]);
    post_batch(&server, 0, 20_000);
    assert!(server.eventually(Duration::from_secs(60), || {
        server.metric("lumen_segments") >= 1.0 && server.metric("lumen_segments_unindexed") >= 1.0
    }));
    // Record 16000 is a POST (every fourth is), in its attributes.
    for (q, n) in [
        ("\"#19999\"", 19999),
        ("\"#8192\"", 8192),
        ("\"#12345\"", 12345),
        ("attr.http.method:POST \"#16000\"", 16000),
    ] {
        let want = sql_bodies(&server, &format!("body LIKE '%#{n}'"));
        assert_eq!(want.len(), 1, "{q}");
        assert_eq!(search_all(&server, q, &[], 10), want, "{q}");
    }
    let all = search_all(&server, "timeout", &[], 5000);
    assert_eq!(all, sql_bodies(&server, "body LIKE '%timeout%'"));
}
