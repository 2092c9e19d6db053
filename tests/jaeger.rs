//! The Jaeger query API against traces exported by the official Rust SDK
//! from three services (parents and children crossing services), half of
//! them flushed into indexed segments and half in the buffer, one trace split
//! across both: services, operations, trace by id field by field, trace
//! search checked against a brute-force evaluation of the same model,
//! dependencies, and bad requests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TestServer;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

const TRACES: u64 = 40;
const ROUTES: &[&str] = &["cart", "checkout", "search"];

/// One span of the model, as exported and as expected back.
#[derive(Clone, Debug)]
struct Model {
    trace: u64,
    service: &'static str,
    name: String,
    kind: SpanKind,
    span_id: u64,
    parent: Option<u64>,
    /// µs since the epoch.
    start_us: u64,
    duration_us: u64,
    error: Option<&'static str>,
    attrs: Vec<KeyValue>,
    event: bool,
}

fn trace_hex(t: u64) -> String {
    format!("{:032x}", 0x7e57_0000_0000u64 + t)
}

fn model(base_us: u64) -> Vec<Model> {
    let mut out = Vec::new();
    for i in 0..TRACES {
        let start = base_us + i * 1_000_000;
        let sid = |k: u64| 0x1000 * (i + 1) + k;
        out.push(Model {
            trace: i,
            service: "frontend",
            name: format!("GET /api/{}", ROUTES[(i % 3) as usize]),
            kind: SpanKind::Server,
            span_id: sid(1),
            parent: None,
            start_us: start,
            duration_us: (i + 1) * 10_000,
            error: None,
            attrs: vec![
                KeyValue::new("http.status_code", if i % 5 == 0 { 500i64 } else { 200 }),
                KeyValue::new("user.tier", if i % 2 == 0 { "gold" } else { "free" }),
            ],
            event: false,
        });
        out.push(Model {
            trace: i,
            service: "frontend",
            name: "HTTP POST".into(),
            kind: SpanKind::Client,
            span_id: sid(2),
            parent: Some(sid(1)),
            start_us: start + 1_000,
            duration_us: 5_000 * (i % 4 + 1),
            error: None,
            attrs: vec![KeyValue::new("retry", i % 3 == 0)],
            event: false,
        });
        out.push(Model {
            trace: i,
            service: "payments",
            name: "charge".into(),
            kind: SpanKind::Server,
            span_id: sid(3),
            parent: Some(sid(2)),
            start_us: start + 2_000,
            duration_us: 3_000,
            error: (i % 5 == 0).then_some("card declined"),
            attrs: vec![KeyValue::new("amount", 12.5 + i as f64)],
            event: true,
        });
        if i % 2 == 0 {
            out.push(Model {
                trace: i,
                service: "ledger",
                name: "INSERT entries".into(),
                kind: SpanKind::Internal,
                span_id: sid(4),
                parent: Some(sid(3)),
                start_us: start + 3_000,
                duration_us: 1_000,
                error: None,
                attrs: vec![],
                event: false,
            });
        }
    }
    out
}

/// Hands the SDK the ids the model wants for the next span.
#[derive(Debug, Clone)]
struct NextIds(std::sync::Arc<std::sync::Mutex<(TraceId, SpanId)>>);

impl opentelemetry_sdk::trace::IdGenerator for NextIds {
    fn new_trace_id(&self) -> TraceId {
        self.0.lock().unwrap().0
    }
    fn new_span_id(&self) -> SpanId {
        self.0.lock().unwrap().1
    }
}

fn provider(server: &TestServer, service: &'static str, ids: &NextIds) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(server.otlp_http_url("/v1/traces"))
        .build()
        .unwrap();
    let mut resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("host.name", format!("host-{service}")));
    if service == "payments" {
        resource = resource.with_attribute(KeyValue::new("deployment.environment", "prod"));
    }
    SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_simple_exporter(exporter)
        .with_id_generator(ids.clone())
        .build()
}

