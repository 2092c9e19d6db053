//! `GET /api/v1/tail`: live tail over a WebSocket, one more subscriber of
//! the store's fan-out. Each connection runs two stages: a filter that
//! drains the store's queue as batches arrive and keeps the matching records
//! in a bounded queue of its own (oldest dropped, counted exactly), and a
//! sender that writes frames as fast as the client reads them. A slow client
//! only fills its own queue; ingest never waits for it. Filtering and
//! building JSON is CPU work: it runs on the blocking pool, not on the async
//! workers that acknowledge exports, and each subscriber examines at most
//! `max_rate` records a second (a firehose tail at full ingest cost more CPU
//! than ingest itself): batches past it are skipped and reported dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::Int64Type;
use futures::{SinkExt, StreamExt};
use lumen_store::Signal;
use lumen_store::index::{Query, TermField};
use lumen_store::scan::Matcher;
use serde_json::{Map, Value, json};

use crate::json::str_col;
use crate::search::{RESULT_COLUMNS, internal, project};
use crate::{AppState, Error, Result, lang};

/// Live-tail limits.
#[derive(Debug, Clone)]
pub struct TailLimits {
    /// Records one subscriber may have waiting; past it the oldest are
    /// dropped and reported in a `dropped` frame.
    pub buffer_records: usize,
    /// Concurrent subscribers; more are refused with an `error` frame.
    pub max_subscribers: usize,
    /// Records a second one subscriber examines (with a second's burst);
    /// batches past it are skipped and counted as dropped.
    pub max_rate: usize,
}

impl Default for TailLimits {
    fn default() -> Self {
        TailLimits {
            buffer_records: 10_000,
            max_subscribers: 256,
            max_rate: 5_000,
        }
    }
}

