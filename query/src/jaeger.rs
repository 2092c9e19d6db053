//! The Jaeger query API (`/api/services`, `/api/traces`, ...) with Jaeger's
//! JSON shapes, so that the Jaeger UI and Grafana's Jaeger data source work
//! against Lumen. OTLP spans map to Jaeger spans as Jaeger's own OTLP
//! translator maps them: `span.kind`, `otel.status_code`, `error`,
//! `otel.status_description`, `w3c.tracestate` and `otel.scope.*` tags,
//! events as logs with an `event` field, parents as `CHILD_OF` and links as
//! `FOLLOWS_FROM` references, one process per resource.
//!
//! Traces are found through the spans' tantivy indexes (trace id, service,
//! operation, attributes) and the fresh buffer; services, operations and
//! dependencies are aggregations run by DataFusion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{Int64Type, TimestampNanosecondType, UInt32Type};
use datafusion::prelude::{col, lit};
use lumen_store::index::{Query, TermField, TimedRow};
use lumen_store::{Signal, Store};
use serde_json::{Map, Value, json};

use crate::json::{missing, str_col};
use crate::search::{Source, Sources, internal, read_segment};
use crate::{AppState, Error, Result};

/// Traces a search returns when `limit` is absent (Jaeger's default).
const DEFAULT_LIMIT: usize = 100;
/// Most traces one search returns.
const MAX_LIMIT: usize = 10_000;
/// How far back a trace search looks when `start` is absent (Jaeger's default).
const DEFAULT_LOOKBACK_NS: i64 = 2 * 86_400 * 1_000_000_000;
/// How far back `/api/dependencies` looks when `lookback` is absent.
const DEFAULT_DEPENDENCY_LOOKBACK_MS: i64 = 86_400_000;

/// An error in Jaeger's envelope: `{"data": null, ..., "errors": [{"code", "msg"}]}`.
pub struct JaegerError {
    status: StatusCode,
    msg: String,
}

impl From<Error> for JaegerError {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Internal(_)) {
            tracing::error!(error = %e, "jaeger query failed");
        }
        let status = e.status();
        JaegerError {
            status,
            msg: e.to_string(),
        }
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{ "code": self.status.as_u16(), "msg": self.msg }],
        });
        (self.status, Json(body)).into_response()
    }
}

type JResult = std::result::Result<Json<Value>, JaegerError>;

/// Jaeger's success envelope.
fn envelope(data: Value, total: usize) -> Json<Value> {
    Json(json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null }))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

/// A trace id as stored: 32 lowercase hex digits. Jaeger clients may send
/// fewer digits (64-bit ids, leading zeros dropped); those are padded.
pub fn normalize_trace_id(id: &str) -> Result<String> {
    let id = id.trim();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "invalid trace id {id:?}: expected up to 32 hex digits"
        )));
    }
    let padded = format!("{:0>32}", id.to_ascii_lowercase());
    if padded.bytes().all(|b| b == b'0') {
        return Err(bad("invalid trace id: all zeros"));
    }
    Ok(padded)
}

/// A Go duration (`1.5s`, `100ms`, `1h15m`, `250us`) in nanoseconds, as
/// Jaeger's `minDuration`/`maxDuration` take them.
pub fn parse_go_duration(name: &str, s: &str) -> Result<i64> {
    let err = || {
        bad(format!(
            "{name}={s:?}: expected a duration like 100ms, 1.5s or 2m (units ns, us, ms, s, m, h)"
        ))
    };
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    if rest == "0" {
        return Ok(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return Err(err());
    }
    Ok(total as i64)
}

/// What a trace search asks for; every condition holds for one span.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    pub service: String,
    pub operation: Option<String>,
    /// Tags: span or resource attributes, or the derived `error`,
    /// `span.kind` and `otel.status_code`.
    pub tags: Vec<(String, String)>,
    /// Span duration bounds in ns, inclusive.
    pub min_duration: Option<i64>,
    pub max_duration: Option<i64>,
    /// Span start bounds in ns, inclusive.
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    /// When the search gives up with `Error::Timeout`.
    pub deadline: Option<std::time::Instant>,
}

/// A condition on a span's columns that the index does not hold.
#[derive(Debug, Clone, PartialEq)]
enum ColumnTag {
    /// `error=true|false`: whether the status is `ERROR`.
    Error(bool),
    /// `span.kind=server`: the OTLP kind.
    Kind(String),
    /// `otel.status_code=OK|ERROR`.
    Status(String),
}

fn column_tag(key: &str, value: &str) -> Result<Option<ColumnTag>> {
    Ok(match key {
        "error" => Some(ColumnTag::Error(match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(format!("tag error={value:?}: expected true or false"))),
        })),
        "span.kind" => Some(ColumnTag::Kind(format!(
            "SPAN_KIND_{}",
            value.to_ascii_uppercase()
        ))),
        "otel.status_code" => Some(ColumnTag::Status(format!(
            "STATUS_CODE_{}",
            value.to_ascii_uppercase()
        ))),
        _ => None,
    })
}