fn at(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

/// Exports `spans` through the SDK, one provider per service.
fn export(server: &TestServer, spans: &[Model]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut providers: BTreeMap<&str, SdkTracerProvider> = BTreeMap::new();
    let ids = NextIds(std::sync::Arc::new(std::sync::Mutex::new((
        TraceId::INVALID,
        SpanId::INVALID,
    ))));
    for m in spans {
        let p = providers
            .entry(m.service)
            .or_insert_with(|| provider(server, m.service, &ids));
        let tracer = p.tracer("jaeger-test");
        let tid = TraceId::from_hex(&trace_hex(m.trace)).unwrap();
        let cx = match m.parent {
            None => Context::new(),
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                tid,
                SpanId::from(parent),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
        };
        let builder = tracer
            .span_builder(m.name.clone())
            .with_kind(m.kind.clone())
            .with_start_time(at(m.start_us))
            .with_attributes(m.attrs.clone());
        *ids.0.lock().unwrap() = (tid, SpanId::from(m.span_id));
        let mut span = builder.start_with_context(&tracer, &cx);
        if m.event {
            span.add_event_with_timestamp(
                "retry",
                at(m.start_us + 500),
                vec![KeyValue::new("attempt", 2i64)],
            );
        }
        if let Some(msg) = m.error {
            span.set_status(Status::error(msg));
        }
        span.end_with_timestamp(at(m.start_us + m.duration_us));
    }
    for (_, p) in providers {
        p.shutdown().unwrap();
    }
}

fn get(server: &TestServer, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    server.get_json(path, params)
}

fn assert_envelope(v: &Value) {
    for k in ["total", "limit", "offset"] {
        assert!(v[k].is_u64(), "{k} in {v}");
    }
    assert!(v["errors"].is_null(), "{v}");
}

/// Kind as Jaeger spells it.
fn kind_name(k: &SpanKind) -> &'static str {
    match k {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a Value> {
    tags.as_array().unwrap().iter().find(|t| t["key"] == key)
}

/// Traces with a span matching `pred`, newest matching span first, at most `limit`.
fn brute_force(spans: &[Model], limit: usize, pred: impl Fn(&Model) -> bool) -> Vec<String> {
    let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
    for m in spans.iter().filter(|m| pred(m)) {
        let e = newest.entry(m.trace).or_insert(m.start_us);
        *e = (*e).max(m.start_us);
    }
    let mut v: Vec<(u64, u64)> = newest.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.into_iter()
        .take(limit)
        .map(|(t, _)| trace_hex(t))
        .collect()
}

fn trace_ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn jaeger_api_answers_with_jaegers_shapes() {
    let server = TestServer::start_with(&["--flush-interval", "1s", "--index-delay", "1s"]);
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let base_us = now_us - 600_000_000; // ten minutes ago
    let spans = model(base_us);
    // Phase one: the first half, except trace 0's ledger span, into segments.
    let late = |m: &Model| m.trace >= TRACES / 2 || (m.trace == 0 && m.service == "ledger");
    let first: Vec<Model> = spans.iter().filter(|m| !late(m)).cloned().collect();
    let second: Vec<Model> = spans.iter().filter(|m| late(m)).cloned().collect();
    export(&server, &first);
    assert!(server.eventually(Duration::from_secs(60), || {
        server.count("spans") == first.len() as i64
            && server.metric("lumen_segments") >= 1.0
            && server.metric("lumen_segments_unindexed") == 0.0
    }));
    export(&server, &second);
    assert_eq!(server.count("spans"), spans.len() as i64);

    // Services and operations.
    let (status, v) = get(&server, "/api/services", &[]);
    assert_eq!(status, 200);
    assert_envelope(&v);
    assert_eq!(v["data"], json!(["frontend", "ledger", "payments"]));
    assert_eq!(v["total"], 3);
    let (_, v) = get(&server, "/api/services/frontend/operations", &[]);
    assert_eq!(
        v["data"],
        json!([
            "GET /api/cart",
            "GET /api/checkout",
            "GET /api/search",
            "HTTP POST"
        ])
    );
    let (_, v) = get(&server, "/api/operations", &[("service", "frontend")]);
    assert_envelope(&v);
    assert_eq!(
        v["data"],
        json!([
            {"name": "GET /api/cart", "spanKind": "server"},
            {"name": "GET /api/checkout", "spanKind": "server"},
            {"name": "GET /api/search", "spanKind": "server"},
            {"name": "HTTP POST", "spanKind": "client"},
        ])
    );
    let (_, v) = get(
        &server,
        "/api/operations",
        &[("service", "frontend"), ("spanKind", "client")],
    );
    assert_eq!(
        v["data"],
        json!([{"name": "HTTP POST", "spanKind": "client"}])
    );
    let (_, v) = get(&server, "/api/services/nosuch/operations", &[]);
    assert_eq!(v["data"], json!([]));

    // Trace by id, field by field: trace 0 lies in a segment and the buffer.
    let (status, v) = get(&server, &format!("/api/traces/{}", trace_hex(0)), &[]);
    assert_eq!(status, 200, "{v}");
    assert_envelope(&v);
    let trace = &v["data"][0];
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(trace["traceID"], trace_hex(0));
    assert!(trace["warnings"].is_null());
    let want: Vec<&Model> = spans.iter().filter(|m| m.trace == 0).collect();
    let got = trace["spans"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    let processes = trace["processes"].as_object().unwrap();
    assert_eq!(processes.len(), 3, "one process per resource");
    for m in &want {
        let span_hex = format!("{:016x}", m.span_id);
        let s = got
            .iter()
            .find(|s| s["spanID"] == span_hex)
            .unwrap_or_else(|| panic!("span {span_hex} missing"));
        assert_eq!(s["traceID"], trace_hex(0));
        assert_eq!(s["operationName"], m.name);
        assert_eq!(s["startTime"], m.start_us);
        assert_eq!(s["duration"], m.duration_us);
        assert_eq!(s["flags"], 1);
        assert!(s["warnings"].is_null());
        match m.parent {
            Some(p) => assert_eq!(
                s["references"],
                json!([{"refType": "CHILD_OF", "traceID": trace_hex(0), "spanID": format!("{p:016x}")}])
            ),
            None => assert_eq!(s["references"], json!([])),
        }
        let tags = &s["tags"];
        assert_eq!(
            tag(tags, "span.kind").unwrap(),
            &json!({"key": "span.kind", "type": "string", "value": kind_name(&m.kind)})
        );
        assert_eq!(
            tag(tags, "otel.scope.name").unwrap()["value"],
            "jaeger-test"
        );
        match m.error {
            Some(msg) => {
                assert_eq!(
                    tag(tags, "error").unwrap(),
                    &json!({"key": "error", "type": "bool", "value": true})
                );
                assert_eq!(tag(tags, "otel.status_code").unwrap()["value"], "ERROR");
                assert_eq!(tag(tags, "otel.status_description").unwrap()["value"], msg);
            }
            None => assert!(tag(tags, "error").is_none()),
        }
        for kv in &m.attrs {
            let t = tag(tags, kv.key.as_str()).unwrap();
            let (ty, value) = match &kv.value {
                opentelemetry::Value::I64(n) => ("int64", json!(n)),
                opentelemetry::Value::F64(f) => ("float64", json!(f)),
                opentelemetry::Value::Bool(b) => ("bool", json!(b)),
                other => ("string", json!(other.as_str())),
            };
            assert_eq!(
                t,
                &json!({"key": kv.key.as_str(), "type": ty, "value": value})
            );
        }
        if m.event {
            assert_eq!(
                s["logs"],
                json!([{"timestamp": m.start_us + 500, "fields": [
                    {"key": "event", "type": "string", "value": "retry"},
                    {"key": "attempt", "type": "int64", "value": 2},
                ]}])
            );
        } else {
            assert_eq!(s["logs"], json!([]));
        }
        let process = &processes[s["processID"].as_str().unwrap()];
        assert_eq!(process["serviceName"], m.service);
        assert_eq!(
            tag(&process["tags"], "host.name").unwrap(),
            &json!({"key": "host.name", "type": "string", "value": format!("host-{}", m.service)})
        );
        assert!(tag(&process["tags"], "service.name").is_none());
    }
    // Spans come in start order.
    let starts: Vec<u64> = got
        .iter()
        .map(|s| s["startTime"].as_u64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    // Short ids are padded as Jaeger pads them; upper case is accepted.
    let short = format!("{:x}", 0x7e57_0000_0000u64 + 3).to_uppercase();
    let (status, v) = get(&server, &format!("/api/traces/{short}"), &[]);
    assert_eq!(status, 200);
    assert_eq!(v["data"][0]["traceID"], trace_hex(3));
    // Several ids at once, in the order asked.
    let (_, v) = get(
        &server,
        "/api/traces",
        &[("traceID", &trace_hex(25)), ("traceID", &trace_hex(2))],
    );
    assert_eq!(trace_ids(&v), vec![trace_hex(25), trace_hex(2)]);

    // Unknown trace: 404 in Jaeger's error envelope.
    let (status, v) = get(&server, &format!("/api/traces/{}", "ab".repeat(16)), &[]);
    assert_eq!(status, 404);
    assert!(v["data"].is_null());
    assert_eq!(v["errors"][0]["code"], 404);
    assert_eq!(v["errors"][0]["msg"], "trace not found");

    // Trace search against the model.
    let all = 1000;
    let window_start = (base_us + 10_000_000).to_string();
    let window_end = (base_us + 19_500_000).to_string();
    type Case<'a> = (Vec<(&'a str, String)>, Vec<String>);
    let s = |v: &str| v.to_owned();
    let cases: Vec<Case> = vec![
        (
            vec![("service", s("frontend"))],
            brute_force(&spans, 100, |m| m.service == "frontend"),
        ),
        (
            vec![
                ("service", s("frontend")),
                ("operation", s("GET /api/cart")),
            ],
            brute_force(&spans, all, |m| m.name == "GET /api/cart"),
        ),
        (
            vec![
                ("service", s("payments")),
                ("tags", s(r#"{"error":"true"}"#)),
            ],
            brute_force(&spans, all, |m| {
                m.service == "payments" && m.error.is_some()
            }),
        ),
        (
            vec![
                ("service", s("frontend")),
                ("tags", s(r#"{"http.status_code":"500"}"#)),
            ],
            brute_force(&spans, all, |m| {
                m.service == "frontend" && m.parent.is_none() && m.trace % 5 == 0
            }),
        ),
        (
            vec![
                ("service", s("frontend")),
                ("tag", s("user.tier:gold")),
                ("tag", s("span.kind:server")),
            ],
            brute_force(&spans, all, |m| {
                m.service == "frontend" && m.parent.is_none() && m.trace % 2 == 0
            }),
        ),
        (
            vec![
                ("service", s("payments")),
                ("tags", s(r#"{"deployment.environment":"prod"}"#)),
            ],
            brute_force(&spans, all, |m| m.service == "payments"),
        ),
        (
            vec![
                ("service", s("frontend")),
                ("minDuration", s("200ms")),
                ("maxDuration", s("0.3s")),
            ],
            brute_force(&spans, all, |m| {
                m.service == "frontend" && (200_000..=300_000).contains(&m.duration_us)
            }),
        ),
        (
            vec![("service", s("frontend")), ("limit", s("5"))],
            brute_force(&spans, 5, |m| m.service == "frontend"),
        ),
        (
            vec![
                ("service", s("ledger")),
                ("start", window_start.clone()),
                ("end", window_end.clone()),
            ],
            brute_force(&spans, all, |m| {
                m.service == "ledger"
                    && m.start_us >= base_us + 10_000_000
                    && m.start_us <= base_us + 19_500_000
            }),
        ),
        (vec![("service", s("nosuch"))], vec![]),
        (
            vec![
                ("service", s("frontend")),
                ("tags", s(r#"{"user.tier":"platinum"}"#)),
            ],
            vec![],
        ),
    ];
    for (params, want) in &cases {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, v) = get(&server, "/api/traces", &p);
        assert_eq!(status, 200, "{p:?}: {v}");
        assert_envelope(&v);
        assert_eq!(&trace_ids(&v), want, "{p:?}");
        // Each trace found comes whole.
        for t in v["data"].as_array().unwrap() {
            let id = t["traceID"].as_str().unwrap();
            let n = spans.iter().filter(|m| trace_hex(m.trace) == id).count();
            assert_eq!(t["spans"].as_array().unwrap().len(), n, "{id}");
        }
    }
    assert!(cases.iter().filter(|c| !c.1.is_empty()).count() >= 8);

    // Dependencies: frontend → payments in every trace, payments → ledger in half.
    let (status, v) = get(&server, "/api/dependencies", &[]);
    assert_eq!(status, 200, "{v}");
    assert_envelope(&v);
    assert_eq!(
        v["data"],
        json!([
            {"parent": "frontend", "child": "payments", "callCount": TRACES},
            {"parent": "payments", "child": "ledger", "callCount": TRACES / 2},
        ])
    );
    let end_ms = (base_us / 1000 - 1).to_string();
    let (_, v) = get(
        &server,
        "/api/dependencies",
        &[("endTs", &end_ms), ("lookback", "60000")],
    );
    assert_eq!(v["data"], json!([]));
}

#[test]
fn bad_jaeger_requests_get_400_in_jaegers_envelope() {
    let server = TestServer::start();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/api/traces", &[]),
        ("/api/traces", &[("service", "a"), ("limit", "x")]),
        ("/api/traces", &[("service", "a"), ("limit", "-3")]),
        ("/api/traces", &[("service", "a"), ("start", "yesterday")]),
        ("/api/traces", &[("service", "a"), ("end", "1.5")]),
        ("/api/traces", &[("service", "a"), ("minDuration", "10")]),
        (
            "/api/traces",
            &[("service", "a"), ("maxDuration", "1parsec")],
        ),
        (
            "/api/traces",
            &[
                ("service", "a"),
                ("minDuration", "2s"),
                ("maxDuration", "1s"),
            ],
        ),
        ("/api/traces", &[("service", "a"), ("tags", "{not json")]),
        (
            "/api/traces",
            &[("service", "a"), ("tags", r#"{"k":{"nested":1}}"#)],
        ),
        ("/api/traces", &[("service", "a"), ("tag", "novalue")]),
        (
            "/api/traces",
            &[("service", "a"), ("tags", r#"{"error":"maybe"}"#)],
        ),
        (
            "/api/traces",
            &[("service", "a"), ("start", "20"), ("end", "10")],
        ),
        ("/api/traces", &[("service", "a"), ("service", "b")]),
        ("/api/traces", &[("traceID", "xyz")]),
        ("/api/traces/not-hex", &[]),
        ("/api/traces/000000000000000000000000000000000", &[]),
        ("/api/traces/0", &[]),
        ("/api/operations", &[]),
        (
            "/api/operations",
            &[("service", "a"), ("spanKind", "sideways")],
        ),
        ("/api/dependencies", &[("endTs", "soon")]),
        ("/api/dependencies", &[("lookback", "-5")]),
    ];
    for (path, params) in cases {
        let (status, v) = get(&server, path, params);
        assert_eq!(status, 400, "{path} {params:?}: {v}");
        assert!(v["data"].is_null(), "{v}");
        assert_eq!(v["errors"][0]["code"], 400, "{v}");
        assert!(
            v["errors"][0]["msg"].as_str().is_some_and(|m| m.len() > 10),
            "{v}"
        );
    }
    assert!(server.healthy());
}
