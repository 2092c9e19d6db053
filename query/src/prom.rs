//! The Prometheus HTTP API over OTLP metrics: queries and the metadata endpoints
//! `/api/v1/labels`, `/api/v1/label/{name}/values`, `/api/v1/series`,
//! `/api/v1/metadata`, `/api/v1/status/buildinfo`, `/api/v1/format_query`,
//! with Prometheus's envelope (`{"status": "success", "data": ...}` or
//! `{"status": "error", "errorType": "bad_data", "error": "..."}`), GET
//! and POST form parameters, `match[]`, `start`, `end` and `limit`.
//!
//! Each data point is seen as the Prometheus series the OpenTelemetry
//! compatibility spec makes of it ([`crate::promnames`]): gauges and sums
//! one series (`_total` for monotonic sums), histograms `_bucket{le}`,
//! `_sum` and `_count`, summaries `{quantile}`, `_sum` and `_count`, with
//! attributes as labels and the resource's service as `job`/`instance`.
//! `/api/v1/query` and `/api/v1/query_range` run the PromQL engine of
//! [`crate::promql`] over the same series.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use serde_json::{Value, json};

use crate::promnames;
use crate::promql::storage::{FamilyMetadata, StoreQueryable, series_and_metadata as series_in};
use crate::promql::{Engine, EvalError, FloatHistogram, QueryValue, Sample, format_value};
use crate::{AppState, Error};

pub use crate::promql::Labels;

/// An error in Prometheus's envelope.
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    msg: String,
}

impl PromError {
    fn bad_data(msg: impl Into<String>) -> Self {
        PromError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            msg: msg.into(),
        }
    }
}

