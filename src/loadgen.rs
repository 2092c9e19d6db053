//! `lumen loadgen`: replays pre-encoded OTLP batches at a Lumen (or any OTLP
//! server) over gRPC or HTTP and reports throughput and ack latency; with
//! `--decode-only` it measures bare protobuf decoding (and Lumen's conversion
//! to Arrow) of the same batches, so the whole ingest path can be read as a
//! ratio to decoding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes};
use clap::{Args, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Protocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum LoadSignal {
    Logs,
    Spans,
}

#[derive(Debug, Args)]
pub(crate) struct LoadgenArgs {
    /// Transport to send over.
    #[arg(long, value_enum, default_value = "grpc")]
    pub(crate) protocol: Protocol,
    /// What to send.
    #[arg(long, value_enum, default_value = "logs")]
    pub(crate) signal: LoadSignal,
    /// Target: host:port of the OTLP gRPC or HTTP listener.
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub(crate) endpoint: String,
    /// Concurrent connections, each sending one request at a time.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Records per request.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) duration: u64,
    /// Target records/s over all connections (default: as fast as acks allow).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Distinct pre-encoded batches to cycle through.
    #[arg(long, default_value_t = 64)]
    pub(crate) batches: usize,
    /// Send freshly generated batches (new ids, numbers and timestamps in
    /// every one) instead of cycling pre-encoded ones: for measuring size on
    /// disk, where repeated records would flatter compression. A generator
    /// thread makes them, so the send rate may be bounded by generation.
    #[arg(long)]
    pub(crate) fresh: bool,
    /// Sample this process's RSS (e.g. the server's pid) and report its peak.
    #[arg(long)]
    pub(crate) watch_pid: Option<u32>,
    /// Don't send: decode the batches with prost (and convert them to Arrow) on this many threads.
    #[arg(long)]
    pub(crate) decode_only: bool,
}

/// A small deterministic generator, so runs are comparable.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

const SERVICES: &[&str] = &[
    "checkout",
    "cart",
    "payments",
    "frontend",
    "inventory",
    "shipping",
    "auth",
    "search",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const ROUTES: &[&str] = &[
    "/api/cart",
    "/api/checkout",
    "/api/items/{id}",
    "/api/users/{id}",
    "/healthz",
    "/api/search",
    "/api/orders",
];
const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

fn message(rng: &mut Rng) -> (i32, &'static str, String) {
    let id = rng.below(1_000_000);
    let ms = rng.below(2500);
    let user = rng.pick(USERS);
    match rng.below(10) {
        0 => (
            17,
            "ERROR",
            format!(
                "failed to charge card for order {id}: gateway timeout after {ms}ms (attempt {})",
                rng.below(5) + 1
            ),
        ),
        1 => (
            13,
            "WARN",
            format!(
                "slow query on table orders took {ms}ms, rows={} user={user}",
                rng.below(10_000)
            ),
        ),
        2 => (
            9,
            "INFO",
            format!(
                "user {user} logged in from 10.{}.{}.{} using session {:x}",
                rng.below(256),
                rng.below(256),
                rng.below(256),
                rng.next()
            ),
        ),
        3 => (
            5,
            "DEBUG",
            format!("cache miss for key item:{id}, fetching from upstream inventory service"),
        ),
        4 => (
            9,
            "INFO",
            format!(
                "{} {} completed with status {} in {ms}ms",
                rng.pick(METHODS),
                rng.pick(ROUTES),
                [200, 201, 204, 404, 500][rng.below(5) as usize]
            ),
        ),
        5 => (
            9,
            "INFO",
            format!(
                "order {id} shipped to {user} via carrier {} tracking {:X}",
                rng.pick(&["ups", "dhl", "fedex"]),
                rng.next() >> 16
            ),
        ),
        6 => (
            13,
            "WARN",
            format!(
                "retrying request to payments (attempt {} of 5) after connection reset",
                rng.below(5) + 1
            ),
        ),
        7 => (
            9,
            "INFO",
            format!(
                "background job reindex-{id} processed {} documents in {ms}ms",
                rng.below(100_000)
            ),
        ),
        8 => (
            17,
            "ERROR",
            format!(
                "panic recovered in handler {}: index out of range [{}] with length {}",
                rng.pick(ROUTES),
                rng.below(64),
                rng.below(64)
            ),
        ),
        _ => (
            9,
            "INFO",
            format!(
                "inventory level for sku-{id} is now {} units (reserved {})",
                rng.below(500),
                rng.below(50)
            ),
        ),
    }
}

fn resource(rng: &mut Rng) -> Resource {
    let service = rng.pick(SERVICES);
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv(
                "service.version",
                s(format!("1.{}.{}", rng.below(20), rng.below(10))),
            ),
            kv("host.name", s(format!("{service}-{:x}", rng.below(0xffff)))),
            kv("deployment.environment", s("production")),
        ],
        dropped_attributes_count: 0,
        entity_refs: vec![],
    }
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One batch of `n` log lines as services write them: lines come in
/// requests of 1–8 lines that share a trace id (a span id per one to three
/// lines), a fifth of them background work without trace context.
pub(crate) fn logs_batch(rng: &mut Rng, n: usize) -> ExportLogsServiceRequest {
    let now = now_ns();
    let mut records = Vec::with_capacity(n);
    while records.len() < n {
        let lines = (1 + rng.below(8) as usize).min(n - records.len());
        let traced = rng.below(5) != 0;
        let trace_id = if traced { rng.bytes(16) } else { Vec::new() };
        let mut span_id = if traced { rng.bytes(8) } else { Vec::new() };
        let (method, route, user) = (rng.pick(METHODS), rng.pick(ROUTES), rng.pick(USERS));
        let session = format!("{:016x}", rng.next());
        let port = 1024 + rng.below(60000) as i64;
        for _ in 0..lines {
            if traced && rng.below(3) == 0 {
                span_id = rng.bytes(8);
            }
            let i = records.len();
            let (sev, text, body) = message(rng);
            records.push(LogRecord {
                time_unix_nano: now - (n - i) as u64 * 1000 + rng.below(1000),
                observed_time_unix_nano: now,
                severity_number: sev,
                severity_text: text.into(),
                body: Some(AnyValue {
                    value: Some(s(body)),
                }),
                attributes: vec![
                    kv("http.method", s(method)),
                    kv("http.route", s(route)),
                    kv(
                        "http.status_code",
                        Value::IntValue([200, 201, 404, 500][rng.below(4) as usize]),
                    ),
                    kv("user.id", s(user)),
                    kv("session.id", s(session.clone())),
                    kv("net.peer.port", Value::IntValue(port)),
                ],
                dropped_attributes_count: 0,
                flags: u32::from(traced),
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                event_name: String::new(),
            });
        }
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(rng)),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "lumen-loadgen".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
];
const SPAN_OPS: &[&str] = &[
    "SELECT orders",
    "SELECT items",
    "UPDATE inventory",
    "redis GET",
    "redis SET",
    "publish orders.created",
    "render template",
];

/// One batch of `n` spans as instrumented HTTP services emit them: traces of
/// 1–12 spans (a server root, then client, database and internal children
/// under random earlier spans of the trace), semantic-convention attributes,
/// a quarter with an event, one in twenty failing.
fn spans_batch(rng: &mut Rng, n: usize) -> ExportTraceServiceRequest {
    let now = now_ns();
    let mut spans = Vec::with_capacity(n);
    while spans.len() < n {
        let len = (1 + rng.below(12) as usize).min(n - spans.len());
        let trace = rng.bytes(16);
        let (method, route) = (rng.pick(METHODS), rng.pick(ROUTES));
        let root_dur = 1_000_000 + rng.below(500_000_000);
        let root_start = now - root_dur - rng.below(1_000_000);
        // (span id, start, duration) of the trace's spans so far.
        let mut tree: Vec<(Vec<u8>, u64, u64)> = Vec::with_capacity(len);
        for k in 0..len {
            let id = rng.bytes(8);
            let error = rng.below(20) == 0;
            let (parent, start, dur) = if k == 0 {
                (Vec::new(), root_start, root_dur)
            } else {
                let (pid, pstart, pdur) = &tree[rng.below(tree.len() as u64) as usize];
                let offset = rng.below(pdur / 2 + 1);
                let dur = rng.below((pdur - offset).max(1)) + 1;
                (pid.clone(), pstart + offset, dur)
            };
            let status_code = if error { 500 } else { 200 };
            let (name, kind, attributes) = if k == 0 {
                (
                    format!("{method} {route}"),
                    2,
                    vec![
                        kv("http.request.method", s(method)),
                        kv("http.route", s(route)),
                        kv("http.response.status_code", Value::IntValue(status_code)),
                        kv("url.scheme", s("https")),
                        kv(
                            "url.path",
                            s(route.replace("{id}", &rng.below(100_000).to_string())),
                        ),
                        kv("server.address", s("shop.example.com")),
                        kv("server.port", Value::IntValue(443)),
                        kv("network.protocol.version", s("1.1")),
                        kv(
                            "client.address",
                            s(format!(
                                "10.{}.{}.{}",
                                rng.below(256),
                                rng.below(256),
                                rng.below(256)
                            )),
                        ),
                        kv("user_agent.original", s(rng.pick(USER_AGENTS))),
                        kv("user.id", s(rng.pick(USERS))),
                    ],
                )
            } else if rng.below(2) == 0 {
                let op = rng.pick(SPAN_OPS);
                (
                    op.to_owned(),
                    if op.starts_with("publish") { 4 } else { 3 },
                    vec![
                        kv(
                            "db.system",
                            s(if op.starts_with("redis") {
                                "redis"
                            } else {
                                "postgresql"
                            }),
                        ),
                        kv(
                            "db.statement",
                            s(format!("{op} WHERE id = ${}", rng.below(4) + 1)),
                        ),
                        kv("server.address", s("db.internal")),
                        kv("server.port", Value::IntValue(5432)),
                    ],
                )
            } else {
                let (m, r) = (rng.pick(METHODS), rng.pick(ROUTES));
                (
                    m.to_owned(),
                    3,
                    vec![
                        kv("http.request.method", s(m)),
                        kv(
                            "url.full",
                            s(format!("http://{}.internal{r}", rng.pick(SERVICES))),
                        ),
                        kv("http.response.status_code", Value::IntValue(status_code)),
                        kv("server.port", Value::IntValue(8080)),
                    ],
                )
            };
            spans.push(Span {
                trace_id: trace.clone(),
                span_id: id.clone(),
                parent_span_id: parent,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: start + dur,
                attributes,
                events: if rng.below(4) == 0 {
                    vec![span::Event {
                        time_unix_nano: start + dur / 2,
                        name: "cache.miss".into(),
                        attributes: vec![kv("key", s(format!("item:{}", rng.below(100000))))],
                        dropped_attributes_count: 0,
                    }]
                } else {
                    vec![]
                },
                status: Some(Status {
                    message: if error {
                        "upstream failed".into()
                    } else {
                        String::new()
                    },
                    code: if error { 2 } else { 0 },
                }),
                ..Default::default()
            });
            tree.push((id, start, dur));
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(rng)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lumen-loadgen".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn encoded_batch(rng: &mut Rng, signal: LoadSignal, batch_size: usize) -> Bytes {
    match signal {
        LoadSignal::Logs => Bytes::from(logs_batch(rng, batch_size).encode_to_vec()),
        LoadSignal::Spans => Bytes::from(spans_batch(rng, batch_size).encode_to_vec()),
    }
}

/// Pre-encodes `count` distinct batches.
pub(crate) fn encoded_batches(signal: LoadSignal, count: usize, batch_size: usize) -> Vec<Bytes> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..count.max(1))
        .map(|_| encoded_batch(&mut rng, signal, batch_size))
        .collect()
}

/// Where workers take the next request body from.
#[derive(Clone)]
enum Source {
    Cycle(Arc<Vec<Bytes>>),
    Fresh(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Bytes>>>),
}

impl Source {
    async fn next(&self, i: usize) -> Option<Bytes> {
        match self {
            Source::Cycle(b) => Some(b[i % b.len()].clone()),
            Source::Fresh(rx) => rx.lock().await.recv().await,
        }
    }
}

/// Generates fresh batches on a thread until the receiver is dropped.
fn fresh_source(signal: LoadSignal, batch_size: usize) -> Source {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut rng = Rng(now_ns() | 1);
        while tx
            .blocking_send(encoded_batch(&mut rng, signal, batch_size))
            .is_ok()
        {}
    });
    Source::Fresh(Arc::new(tokio::sync::Mutex::new(rx)))
}