/// The columns a search reads for every candidate span.
const CANDIDATE_COLUMNS: &[&str] = &["trace_id", "duration_ns", "kind", "status_code"];

/// Whether a span's kind and status satisfy the column tags.
fn column_tags_hold(tags: &[ColumnTag], kind: &str, status: &str) -> bool {
    tags.iter().all(|t| match t {
        ColumnTag::Error(e) => (status == "STATUS_CODE_ERROR") == *e,
        ColumnTag::Kind(k) => kind == k,
        ColumnTag::Status(s) => status == s,
    })
}

/// The `limit`-th newest trace key, once there are that many.
fn kth_newest(newest: &HashMap<String, i64>, limit: usize) -> Option<i64> {
    if newest.len() < limit {
        return None;
    }
    let mut keys: Vec<i64> = newest.values().copied().collect();
    keys.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
    Some(keys[limit - 1])
}

fn note(newest: &mut HashMap<String, i64>, trace: &str, ts: i64) {
    match newest.get_mut(trace) {
        Some(k) => *k = (*k).max(ts),
        None => {
            newest.insert(trace.to_owned(), ts);
        }
    }
}

/// Ids of the traces matching `q`, most recent first (by their newest
/// matching span).
pub fn search_traces(store: &Store, q: &TraceQuery) -> Result<Vec<String>> {
    let mut index_terms = vec![Query::Term(TermField::Service, q.service.clone())];
    if let Some(op) = &q.operation {
        index_terms.push(Query::Term(TermField::Operation, op.clone()));
    }
    let mut column_tags = Vec::new();
    for (k, v) in &q.tags {
        match column_tag(k, v)? {
            Some(t) => column_tags.push(t),
            None => index_terms.push(Query::Attr {
                key: k.clone(),
                value: v.clone(),
            }),
        }
    }
    let index_query = Query::And(index_terms);
    let duration_ok =
        |d: i64| !(q.min_duration.is_some_and(|m| d < m) || q.max_duration.is_some_and(|m| d > m));
    let sources = Sources::new(store, Signal::Spans, q.start, q.end).until(q.deadline);
    let mut newest: HashMap<String, i64> = HashMap::new();
    for i in 0..sources.list.len() {
        sources.check_deadline()?;
        // Sources come newest first: once `limit` traces are newer than all
        // a source holds, it cannot change which traces are chosen.
        if kth_newest(&newest, q.limit).is_some_and(|k| sources.max_time(i) < k) {
            break;
        }
        if let Source::Segment(seg) = &sources.list[i]
            && let Some(idx) = store.segment_index(seg).map_err(internal)?
            && let Some(timed) = idx.search_timed(&index_query).map_err(internal)?
        {
            // Times and durations come from the index; trace ids (and kind
            // and status, when asked for) are read for the newest
            // candidates only, in growing chunks, until no older one can
            // make the cut.
            let mut cands: Vec<TimedRow> = timed
                .into_iter()
                .filter(|t| t.time >= q.start && t.time <= q.end && duration_ok(t.duration))
                .collect();
            cands.sort_unstable_by_key(|t| std::cmp::Reverse(t.time));
            let columns: &[&str] = if column_tags.is_empty() {
                &["trace_id"]
            } else {
                &["trace_id", "kind", "status_code"]
            };
            let mut pos = 0;
            let mut chunk = (q.limit * 4).max(256);
            while pos < cands.len() {
                if kth_newest(&newest, q.limit).is_some_and(|k| cands[pos].time < k) {
                    break;
                }
                let end = (pos + chunk).min(cands.len());
                let mut part = cands[pos..end].to_vec();
                part.sort_unstable_by_key(|t| t.row);
                let rows: Vec<u32> = part.iter().map(|t| t.row).collect();
                let batch = read_segment(store, seg, Some(&rows), Some(columns))?;
                let tid = str_col(&batch, "trace_id")?;
                if tid.len() != part.len() {
                    return Err(Error::Internal("candidate rows do not line up".into()));
                }
                let kinds = str_col(&batch, "kind").ok();
                let statuses = str_col(&batch, "status_code").ok();
                for (j, t) in part.iter().enumerate() {
                    let kind = kinds.map_or("", |k| k.value(j));
                    let status = statuses.map_or("", |s| s.value(j));
                    if column_tags_hold(&column_tags, kind, status) {
                        note(&mut newest, tid.value(j), t.time);
                    }
                }
                pos = end;
                chunk *= 4;
            }
            continue;
        }
        // The buffer, unindexed segments, and indexes without times.
        let mut hits = sources.hits(store, i, &index_query, q.start, q.end)?;
        if hits.is_empty() {
            continue;
        }
        hits.sort_by_key(|h| h.row);
        let batch = match &sources.list[i] {
            Source::Buffer(b) => {
                let idx = UInt32Array::from(hits.iter().map(|h| h.row).collect::<Vec<_>>());
                take_record_batch(b, &idx)?
            }
            Source::Segment(seg) => {
                let rows: Vec<u32> = hits.iter().map(|h| h.row).collect();
                read_segment(store, seg, Some(&rows), Some(CANDIDATE_COLUMNS))?
            }
        };
        let c = CandidateCols::new(&batch)?;
        if c.trace_id.len() != hits.len() {
            return Err(Error::Internal("candidate rows do not line up".into()));
        }
        for (j, h) in hits.iter().enumerate() {
            if duration_ok(c.duration.value(j))
                && column_tags_hold(&column_tags, c.kind.value(j), c.status.value(j))
            {
                note(&mut newest, c.trace_id.value(j), h.ts);
            }
        }
    }
    let mut traces: Vec<(String, i64)> = newest.into_iter().collect();
    traces.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    traces.truncate(q.limit);
    Ok(traces.into_iter().map(|(id, _)| id).collect())
}

