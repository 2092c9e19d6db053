//! Tenants: each token's tenant has its own store, and no query API lets one
//! tenant see or infer another's data (search, histogram, SQL, the Jaeger and
//! Prometheus APIs, live tail), across a restart too.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::{Value, json};

const ACME: &str = "acme-token-0123456789abcdef";
const GLOBEX: &str = "globex-token-0123456789abcdef";

fn config(dir: &std::path::Path) -> String {
    let conf = dir.join("lumen.toml");
    std::fs::write(
        &conf,
        format!(
            r#"
[[auth.tokens]]
name = "acme"
token = "{ACME}"
scopes = ["ingest", "admin"]
tenant = "acme"

[[auth.tokens]]
name = "globex"
token = "{GLOBEX}"
scopes = ["ingest", "read"]
tenant = "globex"
"#
        ),
    )
    .unwrap();
    conf.to_str().unwrap().to_owned()
}

fn attrs(service: &str) -> Value {
    json!({"attributes": [{"key": "service.name", "value": {"stringValue": service}}]})
}

/// Sends a log, a span and a gauge point of `who` (its service, trace id,
/// metric name), with `token`.
fn send(s: &TestServer, token: &str, who: &str, trace_id: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let t = now.to_string();
    let posts = [
        (
            "/v1/logs",
            json!({"resourceLogs": [{"resource": attrs(&format!("{who}-svc")), "scopeLogs": [{"logRecords": [
            {"timeUnixNano": t, "body": {"stringValue": format!("secret plan of {who}")}, "traceId": trace_id, "spanId": "0102030405060708"}]}]}]}),
        ),
        (
            "/v1/traces",
            json!({"resourceSpans": [{"resource": attrs(&format!("{who}-svc")), "scopeSpans": [{"spans": [
            {"traceId": trace_id, "spanId": "0102030405060708", "name": format!("{who}-op"), "kind": 2,
             "startTimeUnixNano": (now - 5_000_000).to_string(), "endTimeUnixNano": t}]}]}]}),
        ),
        (
            "/v1/metrics",
            json!({"resourceMetrics": [{"resource": attrs(&format!("{who}-svc")), "scopeMetrics": [{"metrics": [
            {"name": format!("{who}.revenue"), "gauge": {"dataPoints": [{"timeUnixNano": t, "asDouble": 42.0}]}}]}]}]}),
        ),
    ];
    for (path, body) in posts {
        let r = s
            .client()
            .post(s.otlp_http_url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}: {}", r.text().unwrap());
    }
}

