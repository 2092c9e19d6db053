//! API tokens: with `[[auth.tokens]]` configured, every OTLP listener and
//! every query endpoint wants a token with the right scope (401 without one
//! or with a wrong one, 403 without the scope), `/health` and the
//! dashboard's files stay open, refusals are counted, and the secret never
//! shows up in an answer.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer};
use prost::Message;
use serde_json::json;

const INGEST: &str = "ingest-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lumen.toml");
    std::fs::write(
        &conf,
        format!(
            r#"
[[auth.tokens]]
name = "collector"
token = "{INGEST}"
scopes = ["ingest"]

[[auth.tokens]]
name = "grafana"
# the digest of "{READ}"
sha256 = "{}"
scopes = ["read"]

[[auth.tokens]]
name = "ops"
token = "{ADMIN}"
scopes = ["admin", "ingest"]
"#,
            sha256_hex(READ)
        ),
    )
    .unwrap();
    let s = TestServer::start_with(&["--config", conf.to_str().unwrap()]);
    (s, dir)
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn logs_json(body: &str) -> serde_json::Value {
    json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "auth-test"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": body}}]}]}]})
}

fn post_logs(s: &TestServer, token: Option<&str>, body: &str) -> (u16, String, Option<String>) {
    let mut r = s
        .client()
        .post(s.otlp_http_url("/v1/logs"))
        .json(&logs_json(body));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let res = r.send().unwrap();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), res.text().unwrap(), www)
}

fn get(s: &TestServer, path: &str, token: Option<&str>) -> (u16, String) {
    let mut r = s.client().get(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let res = r.send().unwrap();
    (res.status().as_u16(), res.text().unwrap())
}

#[test]
fn tokens_guard_ingest_and_queries_by_scope() {
    let (s, _dir) = server();

    // OTLP/HTTP: none or wrong → 401 with WWW-Authenticate; read-only → 403.
    let (code, body, www) = post_logs(&s, None, "no token");
    assert_eq!(code, 401, "{body}");
    assert!(www.unwrap().starts_with("Bearer"));
    assert!(body.contains("authentication required"), "{body}");
    let (code, body, _) = post_logs(&s, Some("wrong-token-0123456789"), "wrong token");
    assert_eq!(code, 401, "{body}");
    assert!(
        !body.contains("wrong-token"),
        "the answer must not echo the token: {body}"
    );
    let (code, body, _) = post_logs(&s, Some(READ), "read token");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("ingest"), "{body}");
    let (code, body, _) = post_logs(&s, Some(INGEST), "ingested over http");
    assert_eq!(code, 200, "{body}");
    // Basic credentials carry the token as the password, as many tools send it.
    let res = s
        .client()
        .post(s.otlp_http_url("/v1/logs"))
        .basic_auth("anyone", Some(ADMIN))
        .json(&logs_json("ingested with basic auth"))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    // OTLP/gRPC: UNAUTHENTICATED and PERMISSION_DENIED.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let codes = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(s.grpc_endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for (token, body) in [(None, "grpc none"), (Some("nope-nope-nope-nope"), "grpc wrong"), (Some(READ), "grpc read"), (Some(INGEST), "ingested over grpc")] {
            let req = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
                resource_logs: vec![opentelemetry_proto::tonic::logs::v1::ResourceLogs {
                    scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                        log_records: vec![opentelemetry_proto::tonic::logs::v1::LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(body.into())),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            let mut request = tonic::Request::new(req.encode_to_vec());
            if let Some(t) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            let mut g = tonic::client::Grpc::new(channel.clone());
            g.ready().await.unwrap();
            let r = g
                .unary(
                    request,
                    tonic::codegen::http::uri::PathAndQuery::from_static(
                        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                    ),
                    Raw,
                )
                .await;
            out.push(r.err().map(|e| e.code()));
        }
        out
    });
    assert_eq!(
        codes,
        [
            Some(tonic::Code::Unauthenticated),
            Some(tonic::Code::Unauthenticated),
            Some(tonic::Code::PermissionDenied),
            None
        ]
    );

    // Queries: every API wants `read` (admin implies it); /metrics wants admin.
    for path in [
        "/api/v1/logs/search?q=ingested",
        "/api/v1/query?query=1",
        "/api/v1/labels",
        "/api/services",
        "/api/traces?service=x",
        "/api/v1/logs/histogram",
    ] {
        assert_eq!(get(&s, path, None).0, 401, "{path}");
        assert_eq!(get(&s, path, Some(INGEST)).0, 403, "{path}");
        assert_eq!(get(&s, path, Some(READ)).0, 200, "{path}");
        assert_eq!(get(&s, path, Some(ADMIN)).0, 200, "{path}");
    }
    let (code, body) = get(&s, "/api/v1/query?query=1", None);
    assert_eq!(code, 401);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "error", "Prometheus's envelope: {v}");
    assert_eq!(v["errorType"], "unauthorized");
    let sql = s
        .client()
        .post(s.url("/api/v1/sql"))
        .json(&json!({"query": "SELECT body FROM logs ORDER BY body"}));
    assert_eq!(
        sql.try_clone().unwrap().send().unwrap().status().as_u16(),
        401
    );
    let rows: serde_json::Value = sql.bearer_auth(READ).send().unwrap().json().unwrap();
    assert_eq!(
        rows["rows"],
        json!([{"body": "ingested over grpc"}, {"body": "ingested over http"}, {"body": "ingested with basic auth"}]),
        "only the authorised exports were stored"
    );
    assert_eq!(get(&s, "/metrics", Some(READ)).0, 403);
    let (code, metrics) = get(&s, "/metrics", Some(ADMIN));
    assert_eq!(code, 200);

    // Open: liveness, the dashboard's files, the API description.
    assert_eq!(get(&s, "/health", None).0, 200);
    assert_eq!(get(&s, "/", None).0, 200);
    assert_eq!(get(&s, "/app.js", None).0, 200);
    assert_eq!(get(&s, "/api/openapi.json", None).0, 200);

    // Refusals counted by reason (HTTP, gRPC and queries alike).
    let count = |reason: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("lumen_auth_failures_total{{reason=\"{reason}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(count("missing") >= 9.0, "{metrics}");
    assert!(count("invalid") >= 2.0, "{metrics}");
    assert!(count("forbidden") >= 9.0, "{metrics}");
}