/// A token bucket of records: `rate` a second, holding at most one second's.
struct RateBudget {
    rate: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl RateBudget {
    fn new(rate: usize) -> Self {
        let rate = rate.max(1) as f64;
        RateBudget {
            rate,
            tokens: rate,
            at: std::time::Instant::now(),
        }
    }

    /// Whether `n` more records fit now (and takes them if so). A batch
    /// bigger than a second's worth passes when the bucket is full, leaving
    /// a debt the refill pays off.
    fn take(&mut self, n: usize) -> bool {
        let now = std::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= (n as f64).min(self.rate) {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// Most records in one frame.
const MAX_FRAME_RECORDS: usize = 1000;

const SPAN_COLUMNS: &[(&str, &str)] = &[
    ("trace_id", "trace_id"),
    ("span_id", "span_id"),
    ("parent_span_id", "parent_span_id"),
    ("name", "name"),
    ("kind", "kind"),
    ("start_time", "start_time"),
    ("end_time", "end_time"),
    ("duration_ns", "duration_ns"),
    ("status_code", "status_code"),
    ("status_message", "status_message"),
    ("service_name", "service_name"),
    ("span_attributes", "attributes"),
    ("resource_attributes", "resource_attributes"),
    ("scope_name", "scope_name"),
    ("events", "events"),
    ("links", "links"),
];

const METRIC_COLUMNS: &[(&str, &str)] = &[
    ("metric_name", "metric_name"),
    ("metric_type", "metric_type"),
    ("unit", "unit"),
    ("timestamp", "timestamp"),
    ("service_name", "service_name"),
    ("attributes", "attributes"),
    ("resource_attributes", "resource_attributes"),
    ("value", "value"),
    ("is_monotonic", "is_monotonic"),
    ("aggregation_temporality", "aggregation_temporality"),
    ("count", "count"),
    ("sum", "sum"),
    ("min", "min"),
    ("max", "max"),
    ("bucket_counts", "bucket_counts"),
    ("explicit_bounds", "explicit_bounds"),
    ("quantiles", "quantiles"),
];

/// What a subscriber wants to see.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Compiled once per subscription, not per batch.
    Logs(Matcher),
    Spans {
        query: Matcher,
        min_duration: Option<i64>,
        error: Option<bool>,
    },
    Metrics {
        service: Option<String>,
        metric: Option<String>,
    },
}

impl Filter {
    fn signal(&self) -> Signal {
        match self {
            Filter::Logs(_) => Signal::Logs,
            Filter::Spans { .. } => Signal::Spans,
            Filter::Metrics { .. } => Signal::Metrics,
        }
    }

    /// Parses the connection's query string.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Filter> {
        // The token of a browser's WebSocket, which the auth layer has read.
        let pairs = pairs
            .into_iter()
            .filter(|(k, _)| k != "access_token")
            .collect();
        let p = crate::params(
            pairs,
            &[
                "signal",
                "q",
                "service",
                "operation",
                "min_duration",
                "error",
                "metric",
            ],
        )?;
        let only = |allowed: &[&str], signal: &str| -> Result<()> {
            match p
                .keys()
                .find(|k| *k != "signal" && !allowed.contains(&k.as_str()))
            {
                Some(k) => Err(Error::BadRequest(format!(
                    "parameter {k:?} does not apply to signal={signal} (it takes: {})",
                    allowed.join(", ")
                ))),
                None => Ok(()),
            }
        };
        let q = |target| lang::parse(p.get("q").map_or("", String::as_str), target);
        match p.get("signal").map_or("logs", String::as_str) {
            "logs" => {
                only(&["q"], "logs")?;
                let query = q(lang::Target::Logs).map_err(Error::Syntax)?;
                Ok(Filter::Logs(Matcher::new(Signal::Logs, &query)))
            }
            "spans" => {
                only(
                    &["q", "service", "operation", "min_duration", "error"],
                    "spans",
                )?;
                let mut all = vec![q(lang::Target::Spans).map_err(Error::Syntax)?];
                if let Some(s) = p.get("service") {
                    all.push(Query::Term(TermField::Service, s.clone()));
                }
                if let Some(o) = p.get("operation") {
                    all.push(Query::Term(TermField::Operation, o.clone()));
                }
                let min_duration = p
                    .get("min_duration")
                    .map(|d| crate::jaeger::parse_go_duration("min_duration", d))
                    .transpose()?;
                let error = match p.get("error").map(String::as_str) {
                    None => None,
                    Some("true") => Some(true),
                    Some("false") => Some(false),
                    Some(v) => {
                        return Err(Error::BadRequest(format!(
                            "error={v:?}: expected true or false"
                        )));
                    }
                };
                // No conditions at all match everything.
                all.retain(|q| *q != Query::All);
                let query = if all.is_empty() {
                    Query::All
                } else {
                    Query::And(all)
                };
                Ok(Filter::Spans {
                    query: Matcher::new(Signal::Spans, &query),
                    min_duration,
                    error,
                })
            }
            "metrics" => {
                only(&["service", "metric"], "metrics")?;
                Ok(Filter::Metrics {
                    service: p.get("service").cloned(),
                    metric: p.get("metric").cloned(),
                })
            }
            other => Err(Error::BadRequest(format!(
                "signal={other:?}: expected logs, spans or metrics"
            ))),
        }
    }

    /// The matching records of a batch, in order, as JSON.
    pub fn records(&self, batch: &RecordBatch) -> Result<Vec<Map<String, Value>>> {
        let n = batch.num_rows();
        let keep: Vec<u32> = match self {
            Filter::Logs(matcher) => matcher.matching_rows(batch).map_err(internal)?,
            Filter::Spans {
                query,
                min_duration,
                error,
            } => {
                let duration = batch
                    .column_by_name("duration_ns")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or_else(|| Error::Internal("spans duration_ns missing".into()))?;
                let status = str_col(batch, "status_code")?;
                let cols = query.bind(batch).map_err(internal)?;
                let mut scratch = String::new();
                (0..n)
                    .filter(|&i| {
                        min_duration.is_none_or(|m| duration.value(i) >= m)
                            && error.is_none_or(|e| (status.value(i) == "STATUS_CODE_ERROR") == e)
                            && query.matches(&cols, i, &mut scratch)
                    })
                    .map(|i| i as u32)
                    .collect()
            }
            Filter::Metrics { service, metric } => {
                let svc = str_col(batch, "service_name")?;
                let name = str_col(batch, "metric_name")?;
                (0..n)
                    .filter(|&i| {
                        service.as_ref().is_none_or(|s| svc.value(i) == s)
                            && metric.as_ref().is_none_or(|m| name.value(i) == m)
                    })
                    .map(|i| i as u32)
                    .collect()
            }
        };
        if keep.is_empty() {
            return Ok(Vec::new());
        }
        let batch = if keep.len() == n {
            batch.clone()
        } else {
            take_record_batch(batch, &UInt32Array::from(keep))?
        };
        let columns = match self.signal() {
            Signal::Logs => RESULT_COLUMNS,
            Signal::Spans => SPAN_COLUMNS,
            Signal::Metrics => METRIC_COLUMNS,
        };
        crate::json::rows(&[project(&batch, columns)?])
    }
}

/// Matching records waiting for the client, bounded.
struct Outbox {
    state: Mutex<OutState>,
    ready: tokio::sync::Notify,
    cap: usize,
}

#[derive(Default)]
struct OutState {
    records: VecDeque<Map<String, Value>>,
    dropped: u64,
    error: Option<String>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, records: Vec<Map<String, Value>>, dropped_upstream: u64) {
        let mut s = self.lock();
        s.dropped += dropped_upstream;
        s.records.extend(records);
        while s.records.len() > self.cap {
            s.records.pop_front();
            s.dropped += 1;
        }
        drop(s);
        self.ready.notify_one();
    }

    fn fail(&self, message: String) {
        self.lock().error = Some(message);
        self.ready.notify_one();
    }

    /// Waits for something to send: (records, dropped before them, error).
    async fn take(&self) -> (Vec<Map<String, Value>>, u64, Option<String>) {
        loop {
            {
                let mut s = self.lock();
                if !s.records.is_empty() || s.dropped > 0 || s.error.is_some() {
                    let n = s.records.len().min(MAX_FRAME_RECORDS);
                    let records = s.records.drain(..n).collect();
                    return (records, std::mem::take(&mut s.dropped), s.error.take());
                }
            }
            self.ready.notified().await;
        }
    }
}

fn frame(v: &Value) -> Message {
    Message::Text(v.to_string().into())
}

pub async fn tail(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return (
                e.status(),
                axum::Json(json!({ "error": format!(
                    "/api/v1/tail is a WebSocket endpoint: {}", e.body_text()
                ) })),
            )
                .into_response();
        }
    };
    // Bad filters are reported on the socket: browsers cannot read the body
    // of a refused upgrade.
    let filter = Filter::parse(pairs);
    ws.on_upgrade(move |socket| run(socket, s, filter))
}