struct CandidateCols<'a> {
    trace_id: &'a StringArray,
    duration: &'a datafusion::arrow::array::Int64Array,
    kind: &'a StringArray,
    status: &'a StringArray,
}

impl<'a> CandidateCols<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self> {
        Ok(CandidateCols {
            trace_id: str_col(b, "trace_id")?,
            duration: b
                .column_by_name("duration_ns")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| missing("duration_ns"))?,
            kind: str_col(b, "kind")?,
            status: str_col(b, "status_code")?,
        })
    }
}

fn map_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a MapArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_map_opt())
        .ok_or_else(|| missing(name))
}

/// Every span of the traces `ids` with a start in `[start, end]`, as batches
/// with all span columns.
pub fn trace_spans(
    store: &Store,
    ids: &HashSet<String>,
    start: i64,
    end: i64,
) -> Result<Vec<RecordBatch>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sources = Sources::new(store, Signal::Spans, start, end);
    let query = Query::Or(
        ids.iter()
            .map(|id| Query::Term(TermField::TraceId, id.clone()))
            .collect(),
    );
    let mut out = Vec::new();
    for (i, source) in sources.list.iter().enumerate() {
        let batch = match source {
            // The buffer is small and unindexed: compare the ids directly.
            Source::Buffer(b) => {
                let tid = str_col(b, "trace_id")?;
                let rows: Vec<u32> = (0..b.num_rows())
                    .filter(|&r| tid.is_valid(r) && ids.contains(tid.value(r)))
                    .map(|r| r as u32)
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                take_record_batch(b, &UInt32Array::from(rows))?
            }
            Source::Segment(seg) => {
                let mut rows = match store.segment_index(seg).map_err(internal)? {
                    Some(idx) => idx.search(&query).map_err(internal)?,
                    None => sources
                        .hits(store, i, &query, i64::MIN, i64::MAX)?
                        .into_iter()
                        .map(|h| h.row)
                        .collect(),
                };
                if rows.is_empty() {
                    continue;
                }
                rows.sort_unstable();
                read_segment(store, seg, Some(&rows), None)?
            }
        };
        out.push(filter_start(&batch, start, end)?);
    }
    Ok(out)
}

/// The rows of a spans batch starting within `[start, end]`.
fn filter_start(batch: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
    if start == i64::MIN && end == i64::MAX {
        return Ok(batch.clone());
    }
    let ts = batch
        .column_by_name("start_time")
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| missing("start_time"))?;
    let keep: datafusion::arrow::array::BooleanArray = ts
        .values()
        .iter()
        .map(|&t| Some(t >= start && t <= end))
        .collect();
    Ok(datafusion::arrow::compute::filter_record_batch(
        batch, &keep,
    )?)
}

/// A span's attribute in Jaeger's typed form.
fn tag(key: &str, value: &str, ty: Option<&str>) -> Value {
    match ty {
        Some("int") => {
            if let Ok(n) = value.parse::<i64>() {
                return json!({ "key": key, "type": "int64", "value": n });
            }
        }
        Some("double") => {
            if let Some(n) = value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                return json!({ "key": key, "type": "float64", "value": n });
            }
        }
        Some("bool") => {
            return json!({ "key": key, "type": "bool", "value": value == "true" });
        }
        Some("bytes") => return json!({ "key": key, "type": "binary", "value": value }),
        _ => {}
    }
    json!({ "key": key, "type": "string", "value": value })
}

fn str_tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

