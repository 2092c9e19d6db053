//! Live tail over a real WebSocket (tokio-tungstenite) against a real
//! server: a subscriber sees exactly the records matching its filter, in
//! acknowledgement order; a client that stops reading is told how many
//! records it missed (every record is either delivered or counted) and
//! ingest does not wait for it; bad filters get an error frame.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use futures::StreamExt;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn tail_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse_with_params(&server.url("/api/v1/tail"), params).unwrap();
    url.set_scheme("ws").unwrap();
    url.to_string()
}

fn connect(rt: &tokio::runtime::Runtime, server: &TestServer, params: &[(&str, &str)]) -> Ws {
    let url = tail_url(server, params);
    rt.block_on(tokio_tungstenite::connect_async(url))
        .unwrap()
        .0
}

/// The next JSON frame, or `None` after `wait` without one (or on close).
fn next_frame(rt: &tokio::runtime::Runtime, ws: &mut Ws, wait: Duration) -> Option<Value> {
    rt.block_on(async {
        loop {
            match tokio::time::timeout(wait, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    })
}

/// Reads frames until `want` records arrived (or 30 s passed): records and
/// the sum of `dropped` counts.
fn collect(rt: &tokio::runtime::Runtime, ws: &mut Ws, want: usize) -> (Vec<Value>, u64) {
    let mut records = Vec::new();
    let mut dropped = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (records.len() as u64 + dropped) < want as u64 && Instant::now() < deadline {
        let Some(f) = next_frame(rt, ws, Duration::from_secs(5)) else {
            break;
        };
        match f["type"].as_str() {
            Some("records") => records.extend(f["records"].as_array().unwrap().iter().cloned()),
            Some("dropped") => dropped += f["count"].as_u64().unwrap(),
            other => panic!("unexpected frame {other:?}: {f}"),
        }
    }
    (records, dropped)
}

fn logger(server: &TestServer, service: &str) -> SdkLoggerProvider {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(server.otlp_http_url("/v1/logs"))
        .build()
        .unwrap();
    SdkLoggerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .with_simple_exporter(exporter)
        .build()
}

#[test]
fn a_tail_sees_exactly_the_matching_records_in_order() {
    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ws = connect(
        &rt,
        &server,
        &[
            ("signal", "logs"),
            ("q", "severity>=warn AND service:checkout"),
        ],
    );
    let mut all = connect(&rt, &server, &[]);
    server.wait_tail_subscribers(2, &[]);

    // Through the SDK, one request per record: acknowledgement order is
    // emission order.
    let providers = [logger(&server, "checkout"), logger(&server, "payments")];
    let levels = [
        (Severity::Info, "INFO"),
        (Severity::Warn, "WARN"),
        (Severity::Error, "ERROR"),
    ];
    let mut want = Vec::new();
    for i in 0..60usize {
        let service = i % 2;
        let (sev, text) = levels[(i / 2) % 3];
        let lg = providers[service].logger("tail-test");
        let mut rec = lg.create_log_record();
        rec.set_severity_number(sev);
        rec.set_severity_text(text);
        rec.set_body(AnyValue::from(format!("tail line {i}")));
        rec.add_attribute("n", i as i64);
        lg.emit(rec);
        if service == 0 && text != "INFO" {
            want.push(format!("tail line {i}"));
        }
    }
    for p in &providers {
        p.shutdown().unwrap();
    }
    assert_eq!(server.count("logs"), 60);

    let (records, dropped) = collect(&rt, &mut ws, want.len());
    assert_eq!(dropped, 0);
    let bodies: Vec<&str> = records
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, want);
    // Nothing else comes.
    assert!(next_frame(&rt, &mut ws, Duration::from_millis(500)).is_none());
    // Records have the search result shape.
    let r = &records[0];
    assert_eq!(r["service_name"], "checkout");
    assert_eq!(r["severity_text"], "WARN");
    assert_eq!(r["severity_number"], 13);
    assert_eq!(r["attributes"]["n"], "2");
    assert_eq!(r["resource_attributes"]["service.name"], "checkout");
    assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));

    // The unfiltered tail saw all 60, in order.
    let (records, _) = collect(&rt, &mut all, 60);
    let bodies: Vec<String> = records
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    let every: Vec<String> = (0..60).map(|i| format!("tail line {i}")).collect();
    assert_eq!(bodies, every);

    // Closing unsubscribes.
    rt.block_on(ws.close(None)).unwrap();
    rt.block_on(all.close(None)).unwrap();
    server.wait_tail_subscribers(0, &[]);
}