impl From<Error> for PromError {
    fn from(e: Error) -> Self {
        let (status, kind) = match &e {
            Error::BadRequest(_) | Error::Syntax(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            Error::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Error::ResourcesExhausted(_) => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            Error::Internal(_) => {
                tracing::error!(error = %e, "prometheus api failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        PromError {
            status,
            kind,
            msg: e.to_string(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = json!({ "status": "error", "errorType": self.kind, "error": self.msg });
        (self.status, Json(body)).into_response()
    }
}

type PResult = std::result::Result<Json<Value>, PromError>;

fn success(data: Value) -> PResult {
    Ok(Json(json!({ "status": "success", "data": data })))
}

/// The parameters of a request: the query string, then a form body (POST).
fn form(
    uri_query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> std::result::Result<Vec<(String, String)>, PromError> {
    let mut pairs: Vec<(String, String)> = match uri_query {
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| PromError::bad_data(format!("invalid query string: {e}")))?,
        None => Vec::new(),
    };
    if !body.is_empty() {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(PromError::bad_data(format!(
                "unsupported content type {ct:?}: send parameters as application/x-www-form-urlencoded"
            )));
        }
        let more: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| PromError::bad_data(format!("invalid form body: {e}")))?;
        pairs.extend(more);
    }
    Ok(pairs)
}

fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A Prometheus time parameter: RFC 3339 or Unix seconds (fractional).
pub fn parse_prom_time(name: &str, v: &str) -> std::result::Result<i64, PromError> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 9.2e9
    {
        return Ok((secs * 1e9).round() as i64);
    }
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(v).map_err(|_| {
        PromError::bad_data(format!(
            "invalid parameter \"{name}\": cannot parse {v:?} to a valid timestamp"
        ))
    })
}

fn range(pairs: &[(String, String)]) -> std::result::Result<(i64, i64), PromError> {
    let start = one(pairs, "start")
        .map(|v| parse_prom_time("start", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let end = one(pairs, "end")
        .map(|v| parse_prom_time("end", v))
        .transpose()?
        .unwrap_or(i64::MAX);
    if start > end {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

fn limit(pairs: &[(String, String)]) -> std::result::Result<Option<usize>, PromError> {
    match one(pairs, "limit") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            PromError::bad_data(format!(
                "invalid parameter \"limit\": {v:?} is not a non-negative number"
            ))
        }),
    }
}

/// The selectors of the `match[]` parameters.
fn selectors(pairs: &[(String, String)]) -> std::result::Result<Vec<Selector>, PromError> {
    pairs
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| Selector::parse(v))
        .collect()
}

/// A series selector (`up{job="api"}`).
#[derive(Debug)]
pub struct Selector {
    name: Option<String>,
    matchers: Vec<Matcher>,
    or_matchers: Vec<Vec<Matcher>>,
}

impl Selector {
    pub fn parse(s: &str) -> std::result::Result<Selector, PromError> {
        match crate::promql::parse(s) {
            Ok(Expr::VectorSelector(v)) => {
                let sel = Selector {
                    name: v.name,
                    matchers: v.matchers.matchers,
                    or_matchers: v.matchers.or_matchers,
                };
                if sel.name.is_none()
                    && sel.matchers.iter().all(|m| m.is_match(""))
                    && sel.or_matchers.is_empty()
                {
                    return Err(PromError::bad_data(format!(
                        "match[] {s:?}: vector selector must contain at least one non-empty matcher"
                    )));
                }
                Ok(sel)
            }
            Ok(_) => Err(PromError::bad_data(format!(
                "match[] {s:?}: expected a series selector like up{{job=\"api\"}}"
            ))),
            Err(e) => Err(PromError::bad_data(format!("match[] {s:?}: {e}"))),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let get = |name: &str| labels.get(name).map_or("", String::as_str);
        if let Some(n) = &self.name
            && get("__name__") != n
        {
            return false;
        }
        let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(get(&m.name)));
        all(&self.matchers)
            && (self.or_matchers.is_empty() || self.or_matchers.iter().any(|ms| all(ms)))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> std::result::Result<T, PromError> {
    Ok(crate::blocking(f).await?)
}

/// The series matching any of `match[]` (all series without one).
async fn matching(
    s: &AppState,
    pairs: &[(String, String)],
) -> std::result::Result<(Vec<Labels>, FamilyMetadata), PromError> {
    let (start, end) = range(pairs)?;
    let sels = selectors(pairs)?;
    let store = Arc::clone(&s.store);
    let (series, meta) = blocking(move || series_in(&store, start, end)).await?;
    let series = series
        .into_iter()
        .filter(|l| sels.is_empty() || sels.iter().any(|sel| sel.matches(l)))
        .collect();
    Ok((series, meta))
}

pub async fn labels(
    State(s): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    let lim = limit(&pairs)?;
    let (series, _) = matching(&s, &pairs).await?;
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for l in &series {
        names.extend(l.keys().map(String::as_str));
    }
    let mut out: Vec<&str> = names.into_iter().collect();
    if let Some(n) = lim {
        out.truncate(n);
    }
    success(json!(out))
}

pub async fn label_values(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    if !promnames::is_valid_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let pairs = form(uri.query(), &headers, &body)?;
    let lim = limit(&pairs)?;
    let (series, _) = matching(&s, &pairs).await?;
    let values: BTreeSet<&str> = series
        .iter()
        .filter_map(|l| l.get(&name).map(String::as_str))
        .collect();
    let mut out: Vec<&str> = values.into_iter().collect();
    if let Some(n) = lim {
        out.truncate(n);
    }
    success(json!(out))
}

pub async fn series(
    State(s): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    if !pairs.iter().any(|(k, _)| k == "match[]") {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let lim = limit(&pairs)?;
    let (mut series, _) = matching(&s, &pairs).await?;
    if let Some(n) = lim {
        series.truncate(n);
    }
    success(json!(series))
}

pub async fn metadata(
    State(s): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    let lim = limit(&pairs)?;
    let metric = one(&pairs, "metric").map(str::to_owned);
    let store = Arc::clone(&s.store);
    let (_, meta) = blocking(move || series_in(&store, i64::MIN, i64::MAX)).await?;
    let mut data = serde_json::Map::new();
    for (family, entries) in meta {
        if metric.as_ref().is_some_and(|m| *m != family) {
            continue;
        }
        if lim.is_some_and(|n| data.len() >= n) {
            break;
        }
        let list: Vec<Value> = entries
            .into_iter()
            .map(|m| json!({ "type": m.kind, "help": m.help, "unit": m.unit }))
            .collect();
        data.insert(family, Value::Array(list));
    }
    success(Value::Object(data))
}

pub async fn buildinfo() -> PResult {
    success(json!({
        "version": "3.0.0",
        "revision": concat!("lumen-", env!("CARGO_PKG_VERSION")),
        "branch": "main",
        "buildUser": "lumen",
        "buildDate": "",
        "goVersion": "none (Lumen is written in Rust)",
    }))
}

pub async fn format_query(uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    let q =
        one(&pairs, "query").ok_or_else(|| PromError::bad_data("no query parameter provided"))?;
    match crate::promql::parse(q) {
        Ok(expr) => success(Value::String(expr.prettify())),
        Err(e) => Err(PromError::bad_data(format!(
            "invalid parameter \"query\": {e}"
        ))),
    }
}

/// A duration parameter: seconds (fractional) or a Prometheus duration.
fn parse_step(name: &str, v: &str) -> std::result::Result<i64, PromError> {
    let v = v.trim();
    let ms = if let Ok(secs) = v.parse::<f64>() {
        (secs.is_finite() && secs.abs() < 9.2e12).then(|| (secs * 1000.0).round() as i64)
    } else {
        promql_parser::util::parse_duration(v)
            .ok()
            .map(|d| d.as_millis() as i64)
    };
    ms.ok_or_else(|| {
        PromError::bad_data(format!(
            "invalid parameter \"{name}\": cannot parse {v:?} to a valid duration"
        ))
    })
}

fn eval_error(e: EvalError) -> PromError {
    let (status, kind) = match &e {
        EvalError::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
        EvalError::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
        EvalError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        EvalError::Storage(_) => {
            tracing::error!(error = %e, "promql storage read failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    PromError {
        status,
        kind,
        msg: e.to_string(),
    }
}

/// A Prometheus result timestamp: seconds, as an integer when whole.
fn ts_json(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn point_json(t: i64, v: f64) -> Value {
    json!([ts_json(t), format_value(v)])
}

/// A native histogram as Prometheus's API writes it: count, sum, and the
/// non-empty buckets as `[boundary rule, lower, upper, count]`.
fn histogram_json(t: i64, h: &FloatHistogram) -> Value {
    let buckets: Vec<Value> = h
        .api_buckets()
        .into_iter()
        .map(|(rule, lo, hi, c)| json!([rule, format_value(lo), format_value(hi), format_value(c)]))
        .collect();
    let mut body = json!({ "count": format_value(h.count), "sum": format_value(h.sum) });
    if !buckets.is_empty() {
        body["buckets"] = Value::Array(buckets);
    }
    json!([ts_json(t), body])
}

fn result_json(v: QueryValue) -> Value {
    let kind = v.type_name();
    let result = match v {
        QueryValue::Scalar { t, v } => point_json(t, v),
        QueryValue::String { t, v } => json!([ts_json(t), v]),
        QueryValue::Vector(ss) => Value::Array(
            ss.into_iter()
                .map(|(l, t, v)| match v {
                    Sample::F(v) => json!({ "metric": l, "value": point_json(t, v) }),
                    Sample::H(h) => json!({ "metric": l, "histogram": histogram_json(t, &h) }),
                })
                .collect(),
        ),
        QueryValue::Matrix(ms) => Value::Array(
            ms.into_iter()
                .map(|m| {
                    let mut o = json!({ "metric": m.labels });
                    if !m.floats.is_empty() {
                        o["values"] = m
                            .floats
                            .into_iter()
                            .map(|(t, v)| point_json(t, v))
                            .collect();
                    }
                    if !m.hists.is_empty() {
                        o["histograms"] =
                            m.hists.iter().map(|(t, h)| histogram_json(*t, h)).collect();
                    }
                    o
                })
                .collect(),
        ),
    };
    json!({ "resultType": kind, "result": result })
}

fn parse_query(pairs: &[(String, String)]) -> std::result::Result<Expr, PromError> {
    let q = one(pairs, "query").unwrap_or("");
    if q.trim().is_empty() {
        return Err(PromError::bad_data(
            "invalid parameter \"query\": no expression found in input",
        ));
    }
    crate::promql::parse(q)
        .map_err(|e| PromError::bad_data(format!("invalid parameter \"query\": {e}")))
}

/// The engine for one request: the SQL time limit (or a shorter `timeout`
/// parameter) and a sample budget from the per-query memory limit.
fn engine_for(s: &AppState, pairs: &[(String, String)]) -> std::result::Result<Engine, PromError> {
    let limits = s.sql.limits();
    let mut timeout = limits.timeout;
    if let Some(t) = one(pairs, "timeout") {
        let ms = parse_step("timeout", t)?;
        if ms > 0 {
            timeout = timeout.min(std::time::Duration::from_millis(ms as u64));
        }
    }
    Ok(Engine {
        timeout: Some(timeout),
        // A sample in memory costs about 16 bytes.
        max_samples: (limits.query_memory_bytes / 16).max(1),
        ..Engine::default()
    })
}

/// Runs `f` with the request's engine over the store, on a blocking thread,
/// and answers with its result.
async fn evaluate(
    s: &AppState,
    pairs: &[(String, String)],
    f: impl FnOnce(&Engine, &StoreQueryable) -> std::result::Result<QueryValue, EvalError>
    + Send
    + 'static,
) -> PResult {
    let engine = engine_for(s, pairs)?;
    let store = Arc::clone(&s.store);
    let deadline = engine.timeout.map(|d| std::time::Instant::now() + d);
    let v = tokio::task::spawn_blocking(move || f(&engine, &StoreQueryable::new(&store, deadline)))
        .await
        .map_err(|e| PromError::from(Error::Internal(format!("query task failed: {e}"))))?
        .map_err(eval_error)?;
    success(result_json(v))
}

fn ns_to_ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

/// `/api/v1/query`: an instant query at `time` (default now).
pub async fn query(
    State(s): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    let expr = parse_query(&pairs)?;
    let t = match one(&pairs, "time") {
        Some(v) if !v.is_empty() => ns_to_ms(parse_prom_time("time", v)?),
        _ => now_ms(),
    };
    evaluate(&s, &pairs, move |engine, q| engine.instant(q, &expr, t)).await
}

/// `/api/v1/query_range`: a query at each `step` from `start` to `end`.
pub async fn query_range(
    State(s): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    let expr = parse_query(&pairs)?;
    let need = |name: &str| {
        one(&pairs, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| PromError::bad_data(format!("invalid parameter \"{name}\": missing")))
    };
    let start = ns_to_ms(parse_prom_time("start", need("start")?)?);
    let end = ns_to_ms(parse_prom_time("end", need("end")?)?);
    let step = parse_step("step", need("step")?)?;
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    if step <= 0 {
        return Err(PromError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    evaluate(&s, &pairs, move |engine, q| {
        engine.range(q, &expr, start, end, step)
    })
    .await
}

/// The selectors of an expression, each as the matchers (name included) of
/// one alternative.
fn selectors_of(e: &Expr, out: &mut Vec<Vec<Matcher>>) {
    let vs = match e {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    if let Some(vs) = vs {
        out.extend(crate::promql::alternatives(vs));
        return;
    }
    match e {
        Expr::Aggregate(a) => {
            selectors_of(&a.expr, out);
            if let Some(p) = &a.param {
                selectors_of(p, out);
            }
        }
        Expr::Unary(u) => selectors_of(&u.expr, out),
        Expr::Binary(b) => {
            selectors_of(&b.lhs, out);
            selectors_of(&b.rhs, out);
        }
        Expr::Paren(p) => selectors_of(&p.expr, out),
        Expr::Subquery(sq) => selectors_of(&sq.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors_of(a, out)),
        _ => {}
    }
}

/// `/api/v1/query_exemplars`: the exemplars of the series the query's
/// selectors select, between `start` and `end`.
pub async fn query_exemplars(
    State(s): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> PResult {
    let pairs = form(uri.query(), &headers, &body)?;
    let expr = parse_query(&pairs)?;
    let (start, end) = range(&pairs)?;
    let mut sels = Vec::new();
    selectors_of(&expr, &mut sels);
    let store = Arc::clone(&s.store);
    let found =
        blocking(move || crate::promql::storage::exemplars(&store, &sels, start, end)).await?;
    let data: Vec<Value> = found
        .into_iter()
        .map(|(series, ex)| {
            let ex: Vec<Value> = ex
                .into_iter()
                .map(|e| json!({ "labels": e.labels, "value": format_value(e.value), "timestamp": ts_json(e.time) }))
                .collect();
            json!({ "seriesLabels": series, "exemplars": ex })
        })
        .collect();
    success(Value::Array(data))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn selectors_match_as_prometheus_does() {
        let l = labels(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "500"),
        ]);
        for (sel, want) in [
            ("http_requests_total", true),
            ("http_requests_total{job=\"api\"}", true),
            ("http_requests_total{job!=\"api\"}", false),
            ("{__name__=~\"http_.*\", code=~\"5..\"}", true),
            ("{code=~\"5\"}", false),
            ("{job=\"api\", missing=\"\"}", true),
            ("up", false),
        ] {
            let s = Selector::parse(sel).unwrap_or_else(|_| panic!("{sel} parses"));
            assert_eq!(s.matches(&l), want, "{sel}");
        }
        for bad in ["{}", "{a=\"\"}", "sum(x)", "x{", "1 + 1"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_and_floats_are_read_and_written_as_prometheus_does() {
        assert_eq!(parse_prom_time("t", "1.5").ok(), Some(1_500_000_000));
        assert_eq!(
            parse_prom_time("t", "2024-05-01T00:00:00Z").ok(),
            Some(1_714_521_600_000_000_000)
        );
        assert!(parse_prom_time("t", "soon").is_err());
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(10.0), "10");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