/// The typed tags of map row `i` (values) with its types map, in order,
/// leaving out `skip`.
fn map_tags(values: &MapArray, types: Option<&MapArray>, i: usize, skip: &str) -> Vec<Value> {
    let kinds: HashMap<String, String> = types
        .filter(|t| t.is_valid(i))
        .map(|t| crate::json::map_entries(t, i).into_iter().collect())
        .unwrap_or_default();
    if values.is_null(i) {
        return Vec::new();
    }
    crate::json::map_entries(values, i)
        .into_iter()
        .filter(|(k, _)| k != skip)
        .map(|(k, v)| tag(&k, &v, kinds.get(&k).map(String::as_str)))
        .collect()
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    (a.is_valid(i) && !a.value(i).is_empty()).then(|| a.value(i))
}

/// `SPAN_KIND_SERVER` → `server`; unspecified → `None`.
pub fn jaeger_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "SPAN_KIND_SERVER" => Some("server"),
        "SPAN_KIND_CLIENT" => Some("client"),
        "SPAN_KIND_PRODUCER" => Some("producer"),
        "SPAN_KIND_CONSUMER" => Some("consumer"),
        "SPAN_KIND_INTERNAL" => Some("internal"),
        _ => None,
    }
}

/// One span converted, with what the trace needs to place it.
struct JaegerSpan {
    trace_id: String,
    start_ns: i64,
    span_id: String,
    /// Service and resource tags: the span's process.
    process: (String, Vec<Value>),
    json: Map<String, Value>,
}

/// Jaeger spans of every row of a spans batch.
fn convert(batch: &RecordBatch) -> Result<Vec<JaegerSpan>> {
    let trace_id = str_col(batch, "trace_id")?;
    let span_id = str_col(batch, "span_id")?;
    let parent = str_col(batch, "parent_span_id")?;
    let trace_state = str_col(batch, "trace_state")?;
    let name = str_col(batch, "name")?;
    let kind = str_col(batch, "kind")?;
    let status = str_col(batch, "status_code")?;
    let status_msg = str_col(batch, "status_message")?;
    let service = str_col(batch, "service_name")?;
    let scope_name = str_col(batch, "scope_name")?;
    let scope_version = str_col(batch, "scope_version")?;
    let flags = batch
        .column_by_name("flags")
        .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        .ok_or_else(|| missing("flags"))?;
    let start = batch
        .column_by_name("start_time")
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| missing("start_time"))?;
    let duration = batch
        .column_by_name("duration_ns")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| missing("duration_ns"))?;
    let attrs = map_col(batch, "span_attributes")?;
    let attr_types = map_col(batch, "span_attribute_types").ok();
    let res = map_col(batch, "resource_attributes")?;
    let res_types = map_col(batch, "resource_attribute_types").ok();
    let events = batch
        .column_by_name("events")
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| missing("events"))?;
    let links = batch
        .column_by_name("links")
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| missing("links"))?;

    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let tid = trace_id.value(i).to_owned();
        let mut references = Vec::new();
        if let Some(p) = opt_str(parent, i) {
            references.push(json!({ "refType": "CHILD_OF", "traceID": tid, "spanID": p }));
        }
        if links.is_valid(i) {
            let l = links.value(i);
            let l = l.as_struct();
            if let (Some(lt), Some(ls)) = (
                l.column_by_name("trace_id")
                    .and_then(|c| c.as_string_opt::<i32>()),
                l.column_by_name("span_id")
                    .and_then(|c| c.as_string_opt::<i32>()),
            ) {
                for j in 0..l.len() {
                    if let (Some(t), Some(s)) = (opt_str(lt, j), opt_str(ls, j)) {
                        references
                            .push(json!({ "refType": "FOLLOWS_FROM", "traceID": t, "spanID": s }));
                    }
                }
            }
        }
        let mut tags = map_tags(attrs, attr_types, i, "");
        if let Some(k) = jaeger_kind(kind.value(i)) {
            tags.push(str_tag("span.kind", k));
        }
        match status.value(i) {
            "STATUS_CODE_ERROR" => {
                tags.push(str_tag("otel.status_code", "ERROR"));
                tags.push(json!({ "key": "error", "type": "bool", "value": true }));
            }
            "STATUS_CODE_OK" => tags.push(str_tag("otel.status_code", "OK")),
            _ => {}
        }
        if let Some(m) = opt_str(status_msg, i) {
            tags.push(str_tag("otel.status_description", m));
        }
        if let Some(ts) = opt_str(trace_state, i) {
            tags.push(str_tag("w3c.tracestate", ts));
        }
        if let Some(s) = opt_str(scope_name, i) {
            tags.push(str_tag("otel.scope.name", s));
        }
        if let Some(v) = opt_str(scope_version, i) {
            tags.push(str_tag("otel.scope.version", v));
        }
        let mut logs = Vec::new();
        if events.is_valid(i) {
            let e = events.value(i);
            let e = e.as_struct();
            let times = e
                .column_by_name("time")
                .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>());
            let names = e
                .column_by_name("name")
                .and_then(|c| c.as_string_opt::<i32>());
            let eattrs = e.column_by_name("attributes").and_then(|c| c.as_map_opt());
            let etypes = e
                .column_by_name("attribute_types")
                .and_then(|c| c.as_map_opt());
            for j in 0..e.len() {
                let mut fields = Vec::new();
                if let Some(n) = names.and_then(|n| opt_str(n, j)) {
                    fields.push(str_tag("event", n));
                }
                if let Some(a) = eattrs {
                    fields.extend(map_tags(a, etypes, j, ""));
                }
                let t = times.filter(|t| t.is_valid(j)).map_or(0, |t| t.value(j));
                logs.push(json!({ "timestamp": t.div_euclid(1000), "fields": fields }));
            }
        }
        let mut span = Map::new();
        span.insert("traceID".into(), Value::String(tid.clone()));
        span.insert("spanID".into(), Value::String(span_id.value(i).to_owned()));
        // Jaeger's flags are the W3C trace flags (bit 0: sampled).
        let f = flags.value(i) & 0xff;
        if f != 0 {
            span.insert("flags".into(), json!(f));
        }
        span.insert(
            "operationName".into(),
            Value::String(name.value(i).to_owned()),
        );
        span.insert("references".into(), Value::Array(references));
        span.insert("startTime".into(), json!(start.value(i).div_euclid(1000)));
        span.insert("duration".into(), json!(duration.value(i).max(0) / 1000));
        span.insert("tags".into(), Value::Array(tags));
        span.insert("logs".into(), Value::Array(logs));
        out.push(JaegerSpan {
            trace_id: tid,
            start_ns: start.value(i),
            span_id: span_id.value(i).to_owned(),
            process: (
                service.value(i).to_owned(),
                map_tags(res, res_types, i, "service.name"),
            ),
            json: span,
        });
    }
    Ok(out)
}