fn post(server: &TestServer, path: &str, body: &Value) {
    let r = server
        .client()
        .post(server.otlp_http_url(path))
        .json(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

#[test]
fn span_and_metric_tails_filter_on_the_server() {
    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut spans_ws = connect(
        &rt,
        &server,
        &[
            ("signal", "spans"),
            ("service", "api"),
            ("min_duration", "10ms"),
            ("error", "true"),
        ],
    );
    let mut ops_ws = connect(
        &rt,
        &server,
        &[
            ("signal", "spans"),
            ("q", "operation:\"GET /x\" attr.region:eu"),
        ],
    );
    let mut metrics_ws = connect(
        &rt,
        &server,
        &[("signal", "metrics"), ("metric", "queue.depth")],
    );
    server.wait_tail_subscribers(3, &[]);

    let now = 1_750_000_000_000_000_000u64;
    let mut spans = Vec::new();
    for i in 0..40u64 {
        spans.push(json!({
            "traceId": format!("{:032x}", 0x100 + i),
            "spanId": format!("{:016x}", 0x200 + i),
            "name": if i % 2 == 0 { "GET /x" } else { "GET /y" },
            "kind": 2,
            "startTimeUnixNano": (now + i).to_string(),
            "endTimeUnixNano": (now + i + (i % 4) * 5_000_000).to_string(),
            "status": if i % 3 == 0 { json!({"code": 2, "message": "boom"}) } else { json!({}) },
            "attributes": [{"key": "region", "value": {"stringValue": if i % 5 == 0 { "eu" } else { "us" }}}],
        }));
    }
    for (svc, chunk) in [("api", &spans[..20]), ("web", &spans[20..])] {
        post(
            &server,
            "/v1/traces",
            &json!({"resourceSpans": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                "scopeSpans": [{"spans": chunk}],
            }]}),
        );
    }
    // api is spans 0..20; duration (i % 4) * 5 ms >= 10 ms; error every third.
    let want: Vec<String> = (0..20u64)
        .filter(|i| (i % 4) * 5 >= 10 && i % 3 == 0)
        .map(|i| format!("{:016x}", 0x200 + i))
        .collect();
    assert!(!want.is_empty());
    let (records, _) = collect(&rt, &mut spans_ws, want.len());
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["span_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want);
    assert_eq!(records[0]["status_code"], "STATUS_CODE_ERROR");
    assert_eq!(records[0]["service_name"], "api");
    assert!(next_frame(&rt, &mut spans_ws, Duration::from_millis(300)).is_none());

    let want: Vec<String> = (0..40u64)
        .filter(|i| i % 2 == 0 && i % 5 == 0)
        .map(|i| format!("{:016x}", 0x200 + i))
        .collect();
    let (records, _) = collect(&rt, &mut ops_ws, want.len());
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["span_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want);

    let gauge = |name: &str, v: f64| json!({"name": name, "gauge": {"dataPoints": [{"timeUnixNano": now.to_string(), "asDouble": v}]}});
    post(
        &server,
        "/v1/metrics",
        &json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            gauge("queue.depth", 3.0), gauge("cpu.load", 0.5), gauge("queue.depth", 4.0)
        ]}]}]}),
    );
    let (records, _) = collect(&rt, &mut metrics_ws, 2);
    let values: Vec<f64> = records
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![3.0, 4.0]);
    assert_eq!(records[0]["metric_name"], "queue.depth");
}

