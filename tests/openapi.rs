//! `/api/openapi.json` is valid JSON, describes every endpoint the server
//! routes, and every path it describes is routed.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::Value;

#[test]
fn the_openapi_document_matches_the_routes() {
    let server = TestServer::start();
    let r = server
        .client()
        .get(server.url("/api/openapi.json"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = r.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for native in [
        "/health",
        "/metrics",
        "/api/v1/sql",
        "/api/v1/logs/search",
        "/api/v1/logs/histogram",
        "/api/v1/tail",
        "/api/openapi.json",
        "/api/services",
        "/api/traces",
        "/api/traces/{traceID}",
        "/api/dependencies",
    ] {
        assert!(paths.contains_key(native), "{native} is not described");
    }
    for (path, ops) in paths {
        let concrete = path
            .replace("{service}", "svc")
            .replace("{traceID}", &"ab".repeat(16));
        for method in ops.as_object().unwrap().keys() {
            let req = match method.as_str() {
                "get" => server.client().get(server.url(&concrete)),
                "post" => server.client().post(server.url(&concrete)).body("{}"),
                other => panic!("unexpected method {other}"),
            };
            let resp = req.send().unwrap();
            let status = resp.status().as_u16();
            // Routed: anything but the static-file fallback's "no such page".
            let body = resp.text().unwrap();
            assert!(
                !body.contains("no such page"),
                "{method} {path} is described but not routed ({status})"
            );
            // Every described parameter has a name, a place and a schema.
            for p in ops[method]["parameters"].as_array().into_iter().flatten() {
                let p = match p.get("$ref") {
                    Some(r) => {
                        let name = r.as_str().unwrap().rsplit('/').next().unwrap();
                        &doc["components"]["parameters"][name]
                    }
                    None => p,
                };
                assert!(
                    p["name"].is_string() && p["in"].is_string() && p["schema"].is_object(),
                    "{path}: {p}"
                );
            }
        }
    }
}