/// A codec that sends pre-encoded bytes and ignores the answer's contents.
#[derive(Clone, Copy)]
struct RawCodec;
struct RawEnc;
struct RawDec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
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
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

#[derive(Default)]
struct Tally {
    sent_records: AtomicU64,
    sent_bytes: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: LoadgenArgs) -> Result<()> {
    let batches = Arc::new(encoded_batches(args.signal, args.batches, args.batch_size));
    let avg_bytes = batches.iter().map(Bytes::len).sum::<usize>() / batches.len();
    println!(
        "loadgen: {:?} x{} records/batch, {} distinct batches, {} bytes/batch ({} bytes/record)",
        args.signal,
        args.batch_size,
        batches.len(),
        avg_bytes,
        avg_bytes / args.batch_size.max(1)
    );
    if args.decode_only {
        return decode_only(&args, &batches);
    }
    let source = if args.fresh {
        println!("loadgen: sending freshly generated batches");
        fresh_source(args.signal, args.batch_size)
    } else {
        Source::Cycle(Arc::clone(&batches))
    };
    let path = match (args.protocol, args.signal) {
        (Protocol::Grpc, LoadSignal::Logs) => {
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        }
        (Protocol::Grpc, LoadSignal::Spans) => {
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        }
        (Protocol::Http, LoadSignal::Logs) => "/v1/logs",
        (Protocol::Http, LoadSignal::Spans) => "/v1/traces",
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    // Per-connection pacing: one batch every `interval` when a rate is set.
    let interval = args.rate.map(|r| {
        Duration::from_secs_f64(args.batch_size as f64 * args.connections as f64 / r.max(1) as f64)
    });
    let mut workers = Vec::new();
    for w in 0..args.connections {
        let source = source.clone();
        let tally = Arc::clone(&tally);
        let stop = Arc::clone(&stop);
        let endpoint = args.endpoint.clone();
        let batch_size = args.batch_size as u64;
        let protocol = args.protocol;
        let connections = args.connections;
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u64> = Vec::with_capacity(1 << 16);
            let mut grpc = None;
            let mut http = None;
            match protocol {
                Protocol::Grpc => {
                    let channel =
                        tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))?
                            .tcp_nodelay(true)
                            .initial_stream_window_size(Some(4 << 20))
                            .initial_connection_window_size(Some(16 << 20))
                            .connect()
                            .await?;
                    grpc = Some(tonic::client::Grpc::new(channel));
                }
                Protocol::Http => {
                    http = Some(
                        reqwest::Client::builder()
                            .pool_max_idle_per_host(1)
                            .build()?,
                    )
                }
            }
            let url = format!("http://{endpoint}{path}");
            let mut i = w;
            // Independent clients are not synchronised: spread the connections'
            // send times evenly over one interval instead of bursting together.
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |iv| iv * w as u32 / connections as u32);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Some(iv) = interval {
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    }
                    next += iv;
                }
                let Some(body) = source.next(i).await else {
                    break;
                };
                i += 1;
                let len = body.len() as u64;
                let started = Instant::now();
                let outcome = if let Some(g) = grpc.as_mut() {
                    g.ready().await?;
                    match g
                        .unary(
                            tonic::Request::new(body),
                            tonic::codegen::http::uri::PathAndQuery::from_static(path),
                            RawCodec,
                        )
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(s)
                            if matches!(
                                s.code(),
                                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                            ) =>
                        {
                            Err(true)
                        }
                        Err(_) => Err(false),
                    }
                } else if let Some(h) = http.as_ref() {
                    match h
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            Ok(())
                        }
                        Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 503 => {
                            Err(true)
                        }
                        _ => Err(false),
                    }
                } else {
                    Err(false)
                };
                match outcome {
                    Ok(()) => {
                        latencies.push(started.elapsed().as_micros() as u64);
                        tally.sent_records.fetch_add(batch_size, Ordering::Relaxed);
                        tally.sent_bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    Err(true) => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(false) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let started = Instant::now();
    let mut peak_rss = 0;
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let rss = args.watch_pid.and_then(rss_kib).unwrap_or(0);
        peak_rss = peak_rss.max(rss);
        let now = tally.sent_records.load(Ordering::Relaxed);
        let rate = (now - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), now);
        println!(
            "  t={:>4.0}s  {:>9.0} records/s  refused={} failed={}{}",
            started.elapsed().as_secs_f64(),
            rate,
            tally.refused.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
            if rss > 0 {
                format!("  rss={} MiB", rss / 1024)
            } else {
                String::new()
            }
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.context("worker panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let records = tally.sent_records.load(Ordering::Relaxed);
    let bytes = tally.sent_bytes.load(Ordering::Relaxed);
    println!(
        "result: protocol={:?} signal={:?} connections={} records={} elapsed={:.1}s records/s={:.0} MB/s={:.2} ack_p50_ms={:.2} ack_p99_ms={:.2} ack_max_ms={:.2} refused={} failed={}{}",
        args.protocol,
        args.signal,
        args.connections,
        records,
        elapsed,
        records as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        tally.refused.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        if peak_rss > 0 {
            format!(" peak_rss_mib={}", peak_rss / 1024)
        } else {
            String::new()
        }
    );
    if records == 0 {
        bail!(
            "no request succeeded: is Lumen listening on {}?",
            args.endpoint
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn decode_only(args: &LoadgenArgs, batches: &Arc<Vec<Bytes>>) -> Result<()> {
    let threads = args.connections.max(1);
    for mode in ["decode", "decode+convert"] {
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        let started = Instant::now();
        let records = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (records, bytes) = (&records, &bytes);
                scope.spawn(move || {
                    let mut i = t;
                    while Instant::now() < deadline {
                        let b = &batches[i % batches.len()];
                        i += 1;
                        let ok = match args.signal {
                            LoadSignal::Logs => ExportLogsServiceRequest::decode(&b[..])
                                .ok()
                                .is_some_and(|r| {
                                    mode == "decode" || lumen_collector::convert::logs(&r).is_ok()
                                }),
                            LoadSignal::Spans => ExportTraceServiceRequest::decode(&b[..])
                                .ok()
                                .is_some_and(|r| {
                                    mode == "decode" || lumen_collector::convert::spans(&r).is_ok()
                                }),
                        };
                        if ok {
                            records.fetch_add(args.batch_size as u64, Ordering::Relaxed);
                            bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "result: mode={mode} signal={:?} threads={threads} records/s={:.0} MB/s={:.1}",
            args.signal,
            records.load(Ordering::Relaxed) as f64 / elapsed,
            bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6
        );
    }
    Ok(())
}

#[cfg(test)]
mod sizing_tests {
    use datafusion::arrow::array::{Array, ArrayData};

    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

    use super::*;

    fn used_bytes(d: &ArrayData) -> usize {
        d.buffers().iter().map(|b| b.len()).sum::<usize>()
            + d.nulls().map_or(0, |n| n.buffer().len())
            + d.child_data().iter().map(used_bytes).sum::<usize>()
    }

    /// 200 series of each metric type under one resource, with attributes
    /// and (on sums and histograms) an exemplar.
    fn metrics_batch(rng: &mut Rng) -> ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::metrics::v1::{
            Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
            HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
            Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets,
            metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
        };
        let attrs = |rng: &mut Rng| {
            vec![
                kv("http.route", s(format!("/api/v{}/items", rng.below(9)))),
                kv("host", s(format!("node-{}", rng.below(50)))),
            ]
        };
        let exemplar = |rng: &mut Rng| Exemplar {
            filtered_attributes: vec![kv("user", s(format!("u{}", rng.below(1000))))],
            time_unix_nano: 1_700_000_000_000_000_000,
            value: Some(exemplar::Value::AsDouble(1.5)),
            span_id: rng.bytes(8),
            trace_id: rng.bytes(16),
        };
        let t = 1_700_000_000_000_000_000;
        let mut metrics = Vec::new();
        for _ in 0..200 {
            let number = |rng: &mut Rng, with_exemplar: bool| NumberDataPoint {
                attributes: attrs(rng),
                time_unix_nano: t,
                value: Some(number_data_point::Value::AsInt(rng.below(1 << 20) as i64)),
                exemplars: if with_exemplar {
                    vec![exemplar(rng)]
                } else {
                    vec![]
                },
                ..Default::default()
            };
            let data = [
                Data::Gauge(Gauge {
                    data_points: vec![number(rng, false)],
                }),
                Data::Sum(Sum {
                    data_points: vec![number(rng, true)],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                }),
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: attrs(rng),
                        time_unix_nano: t,
                        count: 10,
                        sum: Some(12.5),
                        bucket_counts: vec![1, 2, 3, 4],
                        explicit_bounds: vec![0.1, 1.0, 10.0],
                        exemplars: vec![exemplar(rng)],
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                }),
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: attrs(rng),
                        time_unix_nano: t,
                        count: 6,
                        scale: 3,
                        positive: Some(Buckets {
                            offset: -2,
                            bucket_counts: vec![1, 2, 3],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                }),
                Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        attributes: attrs(rng),
                        time_unix_nano: t,
                        count: 4,
                        sum: 8.0,
                        quantile_values: vec![ValueAtQuantile {
                            quantile: 0.5,
                            value: 2.0,
                        }],
                        ..Default::default()
                    }],
                }),
            ];
            for d in data {
                metrics.push(Metric {
                    name: format!("app.metric.{}", rng.below(40)),
                    unit: "ms".into(),
                    data: Some(d),
                    ..Default::default()
                });
            }
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("checkout")), kv("host.name", s("h1"))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The budget charges Arrow capacity; converting realistic batches must
    /// not leave much of it unused (growth by doubling left 40% of a logs
    /// batch empty).
    #[test]
    fn converted_batches_are_sized_to_their_content() {
        let mut rng = Rng(7);
        let logs = logs_batch(&mut rng, 1000);
        let spans = spans_batch(&mut rng, 1000);
        let metrics = metrics_batch(&mut rng);
        let converted = [
            lumen_collector::convert::logs(&logs),
            lumen_collector::convert::spans(&spans),
            lumen_collector::convert::metrics(&metrics),
        ];
        for c in converted {
            let c = c.expect("test batches convert");
            assert_eq!(c.batch.num_rows(), 1000);
            assert_eq!(c.rejected, 0);
            let capacity = c.batch.get_array_memory_size();
            let used: usize = c
                .batch
                .columns()
                .iter()
                .map(|a| used_bytes(&a.to_data()))
                .sum();
            assert!(
                capacity * 100 <= used * 110,
                "{}: capacity {capacity} for {used} bytes used",
                c.signal
            );
        }
    }
}