#[test]
fn a_client_that_stops_reading_is_told_what_it_missed_and_ingest_goes_on() {
    // The rate limit is another test's: here only the buffer drops.
    let server = TestServer::start_with(&["--tail-buffer", "200", "--tail-max-rate", "1000000"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ws = connect(&rt, &server, &[("signal", "logs")]);
    server.wait_tail_subscribers(1, &[]);

    // The client reads nothing while 24,000 records of 2 KB arrive.
    let filler = "x".repeat(2000);
    let batches = 48;
    let per_batch = 500;
    let started = Instant::now();
    for b in 0..batches {
        let records: Vec<Value> = (0..per_batch)
            .map(|i| {
                json!({
                    "timeUnixNano": (1_750_000_000_000_000_000u64 + (b * per_batch + i) as u64).to_string(),
                    "body": {"stringValue": format!("{} {filler}", b * per_batch + i)},
                })
            })
            .collect();
        post(
            &server,
            "/v1/logs",
            &json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}),
        );
    }
    let ingest_time = started.elapsed();
    let total = batches * per_batch;
    assert_eq!(server.count("logs"), total as i64);

    // Now it reads: every record is either delivered or counted as dropped,
    // and what is delivered is in order.
    let (records, dropped) = collect(&rt, &mut ws, total);
    assert!(dropped > 0, "a stuck client must be told it missed records");
    assert_eq!(records.len() as u64 + dropped, total as u64);
    let numbers: Vec<usize> = records
        .iter()
        .map(|r| {
            let body = r["body"].as_str().unwrap();
            body.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
    // The newest records are the ones kept.
    assert_eq!(numbers.last(), Some(&(total - 1)));
    assert!(server.healthy());
    eprintln!(
        "ingest of {total} records with a stuck subscriber took {ingest_time:?}; {dropped} dropped"
    );
}

/// Past `--tail-max-rate` records a second, whole batches are skipped and
/// reported as dropped; every record is delivered or counted, and once the
/// rate allows again, batches flow.
#[test]
fn a_subscriber_examines_at_most_its_rate_the_rest_is_reported_dropped() {
    let server = TestServer::start_with(&["--tail-max-rate", "1000"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ws = connect(&rt, &server, &[("signal", "logs")]);
    server.wait_tail_subscribers(1, &[]);
    let batch = |b: usize, n: usize| {
        let records: Vec<Value> = (0..n)
            .map(|i| json!({"timeUnixNano": (1_750_000_000_000_000_000u64 + (b * 10_000 + i) as u64).to_string(),
                "body": {"stringValue": format!("batch {b} record {i}")}}))
            .collect();
        json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})
    };
    // 5 × 800 records at once: the first fits the second's 1,000, the rest not.
    for b in 0..5 {
        post(&server, "/v1/logs", &batch(b, 800));
    }
    let (records, dropped) = collect(&rt, &mut ws, 4000);
    assert_eq!(records.len() as u64 + dropped, 4000);
    assert!(dropped >= 1600, "{dropped} dropped");
    assert!(!records.is_empty());
    // A second later the budget is back.
    std::thread::sleep(Duration::from_millis(1500));
    post(&server, "/v1/logs", &batch(9, 800));
    let (records, dropped) = collect(&rt, &mut ws, 800);
    assert_eq!((records.len(), dropped), (800, 0));
    assert_eq!(records[0]["body"], "batch 9 record 0");
}

#[test]
fn bad_tail_requests_are_refused_clearly() {
    let server = TestServer::start_with(&["--tail-max-subscribers", "1"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bad: &[&[(&str, &str)]] = &[
        &[("signal", "traces")],
        &[("q", "(unclosed")],
        &[("signal", "spans"), ("error", "maybe")],
        &[("signal", "spans"), ("min_duration", "fast")],
        &[("signal", "logs"), ("metric", "x")],
        &[("signal", "metrics"), ("q", "x")],
        &[("bogus", "1")],
        &[("q", "a"), ("q", "b")],
    ];
    for params in bad {
        let mut ws = connect(&rt, &server, params);
        let f = next_frame(&rt, &mut ws, Duration::from_secs(5)).unwrap();
        assert_eq!(f["type"], "error", "{params:?}: {f}");
        assert!(f["message"].as_str().unwrap().len() > 10, "{f}");
        // And the server closes the connection.
        assert!(next_frame(&rt, &mut ws, Duration::from_secs(5)).is_none());
    }
    // A plain GET is not a WebSocket.
    let r = server
        .client()
        .get(server.url("/api/v1/tail"))
        .send()
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("WebSocket"), "{v}");

    // One subscriber allowed: the second is refused, the first keeps working.
    let _first = connect(&rt, &server, &[]);
    server.wait_tail_subscribers(1, &[]);
    let mut second = connect(&rt, &server, &[]);
    let f = next_frame(&rt, &mut second, Duration::from_secs(5)).unwrap();
    assert_eq!(f["type"], "error");
    assert!(f["message"].as_str().unwrap().contains("too many"), "{f}");
    assert!(server.healthy());
}
