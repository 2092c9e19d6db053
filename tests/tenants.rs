//! Tenants: each token's tenant (or, without tokens and with
//! `--tenant-header`, each `X-Scope-OrgID`) has its own store, and no query
//! API lets one tenant see or infer another's data (search, histogram, SQL,
//! the Jaeger and Prometheus APIs, live tail), across a restart too.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::{Value, json};

const ACME: Cred = Cred::Token("acme-token-0123456789abcdef");
const GLOBEX: Cred = Cred::Token("globex-token-0123456789abcdef");

/// How a request names its tenant.
#[derive(Clone, Copy)]
enum Cred {
    Token(&'static str),
    Org(&'static str),
}

impl Cred {
    fn apply(self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match self {
            Cred::Token(t) => r.bearer_auth(t),
            Cred::Org(o) => r.header("X-Scope-OrgID", o),
        }
    }
}

fn config(dir: &std::path::Path) -> String {
    let conf = dir.join("lumen.toml");
    std::fs::write(
        &conf,
        r#"
[[auth.tokens]]
name = "acme"
token = "acme-token-0123456789abcdef"
scopes = ["ingest", "admin"]
tenant = "acme"

[[auth.tokens]]
name = "globex"
token = "globex-token-0123456789abcdef"
scopes = ["ingest", "read"]
tenant = "globex"
"#,
    )
    .unwrap();
    conf.to_str().unwrap().to_owned()
}

fn attrs(service: &str) -> Value {
    json!({"attributes": [{"key": "service.name", "value": {"stringValue": service}}]})
}

/// Sends a log, a span and a gauge point of `who` (its service, trace id,
/// metric name), with `token`.
fn send(s: &TestServer, token: Cred, who: &str, trace_id: &str) {
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
        let r = token
            .apply(s.client().post(s.otlp_http_url(path)))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}: {}", r.text().unwrap());
    }
}

fn get(s: &TestServer, token: Cred, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = token
        .apply(s.client().get(s.url(path)))
        .query(params)
        .send()
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

fn sql(s: &TestServer, token: Cred, q: &str) -> Value {
    let r = token
        .apply(s.client().post(s.url("/api/v1/sql")))
        .json(&json!({ "query": q }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().unwrap()["rows"].clone()
}

const ACME_TRACE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const GLOBEX_TRACE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Everything `acme` and `globex` can see is their own tenant's, and only that.
fn check_isolation(s: &TestServer, acme: Cred, globex: Cred) {
    for (token, me, other, my_trace, other_trace) in [
        (acme, "acme", "globex", ACME_TRACE, GLOBEX_TRACE),
        (globex, "globex", "acme", GLOBEX_TRACE, ACME_TRACE),
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
    check_isolation(&s, ACME, GLOBEX);

    // Live tail: a tenant's subscriber gets its own records only.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!(
            "ws://{}/api/v1/tail?signal=logs&access_token=acme-token-0123456789abcdef",
            s.http_addr
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        tokio::task::block_in_place(|| {
            s.wait_tail_subscribers(
                1,
                &[("authorization", "Bearer acme-token-0123456789abcdef")],
            )
        });
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

/// Without tokens, `--tenant-header` sends each request to the tenant its
/// `X-Scope-OrgID` names, as Grafana's data sources send it: isolated like
/// token tenants, opened on first use, found again after a crash.
#[test]
fn the_scope_org_id_header_names_the_tenant_without_tokens() {
    const A: Cred = Cred::Org("acme");
    const G: Cred = Cred::Org("globex");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--tenant-header", "--max-tenants", "4"];
    let mut s = TestServer::start_in(&data, &args);
    send(&s, A, "acme", ACME_TRACE);
    send(&s, G, "globex", GLOBEX_TRACE);
    check_isolation(&s, A, G);
    // No header: the default tenant, which has neither.
    assert_eq!(
        s.sql_rows("SELECT count(*) AS n FROM logs"),
        [json!({"n": 0})]
    );

    // gRPC metadata names the tenant too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use opentelemetry_proto::tonic::collector::logs::v1::{
            ExportLogsServiceRequest, logs_service_client::LogsServiceClient,
        };
        let mut client = LogsServiceClient::connect(s.grpc_endpoint()).await.unwrap();
        let body: ExportLogsServiceRequest = serde_json::from_value(json!({"resourceLogs": [{"resource": attrs("acme-svc"),
            "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": "secret grpc of acme"}}]}]}]})).unwrap();
        let mut req = tonic::Request::new(body);
        req.metadata_mut().insert("x-scope-orgid", "acme".parse().unwrap());
        client.export(req).await.unwrap();
    });
    let (_, v) = get(&s, A, "/api/v1/logs/search", &[("q", "grpc")]);
    assert_eq!(v["logs"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = get(&s, G, "/api/v1/logs/search", &[("q", "grpc")]);
    assert_eq!(v["logs"], json!([]));

    // The tail of a tenant named by header.
    rt.block_on(async {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = format!("ws://{}/api/v1/tail?signal=logs", s.http_addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("X-Scope-OrgID", "globex".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        tokio::task::block_in_place(|| {
            // `/metrics` answers for the tenant the header names.
            s.wait_tail_subscribers(1, &[("X-Scope-OrgID", "globex")]);
            assert_eq!(
                s.metric("lumen_tail_subscribers"),
                0.0,
                "default's own gauge"
            );
            send(&s, A, "acme", ACME_TRACE);
            send(&s, G, "globex", GLOBEX_TRACE);
        });
        let text = common::next_text(&mut ws).await;
        assert!(text.contains("secret plan of globex"), "{text}");
        assert!(!text.contains("acme"), "{text}");
    });

    // Names that are not one plain path component, and one tenant too
    // many (default, acme, globex and one more make four), get 400.
    for bad in ["../etc", "a/b", "", "x".repeat(65).leak() as &str, "a|b"] {
        let r = s
            .client()
            .post(s.otlp_http_url("/v1/logs"))
            .header("X-Scope-OrgID", bad)
            .json(&json!({"resourceLogs": []}))
            .send()
            .unwrap();
        let code = r.status().as_u16();
        // An empty header is no header: the default tenant.
        assert_eq!(code, if bad.is_empty() { 200 } else { 400 }, "{bad:?}");
        let r = s
            .client()
            .get(s.url("/api/v1/logs/search"))
            .header("X-Scope-OrgID", bad)
            .query(&[("q", "x")])
            .send()
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            if bad.is_empty() { 200 } else { 400 },
            "{bad:?}"
        );
    }
    send(
        &s,
        Cred::Org("initech"),
        "initech",
        "cccccccccccccccccccccccccccccccc",
    );
    let r = s
        .client()
        .post(s.otlp_http_url("/v1/logs"))
        .header("X-Scope-OrgID", "umbrella")
        .json(&json!({"resourceLogs": []}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("too many tenants"));
    assert!(!data.join("tenants/umbrella").exists());
    assert!(!data.join("etc").exists() && !dir.path().join("etc").exists());

    // After a crash, the tenants opened by header are found and replayed.
    s.kill9();
    let s = TestServer::start_in(&data, &args);
    let (_, v) = get(&s, A, "/api/v1/logs/search", &[("q", "secret")]);
    assert_eq!(v["logs"].as_array().unwrap().len(), 3, "{v}");
    let (_, v) = get(&s, G, "/api/v1/logs/search", &[("q", "secret")]);
    assert_eq!(v["logs"].as_array().unwrap().len(), 2, "{v}");
}