/// Jaeger traces (with their processes) of the spans in `batches`, in the
/// order of `order` (ids not found are left out).
pub fn traces_json(batches: &[RecordBatch], order: &[String]) -> Result<Vec<Value>> {
    let mut by_trace: BTreeMap<String, Vec<JaegerSpan>> = BTreeMap::new();
    for b in batches {
        for s in convert(b)? {
            by_trace.entry(s.trace_id.clone()).or_default().push(s);
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        let Some(mut spans) = by_trace.remove(id) else {
            continue;
        };
        spans.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.span_id.cmp(&b.span_id)));
        let mut processes: Vec<(String, Vec<Value>)> = Vec::new();
        let mut json_spans = Vec::with_capacity(spans.len());
        for s in spans {
            let pos = match processes.iter().position(|p| *p == s.process) {
                Some(p) => p,
                None => {
                    processes.push(s.process);
                    processes.len() - 1
                }
            };
            let mut span = s.json;
            span.insert("processID".into(), Value::String(format!("p{}", pos + 1)));
            span.insert("warnings".into(), Value::Null);
            json_spans.push(Value::Object(span));
        }
        let processes: Map<String, Value> = processes
            .into_iter()
            .enumerate()
            .map(|(i, (service, tags))| {
                (
                    format!("p{}", i + 1),
                    json!({ "serviceName": service, "tags": tags }),
                )
            })
            .collect();
        out.push(json!({
            "traceID": id,
            "spans": json_spans,
            "processes": processes,
            "warnings": null,
        }));
    }
    Ok(out)
}

// ---- HTTP handlers ----

type Pairs = axum::extract::Query<Vec<(String, String)>>;

/// The single value of `name`; Jaeger ignores parameters it does not know,
/// and so does this API (the Jaeger UI sends a few of its own).
fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>> {
    let mut found = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(bad(format!("parameter {name:?} given twice")));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

fn int_param(pairs: &[(String, String)], name: &str, unit: &str) -> Result<Option<i64>> {
    one(pairs, name)?
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                bad(format!(
                    "unable to parse param '{name}': {v:?} is not a whole number of {unit}"
                ))
            })
        })
        .transpose()
}

/// `start`/`end` in µs since the epoch, as ns.
fn micros_param(pairs: &[(String, String)], name: &str) -> Result<Option<i64>> {
    Ok(int_param(pairs, name, "microseconds since the epoch")?.map(|us| us.saturating_mul(1000)))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, JaegerError> {
    Ok(crate::blocking(f).await?)
}

fn string_column(batches: &[RecordBatch], i: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        if let Some(a) = b.column(i).as_string_opt::<i32>() {
            out.extend(
                (0..a.len())
                    .filter(|&j| a.is_valid(j))
                    .map(|j| a.value(j).to_owned()),
            );
        }
    }
    out
}

