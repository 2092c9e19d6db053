//! `lumen bench-promql`: PromQL latency over a day of metrics.
//!
//! `--load counters` sends 24 h (by default) of a realistic counter workload
//! with explicit timestamps over OTLP/HTTP: `--series` monotonic integer
//! sums (`http.server.requests`) across 10 services (resource
//! `service.name`, also a `service` attribute), 20 routes and 5 status
//! codes, one point per series every `--interval` with a few ms of export
//! jitter, increments that vary by series and by time of day, and one
//! process restart (counter reset) per series per day. `--load histograms`
//! sends `--histograms` explicit-bucket histograms (`rpc.duration`, 10
//! bounds) the same way. `--queries` then times `query_range` requests
//! (start = end - 24 h, step 60 s) and prints the median and p90.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::loadgen::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Load {
    Counters,
    Histograms,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchPromqlArgs {
    /// host:port of the OTLP/HTTP listener.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub(crate) otlp_http: String,
    /// host:port of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub(crate) http: String,
    /// Send this workload first.
    #[arg(long)]
    pub(crate) load: Option<Load>,
    /// Counter series to send.
    #[arg(long, default_value_t = 1000)]
    pub(crate) series: usize,
    /// Histogram series to send.
    #[arg(long, default_value_t = 100)]
    pub(crate) histograms: usize,
    /// Hours of data, ending now.
    #[arg(long, default_value_t = 24)]
    pub(crate) hours: u64,
    /// Seconds between points of a series.
    #[arg(long, default_value_t = 15)]
    pub(crate) interval: u64,
    /// The end of the data and of the queries (Unix seconds; default now).
    #[arg(long)]
    pub(crate) end: Option<u64>,
    /// Range queries to time, each run `--runs` times.
    #[arg(long = "query")]
    pub(crate) queries: Vec<String>,
    #[arg(long, default_value_t = 11)]
    pub(crate) runs: usize,
}

const SERVICES: usize = 10;
const ROUTES: usize = 20;
const CODES: [&str; 5] = ["200", "201", "404", "500", "503"];
const BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

/// What one series (counter or histogram) is: its service and attributes.
fn identity(i: usize) -> (usize, Vec<KeyValue>) {
    let service = i % SERVICES;
    let route = (i / SERVICES) % ROUTES;
    let code = CODES[(i / (SERVICES * ROUTES)) % CODES.len()];
    (
        service,
        vec![
            kv("service", &format!("svc-{service}")),
            kv("http.route", &format!("/api/v1/resource{route}")),
            kv("http.response.status_code", code),
        ],
    )
}

