//! Test harness: starts the real `lumen serve` binary on ephemeral ports with
//! a temporary data directory and talks to it over real sockets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct TestServer {
    child: Option<Child>,
    pub grpc_addr: String,
    pub otlp_http_addr: String,
    pub http_addr: String,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    http: reqwest::blocking::Client,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Self::spawn(&dir, args, env);
        s._tmp = Some(tmp);
        s
    }

    /// Starts (or restarts) a server on an existing data directory.
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::spawn(dir, args, &[])
    }

    fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lumen"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .args(&extra_args)
            .env("LUMEN_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lumen binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("lumen ready") => break l,
                Some(Ok(_)) => continue,
                other => panic!("lumen exited before it was ready: {other:?}"),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_owned()
        };
        TestServer {
            grpc_addr: field("otlp_grpc"),
            otlp_http_addr: field("otlp_http"),
            http_addr: field("http"),
            child: Some(child),
            data_dir: dir.to_owned(),
            _tmp: None,
            extra_args,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn otlp_http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.otlp_http_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// GET `path` on the HTTP API with query parameters: status and JSON body.
    pub fn get_json(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.get(self.url(path)).query(params).send().unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    /// Runs SQL; panics unless it answers 200.
    pub fn sql(&self, query: &str) -> Value {
        let (status, body) = self.sql_raw(query);
        assert_eq!(status, 200, "SQL failed: {query}\n{body}");
        body
    }

    pub fn sql_rows(&self, query: &str) -> Vec<Value> {
        self.sql(query)["rows"].as_array().unwrap().clone()
    }

    pub fn sql_raw(&self, query: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/api/v1/sql"))
            .json(&serde_json::json!({ "query": query }))
            .send()
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().unwrap_or(Value::Null))
    }

    pub fn count(&self, table: &str) -> i64 {
        self.sql_rows(&format!("SELECT count(*) AS n FROM {table}"))[0]["n"]
            .as_i64()
            .unwrap()
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub fn eventually(&self, timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        check()
    }

    /// Lumen's own metrics, as Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// Waits (up to 10 s) until `n` live-tail subscribers are registered:
    /// a WebSocket upgrade is answered before its subscription starts, so a
    /// record sent right after connecting may not be tailed. `headers`: a
    /// token with the `admin` scope when auth is on, or the tenant's
    /// `X-Scope-OrgID` (the gauge is per tenant).
    pub fn wait_tail_subscribers(&self, n: usize, headers: &[(&str, &str)]) {
        let want = format!("lumen_tail_subscribers {n}");
        let mut seen = String::new();
        let ok = self.eventually(Duration::from_secs(10), || {
            let mut req = self.http.get(self.url("/metrics"));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            seen = req.send().and_then(|r| r.text()).unwrap_or_default();
            seen.lines().any(|l| l == want)
        });
        let line = seen
            .lines()
            .find(|l| l.starts_with("lumen_tail_subscribers"));
        assert!(ok, "expected {n} tail subscribers, got {line:?}");
    }

    /// The value of one unlabelled metric line, e.g. `lumen_segments`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    pub fn healthy(&self) -> bool {
        self.http
            .get(self.url("/health"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills and starts again on the same data directory.
    pub fn restart_after_kill9(mut self) -> Self {
        self.kill9();
        let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let mut next = Self::start_in(&self.data_dir, &args);
        next._tmp = self._tmp.take();
        next
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A codec for sending arbitrary bytes as a gRPC request.
#[derive(Clone, Copy)]
pub struct Raw;
pub struct RawEnc;
pub struct RawDec;
impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}
impl tonic::codec::Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}
impl tonic::codec::Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

/// The text of the next frame of a live-tail WebSocket, within 10 s.
pub async fn next_text<S>(ws: &mut S) -> String
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    frame.into_text().unwrap().to_string()
}