pub async fn services(State(s): State<Arc<AppState>>) -> JResult {
    let ctx = s.sql.context();
    let df = ctx
        .table(Signal::Spans.table())
        .await
        .and_then(|t| t.select(vec![col("service_name")]))
        .and_then(|t| t.distinct())
        .map_err(Error::from_datafusion)?;
    let mut names = string_column(&s.sql.collect(df).await?, 0);
    names.sort();
    let n = names.len();
    Ok(envelope(json!(names), n))
}

/// Distinct (operation, kind) of a service's spans, sorted.
async fn operations_of(
    s: &AppState,
    service: &str,
    kind: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let ctx = s.sql.context();
    let mut df = ctx
        .table(Signal::Spans.table())
        .await
        .and_then(|t| t.filter(col("service_name").eq(lit(service))))
        .map_err(Error::from_datafusion)?;
    if let Some(k) = kind {
        let otlp = format!("SPAN_KIND_{}", k.to_ascii_uppercase());
        df = df
            .filter(col("kind").eq(lit(otlp)))
            .map_err(Error::from_datafusion)?;
    }
    let df = df
        .select(vec![col("name"), col("kind")])
        .and_then(|t| t.distinct())
        .map_err(Error::from_datafusion)?;
    let batches = s.sql.collect(df).await?;
    let mut ops: Vec<(String, String)> = string_column(&batches, 0)
        .into_iter()
        .zip(string_column(&batches, 1))
        .collect();
    ops.sort();
    Ok(ops)
}

/// `/api/services/{service}/operations`: the operation names.
pub async fn service_operations(
    State(s): State<Arc<AppState>>,
    Path(service): Path<String>,
) -> JResult {
    let mut names: Vec<String> = operations_of(&s, &service, None)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.dedup();
    let n = names.len();
    Ok(envelope(json!(names), n))
}

/// `/api/operations?service=&spanKind=`: operations with their span kind.
pub async fn operations(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(pairs): Pairs,
) -> JResult {
    let service = one(&pairs, "service")?.ok_or_else(|| bad("parameter 'service' is required"))?;
    let kind = one(&pairs, "spanKind")?;
    if let Some(k) = kind
        && !["server", "client", "producer", "consumer", "internal"].contains(&k)
    {
        return Err(bad(format!(
            "unsupported span kind {k:?} (expected server, client, producer, consumer or internal)"
        ))
        .into());
    }
    let ops: Vec<Value> = operations_of(&s, service, kind)
        .await?
        .into_iter()
        .map(|(name, k)| json!({ "name": name, "spanKind": jaeger_kind(&k).unwrap_or("") }))
        .collect();
    let n = ops.len();
    Ok(envelope(Value::Array(ops), n))
}

/// `/api/traces`: a search, or the traces named by `traceID` parameters.
pub async fn find_traces(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(pairs): Pairs,
) -> JResult {
    let now = crate::now_ns();
    let ids: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "traceID")
        .map(|(_, v)| normalize_trace_id(v))
        .collect::<Result<_>>()?;
    let start = micros_param(&pairs, "start")?;
    let end = micros_param(&pairs, "end")?;
    let store = Arc::clone(&s.store);
    if !ids.is_empty() {
        let (start, end) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let traces = blocking(move || {
            let set: HashSet<String> = ids.iter().cloned().collect();
            traces_json(&trace_spans(&store, &set, start, end)?, &ids)
        })
        .await?;
        return Ok(envelope(Value::Array(traces), 0));
    }
    let service = one(&pairs, "service")?.ok_or_else(|| bad("parameter 'service' is required"))?;
    let end = end.unwrap_or(now);
    let start = start.unwrap_or(end.saturating_sub(DEFAULT_LOOKBACK_NS));
    if start > end {
        return Err(bad("start is after end").into());
    }
    let mut tags = Vec::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "tag" => {
                let (key, value) = v.split_once(':').ok_or_else(|| {
                    bad(format!(
                        "malformed 'tag' parameter, expecting key:value, received: {v}"
                    ))
                })?;
                tags.push((key.to_owned(), value.to_owned()));
            }
            "tags" => {
                let m: Map<String, Value> = serde_json::from_str(v).map_err(|e| {
                    bad(format!(
                        "malformed 'tags' parameter, expecting a JSON object of strings: {e}"
                    ))
                })?;
                for (key, value) in m {
                    let value = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(bad(format!(
                                "malformed 'tags' parameter: the value of {key:?} is {other}, expected a string"
                            ))
                            .into());
                        }
                    };
                    tags.push((key, value));
                }
            }
            _ => {}
        }
    }
    let limit = match int_param(&pairs, "limit", "traces")? {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) if n > 0 && n as usize <= MAX_LIMIT => n as usize,
        Some(n) => {
            return Err(bad(format!(
                "limit={n}: expected a number from 1 to {MAX_LIMIT}"
            ))
            .into());
        }
    };
    let min_duration = one(&pairs, "minDuration")?
        .map(|v| parse_go_duration("minDuration", v))
        .transpose()?;
    let max_duration = one(&pairs, "maxDuration")?
        .map(|v| parse_go_duration("maxDuration", v))
        .transpose()?;
    if let (Some(lo), Some(hi)) = (min_duration, max_duration)
        && hi < lo
    {
        return Err(bad("'maxDuration' should be greater than 'minDuration'").into());
    }
    let q = TraceQuery {
        service: service.to_owned(),
        operation: one(&pairs, "operation")?.map(str::to_owned),
        tags,
        min_duration,
        max_duration,
        start,
        end,
        limit,
        deadline: Some(std::time::Instant::now() + s.sql.limits().timeout),
    };
    let started = std::time::Instant::now();
    let traces = blocking(move || {
        let ids = search_traces(&store, &q)?;
        let set: HashSet<String> = ids.iter().cloned().collect();
        traces_json(&trace_spans(&store, &set, i64::MIN, i64::MAX)?, &ids)
    })
    .await?;
    s.store
        .metrics()
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(envelope(Value::Array(traces), 0))
}

