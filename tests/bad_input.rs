//! Every kind of bad OTLP input gets the right code and a message naming the
//! problem; the server stays healthy and good data sent alongside is intact.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::{Raw, TestServer};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value as J, json};

fn logs_req(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log(body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
}

struct Resp {
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut req = server
        .client()
        .post(server.otlp_http_url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let res = req.send().unwrap();
    Resp {
        status: res.status().as_u16(),
        retry_after: res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: res.bytes().unwrap().to_vec(),
    }
}

fn good(server: &TestServer, body: &str) {
    let r = post(
        server,
        "/v1/logs",
        "application/x-protobuf",
        None,
        logs_req(vec![log(body)]).encode_to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An AnyValue nested `depth` arrays deep, encoded by hand (prost would refuse to build it).
fn deeply_nested_log(depth: usize) -> Vec<u8> {
    let mut v = AnyValue {
        value: Some(Value::StringValue("leaf".into())),
    }
    .encode_to_vec();
    for _ in 0..depth {
        // ArrayValue { values: [v] } then AnyValue { array_value: that }.
        let mut arr = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut arr);
        prost::encoding::encode_varint(v.len() as u64, &mut arr);
        arr.extend_from_slice(&v);
        let mut any = Vec::new();
        prost::encoding::encode_key(5, prost::encoding::WireType::LengthDelimited, &mut any);
        prost::encoding::encode_varint(arr.len() as u64, &mut any);
        any.extend_from_slice(&arr);
        v = any;
    }
    // LogRecord.body (field 5) = v, in ScopeLogs.log_records (2), in ResourceLogs.scope_logs (2), in request (1).
    let wrap = |field: u32, inner: &[u8]| {
        let mut out = Vec::new();
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(inner);
        out
    };
    wrap(1, &wrap(2, &wrap(2, &wrap(5, &v))))
}

fn partial(r: &Resp) -> J {
    serde_json::from_slice::<J>(&r.body).unwrap()["partialSuccess"].clone()
}

#[test]
fn bad_http_inputs_get_clear_errors_and_spare_good_data() {
    let server = TestServer::start_with(&["--max-request-size", "1MiB"]);
    good(&server, "before-bad-input");

    // Truncated protobuf.
    let mut bytes = logs_req(vec![log("truncated")]).encode_to_vec();
    bytes.truncate(bytes.len() - 3);
    let r = post(&server, "/v1/logs", "application/x-protobuf", None, bytes);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("malformed OTLP protobuf"), "{}", r.text());

    // Wrong and missing content types.
    let r = post(&server, "/v1/logs", "text/plain", None, b"hello".to_vec());
    assert_eq!(r.status, 415);
    assert!(
        r.text()
            .contains("unsupported Content-Type \\\"text/plain\\\""),
        "{}",
        r.text()
    );
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/logs"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    // Unknown content encoding.
    let r = post(
        &server,
        "/v1/logs",
        "application/json",
        Some("br"),
        b"{}".to_vec(),
    );
    assert_eq!(r.status, 415);
    assert!(r.text().contains("Content-Encoding"), "{}", r.text());

    // Invalid JSON, and JSON with wrong types.
    let r = post(
        &server,
        "/v1/logs",
        "application/json",
        None,
        b"{\"resourceLogs\": [".to_vec(),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("malformed OTLP JSON"), "{}", r.text());
    let r = post(
        &server,
        "/v1/logs",
        "application/json",
        None,
        br#"{"resourceLogs": 5}"#.to_vec(),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("malformed OTLP JSON") && r.text().contains("invalid type"),
        "{}",
        r.text()
    );
    let r = post(
        &server,
        "/v1/logs",
        "application/json",
        None,
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#.to_vec(),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Ids of the wrong length: those records are rejected, the rest kept (partial success).
    let body = json!({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"bad-ids"}}]},
    "scopeSpans":[{"spans":[
        {"traceId":"abcd","spanId":"0102030405060708","name":"short trace id","startTimeUnixNano":"1","endTimeUnixNano":"2"},
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"01020304050607","name":"short span id","startTimeUnixNano":"1","endTimeUnixNano":"2"},
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"fine","startTimeUnixNano":1,"endTimeUnixNano":"2"}
    ]}]}]});
    let r = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        body.to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let p = partial(&r);
    assert_eq!(p["rejectedSpans"], json!("2"), "{p}");
    assert!(
        p["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace_id must be 16 bytes"),
        "{p}"
    );
    assert_eq!(
        server.sql_rows("SELECT name FROM spans WHERE service_name = 'bad-ids'"),
        vec![json!({"name": "fine"})]
    );
    // Not hex at all is malformed JSON.
    let r = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#.to_vec(),
    );
    assert_eq!(r.status, 400);

    // Same over protobuf: a span with a 3-byte span id.
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![1; 3],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        None,
        spans.encode_to_vec(),
    );
    assert_eq!(r.status, 200);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &r.body[..],
        )
        .unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

    // A gzip bomb: 64 MiB of zeros in ~64 KiB; refused once decompressed past the limit.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < (1 << 20));
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        Some("gzip"),
        bomb,
    );
    assert_eq!(r.status, 413);
    assert!(
        r.text().contains("decompressed request body exceeds"),
        "{}",
        r.text()
    );

    // An oversized body.
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        None,
        vec![0u8; 2 << 20],
    );
    assert_eq!(r.status, 413);
    assert!(
        r.text()
            .contains("request body exceeds the limit of 1048576 bytes"),
        "{}",
        r.text()
    );
    assert!(r.retry_after.is_none());

    // Corrupt compressed data.
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    );
    assert_eq!(r.status, 400);
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        Some("zstd"),
        b"not zstd".to_vec(),
    );
    assert_eq!(r.status, 400);

    // Deeply nested AnyValue: protobuf and JSON. No stack overflow, a 400.
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        None,
        deeply_nested_log(5000),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("recursion limit"), "{}", r.text());
    let mut nested = String::from("{\"stringValue\":\"leaf\"}");
    for _ in 0..5000 {
        nested = format!("{{\"arrayValue\":{{\"values\":[{nested}]}}}}");
    }
    let body = format!(
        "{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{nested}}}]}}]}}]}}"
    );
    let r = post(
        &server,
        "/v1/logs",
        "application/json",
        None,
        body.into_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Moderately nested values are fine and stored as JSON.
    let mut v = AnyValue {
        value: Some(Value::StringValue("leaf".into())),
    };
    for _ in 0..20 {
        v = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    let mut rec = log("nested-20");
    rec.attributes
        .push(opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "deep".into(),
            value: Some(v),
            key_strindex: 0,
        });
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        None,
        logs_req(vec![rec]).encode_to_vec(),
    );
    assert_eq!(r.status, 200);
    let row = &server.sql_rows("SELECT log_attributes FROM logs WHERE body = 'nested-20'")[0];
    assert_eq!(
        row["log_attributes"]["deep"],
        format!("{}\"leaf\"{}", "[".repeat(20), "]".repeat(20))
    );

    // Invalid UTF-8 inside a protobuf string.
    let mut bytes = logs_req(vec![log("caf\u{e9}-marker")]).encode_to_vec();
    let pos = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    bytes[pos] = 0xff;
    let r = post(&server, "/v1/logs", "application/x-protobuf", None, bytes);
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("UTF-8") || r.text().contains("utf-8"),
        "{}",
        r.text()
    );

    // Timestamps of 0 (stored as received) and past 2262 (rejected alone).
    let mut zero = log("time-zero");
    zero.time_unix_nano = 0;
    zero.observed_time_unix_nano = 0;
    let mut late = log("time-2262");
    late.time_unix_nano = u64::MAX;
    let mut at_edge = log("time-max-i64");
    at_edge.time_unix_nano = i64::MAX as u64;
    let r = post(
        &server,
        "/v1/logs",
        "application/x-protobuf",
        None,
        logs_req(vec![zero, late, at_edge]).encode_to_vec(),
    );
    assert_eq!(r.status, 200);
    let resp = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
        &r.body[..],
    )
    .unwrap();
    let p = resp.partial_success.unwrap();
    assert_eq!(p.rejected_log_records, 1);
    assert!(
        p.error_message.contains("beyond 2262"),
        "{}",
        p.error_message
    );
    let rows =
        server.sql_rows("SELECT body, timestamp FROM logs WHERE body LIKE 'time-%' ORDER BY body");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["timestamp"], "2262-04-11T23:47:16.854775807Z");
    assert!(rows[1]["timestamp"].as_str().unwrap() > "2020", "{rows:?}");

    // Wrong method and unknown path.
    let r = server
        .client()
        .get(server.otlp_http_url("/v1/logs"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/profiles"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Still healthy; good data before and after is intact.
    good(&server, "after-bad-input");
    assert!(server.healthy());
    let rows = server.sql_rows("SELECT body FROM logs WHERE body LIKE '%-bad-input' ORDER BY body");
    assert_eq!(
        rows,
        vec![
            json!({"body": "after-bad-input"}),
            json!({"body": "before-bad-input"})
        ]
    );
    let metrics = server.metrics_text();
    assert!(
        metrics.contains("lumen_requests_invalid_total{signal=\"logs\"}"),
        "{metrics}"
    );
}

#[test]
fn bad_grpc_inputs_are_invalid_argument_never_internal() {
    let server = TestServer::start_with(&["--max-request-size", "1MiB"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let path = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
        let call = |bytes: Vec<u8>, gzip: bool| {
            let mut g = tonic::client::Grpc::new(channel.clone());
            if gzip {
                g = g.send_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            async move {
                g.ready().await.unwrap();
                g.unary(
                    tonic::Request::new(bytes),
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    Raw,
                )
                .await
            }
        };

        let ok = call(logs_req(vec![log("grpc-good")]).encode_to_vec(), false).await;
        assert!(ok.is_ok(), "{ok:?}");

        let mut truncated = logs_req(vec![log("truncated")]).encode_to_vec();
        truncated.truncate(truncated.len() - 2);
        let err = call(truncated, false).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("malformed OTLP protobuf"), "{err:?}");

        let err = call(deeply_nested_log(5000), false).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

        let err = call(vec![0u8; 2 << 20], false).await.unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{err:?}"
        );

        // A gzip bomb: small on the wire, past the limit decompressed.
        let err = call(vec![0u8; 64 << 20], true).await.unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{err:?}"
        );

        // Partial success over gRPC.
        let mut bad = log("bad-trace-id");
        bad.trace_id = vec![1; 5];
        let answer = call(
            logs_req(vec![bad, log("grpc-good-2")]).encode_to_vec(),
            true,
        )
        .await
        .unwrap()
        .into_inner();
        let resp =
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
                &answer[..],
            )
            .unwrap();
        assert_eq!(resp.partial_success.unwrap().rejected_log_records, 1);

        // Unknown method.
        let mut g = tonic::client::Grpc::new(channel.clone());
        g.ready().await.unwrap();
        let err = g
            .unary(
                tonic::Request::new(vec![]),
                tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/opentelemetry.proto.collector.logs.v1.LogsService/Nope",
                ),
                Raw,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    });
    assert!(server.healthy());
    let rows = server.sql_rows("SELECT body FROM logs ORDER BY body");
    assert_eq!(
        rows,
        vec![json!({"body": "grpc-good"}), json!({"body": "grpc-good-2"})]
    );
}

