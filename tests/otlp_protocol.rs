//! OTLP protocol details beyond what the SDKs exercise: every HTTP
//! compression, OTLP/JSON with explicit timestamps and the metric kinds the
//! SDKs don't produce (summaries, exemplars), and retryable refusals past the
//! memory budget.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::TestServer;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::json;

fn logs(bodies: &[String]) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(b.clone())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn http_accepts_gzip_deflate_zlib_and_zstd() {
    let server = TestServer::start();
    let body = logs(&["compressed".into()]);
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&body).unwrap();
        e.finish().unwrap()
    };
    let zlib = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&body).unwrap();
        e.finish().unwrap()
    };
    let raw_deflate = {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&body).unwrap();
        e.finish().unwrap()
    };
    let zstd = zstd::encode_all(&body[..], 3).unwrap();
    for (encoding, bytes) in [
        ("gzip", gzip),
        ("deflate", zlib),
        ("deflate", raw_deflate),
        ("zstd", zstd),
        ("identity", body.clone()),
    ] {
        let r = server
            .client()
            .post(server.otlp_http_url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", encoding)
            .body(bytes)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{encoding}");
        assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    }
    assert_eq!(server.count("logs"), 5);
}

#[test]
fn otlp_json_with_explicit_timestamps_summaries_and_exemplars() {
    let server = TestServer::start();
    let body = json!({"resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-metrics"}}]},
    "scopeMetrics": [{
        "scope": {"name": "hand-written", "version": "2.0"},
        "metrics": [
            {"name": "rpc.duration", "unit": "ms", "summary": {"dataPoints": [{
                "startTimeUnixNano": "1700000000000000000",
                "timeUnixNano": "1700000060000000000",
                "count": "10", "sum": 123.5,
                "quantileValues": [{"quantile": 0.5, "value": 11.0}, {"quantile": 0.99, "value": 40.0}],
                "attributes": [{"key": "method", "value": {"stringValue": "Get"}}]
            }]}},
            {"name": "http.server.requests", "sum": {
                "aggregationTemporality": 1, "isMonotonic": true,
                "dataPoints": [{
                    "timeUnixNano": 1700000060000000000u64, "asInt": "9007199254740993",
                    "exemplars": [{"timeUnixNano": "1700000059000000000", "asDouble": 2.5,
                                   "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                   "filteredAttributes": [{"key": "user", "value": {"stringValue": "ada"}}]}]
                }]}}
        ]}]}]});
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/metrics"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<serde_json::Value>().unwrap(), json!({}));

    let rows = server
        .sql_rows("SELECT * FROM metrics WHERE service_name = 'json-metrics' ORDER BY metric_name");
    assert_eq!(rows.len(), 2);
    let sum = &rows[0];
    assert_eq!(sum["metric_name"], "http.server.requests");
    assert_eq!(
        sum["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_DELTA"
    );
    assert_eq!(
        sum["value_int"], 9007199254740993i64,
        "64-bit integers survive exactly"
    );
    assert_eq!(sum["timestamp"], "2023-11-14T22:14:20.000000000Z");
    let ex = &sum["exemplars"][0];
    assert_eq!(ex["value"], 2.5);
    assert_eq!(ex["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(ex["span_id"], "eee19b7ec3c1b174");
    assert_eq!(ex["filtered_attributes"]["user"], "ada");
    let summary = &rows[1];
    assert_eq!(summary["metric_type"], "summary");
    assert_eq!(summary["unit"], "ms");
    assert_eq!(summary["count"], 10);
    assert_eq!(summary["sum"], 123.5);
    assert_eq!(summary["start_timestamp"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(
        summary["quantiles"],
        json!([{"quantile": 0.5, "value": 11.0}, {"quantile": 0.99, "value": 40.0}])
    );
    assert_eq!(summary["attributes"]["method"], "Get");
    assert_eq!(summary["scope_version"], "2.0");
}

#[test]
fn over_the_memory_budget_ingest_is_refused_with_retryable_codes() {
    let server = TestServer::start_with(&["--memory-budget", "4MiB"]);
    // A valid 1.5 MiB request needs more than the whole budget once decoded.
    let big = logs(&(0..5000).map(|i| format!("{i:0>300}")).collect::<Vec<_>>());
    assert!(big.len() > 1 << 20);
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let text = r.bytes().unwrap();
    assert!(String::from_utf8_lossy(&text).contains("memory budget"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
        let mut client = LogsServiceClient::connect(server.grpc_endpoint())
            .await
            .unwrap();
        let req = ExportLogsServiceRequest::decode(&big[..]).unwrap();
        let err = client.export(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        use tonic_types::StatusExt;
        let retry = err.get_details_retry_info().expect("RetryInfo attached");
        assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(1)));
        // A small request still fits.
        let ok = ExportLogsServiceRequest::decode(&logs(&["small".into()])[..]).unwrap();
        client.export(ok).await.unwrap();
    });
    assert_eq!(server.count("logs"), 1);
    let metrics = server.metrics_text();
    assert!(
        metrics.contains("lumen_requests_refused_total{signal=\"logs\"} 2"),
        "{metrics}"
    );
}