/// `/api/traces/{traceID}`: one trace, 404 when no span of it is stored.
pub async fn get_trace(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::Query(pairs): Pairs,
) -> JResult {
    let id = normalize_trace_id(&id)?;
    let start = micros_param(&pairs, "start")?.unwrap_or(i64::MIN);
    let end = micros_param(&pairs, "end")?.unwrap_or(i64::MAX);
    let store = Arc::clone(&s.store);
    let traces = blocking(move || {
        let set = HashSet::from([id.clone()]);
        traces_json(&trace_spans(&store, &set, start, end)?, &[id])
    })
    .await?;
    if traces.is_empty() {
        return Err(JaegerError {
            status: StatusCode::NOT_FOUND,
            msg: "trace not found".into(),
        });
    }
    Ok(envelope(Value::Array(traces), 0))
}

/// The columns dependencies read.
const LINK_COLUMNS: &[&str] = &[
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "start_time",
];

/// A 64-bit FNV-1a hash: ids are compared by hash while counting calls,
/// so no span costs an allocation (a collision within one trace is as good
/// as impossible).
fn id_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Calls between services counted so far (by interned service number),
/// and children whose parent was not in their own source: (trace, parent
/// span) hashes → their services.
#[derive(Default)]
struct Links {
    services: Vec<String>,
    numbers: HashMap<String, u32>,
    calls: HashMap<(u32, u32), u64>,
    orphans: HashMap<(u64, u64), Vec<u32>>,
}

impl Links {
    fn service(&mut self, name: &str) -> u32 {
        if let Some(n) = self.numbers.get(name) {
            return *n;
        }
        let n = self.services.len() as u32;
        self.services.push(name.to_owned());
        self.numbers.insert(name.to_owned(), n);
        n
    }

    fn into_calls(self) -> BTreeMap<(String, String), u64> {
        self.calls
            .into_iter()
            .map(|((p, c), n)| {
                (
                    (
                        self.services[p as usize].clone(),
                        self.services[c as usize].clone(),
                    ),
                    n,
                )
            })
            .collect()
    }
}

type LinkCols<'a> = (
    &'a StringArray,
    &'a StringArray,
    &'a StringArray,
    &'a StringArray,
    &'a datafusion::arrow::array::TimestampNanosecondArray,
);

fn link_cols(b: &RecordBatch) -> Result<LinkCols<'_>> {
    let st = b
        .column_by_name("start_time")
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| missing("start_time"))?;
    Ok((
        str_col(b, "trace_id")?,
        str_col(b, "span_id")?,
        str_col(b, "parent_span_id")?,
        str_col(b, "service_name")?,
        st,
    ))
}

/// The spans of one trace, in one source: (span, parent, service).
#[derive(Default)]
struct TraceSpans {
    id: String,
    spans: Vec<(u64, Option<u64>, u32)>,
}

impl TraceSpans {
    fn finish(&mut self, links: &mut Links) {
        let trace = id_hash(&self.id);
        let services: HashMap<u64, u32> = self.spans.iter().map(|(s, _, svc)| (*s, *svc)).collect();
        for (_, parent, svc) in &self.spans {
            let Some(parent) = parent else { continue };
            match services.get(parent) {
                Some(p) if p != svc => *links.calls.entry((*p, *svc)).or_default() += 1,
                Some(_) => {}
                None => links
                    .orphans
                    .entry((trace, *parent))
                    .or_default()
                    .push(*svc),
            }
        }
        self.spans.clear();
    }
}

