//! The official Rust OpenTelemetry SDK exports logs, spans and all metric
//! kinds to a real `lumen serve` over gRPC, HTTP/protobuf and HTTP/JSON; every
//! field is read back through `/api/v1/sql`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _,
    TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{Aggregation, Instrument, SdkMeterProvider, Stream};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Transport {
    Grpc,
    HttpProto,
    HttpJson,
}

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("deployment.environment", "test"))
        .with_attribute(KeyValue::new("host.cpus", 8i64))
        .build()
}

/// Emits one of everything through the SDK and shuts the providers down (which flushes).
fn export_everything(server: &TestServer, transport: Transport, service: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let http_proto = |p| match transport {
        Transport::HttpJson => (Protocol::HttpJson, p),
        _ => (Protocol::HttpBinary, p),
    };

    let log_exporter = match transport {
        Transport::Grpc => opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(server.grpc_endpoint())
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build(),
        _ => {
            let (proto, path) = http_proto("/v1/logs");
            opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(proto)
                .with_endpoint(server.otlp_http_url(path))
                .with_compression(opentelemetry_otlp::Compression::Gzip)
                .build()
        }
    }
    .unwrap();
    let span_exporter = match transport {
        Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(server.grpc_endpoint())
            .build(),
        _ => {
            let (proto, path) = http_proto("/v1/traces");
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(proto)
                .with_endpoint(server.otlp_http_url(path))
                .build()
        }
    }
    .unwrap();
    let metric_exporter = match transport {
        Transport::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(server.grpc_endpoint())
            .build(),
        _ => {
            let (proto, path) = http_proto("/v1/metrics");
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(proto)
                .with_endpoint(server.otlp_http_url(path))
                .build()
        }
    }
    .unwrap();

    let loggers = SdkLoggerProvider::builder()
        .with_resource(resource(service))
        .with_simple_exporter(log_exporter)
        .build();
    let tracers = SdkTracerProvider::builder()
        .with_resource(resource(service))
        .with_simple_exporter(span_exporter)
        .build();
    let meters = SdkMeterProvider::builder()
        .with_resource(resource(service))
        .with_periodic_exporter(metric_exporter)
        .with_view(|i: &Instrument| {
            (i.name() == "test.exp_histogram").then(|| {
                Stream::builder()
                    .with_aggregation(Aggregation::Base2ExponentialHistogram {
                        max_size: 160,
                        max_scale: 20,
                        record_min_max: true,
                    })
                    .build()
                    .unwrap()
            })
        })
        .build();

    // Traces: a server span with a child that fails, an event and a link.
    let tracer = tracers.tracer("roundtrip-tracer");
    let linked = SpanContext::new(
        opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331").unwrap(),
        opentelemetry::trace::TraceFlags::SAMPLED,
        false,
        Default::default(),
    );
    let (trace_id, parent_id, child_id) = {
        let parent = tracer
            .span_builder("GET /checkout")
            .with_kind(SpanKind::Server)
            .start(&tracer);
        let cx = opentelemetry::Context::current_with_span(parent);
        let mut child = tracer
            .span_builder("charge card")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.status_code", 502i64),
                KeyValue::new("retry", true),
                KeyValue::new("amount", 12.5),
                KeyValue::new(
                    "tags",
                    opentelemetry::Value::Array(
                        vec![
                            opentelemetry::StringValue::from("a"),
                            opentelemetry::StringValue::from("b"),
                        ]
                        .into(),
                    ),
                ),
            ])
            .with_links(vec![Link::with_context(linked.clone())])
            .start_with_context(&tracer, &cx);
        child.add_event("retrying", vec![KeyValue::new("attempt", 2i64)]);
        child.set_status(Status::error("gateway timeout"));
        let ids = (
            cx.span().span_context().trace_id().to_string(),
            cx.span().span_context().span_id().to_string(),
            child.span_context().span_id().to_string(),
        );
        child.end();
        cx.span().end();
        ids
    };

    // Logs: nested attributes of every kind, inside the trace.
    let logger = loggers.logger("roundtrip-logger");
    let mut rec = logger.create_log_record();
    rec.set_severity_number(Severity::Error);
    rec.set_severity_text("ERROR");
    rec.set_body(AnyValue::from(format!(
        "payment failed for order 42 via {transport:?}"
    )));
    rec.add_attribute("order.id", 42i64);
    rec.add_attribute("ratio", 3.25);
    rec.add_attribute("ok", false);
    rec.add_attribute(
        "items",
        AnyValue::ListAny(Box::new(vec![AnyValue::from("a"), AnyValue::Int(1)])),
    );
    let mut inner = std::collections::HashMap::new();
    inner.insert(opentelemetry::Key::from("inner"), AnyValue::from("x"));
    rec.add_attribute("nested", AnyValue::Map(Box::new(inner)));
    rec.add_attribute("raw", AnyValue::Bytes(Box::new(vec![1, 2, 3])));
    rec.set_trace_context(
        opentelemetry::trace::TraceId::from_hex(&trace_id).unwrap(),
        opentelemetry::trace::SpanId::from_hex(&child_id).unwrap(),
        Some(opentelemetry::trace::TraceFlags::SAMPLED),
    );
    logger.emit(rec);

    // Metrics: every kind the SDK produces.
    let meter = meters.meter("roundtrip-meter");
    let counter = meter
        .u64_counter("test.requests")
        .with_unit("{request}")
        .with_description("Requests served")
        .build();
    counter.add(3, &[KeyValue::new("route", "/checkout")]);
    counter.add(4, &[KeyValue::new("route", "/checkout")]);
    let updown = meter.i64_up_down_counter("test.queue_depth").build();
    updown.add(10, &[]);
    updown.add(-3, &[]);
    let gauge = meter.f64_gauge("test.temperature").with_unit("Cel").build();
    gauge.record(21.5, &[KeyValue::new("room", "lab")]);
    let hist = meter
        .f64_histogram("test.latency")
        .with_unit("ms")
        .with_boundaries(vec![10.0, 100.0, 1000.0])
        .build();
    for v in [5.0, 50.0, 500.0, 5000.0, 7.0] {
        hist.record(v, &[]);
    }
    let exp = meter.f64_histogram("test.exp_histogram").build();
    for v in [1.0, 2.0, 4.0, 8.0] {
        exp.record(v, &[]);
    }

    loggers.shutdown().unwrap();
    tracers.shutdown().unwrap();
    meters.shutdown().unwrap();
    let ids = json!({ "trace_id": trace_id, "parent": parent_id, "child": child_id });
    std::fs::write(
        server.data_dir().join(format!("{service}.ids.json")),
        ids.to_string(),
    )
    .unwrap();
}

