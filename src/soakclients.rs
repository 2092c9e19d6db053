//! `lumen soak-clients`: the readers of a soak test. Live-tail subscribers
//! and a query loop (search, histogram, SQL, PromQL, Jaeger) run against a
//! server while `lumen loadgen` writes; every 10 s and at the end it prints
//! what they received, how many queries failed and their latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Debug, Clone)]
pub(crate) struct SoakClientsArgs {
    /// host:port of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub(crate) http: String,
    /// Live-tail subscribers (each with its own filter).
    #[arg(long, default_value_t = 4)]
    pub(crate) subscribers: usize,
    /// Pause between two queries of the query loop, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub(crate) query_interval_ms: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 600)]
    pub(crate) duration: u64,
}

#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    records: AtomicU64,
    dropped: AtomicU64,
    tail_errors: AtomicU64,
    queries: AtomicU64,
    query_errors: AtomicU64,
}

/// Filters every subscriber gets one of: all logs, by severity, by text.
const TAIL_QUERIES: &[&str] = &["", "severity>=warn", "payment", "service.name:checkout"];

/// Queries of the loop: `(path, params)`, the time range filled in.
fn queries(now_s: u64) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let start = (now_s - 300).to_string();
    let end = now_s.to_string();
    vec![
        (
            "/api/v1/logs/search",
            vec![("q", "error timeout".into()), ("limit", "100".into())],
        ),
        (
            "/api/v1/logs/search",
            vec![("q", "service.name:checkout severity>=warn".into())],
        ),
        ("/api/v1/logs/histogram", vec![("q", "payment".into())]),
        (
            "/api/v1/query_range",
            vec![
                ("query", "count({__name__=~\".+\"})".into()),
                ("start", start),
                ("end", end),
                ("step", "15".into()),
            ],
        ),
        ("/api/services", vec![]),
    ]
}

const SQL: &str = "SELECT service_name, count(*) AS n FROM logs \
    WHERE timestamp > now() - INTERVAL '1 minute' GROUP BY service_name ORDER BY n DESC";

/// Prints progress and the result on stdout, as the load generator does.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: SoakClientsArgs) -> Result<()> {
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for i in 0..args.subscribers {
        let q = TAIL_QUERIES[i % TAIL_QUERIES.len()];
        let url = reqwest::Url::parse_with_params(
            &format!("ws://{}/api/v1/tail", args.http),
            [("signal", "logs"), ("q", q)],
        )?
        .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            let (_, mut frames) = ws.split();
            while Instant::now() < deadline {
                let Ok(next) = tokio::time::timeout(Duration::from_secs(1), frames.next()).await
                else {
                    continue; // a quiet filter
                };
                let Some(Ok(Message::Text(text))) = next else {
                    tally.tail_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                tally.frames.fetch_add(1, Ordering::Relaxed);
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                match v["type"].as_str() {
                    Some("records") => {
                        let n = v["records"].as_array().map_or(0, Vec::len);
                        tally.records.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Some("dropped") => {
                        let n = v["count"].as_u64().unwrap_or(0);
                        tally.dropped.fetch_add(n, Ordering::Relaxed);
                    }
                    _ => {
                        tally.tail_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    {
        let tally = Arc::clone(&tally);
        let latencies = Arc::clone(&latencies);
        let base = format!("http://{}", args.http);
        let pause = Duration::from_millis(args.query_interval_ms);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let now_s = crate::loadgen::now_ns() / 1_000_000_000;
                let all = queries(now_s);
                let started = Instant::now();
                let res = if i % (all.len() + 1) == all.len() {
                    client
                        .post(format!("{base}/api/v1/sql"))
                        .json(&serde_json::json!({ "query": SQL }))
                        .send()
                        .await
                } else {
                    let (path, params) = &all[i % (all.len() + 1)];
                    client
                        .get(format!("{base}{path}"))
                        .query(params)
                        .send()
                        .await
                };
                i += 1;
                let ok = match res {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                tally.queries.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    tally.query_errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut l) = latencies.lock() {
                    l.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }

    let started = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        println!(
            "  t={:>4.0}s  tail records={} dropped={} errors={}  queries={} errors={}",
            started.elapsed().as_secs_f64(),
            tally.records.load(Ordering::Relaxed),
            tally.dropped.load(Ordering::Relaxed),
            tally.tail_errors.load(Ordering::Relaxed),
            tally.queries.load(Ordering::Relaxed),
            tally.query_errors.load(Ordering::Relaxed),
        );
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if l.is_empty() {
            return f64::NAN;
        }
        l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1]
    };
    println!(
        "result: subscribers={} tail_frames={} tail_records={} tail_dropped={} tail_errors={} \
         queries={} query_errors={} query_p50_ms={:.1} query_p99_ms={:.1}",
        args.subscribers,
        tally.frames.load(Ordering::Relaxed),
        tally.records.load(Ordering::Relaxed),
        tally.dropped.load(Ordering::Relaxed),
        tally.tail_errors.load(Ordering::Relaxed),
        tally.queries.load(Ordering::Relaxed),
        tally.query_errors.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
    );
    Ok(())
}