/// Calls between services among spans starting in `[start, end]`: a span
/// whose parent belongs to another service is one call parent → child.
/// Segments are sorted by trace id, so each is read as a stream, one trace
/// at a time; parents in another source (a trace split between the buffer
/// and a segment, or between segments) are found in a second pass over
/// just the span ids.
pub fn dependency_links(
    store: &Store,
    start: i64,
    end: i64,
) -> Result<BTreeMap<(String, String), u64>> {
    let sources = Sources::new(store, Signal::Spans, start, end);
    let mut links = Links::default();
    for source in &sources.list {
        let mut trace = TraceSpans::default();
        let mut visit = |b: &RecordBatch| -> Result<()> {
            let (tid, sid, pid, svc, st) = link_cols(b)?;
            for i in 0..b.num_rows() {
                let t = st.value(i);
                if t < start || t > end {
                    continue;
                }
                if tid.value(i) != trace.id {
                    trace.finish(&mut links);
                    trace.id.clear();
                    trace.id.push_str(tid.value(i));
                }
                let service = links.service(svc.value(i));
                trace
                    .spans
                    .push((id_hash(sid.value(i)), opt_str(pid, i).map(id_hash), service));
            }
            Ok(())
        };
        match source {
            Source::Buffer(b) => {
                let order = datafusion::arrow::compute::sort_to_indices(
                    b.column_by_name("trace_id")
                        .ok_or_else(|| missing("trace_id"))?,
                    None,
                    None,
                )?;
                visit(&take_record_batch(b, &order)?)?;
            }
            Source::Segment(seg) => crate::search::for_each_batch(store, seg, LINK_COLUMNS, visit)?,
        }
        trace.finish(&mut links);
    }
    if !links.orphans.is_empty() {
        let orphans = std::mem::take(&mut links.orphans);
        let mut look = |b: &RecordBatch| -> Result<()> {
            let (tid, sid, _, svc, _) = link_cols(b)?;
            for i in 0..b.num_rows() {
                let Some(children) = orphans.get(&(id_hash(tid.value(i)), id_hash(sid.value(i))))
                else {
                    continue;
                };
                let parent = links.service(svc.value(i));
                for child in children {
                    if *child != parent {
                        *links.calls.entry((parent, *child)).or_default() += 1;
                    }
                }
            }
            Ok(())
        };
        for source in &sources.list {
            match source {
                Source::Buffer(b) => look(b)?,
                Source::Segment(seg) => {
                    crate::search::for_each_batch(store, seg, LINK_COLUMNS, &mut look)?
                }
            }
        }
    }
    Ok(links.into_calls())
}

/// `/api/dependencies?endTs=&lookback=` (ms): calls between services, from
/// parent/child spans whose services differ.
pub async fn dependencies(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(pairs): Pairs,
) -> JResult {
    let end_ms = int_param(&pairs, "endTs", "milliseconds since the epoch")?
        .unwrap_or(crate::now_ns() / 1_000_000);
    let lookback =
        int_param(&pairs, "lookback", "milliseconds")?.unwrap_or(DEFAULT_DEPENDENCY_LOOKBACK_MS);
    if lookback < 0 {
        return Err(bad("lookback must not be negative").into());
    }
    let end = end_ms.saturating_mul(1_000_000);
    let start = end.saturating_sub(lookback.saturating_mul(1_000_000));
    let store = Arc::clone(&s.store);
    let calls = blocking(move || dependency_links(&store, start, end)).await?;
    let data: Vec<Value> = calls
        .into_iter()
        .map(|((parent, child), n)| json!({ "parent": parent, "child": child, "callCount": n }))
        .collect();
    Ok(envelope(Value::Array(data), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_jaeger_takes_them() {
        for (s, ns) in [
            ("0", 0),
            ("100ms", 100_000_000),
            ("1.5s", 1_500_000_000),
            ("250us", 250_000),
            ("250µs", 250_000),
            ("1h15m", 4_500_000_000_000),
            ("7ns", 7),
        ] {
            assert_eq!(parse_go_duration("d", s).ok(), Some(ns), "{s}");
        }
        for s in ["", "10", "ms", "1x", "1.2.3s", "-1s"] {
            assert!(parse_go_duration("d", s).is_err(), "{s}");
        }
    }

    #[test]
    fn trace_ids_are_padded_and_checked() {
        assert_eq!(
            normalize_trace_id("ABC").ok().as_deref(),
            Some("00000000000000000000000000000abc")
        );
        for bad in ["", "xyz", "0", &"a".repeat(33)] {
            assert!(normalize_trace_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_tags_follow_jaeger() {
        assert_eq!(tag("a", "42", Some("int"))["type"], "int64");
        assert_eq!(tag("a", "42", Some("int"))["value"], 42);
        assert_eq!(tag("a", "2.5", Some("double"))["value"], 2.5);
        assert_eq!(tag("a", "true", Some("bool"))["value"], true);
        assert_eq!(tag("a", "AQI=", Some("bytes"))["type"], "binary");
        assert_eq!(tag("a", "[1,2]", Some("array"))["type"], "string");
        assert_eq!(tag("a", "x", None)["value"], "x");
    }
}
