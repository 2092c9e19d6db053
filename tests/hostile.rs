//! A catalogue of hostile and malformed requests across every listener and
//! endpoint, with tokens configured. Each gets a clear 4xx (never a 5xx,
//! never data it should not), the server stays healthy, and good data sent
//! between them is intact at the end.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::TestServer;
use serde_json::json;

const READ: &str = "hostile-read-token-0123456789";
const INGEST: &str = "hostile-ingest-token-0123456789";

/// Where a request goes.
#[derive(Clone, Copy)]
enum To {
    Api,
    Otlp,
}

struct Case {
    what: &'static str,
    to: To,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn case(what: &'static str, to: To, method: &'static str, path: impl Into<String>) -> Case {
    Case {
        what,
        to,
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Case {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Case {
        self.headers.push((k, v.into()));
        self
    }
    fn read(self) -> Case {
        self.header("authorization", format!("Bearer {READ}"))
    }
    fn ingest(self) -> Case {
        self.header("authorization", format!("Bearer {INGEST}"))
    }
    fn json(self, v: serde_json::Value) -> Case {
        self.body(v.to_string().into_bytes())
            .header("content-type", "application/json")
    }
    fn body(mut self, b: Vec<u8>) -> Case {
        self.body = b;
        self
    }
}

fn sql(q: &str) -> Case {
    case("hostile SQL", To::Api, "POST", "/api/v1/sql")
        .read()
        .json(json!({ "query": q }))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An OTLP/JSON log whose body nests `depth` kvlists (built as text: a
/// `serde_json::Value` that deep would overflow this test's own stack).
fn nested_log(depth: usize) -> Vec<u8> {
    let open = r#"{"kvlistValue":{"values":[{"key":"k","value":"#;
    let close = "}]}}";
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1700000000000000000","body":{}{{"stringValue":"leaf"}}{}}}]}}]}}]}}"#,
        open.repeat(depth),
        close.repeat(depth)
    )
    .into_bytes()
}

fn catalogue() -> Vec<Case> {
    let log = |body: serde_json::Value| json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": body}]}]}]});
    vec![
        // Authentication bypass attempts.
        case("no token", To::Api, "GET", "/api/v1/logs/search"),
        case("empty bearer", To::Api, "GET", "/api/v1/logs/search")
            .header("authorization", "Bearer "),
        case(
            "token in a query parameter outside the tail",
            To::Api,
            "GET",
            format!("/api/v1/logs/search?access_token={READ}"),
        ),
        case("wrong scheme", To::Api, "GET", "/api/v1/labels")
            .header("authorization", format!("Token {READ}")),
        case("a token's prefix", To::Api, "GET", "/api/v1/labels")
            .header("authorization", format!("Bearer {}", &READ[..20])),
        case("double slash", To::Api, "GET", "//api/v1/labels"),
        case("trailing slash", To::Api, "GET", "/api/v1/labels/"),
        case("dot segments", To::Api, "GET", "/x/../api/v1/labels"),
        case("encoded a", To::Api, "GET", "/%61pi/v1/labels"),
        case("upper case", To::Api, "GET", "/API/v1/labels"),
        case("ingest token reads", To::Api, "GET", "/api/v1/labels").ingest(),
        case("read token ingests", To::Otlp, "POST", "/v1/logs")
            .read()
            .json(log(json!({"stringValue": "x"}))),
        case("no token ingests", To::Otlp, "POST", "/v1/logs")
            .json(log(json!({"stringValue": "x"}))),
        case("read token on /metrics", To::Api, "GET", "/metrics").read(),
        // Path traversal on the dashboard's files.
        case("traversal", To::Api, "GET", "/../../../../etc/passwd"),
        case(
            "encoded traversal",
            To::Api,
            "GET",
            "/%2e%2e/%2e%2e/etc/passwd",
        ),
        case(
            "encoded slash traversal",
            To::Api,
            "GET",
            "/vendor/..%2f..%2fCargo.toml",
        ),
        case(
            "backslash traversal",
            To::Api,
            "GET",
            "/..%5c..%5cCargo.toml",
        ),
        case("absolute path", To::Api, "GET", "//etc/passwd"),
        case("NUL in the path", To::Api, "GET", "/index.html%00.png"),
        // SQL that would write or read outside Lumen's tables.
        sql("CREATE TABLE x (a INT)"),
        sql("DROP TABLE logs"),
        sql("INSERT INTO logs (body) VALUES ('x')"),
        sql("DELETE FROM logs"),
        sql("COPY logs TO '/tmp/lumen-hostile.csv'"),
        sql("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/'"),
        sql("SELECT * FROM '/etc/passwd'"),
        sql("SELECT * FROM read_csv('/etc/passwd')"),
        sql("SET datafusion.execution.target_partitions = 1"),
        sql("CREATE VIEW v AS SELECT 1"),
        sql("SELECT 1; DROP TABLE logs"),
        sql(&format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000))),
        case("SQL not JSON", To::Api, "POST", "/api/v1/sql")
            .read()
            .body(b"SELECT 1".to_vec()),
        // Query languages, deeply nested or huge.
        case(
            "search nesting",
            To::Api,
            "GET",
            format!("/api/v1/logs/search?q={}", "(".repeat(20000)),
        )
        .read(),
        case(
            "search NOT chain",
            To::Api,
            "GET",
            format!("/api/v1/logs/search?q={}", "NOT%20".repeat(3000)),
        )
        .read(),
        case(
            "PromQL nesting",
            To::Api,
            "GET",
            format!(
                "/api/v1/query?query={}1{}",
                "(".repeat(20000),
                ")".repeat(20000)
            ),
        )
        .read(),
        case(
            "PromQL unary chain",
            To::Api,
            "GET",
            format!("/api/v1/query?query={}1", "-".repeat(20000)),
        )
        .read(),
        case(
            "PromQL nested in match[]",
            To::Api,
            "GET",
            format!(
                "/api/v1/series?match[]={}up{}",
                "(".repeat(20000),
                ")".repeat(20000)
            ),
        )
        .read(),
        case(
            "PromQL nested in format_query",
            To::Api,
            "GET",
            format!(
                "/api/v1/format_query?query={}1{}",
                "(".repeat(20000),
                ")".repeat(20000)
            ),
        )
        .read(),
        case(
            "PromQL too many points",
            To::Api,
            "GET",
            "/api/v1/query_range?query=1&start=0&end=100000000&step=1",
        )
        .read(),
        case(
            "PromQL zero step",
            To::Api,
            "GET",
            "/api/v1/query_range?query=1&start=0&end=10&step=0",
        )
        .read(),
        case("bad trace id", To::Api, "GET", "/api/traces/zz").read(),
        case(
            "negative limit",
            To::Api,
            "GET",
            "/api/traces?service=a&limit=-1",
        )
        .read(),
        case("huge header", To::Api, "GET", "/api/v1/labels")
            .read()
            .header("x-filler", "a".repeat(1 << 20)),
        // OTLP payloads.
        case("unknown content type", To::Otlp, "POST", "/v1/logs")
            .ingest()
            .header("content-type", "text/plain")
            .body(b"hello".to_vec()),
        case("garbage protobuf", To::Otlp, "POST", "/v1/logs")
            .ingest()
            .header("content-type", "application/x-protobuf")
            .body(vec![0xff; 64]),
        case("bad gzip", To::Otlp, "POST", "/v1/logs")
            .ingest()
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(vec![1, 2, 3, 4]),
        case("gzip bomb", To::Otlp, "POST", "/v1/logs")
            .ingest()
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(gzip(&vec![0u8; 64 << 20])),
        case("deep AnyValue", To::Otlp, "POST", "/v1/logs")
            .ingest()
            .header("content-type", "application/json")
            .body(nested_log(20000)),
        case("GET on an export path", To::Otlp, "GET", "/v1/logs").ingest(),
        case("unknown export path", To::Otlp, "POST", "/v1/profiles")
            .ingest()
            .json(json!({})),
    ]
}

#[test]
fn hostile_requests_get_clear_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("lumen.toml");
    std::fs::write(
        &conf,
        format!(
            "[[auth.tokens]]\nname = \"reader\"\ntoken = \"{READ}\"\nscopes = [\"read\"]\n\n[[auth.tokens]]\nname = \"sender\"\ntoken = \"{INGEST}\"\nscopes = [\"ingest\"]\n"
        ),
    )
    .unwrap();
    let s = TestServer::start_with(&[
        "--config",
        conf.to_str().unwrap(),
        "--max-request-size",
        "4MiB",
    ]);
    let send_good = |i: usize| {
        let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1700000000000000000", "body": {"stringValue": format!("good line {i}")}}]}]}]});
        let r = s
            .client()
            .post(s.otlp_http_url("/v1/logs"))
            .bearer_auth(INGEST)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let cases = catalogue();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut report = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let base = match c.to {
            To::Api => format!("http://{}", s.http_addr),
            To::Otlp => format!("http://{}", s.otlp_http_addr),
        };
        let mut r = s
            .client()
            .request(c.method.parse().unwrap(), format!("{base}{}", c.path));
        for (k, v) in &c.headers {
            r = r.header(*k, v);
        }
        let res = r.body(c.body.clone()).send();
        let (code, text) = match res {
            Ok(res) => {
                let code = res.status().as_u16();
                (code, res.text().unwrap_or_default())
            }
            // A refused connection reset (e.g. a huge header) is a refusal too.
            Err(e) => (0, e.to_string()),
        };
        report.push(format!(
            "{code} {}: {}",
            c.what,
            c.path.chars().take(60).collect::<String>()
        ));
        assert!(
            code == 0 || (400..500).contains(&code),
            "case {i} ({}) {}: got {code}: {}",
            c.what,
            c.path.chars().take(80).collect::<String>(),
            text.chars().take(300).collect::<String>()
        );
        assert!(!text.contains("root:x:0:0"), "{}: leaked a file", c.what);
        assert!(s.healthy(), "unhealthy after case {i} ({})", c.what);
        send_good(i);
    }
    eprintln!("{}", report.join("\n"));
    // Every good line is there, and nothing else.
    let r = s
        .client()
        .post(s.url("/api/v1/sql"))
        .bearer_auth(READ)
        .json(&json!({"query": "SELECT count(*) AS n, count(DISTINCT body) AS d FROM logs"}))
        .send()
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    let n = report.len() as u64;
    assert_eq!(v["rows"], json!([{"n": n, "d": n}]), "{v}");
    assert!(!std::path::Path::new("/tmp/lumen-hostile.csv").exists());
}

/// Found by fuzzing (the `promql` target): the PromQL parser panicked on a
/// duration past `Duration`'s range and the request got no answer at all.
#[test]
fn promql_durations_out_of_range_are_bad_data() {
    let s = TestServer::start();
    for q in ["x[1e99]", "rate(x[1e308])"] {
        let (code, v) = s.get_json("/api/v1/query", &[("query", q)]);
        assert_eq!(code, 400, "{q}: {v}");
        assert_eq!(v["errorType"], "bad_data");
    }
    assert!(s.healthy());
}