#[test]
fn sql_is_read_only_and_bad_sql_is_400() {
    let server = TestServer::start();
    good(&server, "sql-check");
    for q in [
        "SELEC 1",
        "SELECT nope FROM logs",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO logs SELECT * FROM logs",
        "DROP TABLE logs",
        "COPY logs TO '/tmp/x.parquet'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
    ] {
        let (status, body) = server.sql_raw(q);
        assert_eq!(status, 400, "{q} -> {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{q} -> {body}"
        );
    }
    let r = server
        .client()
        .post(server.url("/api/v1/sql"))
        .body("not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        server.sql_rows("SELECT body FROM logs"),
        vec![json!({"body": "sql-check"})]
    );
    // EXPLAIN works; row limit truncates.
    assert_eq!(server.sql_raw("EXPLAIN SELECT count(*) FROM logs").0, 200);
    let big = server.sql("SELECT * FROM generate_series(1, 20000)");
    assert_eq!(big["rows"].as_array().unwrap().len(), 10_000);
    assert_eq!(big["truncated"], true);
}

#[test]
fn sql_limits_give_clear_errors() {
    let server = TestServer::start_with(&["--sql-query-memory", "1MiB", "--sql-timeout", "1s"]);
    // A sort of 3 million rows needs more than 1 MiB.
    let (status, body) =
        server.sql_raw("SELECT value FROM generate_series(1, 3000000) ORDER BY value DESC");
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("memory"), "{body}");
    // A query past the time limit is cancelled.
    let (status, body) = server
        .sql_raw("SELECT count(*) FROM generate_series(1, 2000000000) a WHERE a.value % 7 = 3");
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("time limit"),
        "{body}"
    );
    // The server answers the next query normally.
    assert_eq!(server.sql_raw("SELECT 1 AS one").0, 200);
    assert!(server.healthy());
}

#[test]
fn searches_past_the_time_limit_are_408() {
    // With no time at all, every search gives up at its first source.
    let server = TestServer::start_with(&["--sql-timeout", "0ms"]);
    good(&server, "late");
    let span = json!({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
    "scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"op","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]});
    let r = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        span.to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for (path, params) in [
        ("/api/v1/logs/search", vec![("q", "late")]),
        ("/api/v1/logs/histogram", vec![("q", "late")]),
        ("/api/traces", vec![("service", "svc")]),
    ] {
        let (status, body) = server.get_json(path, &params);
        assert_eq!(status, 408, "{path} -> {body}");
        let msg = body["error"]
            .as_str()
            .or(body["errors"][0]["msg"].as_str())
            .unwrap_or_default();
        assert!(msg.contains("time limit"), "{path} -> {body}");
    }
    assert!(server.healthy());
}