/// The request for steps `[from, to)` of the workload.
fn request(
    load: Load,
    args: &BenchPromqlArgs,
    start_s: u64,
    from: u64,
    to: u64,
    state: &mut [State],
) -> ExportMetricsServiceRequest {
    let mut per_service: Vec<Vec<Metric>> = (0..SERVICES).map(|_| Vec::new()).collect();
    let n = match load {
        Load::Counters => args.series,
        Load::Histograms => args.histograms,
    };
    let mut points: Vec<Vec<(usize, u64)>> = vec![Vec::new(); SERVICES];
    for i in 0..n {
        points[i % SERVICES].push((i, 0));
    }
    for (service, series) in points.iter().enumerate() {
        let mut counters = Vec::new();
        let mut hists = Vec::new();
        for &(i, _) in series {
            let (_, attrs) = identity(i);
            let st = &mut state[i];
            for step in from..to {
                let t_s = start_s + step * args.interval;
                // Export jitter: an SDK collects all of a service's series
                // at once, up to 2 ms late.
                let t_ns = t_s * 1_000_000_000 + jitter(service, step);
                // One restart a day, at a time of the series' own.
                if step % (86_400 / args.interval.max(1)) == st.restart_step {
                    st.start_ns = t_ns - 1;
                    st.total = 0;
                    st.buckets = [0; 11];
                    st.sum = 0.0;
                }
                // Traffic follows the time of day.
                let hour = (t_s / 3600) % 24;
                let load_factor = 1 + (if (8..20).contains(&hour) { 3 } else { 1 });
                match load {
                    Load::Counters => {
                        st.total += st.rng.below(st.mean * load_factor + 1);
                        counters.push(NumberDataPoint {
                            attributes: attrs.clone(),
                            start_time_unix_nano: st.start_ns,
                            time_unix_nano: t_ns,
                            value: Some(number_data_point::Value::AsInt(st.total as i64)),
                            ..Default::default()
                        });
                    }
                    Load::Histograms => {
                        for _ in 0..st.rng.below(st.mean * load_factor + 1) {
                            // Latencies around 20-200 ms with a long tail.
                            let r = st.rng.below(1000) as f64 / 1000.0;
                            let v = 0.02
                                * (1.0 + 9.0 * r * r * r)
                                * if st.rng.below(50) == 0 { 20.0 } else { 1.0 };
                            let b = BOUNDS.iter().position(|&b| v <= b).unwrap_or(BOUNDS.len());
                            st.buckets[b] += 1;
                            st.sum += v;
                        }
                        let count: u64 = st.buckets.iter().sum();
                        hists.push(HistogramDataPoint {
                            attributes: attrs.clone(),
                            start_time_unix_nano: st.start_ns,
                            time_unix_nano: t_ns,
                            count,
                            sum: Some(st.sum),
                            bucket_counts: st.buckets.to_vec(),
                            explicit_bounds: BOUNDS.to_vec(),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        if !counters.is_empty() {
            per_service[service].push(Metric {
                name: "http.server.requests".into(),
                unit: "{request}".into(),
                description: "HTTP requests served".into(),
                data: Some(Data::Sum(Sum {
                    data_points: counters,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
        }
        if !hists.is_empty() {
            per_service[service].push(Metric {
                name: "rpc.duration".into(),
                unit: "s".into(),
                description: "RPC latency".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: hists,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            });
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: per_service
            .into_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(s, metrics)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", &format!("svc-{s}")),
                        kv("service.instance.id", &format!("svc-{s}-0")),
                        kv("host.name", &format!("node-{}", s % 3)),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The collection delay (ns) of a service's export at a step.
fn jitter(service: usize, step: u64) -> u64 {
    let mut r = Rng((service as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ step.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    r.next();
    r.below(2_000_000)
}

struct State {
    rng: Rng,
    mean: u64,
    total: u64,
    buckets: [u64; 11],
    sum: f64,
    start_ns: u64,
    restart_step: u64,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn load(args: &BenchPromqlArgs, load: Load, end_s: u64) -> Result<()> {
    let steps = args.hours * 3600 / args.interval.max(1);
    let start_s = (end_s - args.hours * 3600) / args.interval * args.interval;
    let n = match load {
        Load::Counters => args.series,
        Load::Histograms => args.histograms,
    };
    let mut state: Vec<State> = (0..n)
        .map(|i| {
            let mut rng =
                Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mean = 1 + rng.below(40);
            let restart_step = rng.below(86_400 / args.interval.max(1));
            State {
                rng,
                mean,
                total: 0,
                buckets: [0; 11],
                sum: 0.0,
                start_ns: start_s * 1_000_000_000 - 1,
                restart_step,
            }
        })
        .collect();
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/metrics", args.otlp_http);
    // About 20,000 points per export.
    let per_request = (20_000 / n.max(1)).max(1) as u64;
    let started = Instant::now();
    let mut in_flight = futures::stream::FuturesOrdered::new();
    let mut points = 0u64;
    let mut bytes = 0u64;
    let mut step = 0;
    use futures::StreamExt as _;
    while step < steps || !in_flight.is_empty() {
        while step < steps && in_flight.len() < 4 {
            let to = (step + per_request).min(steps);
            let body = request(load, args, start_s, step, to, &mut state).encode_to_vec();
            points += (to - step) * n as u64;
            bytes += body.len() as u64;
            let (client, url) = (client.clone(), url.clone());
            in_flight.push_back(async move {
                let mut attempts = 0;
                loop {
                    let res = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()
                        .await;
                    // A server over its budget may refuse before reading the
                    // body, which the client sees as a broken connection.
                    let res = match res {
                        Err(_) if attempts < 50 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        r => r?,
                    };
                    // Over its memory budget the server asks to retry later.
                    if matches!(res.status().as_u16(), 429 | 503) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    return Ok::<_, anyhow::Error>(res);
                }
            });
            step = to;
        }
        if let Some(res) = in_flight.next().await {
            let res = res.context("sending metrics")?;
            if !res.status().is_success() {
                bail!(
                    "export refused: {} {}",
                    res.status(),
                    res.text().await.unwrap_or_default()
                );
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "loaded {load:?}: {points} points ({} series x {steps} steps) in {secs:.1} s ({:.0} points/s), {:.1} MB of OTLP protobuf ({:.1} B/point)",
            n,
            points as f64 / secs,
            bytes as f64 / 1e6,
            bytes as f64 / points as f64
        );
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Prints its results on stdout, as the load generator does.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: BenchPromqlArgs) -> Result<()> {
    let end_s = args.end.unwrap_or_else(now_s);
    if let Some(l) = args.load {
        load(&args, l, end_s).await?;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    for q in &args.queries {
        let url = format!("http://{}/api/v1/query_range", args.http);
        let params = [
            ("query", q.clone()),
            ("start", (end_s - args.hours * 3600).to_string()),
            ("end", end_s.to_string()),
            ("step", "60".to_string()),
        ];
        let mut times = Vec::with_capacity(args.runs);
        let mut shape = String::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            let res = client.get(&url).query(&params).send().await?;
            let status = res.status();
            let body: serde_json::Value = res.json().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("{q}: {status} {body}");
            }
            let result = body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let points: usize = result
                .iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum();
            shape = format!("{} series, {points} points", result.len());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "query {q:?}: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms over {} runs ({shape})",
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            times[0],
            times.len()
        );
    }
    Ok(())
}