async fn run(socket: WebSocket, state: Arc<AppState>, filter: Result<Filter>) {
    let (mut tx, mut rx) = socket.split();
    let refuse = |message: String| frame(&json!({ "type": "error", "message": message }));
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(refuse(e.to_string())).await;
            let _ = tx.close().await;
            return;
        }
    };
    let Ok(_permit) = Arc::clone(&state.tail_permits).try_acquire_owned() else {
        let msg = format!(
            "too many live-tail subscribers (at most {}); try again later",
            state.tail.max_subscribers
        );
        let _ = tx.send(refuse(msg)).await;
        let _ = tx.close().await;
        return;
    };
    let signal = filter.signal();
    let sub = state.store.subscribe(signal, state.tail.buffer_records);
    let outbox = Arc::new(Outbox {
        state: Mutex::new(OutState::default()),
        ready: tokio::sync::Notify::new(),
        cap: state.tail.buffer_records.max(1),
    });
    let filtering = {
        let outbox = Arc::clone(&outbox);
        let filter = Arc::new(filter);
        let mut budget = RateBudget::new(state.tail.max_rate);
        tokio::spawn(async move {
            loop {
                let (batches, mut dropped) = sub.recv().await;
                let (kept, skipped): (Vec<RecordBatch>, Vec<RecordBatch>) =
                    batches.into_iter().partition(|b| budget.take(b.num_rows()));
                dropped += skipped.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                if kept.is_empty() {
                    outbox.push(Vec::new(), dropped);
                    continue;
                }
                let filter = Arc::clone(&filter);
                let matched = tokio::task::spawn_blocking(move || {
                    let mut records = Vec::new();
                    for b in &kept {
                        records.extend(filter.records(b)?);
                    }
                    Ok::<_, Error>(records)
                })
                .await;
                match matched {
                    Ok(Ok(records)) => outbox.push(records, dropped),
                    Ok(Err(e)) => {
                        outbox.fail(e.to_string());
                        return;
                    }
                    Err(e) => {
                        outbox.fail(format!("tail filter failed: {e}"));
                        return;
                    }
                }
            }
        })
    };
    let sending = async {
        loop {
            let (records, dropped, error) = outbox.take().await;
            if dropped > 0 {
                tx.send(frame(&json!({ "type": "dropped", "count": dropped })))
                    .await?;
            }
            if !records.is_empty() {
                let v = json!({ "type": "records", "signal": signal.table(), "records": records });
                tx.send(frame(&v)).await?;
            }
            if let Some(message) = error {
                tx.send(refuse(message)).await?;
                return tx.close().await;
            }
        }
    };
    let reading = async {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::select! {
        _ = sending => {}
        _ = reading => {}
    }
    filtering.abort();
}
