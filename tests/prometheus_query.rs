//! `/api/v1/query` and `/api/v1/query_range` over OTLP metrics: data sent as
//! OTLP/JSON with explicit timestamps (cumulative and delta counters with a
//! reset, a gauge with a staleness marker, classic and exponential
//! histograms, a summary) and through the Rust SDK; results checked
//! against values computed by hand, from the buffer and again from
//! segments; malformed queries get `bad_data`, never a 500.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};

/// The first sample, in Unix seconds.
const T0: u64 = 1_750_000_020;
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn ns(secs: u64) -> String {
    (secs * 1_000_000_000).to_string()
}

fn attrs(kvs: &[(&str, &str)]) -> Vec<Value> {
    kvs.iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect()
}

/// Nine points 15 s apart (k = 0..=8) of each kind.
fn seed(server: &TestServer) {
    let at = |k: u64| ns(T0 + 15 * k);
    let counter = [0, 10, 20, 30, 5, 15, 25, 35, 45];
    let mut requests: Vec<Value> = (0..9)
        .map(|k| json!({"timeUnixNano": at(k), "startTimeUnixNano": ns(T0 - 1), "asInt": counter[k as usize].to_string(), "attributes": attrs(&[("route", "/a")])}))
        .collect();
    requests[8]["exemplars"] = json!([{"timeUnixNano": ns(T0 + 118), "asInt": "4",
        "traceId": TRACE, "spanId": SPAN, "filteredAttributes": attrs(&[("user.id", "u-7")])}]);
    let jobs: Vec<Value> = (0..9)
        .map(|k| json!({"timeUnixNano": at(k), "startTimeUnixNano": ns(T0 + 15 * k - 15), "asInt": "3"}))
        .collect();
    let mut temps: Vec<Value> = (0..9)
        .map(|k| json!({"timeUnixNano": at(k), "asDouble": 20.0 + k as f64}))
        .collect();
    // "No recorded value": the series ends here (a staleness marker).
    temps.push(json!({"timeUnixNano": at(9), "flags": 1}));
    let mut latency: Vec<Value> = (0..9)
        .map(|k| {
            json!({
            "timeUnixNano": at(k), "startTimeUnixNano": ns(T0 - 1),
            "count": (10 * k).to_string(), "sum": 2.0 * k as f64,
            "bucketCounts": [(6 * k).to_string(), (3 * k).to_string(), k.to_string()],
            "explicitBounds": [0.1, 0.5]})
        })
        .collect();
    // An observation of 0.3 s falls in the le="0.5" bucket.
    latency[8]["exemplars"] =
        json!([{"timeUnixNano": ns(T0 + 119), "asDouble": 0.3, "traceId": TRACE, "spanId": SPAN}]);
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": attrs(&[("service.name", "api"), ("service.instance.id", "i-1")])},
        "scopeMetrics": [{"metrics": [
            {"name": "requests", "sum": {"isMonotonic": true, "aggregationTemporality": 2, "dataPoints": requests}},
            {"name": "jobs", "sum": {"isMonotonic": true, "aggregationTemporality": 1, "dataPoints": jobs}},
            {"name": "temperature", "unit": "Cel", "gauge": {"dataPoints": temps}},
            {"name": "latency", "unit": "s", "histogram": {"aggregationTemporality": 2, "dataPoints": latency}},
            {"name": "rpc.latency", "unit": "ms", "summary": {"dataPoints": [
                {"timeUnixNano": at(8), "count": "4", "sum": 10.0, "quantileValues": [{"quantile": 0.5, "value": 2.0}, {"quantile": 0.99, "value": 5.0}]}]}},
            {"name": "payload", "unit": "By", "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [
                {"timeUnixNano": at(8), "count": "4", "sum": 12.0, "scale": 0, "zeroCount": "0",
                 "positive": {"offset": 0, "bucketCounts": ["1", "2", "1"]}}]}},
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

fn query(server: &TestServer, q: &str, t: u64) -> Value {
    let (status, v) = server.get_json("/api/v1/query", &[("query", q), ("time", &t.to_string())]);
    assert_eq!(status, 200, "{q}: {v}");
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

/// The single value of an instant vector result.
fn one_value(server: &TestServer, q: &str, t: u64) -> f64 {
    let d = query(server, q, t);
    assert_eq!(d["resultType"], "vector", "{q}: {d}");
    let r = d["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{q}: {d}");
    assert_eq!(r[0]["value"][0], json!(t), "{d}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn check_everything(server: &TestServer) {
    let t = T0 + 120;
    // Selectors see the Prometheus names and labels.
    let d = query(server, "requests_total", t);
    assert_eq!(
        d["result"],
        json!([{"metric": {"__name__": "requests_total", "job": "api", "instance": "i-1", "route": "/a"}, "value": [t, "45"]}])
    );
    // increase over (T0, T0+120]: 35 plus 30 before the reset, extrapolated
    // by 15 s over the 105 s the samples cover.
    let inc = one_value(server, "increase(requests_total[2m])", t);
    assert!(close(inc, 65.0 * 120.0 / 105.0), "{inc}");
    let rate = one_value(server, "sum by (job) (rate(requests_total[2m]))", t);
    assert!(close(rate, 65.0 / 105.0), "{rate}");
    // Delta points are summed into a counter: 9 × 3.
    assert_eq!(one_value(server, "jobs_total", t), 27.0);
    let inc = one_value(server, "increase(jobs_total[2m])", t);
    assert!(close(inc, 21.0 * 120.0 / 105.0), "{inc}");
    assert_eq!(one_value(server, "temperature_celsius", t), 28.0);
    // The staleness marker at T0+135 ends the series at once.
    assert_eq!(
        query(server, "temperature_celsius", t + 20)["result"],
        json!([])
    );
    assert_eq!(
        one_value(server, "max_over_time(temperature_celsius[1m])", t + 20),
        28.0
    );
    // Classic histogram: the rank falls in the first bucket.
    let q = one_value(
        server,
        "histogram_quantile(0.5, rate(latency_seconds_bucket[1m]))",
        t,
    );
    assert!(close(q, 0.1 * 5.0 / 6.0), "{q}");
    assert_eq!(one_value(server, "latency_seconds_count", t), 80.0);
    assert_eq!(one_value(server, "latency_seconds_sum", t), 16.0);
    // Exponential histogram: buckets (1,2] (2,4] (4,8] hold 1, 2, 1.
    assert_eq!(
        one_value(server, "histogram_quantile(0.5, payload_bytes_bucket)", t),
        3.0
    );
    assert_eq!(one_value(server, "payload_bytes_count", t), 4.0);
    // The same exponential histogram as a native histogram of the family's
    // name: OTLP's bucket 0 of scale 0 is (1,2].
    assert_eq!(one_value(server, "histogram_count(payload_bytes)", t), 4.0);
    assert_eq!(one_value(server, "histogram_sum(payload_bytes)", t), 12.0);
    assert_eq!(
        one_value(server, "histogram_fraction(0, 4, payload_bytes)", t),
        0.75
    );
    let q = one_value(server, "histogram_quantile(0.5, payload_bytes)", t);
    assert!(close(q, 2f64.powf(1.5)), "{q}");
    let d = query(server, "payload_bytes", t);
    let native = json!({"count": "4", "sum": "12", "buckets": [
        [0, "1", "2", "1"], [0, "2", "4", "2"], [0, "4", "8", "1"]]});
    assert_eq!(
        d["result"],
        json!([{"metric": {"__name__": "payload_bytes", "job": "api", "instance": "i-1"},
                "histogram": [t, native]}]),
        "{d}"
    );
    let (status, v) = server.get_json(
        "/api/v1/query_range",
        &[
            ("query", "payload_bytes"),
            ("start", &t.to_string()),
            ("end", &(t + 30).to_string()),
            ("step", "30s"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["result"][0]["histograms"],
        json!([[t, native], [t + 30, native]]),
        "{v}"
    );
    assert!(v["data"]["result"][0].get("values").is_none(), "{v}");
    assert_eq!(
        one_value(server, r#"rpc_latency_milliseconds{quantile="0.99"}"#, t),
        5.0
    );

    // Range query: the gauge every 30 s.
    let (status, v) = server.get_json(
        "/api/v1/query_range",
        &[
            ("query", "temperature_celsius"),
            ("start", &T0.to_string()),
            ("end", &t.to_string()),
            ("step", "30s"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let values: Vec<(u64, String)> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_str().unwrap().to_owned()))
        .collect();
    let want: Vec<(u64, String)> = (0..5)
        .map(|i| (T0 + 30 * i, (20 + 2 * i).to_string()))
        .collect();
    assert_eq!(values, want);

    // Scalars and strings in Prometheus's shapes; fractional times.
    let d = query(server, "1 + 1", t);
    assert_eq!(d, json!({"resultType": "scalar", "result": [t, "2"]}));
    let (_, v) = server.get_json("/api/v1/query", &[("query", "time()"), ("time", "100.5")]);
    assert_eq!(v["data"]["result"], json!([100.5, "100.5"]));
    let d = query(server, "\"hi\"", t);
    assert_eq!(d, json!({"resultType": "string", "result": [t, "hi"]}));
    let d = query(server, "requests_total[30s]", t);
    assert_eq!(d["resultType"], "matrix");
    assert_eq!(d["result"][0]["values"], json!([[t - 15, "35"], [t, "45"]]));
}

#[test]
fn queries_over_otlp_metrics_from_the_buffer_and_from_segments() {
    let server = TestServer::start_with(&["--flush-interval", "1s"]);
    seed(&server);
    check_everything(&server);
    // POST form bodies work the same.
    let r = server
        .client()
        .post(server.url("/api/v1/query"))
        .form(&[("query", "jobs_total"), ("time", &(T0 + 120).to_string())])
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "27", "{v}");
    // Once flushed to segments, the same answers.
    assert!(server.eventually(Duration::from_secs(30), || {
        server.metric("lumen_segments_written_total") >= 1.0
    }));
    assert!(server.eventually(Duration::from_secs(30), || server.count("metrics") > 0));
    check_everything(&server);
    // Segments store an integer point's `value` as null; SQL still sees it,
    // and filters on it are not pruned by the stored statistics.
    assert!(server.eventually(
        Duration::from_secs(30),
        || server.metric("lumen_buffer_bytes") == 0.0
    ));
    let rows = server.sql_rows(
        "SELECT value, value_int FROM metrics WHERE metric_name = 'requests' ORDER BY timestamp",
    );
    let values: Vec<(f64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["value"].as_f64().unwrap(),
                r["value_int"].as_i64().unwrap(),
            )
        })
        .collect();
    let counter = [0, 10, 20, 30, 5, 15, 25, 35, 45];
    assert_eq!(
        values,
        counter.iter().map(|&c| (c as f64, c)).collect::<Vec<_>>()
    );
    let big = server.sql_rows(
        "SELECT count(*) AS n FROM metrics WHERE metric_name = 'requests' AND value > 20",
    );
    assert_eq!(big[0]["n"], 4);
    let temps =
        server.sql_rows("SELECT sum(value) AS s FROM metrics WHERE metric_name = 'temperature'");
    assert_eq!(temps[0]["s"], (0..9).map(|k| 20.0 + k as f64).sum::<f64>());
}

/// Exemplars come back with the series their point belongs to (a
/// histogram's: the bucket its value falls in), from the buffer and from
/// segments.
#[test]
fn exemplars_are_served_with_their_series() {
    let server = TestServer::start_with(&["--flush-interval", "1s"]);
    seed(&server);
    let check = |server: &TestServer| {
        let range = [("start", T0.to_string()), ("end", (T0 + 120).to_string())];
        let q = |query: &str| {
            let mut params: Vec<(&str, &str)> = vec![("query", query)];
            params.extend(range.iter().map(|(k, v)| (*k, v.as_str())));
            let (status, v) = server.get_json("/api/v1/query_exemplars", &params);
            assert_eq!(status, 200, "{v}");
            v["data"].clone()
        };
        let d = q("rate(requests_total[5m])");
        assert_eq!(
            d,
            json!([{"seriesLabels": {"__name__": "requests_total", "job": "api", "instance": "i-1", "route": "/a"},
                    "exemplars": [{"labels": {"trace_id": TRACE, "span_id": SPAN, "user_id": "u-7"}, "value": "4", "timestamp": T0 + 118}]}])
        );
        let d = q("histogram_quantile(0.9, rate(latency_seconds_bucket[5m]))");
        assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d[0]["seriesLabels"]["le"], "0.5");
        assert_eq!(d[0]["exemplars"][0]["value"], "0.3");
        // Selectors that match nothing, and a query without any.
        assert_eq!(q("temperature_celsius"), json!([]));
        assert_eq!(q("1 + 1"), json!([]));
    };
    check(&server);
    assert!(server.eventually(
        Duration::from_secs(30),
        || server.metric("lumen_buffer_bytes") == 0.0
    ));
    check(&server);
    let (status, v) = server.get_json("/api/v1/query_exemplars", &[("query", "sum(")]);
    assert_eq!((status, v["errorType"].as_str()), (400, Some("bad_data")));
}

#[test]
fn the_rust_sdk_counter_and_histogram_are_queryable() {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(server.grpc_endpoint())
            .build()
            .unwrap();
        let meters = SdkMeterProvider::builder()
            .with_resource(Resource::builder().with_service_name("checkout").build())
            .with_periodic_exporter(exporter)
            .build();
        let meter = meters.meter("shop");
        let orders = meter.u64_counter("orders").build();
        let latency = meter
            .f64_histogram("checkout.duration")
            .with_unit("s")
            .with_boundaries(vec![0.1, 1.0])
            .build();
        for i in 0..10u64 {
            orders.add(
                i + 1,
                &[KeyValue::new(
                    "region",
                    if i % 2 == 0 { "eu" } else { "us" },
                )],
            );
            latency.record(if i < 8 { 0.05 } else { 0.5 }, &[]);
        }
        meters.shutdown().unwrap();
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    // eu got 1+3+5+7+9, us 2+4+6+8+10.
    let d = query(&server, "sum by (region) (orders_total)", now);
    let mut got: Vec<(String, String)> = d["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["region"].as_str().unwrap().to_owned(),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("eu".to_owned(), "25".to_owned()),
            ("us".to_owned(), "30".to_owned())
        ]
    );
    assert_eq!(
        one_value(&server, r#"count(orders_total{job="checkout"})"#, now),
        2.0
    );
    // 8 of 10 observations are at most 0.1: the median is in the first bucket.
    let q = one_value(
        &server,
        "histogram_quantile(0.5, checkout_duration_seconds_bucket)",
        now,
    );
    assert!(close(q, 0.1 * 5.0 / 8.0), "{q}");
    let q = one_value(
        &server,
        "histogram_quantile(0.9, checkout_duration_seconds_bucket)",
        now,
    );
    assert!(close(q, 0.1 + 0.9 * 0.5), "{q}");
}

#[test]
fn malformed_queries_get_bad_data_and_failed_evaluations_execution() {
    let server = TestServer::start();
    seed(&server);
    let t = (T0 + 120).to_string();
    let bad: &[(&str, &[(&str, &str)])] = &[
        ("/api/v1/query", &[]),
        ("/api/v1/query", &[("query", "")]),
        ("/api/v1/query", &[("query", "sum(")]),
        ("/api/v1/query", &[("query", "rate(requests_total)")]),
        ("/api/v1/query", &[("query", "requests_total[5m] + 1")]),
        ("/api/v1/query", &[("query", "{}")]),
        ("/api/v1/query", &[("query", "1 > 2")]),
        ("/api/v1/query", &[("query", "nosuchfunction(x)")]),
        ("/api/v1/query", &[("query", "x{a=~\"(\"}")]),
        ("/api/v1/query", &[("query", "up"), ("time", "yesterday")]),
        ("/api/v1/query", &[("query", "up"), ("timeout", "soon")]),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "1"), ("end", "2")],
        ),
        (
            "/api/v1/query_range",
            &[("query", "up"), ("start", "1"), ("end", "2"), ("step", "0")],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "1"),
                ("end", "2"),
                ("step", "-5s"),
            ],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "1"),
                ("end", "2"),
                ("step", "abc"),
            ],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "10"),
                ("end", "2"),
                ("step", "1"),
            ],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "86400"),
                ("step", "1"),
            ],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "requests_total[5m]"),
                ("start", "1"),
                ("end", "2"),
                ("step", "1"),
            ],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "\"str\""),
                ("start", "1"),
                ("end", "2"),
                ("step", "1"),
            ],
        ),
    ];
    for (path, params) in bad {
        let (status, v) = server.get_json(path, params);
        assert_eq!(status, 400, "{path} {params:?}: {v}");
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(v["errorType"], "bad_data", "{path} {params:?}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    // Valid queries whose evaluation fails: Prometheus's `execution`.
    let failing = [
        r#"label_replace(requests_total, "dst", "$1", "route", "(")"#,
        r#"label_replace(requests_total, "not-a-label", "", "route", "")"#,
        "requests_total + on() group_left latency_seconds_bucket",
        "topk(NaN, requests_total)",
        r#"count_values("bad-label", requests_total)"#,
    ];
    for q in failing {
        let (status, v) = server.get_json("/api/v1/query", &[("query", q), ("time", &t)]);
        assert_eq!(status, 422, "{q}: {v}");
        assert_eq!(v["errorType"], "execution", "{q}: {v}");
    }
    // An unsupported body type is refused too.
    let r = server
        .client()
        .post(server.url("/api/v1/query"))
        .header("content-type", "application/json")
        .body("{\"query\":\"up\"}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(server.healthy());
    assert_eq!(one_value(&server, "requests_total", T0 + 120), 45.0);
}