fn check_roundtrip(server: &TestServer, transport: Transport) {
    let service = format!("sdk-{transport:?}").to_lowercase();
    export_everything(server, transport, &service);
    let ids: Value = serde_json::from_str(
        &std::fs::read_to_string(server.data_dir().join(format!("{service}.ids.json"))).unwrap(),
    )
    .unwrap();

    // Logs, field by field.
    let logs = server.sql_rows(&format!(
        "SELECT * FROM logs WHERE service_name = '{service}'"
    ));
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log["severity_number"], 17);
    assert_eq!(log["severity_text"], "ERROR");
    assert_eq!(
        log["body"],
        format!("payment failed for order 42 via {transport:?}")
    );
    assert_eq!(log["trace_id"], ids["trace_id"]);
    assert_eq!(log["span_id"], ids["child"]);
    assert_eq!(log["scope_name"], "roundtrip-logger");
    let attrs = &log["log_attributes"];
    assert_eq!(attrs["order.id"], "42");
    assert_eq!(attrs["ratio"], "3.25");
    assert_eq!(attrs["ok"], "false");
    assert_eq!(attrs["items"], r#"["a",1]"#);
    assert_eq!(attrs["nested"], r#"{"inner":"x"}"#);
    assert_eq!(attrs["raw"], "AQID");
    let types = &log["log_attribute_types"];
    assert_eq!(types["order.id"], "int");
    assert_eq!(types["nested"], "kvlist");
    assert_eq!(types["raw"], "bytes");
    assert_eq!(log["resource_attributes"]["service.name"], service.as_str());
    assert_eq!(log["resource_attributes"]["host.cpus"], "8");
    assert_eq!(log["resource_attribute_types"]["host.cpus"], "int");
    assert!(
        log["timestamp"].as_str().unwrap().ends_with('Z'),
        "{}",
        log["timestamp"]
    );

    // Spans: parent/child, kinds, status, attributes, events, links.
    let spans = server.sql_rows(&format!(
        "SELECT * FROM spans WHERE service_name = '{service}' ORDER BY start_time"
    ));
    assert_eq!(spans.len(), 2, "{spans:?}");
    let parent = spans
        .iter()
        .find(|s| s["span_id"] == ids["parent"])
        .unwrap();
    let child = spans.iter().find(|s| s["span_id"] == ids["child"]).unwrap();
    assert_eq!(parent["trace_id"], ids["trace_id"]);
    assert_eq!(parent["parent_span_id"], Value::Null);
    assert_eq!(parent["kind"], "SPAN_KIND_SERVER");
    assert_eq!(parent["name"], "GET /checkout");
    assert_eq!(child["parent_span_id"], ids["parent"]);
    assert_eq!(child["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(child["status_code"], "STATUS_CODE_ERROR");
    assert_eq!(child["status_message"], "gateway timeout");
    assert_eq!(child["span_attributes"]["http.status_code"], "502");
    assert_eq!(child["span_attributes"]["retry"], "true");
    assert_eq!(child["span_attributes"]["amount"], "12.5");
    assert_eq!(child["span_attributes"]["tags"], r#"["a","b"]"#);
    assert_eq!(child["span_attribute_types"]["tags"], "array");
    assert_eq!(child["scope_name"], "roundtrip-tracer");
    assert!(child["duration_ns"].as_i64().unwrap() >= 0);
    let events = child["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "retrying");
    assert_eq!(events[0]["attributes"]["attempt"], "2");
    assert_eq!(events[0]["attribute_types"]["attempt"], "int");
    let links = child["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(links[0]["span_id"], "b7ad6b7169203331");

    // Metrics: all kinds the SDK makes.
    let q = |name: &str| {
        server.sql_rows(&format!(
            "SELECT * FROM metrics WHERE service_name = '{service}' AND metric_name = '{name}'"
        ))
    };
    let counter = q("test.requests");
    assert_eq!(counter.len(), 1, "{counter:?}");
    assert_eq!(counter[0]["metric_type"], "sum");
    assert_eq!(counter[0]["is_monotonic"], true);
    assert_eq!(
        counter[0]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(counter[0]["value"], 7.0);
    assert_eq!(counter[0]["value_int"], 7);
    assert_eq!(counter[0]["unit"], "{request}");
    assert_eq!(counter[0]["description"], "Requests served");
    assert_eq!(counter[0]["attributes"]["route"], "/checkout");
    assert_eq!(counter[0]["scope_name"], "roundtrip-meter");
    let updown = q("test.queue_depth");
    assert_eq!(updown[0]["metric_type"], "sum");
    assert_eq!(updown[0]["is_monotonic"], false);
    assert_eq!(updown[0]["value"], 7.0);
    let gauge = q("test.temperature");
    assert_eq!(gauge[0]["metric_type"], "gauge");
    assert_eq!(gauge[0]["value"], 21.5);
    assert_eq!(gauge[0]["attributes"]["room"], "lab");
    let hist = q("test.latency");
    assert_eq!(hist[0]["metric_type"], "histogram");
    assert_eq!(hist[0]["count"], 5);
    assert_eq!(hist[0]["sum"], 5562.0);
    assert_eq!(hist[0]["min"], 5.0);
    assert_eq!(hist[0]["max"], 5000.0);
    assert_eq!(hist[0]["explicit_bounds"], json!([10.0, 100.0, 1000.0]));
    assert_eq!(hist[0]["bucket_counts"], json!([2, 1, 1, 1]));
    let exp = q("test.exp_histogram");
    assert_eq!(exp[0]["metric_type"], "exponential_histogram");
    assert_eq!(exp[0]["count"], 4);
    assert_eq!(exp[0]["sum"], 15.0);
    assert!(exp[0]["scale"].is_i64());
    let buckets: u64 = exp[0]["positive_bucket_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(buckets + exp[0]["zero_count"].as_u64().unwrap(), 4);
}

#[test]
fn rust_sdk_roundtrip_over_grpc_http_protobuf_and_http_json() {
    let server = TestServer::start();
    for t in [Transport::Grpc, Transport::HttpProto, Transport::HttpJson] {
        check_roundtrip(&server, t);
    }
    // The same data survives a restart (WAL replay or segments).
    let server = server.restart_after_kill9();
    assert!(server.eventually(Duration::from_secs(5), || server.count("logs") == 3));
    assert_eq!(server.count("spans"), 6);
}
