//! The Prometheus API's metadata endpoints over OTLP metrics sent as
//! OTLP/JSON: names and labels as the OpenTelemetry compatibility spec makes
//! them, `match[]` selectors, GET and POST, Prometheus's envelope and
//! `bad_data` errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::{Value, json};

const T: u64 = 1_750_000_000_000_000_000;

fn seed(server: &TestServer) {
    let attrs = |kvs: &[(&str, &str)]| -> Vec<Value> {
        kvs.iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect()
    };
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": attrs(&[("service.name", "api"), ("service.namespace", "shop"), ("service.instance.id", "i-1")])},
        "scopeMetrics": [{"metrics": [
            {"name": "http.server.requests", "unit": "{request}", "description": "Requests served",
             "sum": {"isMonotonic": true, "aggregationTemporality": 2, "dataPoints": [
                {"timeUnixNano": T.to_string(), "asInt": "5", "attributes": attrs(&[("http.method", "GET"), ("code", "200")])},
                {"timeUnixNano": T.to_string(), "asInt": "2", "attributes": attrs(&[("http.method", "POST"), ("code", "500")])},
             ]}},
            {"name": "queue.depth", "gauge": {"dataPoints": [
                {"timeUnixNano": (T + 60_000_000_000).to_string(), "asDouble": 3.0}]}},
            {"name": "http.server.duration", "unit": "s", "histogram": {"aggregationTemporality": 2, "dataPoints": [
                {"timeUnixNano": T.to_string(), "count": "3", "sum": 1.5, "bucketCounts": ["1", "1", "1"], "explicitBounds": [0.1, 0.5]}]}},
            {"name": "rpc.latency", "unit": "ms", "summary": {"dataPoints": [
                {"timeUnixNano": T.to_string(), "count": "4", "sum": 10.0, "quantileValues": [{"quantile": 0.5, "value": 2.0}, {"quantile": 0.99, "value": 5.0}]}]}},
        ]}],
    }]});
    let r = server
        .client()
        .post(server.otlp_http_url("/v1/metrics"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

fn get(server: &TestServer, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    server.get_json(path, params)
}

fn data(v: &(u16, Value)) -> &Value {
    assert_eq!(v.0, 200, "{}", v.1);
    assert_eq!(v.1["status"], "success", "{}", v.1);
    &v.1["data"]
}

#[test]
fn metadata_endpoints_show_otlp_metrics_as_prometheus_series() {
    let server = TestServer::start_with(&["--flush-interval", "1s"]);
    seed(&server);
    check_metadata(&server);
    // The same from segments, read through their series index.
    assert!(server.eventually(std::time::Duration::from_secs(30), || {
        server.metric("lumen_segments_written_total") >= 1.0
            && server.metric("lumen_buffer_bytes") == 0.0
    }));
    check_metadata(&server);
}

fn check_metadata(server: &TestServer) {
    let labels = get(server, "/api/v1/labels", &[]);
    assert_eq!(
        data(&labels),
        &json!([
            "__name__",
            "code",
            "http_method",
            "instance",
            "job",
            "le",
            "quantile"
        ])
    );
    let names = get(server, "/api/v1/label/__name__/values", &[]);
    assert_eq!(
        data(&names),
        &json!([
            "http_server_duration_seconds_bucket",
            "http_server_duration_seconds_count",
            "http_server_duration_seconds_sum",
            "http_server_requests_total",
            "queue_depth",
            "rpc_latency_milliseconds",
            "rpc_latency_milliseconds_count",
            "rpc_latency_milliseconds_sum",
        ])
    );
    let le = get(server, "/api/v1/label/le/values", &[]);
    assert_eq!(data(&le), &json!(["+Inf", "0.1", "0.5"]));
    let job = get(server, "/api/v1/label/job/values", &[]);
    assert_eq!(data(&job), &json!(["shop/api"]));

    let series = get(
        server,
        "/api/v1/series",
        &[("match[]", "http_server_requests_total{code=~\"5..\"}")],
    );
    assert_eq!(
        data(&series),
        &json!([{"__name__": "http_server_requests_total", "code": "500", "http_method": "POST",
                 "instance": "i-1", "job": "shop/api"}])
    );
    // Two selectors: their union. A time range excludes the gauge (a minute later).
    let union = get(
        server,
        "/api/v1/series",
        &[
            ("match[]", "queue_depth"),
            ("match[]", "rpc_latency_milliseconds"),
            ("end", "1750000030"),
        ],
    );
    assert_eq!(data(&union).as_array().unwrap().len(), 2);
    assert!(
        data(&union)
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["__name__"] == "rpc_latency_milliseconds")
    );

    // POST form bodies work like GET.
    let r = server
        .client()
        .post(server.url("/api/v1/series"))
        .form(&[("match[]", "queue_depth")])
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"][0]["__name__"], "queue_depth");

    let meta = get(server, "/api/v1/metadata", &[]);
    let meta = data(&meta);
    assert_eq!(
        meta["http_server_requests_total"],
        json!([{"type": "counter", "help": "Requests served", "unit": "{request}"}])
    );
    assert_eq!(meta["http_server_duration_seconds"][0]["type"], "histogram");
    assert_eq!(meta["rpc_latency_milliseconds"][0]["type"], "summary");
    assert_eq!(meta["queue_depth"][0]["type"], "gauge");
    let one = get(server, "/api/v1/metadata", &[("metric", "queue_depth")]);
    assert_eq!(data(&one).as_object().unwrap().len(), 1);
}

#[test]
fn build_info_and_format_query() {
    let server = TestServer::start();
    let build = get(&server, "/api/v1/status/buildinfo", &[]);
    assert!(data(&build)["version"].as_str().unwrap().starts_with('3'));
    let formatted = get(
        &server,
        "/api/v1/format_query",
        &[("query", "sum by(job)(rate(x[5m]))")],
    );
    assert_eq!(data(&formatted), &json!("sum by (job) (rate(x[5m]))"));
}

#[test]
fn bad_metadata_requests_get_bad_data() {
    let server = TestServer::start();
    seed(&server);
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/api/v1/series", &[]),
        ("/api/v1/series", &[("match[]", "{}")]),
        ("/api/v1/series", &[("match[]", "up{")]),
        ("/api/v1/series", &[("match[]", "sum(up)")]),
        ("/api/v1/labels", &[("start", "yesterday")]),
        ("/api/v1/labels", &[("start", "20"), ("end", "10")]),
        ("/api/v1/labels", &[("limit", "-1")]),
        ("/api/v1/label/not-a-label/values", &[]),
        ("/api/v1/format_query", &[]),
        ("/api/v1/format_query", &[("query", "rate(x[5m]")]),
    ];
    for (path, params) in cases {
        let (status, v) = get(&server, path, params);
        assert_eq!(status, 400, "{path} {params:?}: {v}");
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(v["errorType"], "bad_data", "{v}");
        assert!(v["error"].as_str().unwrap().len() > 5, "{v}");
    }
    let r = server
        .client()
        .post(server.url("/api/v1/labels"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(server.healthy());
}
