//! TLS on all three listeners (`--tls-cert`/`--tls-key`) and the header
//! timeout that closes connections whose handshake or headers stall.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use serde_json::json;

/// A throwaway CA and a server certificate for `localhost` and 127.0.0.1
/// it signed (`tests/make-test-cert.sh`, with the openssl command, which
/// `scripts/test.sh` installs): `(cert, key, ca)`.
fn test_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/make-test-cert.sh"
    ))
    .arg(dir)
    .output()
    .expect("the certificate script runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    )
}

struct TlsServer {
    server: TestServer,
    client: reqwest::blocking::Client,
    ca_pem: Vec<u8>,
    _certs: tempfile::TempDir,
}

fn start_tls(extra: &[&str]) -> TlsServer {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, ca) = test_cert(certs.path());
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start_with(&args);
    let ca_pem = std::fs::read(&ca).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TlsServer {
        server,
        client,
        ca_pem,
        _certs: certs,
    }
}

fn https(addr: &str, path: &str) -> String {
    format!("https://{addr}{path}")
}

fn sql_count(t: &TlsServer, table: &str) -> i64 {
    let r = t
        .client
        .post(https(&t.server.http_addr, "/api/v1/sql"))
        .json(&json!({"query": format!("SELECT count(*) AS n FROM {table}")}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<serde_json::Value>().unwrap()["rows"][0]["n"]
        .as_i64()
        .unwrap()
}

#[test]
fn every_listener_speaks_tls_and_only_tls() {
    let t = start_tls(&[]);
    let s = &t.server;

    // The query API and dashboard, over HTTP/1.1 and HTTP/2 (ALPN).
    let r = t.client.get(https(&s.http_addr, "/health")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = t.client.get(https(&s.http_addr, "/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().unwrap().contains("<html"));
    let h2 = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&t.ca_pem).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(https(&s.http_addr, "/health")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    // OTLP/HTTP JSON over HTTPS.
    let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tls"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": "over https"}}]}]}]});
    let r = t
        .client
        .post(https(&s.otlp_http_addr, "/v1/logs"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());

    // OTLP/gRPC over TLS through the official SDK.
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&t.ca_pem))
            .domain_name("localhost");
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(format!("https://{}", s.grpc_addr))
            .with_tls_config(tls)
            .build()
            .unwrap();
        let loggers = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let logger = loggers.logger("tls");
        let mut rec = logger.create_log_record();
        rec.set_body(AnyValue::from("over grpc with tls"));
        logger.emit(rec);
        loggers.shutdown().unwrap();
    }
    assert_eq!(sql_count(&t, "logs"), 2);

    // Plain text is refused on every port: no HTTP answer comes back.
    for addr in [&s.http_addr, &s.otlp_http_addr] {
        let plain = reqwest::blocking::Client::new()
            .get(format!("http://{addr}/health"))
            .send();
        assert!(
            plain.is_err() || !plain.unwrap().status().is_success(),
            "{addr} answered plain HTTP"
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plain_grpc = rt.block_on(
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc_addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect(),
    );
    if let Ok(channel) = plain_grpc {
        use opentelemetry_proto::tonic::collector::logs::v1::{
            ExportLogsServiceRequest, logs_service_client::LogsServiceClient,
        };
        let res = rt
            .block_on(LogsServiceClient::new(channel).export(ExportLogsServiceRequest::default()));
        assert!(res.is_err(), "the gRPC port answered plain text");
    }
    assert_eq!(sql_count(&t, "logs"), 2);
}

/// A client that opens a connection and stalls, in the TLS handshake or in
/// its headers, is cut off at the header timeout; others are served meanwhile.
#[test]
fn stalled_handshakes_and_headers_are_closed_at_the_timeout() {
    let t = start_tls(&["--header-timeout", "1s"]);
    let s = &t.server;
    for addr in [&s.http_addr, &s.otlp_http_addr, &s.grpc_addr] {
        let mut idle = TcpStream::connect(addr).unwrap();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(&[0x16, 0x03, 0x01]).unwrap(); // the start of a ClientHello
        let fresh = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&t.ca_pem).unwrap())
            .build()
            .unwrap();
        let r = fresh.get(https(&s.http_addr, "/health")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_closed_within(&mut idle, Duration::from_secs(15), addr);
        assert_closed_within(&mut half, Duration::from_secs(15), addr);
    }
}

#[test]
fn slow_headers_are_closed_at_the_timeout_without_tls() {
    let s = TestServer::start_with(&["--header-timeout", "1s"]);
    for addr in [&s.http_addr, &s.otlp_http_addr] {
        let mut silent = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        // A partial HTTP/2 preface must not hold the connection either.
        let mut preface = TcpStream::connect(addr).unwrap();
        preface.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
        // A fresh connection: the server closes idle ones at the timeout too,
        // so a pooled one may be closing just as it is reused.
        let r = reqwest::blocking::Client::new()
            .get(s.url("/health"))
            .send();
        assert!(r.as_ref().is_ok_and(|r| r.status().is_success()), "{r:?}");
        let started = Instant::now();
        assert_closed_within(&mut silent, Duration::from_secs(15), addr);
        assert_closed_within(&mut preface, Duration::from_secs(15), addr);
        // hyper answers a header timeout by closing; nothing else arrives.
        let mut got = Vec::new();
        slow.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let _ = slow.read_to_end(&mut got);
        assert!(
            !String::from_utf8_lossy(&got).contains("200 OK"),
            "the slow request was answered"
        );
        assert!(started.elapsed() < Duration::from_secs(15));
    }
    // A prompt keep-alive client is unaffected.
    let client = reqwest::blocking::Client::new();
    for _ in 0..3 {
        let r = client.get(s.url("/health")).send().unwrap();
        assert!(r.status().is_success());
    }
    assert!(s.metrics_text().contains("lumen_"));
}

#[test]
fn bad_tls_files_stop_the_server_with_a_clear_error() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, _) = test_cert(certs.path());
    let (other_cert, _, _) = test_cert(&{
        let d = certs.path().join("other");
        std::fs::create_dir(&d).unwrap();
        d
    });
    let garbage = certs.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file").unwrap();
    let cases: [(&Path, &Path, &str); 4] = [
        (
            &certs.path().join("missing.pem"),
            &key,
            "reading TLS certificate",
        ),
        (&garbage, &key, "no certificate"),
        (&cert, &garbage, "TLS private key"),
        (&other_cert, &key, "do not form a valid pair"),
    ];
    for (c, k, want) in cases {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_lumen"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ])
            .args(["--http-addr", "127.0.0.1:0", "--tls-cert"])
            .arg(c)
            .arg("--tls-key")
            .arg(k)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "want {want:?} in {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args(["serve", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!out.status.success(), "--tls-cert without --tls-key");
}

/// Reads until the server closes the connection (EOF or reset).
fn assert_closed_within(c: &mut TcpStream, limit: Duration, what: &str) {
    let started = Instant::now();
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("{what}: still open after {:?}", started.elapsed())
            }
            Err(_) => return, // reset
        }
        assert!(started.elapsed() < limit, "{what}: still open");
    }
}
