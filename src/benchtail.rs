//! `lumen bench-tail`: live-tail latency, from an export's acknowledgement
//! to the WebSocket frame carrying its records, at a fixed ingest rate.
//!
//! One subscriber tails `/api/v1/tail` with a filter every record matches;
//! a sender posts batches of realistic log records (the load generator's)
//! over OTLP/HTTP at the rate asked, each body tagged with its batch number,
//! and notes when each batch is acknowledged. A frame that arrives before
//! its batch's acknowledgement counts as 0 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

use crate::loadgen::{Rng, logs_batch, now_ns};

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchTailArgs {
    /// host:port of the OTLP/HTTP listener.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub(crate) otlp_http: String,
    /// host:port of the HTTP API (where /api/v1/tail is).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub(crate) http: String,
    /// Records per second to send.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u64,
    /// Records per export.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_size: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 30)]
    pub(crate) duration: u64,
}

const TAG: &str = "benchtail";

/// Prints its result on stdout, as the load generator does.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: BenchTailArgs) -> Result<()> {
    let url = format!("ws://{}/api/v1/tail?signal=logs&q={TAG}", args.http);
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let (_, mut frames) = ws.split();
    // Let the server register the subscription before the first export.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let acks: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let batches = (args.rate * args.duration).div_ceil(args.batch_size as u64);
    let sent_records = batches * args.batch_size as u64;
    let receiver = tokio::spawn(async move {
        // (batch, arrival) of every record received; dropped count.
        let mut arrivals: Vec<(u64, Instant)> = Vec::with_capacity(sent_records as usize);
        let mut dropped = 0u64;
        while (arrivals.len() as u64 + dropped) < sent_records {
            let next = tokio::time::timeout(Duration::from_secs(10), frames.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = next else {
                break;
            };
            let at = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&text)?;
            match v["type"].as_str() {
                Some("records") => {
                    for r in v["records"].as_array().into_iter().flatten() {
                        let seq = r["body"]
                            .as_str()
                            .and_then(|b| b.rsplit(' ').next())
                            .and_then(|n| n.parse::<u64>().ok());
                        if let Some(seq) = seq {
                            arrivals.push((seq, at));
                        }
                    }
                }
                Some("dropped") => dropped += v["count"].as_u64().unwrap_or(0),
                _ => bail!("unexpected frame: {text}"),
            }
        }
        Ok((arrivals, dropped))
    });

    let client = reqwest::Client::new();
    let endpoint = format!("http://{}/v1/logs", args.otlp_http);
    let interval = Duration::from_secs_f64(args.batch_size as f64 / args.rate.max(1) as f64);
    let mut rng = Rng(now_ns() | 1);
    let started = Instant::now();
    let mut next = started;
    let mut senders = Vec::new();
    for seq in 0..batches {
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
        next += interval;
        let mut req = logs_batch(&mut rng, args.batch_size);
        for rl in &mut req.resource_logs {
            for sl in &mut rl.scope_logs {
                for rec in &mut sl.log_records {
                    let body = match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(Value::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    };
                    rec.body = Some(AnyValue {
                        value: Some(Value::StringValue(format!("{body} {TAG} {seq}"))),
                    });
                }
            }
        }
        let body = req.encode_to_vec();
        let client = client.clone();
        let endpoint = endpoint.clone();
        let acks = Arc::clone(&acks);
        // Exports overlap as an SDK's would when the server is slower than the rate.
        senders.push(tokio::spawn(async move {
            let r = client
                .post(&endpoint)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await?;
            let at = Instant::now();
            if !r.status().is_success() {
                bail!("export refused: {}", r.status());
            }
            acks.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(seq, at);
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in senders {
        s.await??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let (arrivals, dropped) = receiver.await??;
    let acks = acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut lat_us: Vec<u64> = arrivals
        .iter()
        .filter_map(|(seq, at)| {
            acks.get(seq)
                .map(|ack| at.saturating_duration_since(*ack).as_micros() as u64)
        })
        .collect();
    lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((lat_us.len() as f64 * p).ceil() as usize).clamp(1, lat_us.len()) - 1;
        lat_us[i] as f64 / 1000.0
    };
    let early = arrivals
        .iter()
        .filter(|(seq, at)| acks.get(seq).is_some_and(|ack| at < ack))
        .count();
    println!(
        "result: sent={sent_records} rate={:.0}/s received={} dropped={dropped} before_ack={early} \
         latency_ms p50={:.1} p90={:.1} p99={:.1} max={:.1}",
        sent_records as f64 / send_secs,
        arrivals.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