#[test]
fn the_tail_websocket_takes_a_token_as_a_header_or_a_parameter() {
    let (s, _dir) = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{}/api/v1/tail?signal=logs", s.http_addr);
        let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        let (mut ws, res) = tokio_tungstenite::connect_async(format!("{url}&access_token={READ}"))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 101);
        // The subscription is live (not refused for the extra parameter).
        tokio::task::block_in_place(|| {
            s.wait_tail_subscribers(1, &[("authorization", &format!("Bearer {ADMIN}"))])
        });
        let code = tokio::task::block_in_place(|| {
            s.client()
                .post(s.otlp_http_url("/v1/logs"))
                .bearer_auth(INGEST)
                .json(&logs_json("tailed with a token"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        });
        assert_eq!(code, 200);
        let text = common::next_text(&mut ws).await;
        assert!(text.contains("tailed with a token"), "{text}");
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {READ}").parse().unwrap());
        let (_ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(res.status().as_u16(), 101);
        let err = tokio_tungstenite::connect_async(format!("{url}&access_token={INGEST}"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
    });
}

#[test]
fn bad_token_configurations_stop_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, want) in [
        (
            "[[auth.tokens]]\nname = \"a\"\ntoken = \"short\"\nscopes = [\"read\"]\n",
            "at least 16 characters",
        ),
        (
            "[[auth.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdefgh\"\nscopes = [\"write\"]\n",
            "unknown variant",
        ),
        (
            "[[auth.tokens]]\nname = \"a\"\ntoken = \"0123456789abcdefgh\"\nscopes = [\"read\"]\ntenant = \"../etc\"\n",
            "a tenant is 1-64 of",
        ),
        ("[auth]\ntokenz = []\n", "unknown field"),
    ] {
        let conf = dir.path().join("bad.toml");
        std::fs::write(&conf, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lumen"))
            .args(["serve", "--config", conf.to_str().unwrap(), "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{toml}: {err}");
    }
}