fn get(s: &TestServer, token: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = s
        .client()
        .get(s.url(path))
        .bearer_auth(token)
        .query(params)
        .send()
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

fn sql(s: &TestServer, token: &str, q: &str) -> Value {
    let r = s
        .client()
        .post(s.url("/api/v1/sql"))
        .bearer_auth(token)
        .json(&json!({ "query": q }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().unwrap()["rows"].clone()
}

const ACME_TRACE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const GLOBEX_TRACE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Everything `token` can see is its own tenant's, and only that.
fn check_isolation(s: &TestServer) {
    for (token, me, other, my_trace, other_trace) in [
        (ACME, "acme", "globex", ACME_TRACE, GLOBEX_TRACE),
        (GLOBEX, "globex", "acme", GLOBEX_TRACE, ACME_TRACE),
    ] {
        // Search and histogram.
        let (code, v) = get(s, token, "/api/v1/logs/search", &[("q", "secret")]);
        assert_eq!(code, 200);
        let bodies: Vec<&str> = v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["body"].as_str().unwrap())
            .collect();
        assert_eq!(bodies, [format!("secret plan of {me}")], "{me}");
        let (_, v) = get(
            s,
            token,
            "/api/v1/logs/search",
            &[("q", &format!("trace_id:{other_trace}"))],
        );
        assert_eq!(v["logs"], json!([]), "{me} finds the other's trace id");
        let (_, v) = get(s, token, "/api/v1/logs/histogram", &[("q", other)]);
        let total: u64 = v["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 0, "{me} counts the other's logs");
        // SQL over all three tables.
        assert_eq!(
            sql(
                s,
                token,
                "SELECT DISTINCT service_name FROM logs UNION SELECT DISTINCT service_name FROM spans UNION SELECT DISTINCT service_name FROM metrics"
            ),
            json!([{"service_name": format!("{me}-svc")}]),
            "{me}"
        );
        assert_eq!(
            sql(
                s,
                token,
                &format!("SELECT count(*) AS n FROM spans WHERE trace_id = '{other_trace}'")
            ),
            json!([{"n": 0}])
        );
        // Jaeger.
        let (_, v) = get(s, token, "/api/services", &[]);
        assert_eq!(v["data"], json!([format!("{me}-svc")]), "{me}");
        let (code, _) = get(s, token, &format!("/api/traces/{other_trace}"), &[]);
        assert_eq!(code, 404, "{me} reads the other's trace");
        let (code, v) = get(s, token, &format!("/api/traces/{my_trace}"), &[]);
        assert_eq!(code, 200);
        assert_eq!(
            v["data"][0]["spans"][0]["operationName"],
            format!("{me}-op")
        );
        let (_, v) = get(
            s,
            token,
            "/api/traces",
            &[("service", &format!("{other}-svc"))],
        );
        assert_eq!(v["data"], json!([]));
        // Prometheus.
        let (_, v) = get(s, token, "/api/v1/label/__name__/values", &[]);
        assert_eq!(v["data"], json!([format!("{me}_revenue")]), "{me}");
        let (_, v) = get(
            s,
            token,
            "/api/v1/query",
            &[("query", &format!("{other}_revenue"))],
        );
        assert_eq!(v["data"]["result"], json!([]));
        let (_, v) = get(
            s,
            token,
            "/api/v1/query",
            &[("query", "count({__name__=~\".+\"})")],
        );
        assert_eq!(v["data"]["result"][0]["value"][1], "1", "{me}: {v}");
        let (_, v) = get(s, token, "/api/v1/series", &[("match[]", "{job=~\".+\"}")]);
        assert_eq!(v["data"].as_array().unwrap().len(), 1, "{me}: {v}");
    }
}

#[test]
fn tenants_see_only_their_own_data_across_every_api_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path());
    let data = dir.path().join("data");
    let mut s = TestServer::start_in(&data, &["--config", &conf]);
    send(&s, ACME, "acme", ACME_TRACE);
    send(&s, GLOBEX, "globex", GLOBEX_TRACE);
    check_isolation(&s);

    // Live tail: a tenant's subscriber gets its own records only.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!(
            "ws://{}/api/v1/tail?signal=logs&access_token={ACME}",
            s.http_addr
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        tokio::task::block_in_place(|| {
            send(&s, GLOBEX, "globex", GLOBEX_TRACE);
            send(&s, ACME, "acme", ACME_TRACE);
        });
        let text = common::next_text(&mut ws).await;
        assert!(text.contains("secret plan of acme"), "{text}");
        assert!(!text.contains("globex"), "{text}");
    });

    // Each tenant's data lives in its own directory, and survives a crash
    // (each tenant's WAL replayed).
    assert!(data.join("tenants/acme/wal").is_dir());
    assert!(data.join("tenants/globex/wal").is_dir());
    s.kill9();
    let s = TestServer::start_in(&data, &["--config", &conf]);
    // The tail test sent one more of each.
    let (_, v) = get(&s, ACME, "/api/v1/logs/search", &[("q", "secret")]);
    assert_eq!(v["logs"].as_array().unwrap().len(), 2);
    let (_, v) = get(&s, GLOBEX, "/api/v1/logs/search", &[("q", "secret")]);
    assert_eq!(v["logs"].as_array().unwrap().len(), 2);
    let (_, v) = get(&s, GLOBEX, "/api/v1/logs/search", &[("q", "acme")]);
    assert_eq!(v["logs"], json!([]));
    // The default tenant (no token gets in) holds nothing of either.
    assert!(
        !data.join("segments").exists()
            || std::fs::read_dir(data.join("segments"))
                .unwrap()
                .next()
                .is_none()
    );
}
