//! The evaluator: selectors, range windows, subqueries, aggregations and
//! binary operators, over a grid of steps.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_GTE,
    T_GTR, T_LAND, T_LIMIT_RATIO, T_LIMITK, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MAX, T_MIN, T_MOD,
    T_MUL, T_NEQ, T_POW, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUB, T_SUM, T_TOPK, TokenId,
};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, LabelModifier, Offset, VectorMatchCardinality,
    VectorSelector,
};

use super::histogram::FloatHistogram;
use super::{EvalError, Labels, Queryable, RawSeries, is_stale, labels_string};

type Result<T> = std::result::Result<T, EvalError>;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Engine {
    /// How far back an instant selector looks for a sample (5 minutes).
    pub lookback_ms: i64,
    /// Most samples a query may read from storage.
    pub max_samples: usize,
    /// The step of a subquery that names none (Prometheus uses the global
    /// evaluation interval; 1 minute here, as in its tests).
    pub subquery_step_ms: i64,
    /// Most points a range query may return per series (Prometheus: 11,000).
    pub max_points_per_series: i64,
    /// Time limit of one query.
    pub timeout: Option<Duration>,
    /// Prometheus's `promql-delayed-name-removal`: functions and operators
    /// mark `__name__` for removal and it is removed from the result only,
    /// so later selection by name (`label_replace`, `by (__name__)`) still
    /// sees it. Off by default in Prometheus's server, on in its test engine.
    pub delayed_name_removal: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            subquery_step_ms: 60 * 1000,
            max_points_per_series: 11_000,
            timeout: None,
            delayed_name_removal: false,
        }
    }
}

/// A query's result, as the HTTP API returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    /// Series with their value at the evaluation time.
    Vector(Vec<(Labels, i64, Sample)>),
    /// Series with their points.
    Matrix(Vec<MatrixSeries>),
}

/// A sample's value: a float or a native histogram.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    F(f64),
    H(Arc<FloatHistogram>),
}

/// One series of a matrix result: its float points and its histogram
/// points, each sorted by time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatrixSeries {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub hists: Vec<(i64, Arc<FloatHistogram>)>,
}

impl QueryValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryValue::Scalar { .. } => "scalar",
            QueryValue::String { .. } => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }
}

impl Engine {
    /// Evaluates `expr` at time `t` (ms).
    pub fn instant(&self, q: &dyn Queryable, expr: &Expr, t: i64) -> Result<QueryValue> {
        let samples = Cell::new(0);
        let ev = Ev::new(self, q, t, t, 1, t, t, &samples);
        Ok(match finish(ev.eval(expr)?)? {
            Val::Scalar(v) => QueryValue::Scalar { t, v: v[0] },
            Val::Str(s) => QueryValue::String { t, v: s },
            Val::Vector(ss) => QueryValue::Vector(
                ss.into_iter()
                    .filter_map(|s| {
                        let v = match (s.vals[0], s.hist(0)) {
                            (Some(v), _) => Sample::F(v),
                            (None, Some(h)) => Sample::H(h.clone()),
                            (None, None) => return None,
                        };
                        Some((s.labels, t, v))
                    })
                    .collect(),
            ),
            Val::Matrix(ms) => {
                let mut out: Vec<MatrixSeries> = ms
                    .into_iter()
                    .map(|s| MatrixSeries {
                        labels: s.labels,
                        floats: s.points,
                        hists: s.hpoints,
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                QueryValue::Matrix(out)
            }
        })
    }

    /// Evaluates `expr` at every step from `start` to `end` (ms).
    pub fn range(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryValue> {
        if step <= 0 {
            return Err(EvalError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(EvalError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step >= self.max_points_per_series {
            return Err(EvalError::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                self.max_points_per_series
            )));
        }
        if matches!(
            expr.value_type(),
            promql_parser::parser::value::ValueType::Matrix
                | promql_parser::parser::value::ValueType::String
        ) {
            return Err(EvalError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_word(expr)
            )));
        }
        let n = ((end - start) / step + 1) as usize;
        let samples = Cell::new(0);
        let ev = Ev::new(self, q, start, end, step, start, end, &samples);
        let value = finish(ev.eval(expr)?)?;
        fn times<T>(vals: Vec<Option<T>>, start: i64, step: i64) -> Vec<(i64, T)> {
            vals.into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v)))
                .collect()
        }
        let mut out: Vec<MatrixSeries> = match value {
            Val::Scalar(v) => vec![MatrixSeries {
                labels: Labels::new(),
                floats: times(v.into_iter().map(Some).collect(), start, step),
                hists: Vec::new(),
            }],
            Val::Vector(ss) => ss
                .into_iter()
                .map(|s| MatrixSeries {
                    labels: s.labels,
                    floats: times(s.vals, start, step),
                    hists: times(s.hists, start, step),
                })
                .filter(|m| !m.floats.is_empty() || !m.hists.is_empty())
                .collect(),
            Val::Str(_) | Val::Matrix(_) => {
                return Err(EvalError::BadData(
                    "range queries take scalar or instant-vector expressions".into(),
                ));
            }
        };
        debug_assert!(out.iter().all(|m| m.floats.len() + m.hists.len() <= n));
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryValue::Matrix(out))
    }
}

/// Removes the names marked for removal (delayed name removal); two series
/// left with one label set at one step are an error, as in Prometheus.
fn finish(v: Val) -> Result<Val> {
    Ok(match v {
        Val::Vector(ss) if ss.iter().any(|s| s.drop) => Val::Vector(merge_same_labels(
            ss.into_iter()
                .map(|mut s| {
                    if s.drop {
                        s.labels.remove("__name__");
                        s.drop = false;
                    }
                    s
                })
                .collect(),
        )?),
        Val::Matrix(ms) => Val::Matrix(
            ms.into_iter()
                .map(|mut s| {
                    if s.drop {
                        s.labels.remove("__name__");
                    }
                    s
                })
                .collect(),
        ),
        v => v,
    })
}

fn type_word(e: &Expr) -> &'static str {
    match e.value_type() {
        promql_parser::parser::value::ValueType::Matrix => "range vector",
        promql_parser::parser::value::ValueType::String => "string",
        promql_parser::parser::value::ValueType::Scalar => "scalar",
        promql_parser::parser::value::ValueType::Vector => "instant vector",
    }
}

/// A value over the step grid.
pub(super) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
    /// Series with an optional value per step.
    Vector(Vec<SSeries>),
    /// Raw samples of a range vector at the (single) step of an instant query.
    Matrix(Vec<RangeSeries>),
}

/// An instant-vector series over the step grid: at each step a float, a
/// histogram or nothing.
#[derive(Debug, Clone)]
pub(super) struct SSeries {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
    /// The histogram at each step; empty when there are none (most series).
    pub hists: Vec<Option<Arc<FloatHistogram>>>,
    /// `__name__` is to be removed from the result (delayed name removal).
    pub drop: bool,
}

impl SSeries {
    pub(super) fn new(labels: Labels, vals: Vec<Option<f64>>) -> SSeries {
        SSeries {
            labels,
            vals,
            hists: Vec::new(),
            drop: false,
        }
    }

    /// A series with nothing at any of `n` steps.
    pub(super) fn empty(labels: Labels, n: usize, drop: bool) -> SSeries {
        SSeries {
            labels,
            vals: vec![None; n],
            hists: Vec::new(),
            drop,
        }
    }

    /// The histogram at step `i`, if there is one.
    pub(super) fn hist(&self, i: usize) -> Option<&Arc<FloatHistogram>> {
        self.hists.get(i).and_then(Option::as_ref)
    }

    /// Puts a histogram (or nothing) at step `i`, where there is no float.
    pub(super) fn set_hist(&mut self, i: usize, h: Option<Arc<FloatHistogram>>) {
        if h.is_none() && self.hists.is_empty() {
            return;
        }
        if self.hists.is_empty() {
            self.hists = vec![None; self.vals.len()];
        }
        self.hists[i] = h;
    }

    /// Whether there is a sample of either kind at step `i`.
    pub(super) fn has(&self, i: usize) -> bool {
        self.vals[i].is_some() || self.hist(i).is_some()
    }

    /// Whether there is a sample at any step.
    pub(super) fn any(&self) -> bool {
        self.vals.iter().any(Option::is_some) || self.hists.iter().any(Option::is_some)
    }

    /// The sample at step `i`.
    pub(super) fn sample(&self, i: usize) -> Option<Sample> {
        match (self.vals[i], self.hist(i)) {
            (Some(v), _) => Some(Sample::F(v)),
            (None, Some(h)) => Some(Sample::H(h.clone())),
            _ => None,
        }
    }

    /// Puts `v` (or nothing) at step `i`.
    pub(super) fn set(&mut self, i: usize, v: Option<Sample>) {
        match v {
            Some(Sample::F(f)) => {
                self.vals[i] = Some(f);
                self.set_hist(i, None);
            }
            Some(Sample::H(h)) => {
                self.vals[i] = None;
                self.set_hist(i, Some(h));
            }
            None => {
                self.vals[i] = None;
                self.set_hist(i, None);
            }
        }
    }

    /// Drops the metric name, now or (delayed) from the result.
    pub(super) fn drop_name(&mut self, delayed: bool) {
        if delayed {
            self.drop = self.labels.contains_key("__name__");
        } else {
            self.labels.remove("__name__");
        }
    }
}

/// A series of raw points, floats and histograms each sorted by time.
#[derive(Debug, Clone)]
pub(super) struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
    pub hpoints: Vec<(i64, Arc<FloatHistogram>)>,
    pub drop: bool,
}

/// Where the windows of a range vector sit relative to the steps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

/// The step grid and time limit of an evaluation: what per-series work
/// needs, shareable across threads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
    pub delayed_name_removal: bool,
    deadline: Option<Instant>,
}

impl Grid {
    pub(super) fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub(super) fn ref_time(&self, i: usize, w: &Window) -> i64 {
        w.at.unwrap_or_else(|| self.ts(i)) - w.offset
    }

    pub(super) fn check(&self, what: &'static str) -> Result<()> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(EvalError::Timeout(what)),
            _ => Ok(()),
        }
    }
}

/// The evaluation of one query (or subquery) over its step grid.
pub(super) struct Ev<'a> {
    pub eng: &'a Engine,
    q: &'a dyn Queryable,
    pub start: i64,
    pub step: i64,
    pub n: usize,
    /// The outer query's start and end, for `@ start()` and `@ end()`.
    qstart: i64,
    qend: i64,
    deadline: Option<Instant>,
    samples: &'a Cell<usize>,
}

impl<'a> Ev<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        eng: &'a Engine,
        q: &'a dyn Queryable,
        start: i64,
        end: i64,
        step: i64,
        qstart: i64,
        qend: i64,
        samples: &'a Cell<usize>,
    ) -> Ev<'a> {
        let step = step.max(1);
        Ev {
            eng,
            q,
            start,
            step,
            n: ((end - start) / step + 1).max(1) as usize,
            qstart,
            qend,
            deadline: eng.timeout.map(|d| Instant::now() + d),
            samples,
        }
    }

    pub(super) fn grid(&self) -> Grid {
        Grid {
            start: self.start,
            step: self.step,
            n: self.n,
            delayed_name_removal: self.eng.delayed_name_removal,
            deadline: self.deadline,
        }
    }

    /// The time of step `i`.
    pub(super) fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub(super) fn check(&self, what: &'static str) -> Result<()> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(EvalError::Timeout(what)),
            _ => Ok(()),
        }
    }

    fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            AtModifier::Start => self.qstart,
            AtModifier::End => self.qend,
            AtModifier::At(t) => system_time_ms(*t),
        })
    }

    /// The time a selector reads at, for step `i`.
    pub(super) fn ref_time(&self, i: usize, w: &Window) -> i64 {
        w.at.unwrap_or_else(|| self.ts(i)) - w.offset
    }

    pub(super) fn eval(&self, e: &Expr) -> Result<Val> {
        self.check("query evaluation")?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(ss) => Ok(Val::Vector(merge_same_labels(
                    ss.into_iter()
                        .map(|mut s| {
                            s.drop_name(self.eng.delayed_name_removal);
                            s.vals.iter_mut().for_each(|v| *v = v.map(|x| -x));
                            for h in s.hists.iter_mut().flatten() {
                                Arc::make_mut(h).mul(-1.0);
                            }
                            s
                        })
                        .collect(),
                )?)),
                _ => Err(EvalError::BadData(
                    "unary expression only allowed on expressions of type scalar or instant vector"
                        .into(),
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.select_vector(vs, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let (series, w) = self.range_input(e)?;
                let r = self.ref_time(0, &w);
                let inside = |t: i64| t > r - w.range && t <= r;
                Ok(Val::Matrix(
                    series
                        .into_iter()
                        .filter_map(|s| {
                            let points: Vec<(i64, f64)> =
                                s.points.into_iter().filter(|p| inside(p.0)).collect();
                            let hpoints: Vec<_> =
                                s.hpoints.into_iter().filter(|p| inside(p.0)).collect();
                            (!points.is_empty() || !hpoints.is_empty()).then_some(RangeSeries {
                                labels: s.labels,
                                points,
                                hpoints,
                                drop: s.drop,
                            })
                        })
                        .collect(),
                ))
            }
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => super::funcs::call(self, c),
            Expr::Extension(_) => Err(EvalError::BadData("unsupported expression".into())),
        }
    }

    pub(super) fn eval_vector(&self, e: &Expr, what: &str) -> Result<Vec<SSeries>> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(EvalError::BadData(format!(
                "expected type instant vector in {what}, got {}",
                type_word(e)
            ))),
        }
    }

    pub(super) fn eval_scalar(&self, e: &Expr, what: &str) -> Result<Vec<f64>> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(EvalError::BadData(format!(
                "expected type scalar in {what}, got {}",
                type_word(e)
            ))),
        }
    }

    pub(super) fn eval_string(&self, e: &Expr, what: &str) -> Result<String> {
        match self.eval(e)? {
            Val::Str(s) => Ok(s),
            _ => Err(EvalError::BadData(format!(
                "expected type string in {what}, got {}",
                type_word(e)
            ))),
        }
    }

    /// Reads the series of a selector with samples in `[mint, maxt]`.
    fn fetch(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<RawSeries>> {
        let alternatives = super::alternatives(vs);
        let mut out: Vec<RawSeries> = Vec::new();
        // Alternatives (`{a="1" or b="2"}`) may select a series twice.
        let mut seen: HashSet<Labels> = HashSet::new();
        let several = alternatives.len() > 1;
        for ms in &alternatives {
            for s in self.q.select(ms, mint, maxt)? {
                if !several || seen.insert(s.labels.clone()) {
                    // A histogram weighs as much as its buckets.
                    let hist_weight: usize = s
                        .hists
                        .iter()
                        .map(|(_, h)| 1 + h.positive.counts.len() + h.negative.counts.len())
                        .sum();
                    self.charge(s.samples.len() + hist_weight)?;
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Counts `points` samples or step values against the query's budget
    /// (Prometheus's `query.max-samples`): what a query holds is bounded by
    /// what it reads and by series × steps of what it computes.
    pub(super) fn charge(&self, points: usize) -> Result<()> {
        let total = self.samples.get().saturating_add(points);
        self.samples.set(total);
        if total > self.eng.max_samples {
            return Err(EvalError::Execution(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        Ok(())
    }

    fn window_of(&self, offset: &Option<Offset>, at: &Option<AtModifier>, range: i64) -> Window {
        Window {
            range,
            offset: offset_ms(offset),
            at: self.at_time(at),
        }
    }

    /// An instant selector's value (or, with `times`, its sample's time in
    /// seconds) at each step: the newest sample in `(t - lookback, t]`,
    /// unless that sample is a staleness marker.
    pub(super) fn select_vector(&self, vs: &VectorSelector, times: bool) -> Result<Vec<SSeries>> {
        let w = self.window_of(&vs.offset, &vs.at, self.eng.lookback_ms);
        let (lo, hi) = (self.ref_time(0, &w), self.ref_time(self.n - 1, &w));
        let raw = self.fetch(vs, lo - w.range + 1, hi)?;
        self.charge(raw.len().saturating_mul(self.n))?;
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            self.check("selector evaluation")?;
            let mut out_s = SSeries::empty(s.labels, self.n, false);
            let mut any = false;
            let (mut j, mut k) = (0, 0);
            for i in 0..self.n {
                let r = self.ref_time(i, &w);
                while j < s.samples.len() && s.samples[j].0 <= r {
                    j += 1;
                }
                while k < s.hists.len() && s.hists[k].0 <= r {
                    k += 1;
                }
                // The newer of the last float and the last histogram.
                let float = j.checked_sub(1).map(|j| s.samples[j]);
                let hist = k.checked_sub(1).map(|k| &s.hists[k]);
                match (float, hist) {
                    (Some((t, v)), h) if h.is_none_or(|h| h.0 < t) => {
                        // A staleness marker ends the series here.
                        let live = t > r - w.range && !is_stale(v);
                        out_s.vals[i] = live.then_some(if times { t as f64 / 1000.0 } else { v });
                        any |= live;
                    }
                    (_, Some((t, h))) => {
                        let live = *t > r - w.range;
                        if live && times {
                            out_s.vals[i] = Some(*t as f64 / 1000.0);
                        } else if live {
                            out_s.set_hist(i, Some(h.clone()));
                        }
                        any |= live;
                    }
                    _ => {}
                }
            }
            if any {
                out.push(out_s);
            }
        }
        Ok(out)
    }

    /// The points of a range vector (a matrix selector or a subquery) that
    /// any step's window needs, and where the windows sit.
    pub(super) fn range_input(&self, e: &Expr) -> Result<(Vec<RangeSeries>, Window)> {
        match e {
            Expr::Paren(p) => self.range_input(&p.expr),
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let w = self.window_of(&vs.offset, &vs.at, duration_ms(ms.range));
                let (lo, hi) = (self.ref_time(0, &w), self.ref_time(self.n - 1, &w));
                let raw = self.fetch(vs, lo - w.range + 1, hi)?;
                Ok((
                    raw.into_iter()
                        .map(|s| {
                            let mut points = s.samples;
                            points.retain(|(_, v)| !is_stale(*v));
                            RangeSeries {
                                labels: s.labels,
                                points,
                                hpoints: s.hists,
                                drop: false,
                            }
                        })
                        .collect(),
                    w,
                ))
            }
            Expr::Subquery(sq) => {
                let w = self.window_of(&sq.offset, &sq.at, duration_ms(sq.range));
                let step = sq
                    .step
                    .map(duration_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(self.eng.subquery_step_ms);
                let (lo, hi) = (self.ref_time(0, &w), self.ref_time(self.n - 1, &w));
                // The first step-aligned time after the first window's start
                // (integer division truncates, as in Go).
                let first = lo - w.range;
                let mut start = step * (first / step);
                if start <= first {
                    start += step;
                }
                if start > hi {
                    return Ok((Vec::new(), w));
                }
                let inner = Ev {
                    eng: self.eng,
                    q: self.q,
                    start,
                    step,
                    n: ((hi - start) / step + 1) as usize,
                    qstart: self.qstart,
                    qend: self.qend,
                    deadline: self.deadline,
                    samples: self.samples,
                };
                let series = inner.eval_vector(&sq.expr, "subquery")?;
                Ok((
                    series
                        .into_iter()
                        .map(|s| RangeSeries {
                            drop: s.drop,
                            points: s
                                .vals
                                .iter()
                                .enumerate()
                                .filter_map(|(i, v)| v.map(|v| (inner.ts(i), v)))
                                .collect(),
                            hpoints: s
                                .hists
                                .into_iter()
                                .enumerate()
                                .filter_map(|(i, h)| h.map(|h| (inner.ts(i), h)))
                                .collect(),
                            labels: s.labels,
                        })
                        .collect(),
                    w,
                ))
            }
            _ => Err(EvalError::BadData(format!(
                "expected type range vector, got {}",
                type_word(e)
            ))),
        }
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Val> {
        let op = b.op.id();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        let return_bool = b.return_bool();
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.into_iter()
                    .zip(r)
                    .map(|(a, c)| {
                        let (v, keep) = elem_binop(op, a, c);
                        if is_comparison(op) {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            // Dropping the name can leave two series with one label set.
            (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(merge_same_labels(vector_scalar(
                op,
                v,
                &s,
                false,
                return_bool,
                self.eng.delayed_name_removal,
            ))?)),
            (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(merge_same_labels(vector_scalar(
                op,
                v,
                &s,
                true,
                return_bool,
                self.eng.delayed_name_removal,
            ))?)),
            (Val::Vector(l), Val::Vector(r)) => {
                if is_set_op(op) {
                    Ok(Val::Vector(self.set_op(op, l, r, b)?))
                } else {
                    Ok(Val::Vector(self.vector_vector(op, l, r, b)?))
                }
            }
            _ => Err(EvalError::BadData(
                "binary expressions take scalars and instant vectors".into(),
            )),
        }
    }

    fn set_op(
        &self,
        op: TokenId,
        l: Vec<SSeries>,
        r: Vec<SSeries>,
        b: &BinaryExpr,
    ) -> Result<Vec<SSeries>> {
        let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
        let ls: Vec<String> = l.iter().map(|s| signature(&s.labels, &matching)).collect();
        let rs: Vec<String> = r.iter().map(|s| signature(&s.labels, &matching)).collect();
        let mut out_l = l;
        let mut out_r: Vec<SSeries> = Vec::new();
        for i in 0..self.n {
            let present = |ss: &[SSeries], sigs: &[String]| -> HashSet<String> {
                ss.iter()
                    .zip(sigs)
                    .filter(|(s, _)| s.has(i))
                    .map(|(_, g)| g.clone())
                    .collect()
            };
            match op {
                T_LAND => {
                    let right = present(&r, &rs);
                    for (s, g) in out_l.iter_mut().zip(&ls) {
                        if !right.contains(g) {
                            s.set(i, None);
                        }
                    }
                }
                T_LUNLESS => {
                    let right = present(&r, &rs);
                    for (s, g) in out_l.iter_mut().zip(&ls) {
                        if right.contains(g) {
                            s.set(i, None);
                        }
                    }
                }
                _ => {
                    // or: the left side, then right series whose match
                    // group the left side lacks at this step.
                    let left = present(&out_l, &ls);
                    if out_r.is_empty() {
                        out_r = r
                            .iter()
                            .map(|s| SSeries::empty(s.labels.clone(), self.n, s.drop))
                            .collect();
                    }
                    for ((o, s), g) in out_r.iter_mut().zip(&r).zip(&rs) {
                        if !left.contains(g) {
                            o.set(i, s.sample(i));
                        }
                    }
                }
            }
        }
        out_l.extend(out_r);
        merge_same_labels(out_l)
    }

    fn vector_vector(
        &self,
        op: TokenId,
        l: Vec<SSeries>,
        r: Vec<SSeries>,
        b: &BinaryExpr,
    ) -> Result<Vec<SSeries>> {
        let (card, matching, return_bool) = match &b.modifier {
            Some(m) => (m.card.clone(), m.matching.clone(), m.return_bool),
            None => (VectorMatchCardinality::OneToOne, None, false),
        };
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
        // The "one" side is always on the right.
        let (many, one) = if one_to_many { (r, l) } else { (l, r) };
        let many_sigs: Vec<String> = many
            .iter()
            .map(|s| signature(&s.labels, &matching))
            .collect();
        let one_sigs: Vec<String> = one
            .iter()
            .map(|s| signature(&s.labels, &matching))
            .collect();
        let mut out: Vec<SSeries> = Vec::new();
        let mut out_index: HashMap<Labels, usize> = HashMap::new();
        let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
        for i in 0..self.n {
            self.check("binary operation")?;
            let mut right: HashMap<&str, usize> = HashMap::new();
            for (j, s) in one.iter().enumerate() {
                if !s.has(i) {
                    continue;
                }
                if let Some(&prev) = right.get(one_sigs[j].as_str()) {
                    let side = if one_to_many { "left" } else { "right" };
                    return Err(EvalError::Execution(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        match_group(&s.labels, &matching),
                        labels_string(&s.labels),
                        labels_string(&one[prev].labels)
                    )));
                }
                right.insert(one_sigs[j].as_str(), j);
            }
            let mut matched: HashMap<&str, HashSet<usize>> = HashMap::new();
            let mut step_out: HashSet<usize> = HashSet::new();
            for (k, s) in many.iter().enumerate() {
                let Some(mv) = s.sample(i) else { continue };
                let Some(&j) = right.get(many_sigs[k].as_str()) else {
                    continue;
                };
                let Some(ov) = one[j].sample(i) else { continue };
                let (fl, fr) = if one_to_many { (ov, mv) } else { (mv, ov) };
                let Some(v) = sample_binop(op, fl, fr, return_bool) else {
                    continue;
                };
                let o = match pair_out.get(&(k, j)) {
                    Some(&o) => o,
                    None => {
                        let delayed = self.eng.delayed_name_removal;
                        let (labels, drop) = result_labels(
                            &s.labels,
                            &one[j].labels,
                            op,
                            &card,
                            &matching,
                            &include,
                            return_bool,
                            delayed,
                        );
                        let o = match out_index.get(&labels) {
                            Some(&o) => o,
                            None => {
                                self.charge(self.n)?;
                                out.push(SSeries::empty(labels.clone(), self.n, drop));
                                out_index.insert(labels, out.len() - 1);
                                out.len() - 1
                            }
                        };
                        pair_out.insert((k, j), o);
                        o
                    }
                };
                let seen = matched.entry(many_sigs[k].as_str()).or_default();
                if matches!(card, VectorMatchCardinality::OneToOne) {
                    if !seen.is_empty() {
                        return Err(EvalError::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                } else if seen.contains(&o) {
                    return Err(EvalError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                seen.insert(o);
                if !step_out.insert(o) {
                    return Err(EvalError::Execution(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
                out[o].set(i, Some(v));
            }
        }
        Ok(out)
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Val> {
        let op = a.op.id();
        let input = self.eval_vector(&a.expr, "aggregation")?;
        let group_labels = |l: &Labels| kept_labels(l, &a.modifier, false);
        let mut groups: Vec<Labels> = Vec::new();
        let mut group_of: Vec<usize> = Vec::with_capacity(input.len());
        // Delayed name removal: a group kept by `__name__` drops the name from
        // the result if any of its series would have.
        let mut group_drop: Vec<bool> = Vec::new();
        {
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for s in &input {
                let g = group_labels(&s.labels);
                let gi = *index.entry(g.clone()).or_insert_with(|| {
                    groups.push(g);
                    group_drop.push(false);
                    groups.len() - 1
                });
                group_drop[gi] |= s.drop;
                group_of.push(gi);
            }
        }
        let dropped = |g: usize, labels: &Labels| group_drop[g] && labels.contains_key("__name__");
        self.charge(groups.len().saturating_mul(self.n))?;
        match op {
            T_LIMITK => {
                let k = self.eval_scalar(
                    a.param.as_deref().ok_or_else(|| missing_param(op))?,
                    "limitk",
                )?;
                // Each group's first k series with a sample at the step, in
                // input order; samples of either kind, unchanged.
                let mut out: Vec<SSeries> = input
                    .iter()
                    .map(|s| SSeries::empty(s.labels.clone(), self.n, s.drop))
                    .collect();
                for (i, &kf) in k.iter().enumerate() {
                    let k = topk_param(kf)?;
                    let mut taken = vec![0usize; groups.len()];
                    for (j, s) in input.iter().enumerate() {
                        let g = group_of[j];
                        if taken[g] < k && s.has(i) {
                            out[j].set(i, s.sample(i));
                            taken[g] += 1;
                        }
                    }
                }
                out.retain(SSeries::any);
                Ok(Val::Vector(out))
            }
            T_LIMIT_RATIO => Err(EvalError::BadData("limit_ratio is not supported".into())),
            T_TOPK | T_BOTTOMK => {
                let k =
                    self.eval_scalar(a.param.as_deref().ok_or_else(|| missing_param(op))?, "topk")?;
                self.topk(op == T_TOPK, input, &group_of, groups.len(), &k)
            }
            T_COUNT_VALUES => {
                let label = self.eval_string(
                    a.param.as_deref().ok_or_else(|| missing_param(op))?,
                    "count_values",
                )?;
                if !crate::promnames::is_valid_label_name(&label) {
                    return Err(EvalError::Execution(format!(
                        "invalid label name {label:?}"
                    )));
                }
                let mut out: Vec<SSeries> = Vec::new();
                let mut index: HashMap<Labels, usize> = HashMap::new();
                for i in 0..self.n {
                    for (s, &g) in input.iter().zip(&group_of) {
                        let Some(v) = s.vals[i] else { continue };
                        let mut l = groups[g].clone();
                        l.insert(label.clone(), super::format_value(v));
                        let o = *index.entry(l.clone()).or_insert_with(|| {
                            let drop = dropped(g, &l);
                            out.push(SSeries::empty(l, self.n, drop));
                            out.len() - 1
                        });
                        *out[o].vals[i].get_or_insert(0.0) += 1.0;
                    }
                }
                Ok(Val::Vector(out))
            }
            _ => {
                let param = match (op, a.param.as_deref()) {
                    (T_QUANTILE, Some(p)) => Some(self.eval_scalar(p, "quantile")?),
                    (T_QUANTILE, None) => return Err(missing_param(op)),
                    _ => None,
                };
                let mut out: Vec<SSeries> = groups
                    .into_iter()
                    .enumerate()
                    .map(|(g, labels)| {
                        let drop = dropped(g, &labels);
                        SSeries::empty(labels, self.n, drop)
                    })
                    .collect();
                // Histograms: summed (and averaged) per group and step, and
                // counted; the other aggregations take floats only.
                let hist_aggs = if input.iter().any(|s| !s.hists.is_empty()) {
                    Some(self.aggregate_histograms(op, &input, &group_of, out.len())?)
                } else {
                    None
                };
                // Series by series into one accumulator per group and step
                // (each series' values are contiguous), when that fits.
                if op != T_QUANTILE && out.len().saturating_mul(self.n) <= SERIES_MAJOR_ACCS {
                    let n = self.n;
                    let mut accs = vec![Acc::default(); out.len() * n];
                    for (s, &g) in input.iter().zip(&group_of) {
                        self.check("aggregation")?;
                        let row = &mut accs[g * n..(g + 1) * n];
                        for (acc, v) in row.iter_mut().zip(&s.vals) {
                            if let Some(v) = *v {
                                acc.add(op, v);
                            }
                        }
                    }
                    for (g, o) in out.iter_mut().enumerate() {
                        for (slot, acc) in o.vals.iter_mut().zip(&accs[g * n..(g + 1) * n]) {
                            if acc.count > 0.0 {
                                *slot = Some(acc.result(op));
                            }
                        }
                    }
                    if let Some(h) = hist_aggs {
                        merge_histogram_aggs(op, &mut out, h);
                    }
                    return Ok(Val::Vector(out));
                }
                let mut accs: Vec<Acc> = Vec::new();
                let mut values: Vec<Vec<f64>> = Vec::new();
                for i in 0..self.n {
                    self.check("aggregation")?;
                    accs.clear();
                    accs.resize(out.len(), Acc::default());
                    if op == T_QUANTILE {
                        values.iter_mut().for_each(Vec::clear);
                        values.resize(out.len(), Vec::new());
                    }
                    for (s, &g) in input.iter().zip(&group_of) {
                        let Some(v) = s.vals[i] else { continue };
                        if op == T_QUANTILE {
                            values[g].push(v);
                        }
                        accs[g].add(op, v);
                    }
                    for (g, acc) in accs.iter().enumerate() {
                        if acc.count == 0.0 {
                            continue;
                        }
                        out[g].vals[i] = Some(match op {
                            T_QUANTILE => {
                                let q = param.as_ref().map_or(f64::NAN, |p| p[i]);
                                quantile(q, &mut values[g])
                            }
                            _ => acc.result(op),
                        });
                    }
                }
                if let Some(h) = hist_aggs {
                    merge_histogram_aggs(op, &mut out, h);
                }
                Ok(Val::Vector(out))
            }
        }
    }

    /// Sums and counts the histograms of each group at each step, for
    /// `sum`, `avg`, `count` and `group` (the other aggregations ignore
    /// histograms).
    fn aggregate_histograms(
        &self,
        op: TokenId,
        input: &[SSeries],
        group_of: &[usize],
        ngroups: usize,
    ) -> Result<Vec<HistAcc>> {
        if !matches!(op, T_SUM | T_AVG | T_COUNT | T_GROUP) {
            return Ok(Vec::new());
        }
        let n = self.n;
        let mut accs: Vec<HistAcc> = vec![HistAcc::default(); ngroups * n];
        for (s, &g) in input.iter().zip(group_of) {
            self.check("aggregation")?;
            for (i, h) in s.hists.iter().enumerate() {
                let Some(h) = h else { continue };
                let acc = &mut accs[g * n + i];
                acc.count += 1;
                if !matches!(op, T_SUM | T_AVG) || acc.incompatible {
                    continue;
                }
                match &mut acc.sum {
                    None => acc.sum = Some((**h).clone()),
                    Some(sum) => acc.incompatible = sum.add(h).is_err(),
                }
            }
        }
        Ok(accs)
    }

    fn topk(
        &self,
        top: bool,
        input: Vec<SSeries>,
        group_of: &[usize],
        ngroups: usize,
        k: &[f64],
    ) -> Result<Val> {
        let mut chosen: Vec<Vec<Option<f64>>> = vec![vec![None; self.n]; input.len()];
        // For instant queries, the output order Prometheus gives: by group,
        // then by value.
        let mut order: Vec<usize> = Vec::new();
        for i in 0..self.n {
            let k = topk_param(k[i])?;
            if k == 0 {
                continue;
            }
            let mut per_group: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ngroups];
            for (j, s) in input.iter().enumerate() {
                if let Some(v) = s.vals[i] {
                    per_group[group_of[j]].push((j, v));
                }
            }
            for cands in per_group.iter_mut() {
                // NaN ranks below every number in both topk and bottomk.
                cands.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => {
                        if top {
                            b.1.total_cmp(&a.1)
                        } else {
                            a.1.total_cmp(&b.1)
                        }
                    }
                });
                for &(j, v) in cands.iter().take(k) {
                    chosen[j][i] = Some(v);
                    if self.n == 1 {
                        order.push(j);
                    }
                }
            }
        }
        let mut input: Vec<Option<SSeries>> = input.into_iter().map(Some).collect();
        let mut out = Vec::new();
        if self.n == 1 {
            for j in order {
                if let Some(mut s) = input[j].take() {
                    s.vals = std::mem::take(&mut chosen[j]);
                    out.push(s);
                }
            }
        } else {
            for (j, s) in input.into_iter().enumerate() {
                if let Some(mut s) = s
                    && chosen[j].iter().any(Option::is_some)
                {
                    s.vals = std::mem::take(&mut chosen[j]);
                    out.push(s);
                }
            }
        }
        Ok(Val::Vector(out))
    }
}

/// The histograms of one group at one step.
#[derive(Debug, Clone, Default)]
struct HistAcc {
    count: usize,
    sum: Option<FloatHistogram>,
    /// Two of them could not be added (custom and exponential buckets).
    incompatible: bool,
}

/// Puts the histogram aggregates of [`Ev::aggregate_histograms`] into the
/// float results: a group with floats and histograms at one step has no
/// sum or average there, as in Prometheus.
fn merge_histogram_aggs(op: TokenId, out: &mut [SSeries], accs: Vec<HistAcc>) {
    if accs.is_empty() {
        return;
    }
    let n = out.first().map_or(0, |s| s.vals.len());
    for (k, acc) in accs.into_iter().enumerate() {
        if acc.count == 0 {
            continue;
        }
        let (g, i) = (k / n, k % n);
        let o = &mut out[g];
        match op {
            T_COUNT => o.vals[i] = Some(o.vals[i].unwrap_or(0.0) + acc.count as f64),
            T_GROUP => o.vals[i] = Some(1.0),
            _ => {
                if o.vals[i].is_some() || acc.incompatible {
                    o.vals[i] = None;
                    continue;
                }
                if let Some(mut h) = acc.sum {
                    if op == T_AVG {
                        h.div(acc.count as f64);
                    }
                    h.compact();
                    o.set_hist(i, Some(Arc::new(h)));
                }
            }
        }
    }
}

/// `lhs op rhs` over samples of either kind, as Prometheus's
/// `vectorElemBinop`: histograms add and subtract, scale by a float
/// (`*`, and `/` with the histogram on the left), and compare for
/// (in)equality; every other mix has no result.
fn sample_binop(op: TokenId, l: Sample, r: Sample, return_bool: bool) -> Option<Sample> {
    let truth = |keep: bool, kept: Sample| -> Option<Sample> {
        if return_bool {
            Some(Sample::F(if keep { 1.0 } else { 0.0 }))
        } else {
            keep.then_some(kept)
        }
    };
    let scaled = |h: &FloatHistogram, f: f64, div: bool| {
        let mut h = h.clone();
        if div {
            h.div(f);
        } else {
            h.mul(f);
        }
        Some(Sample::H(Arc::new(h)))
    };
    match (l, r) {
        (Sample::F(a), Sample::F(b)) => {
            let (v, keep) = elem_binop(op, a, b);
            if is_comparison(op) {
                truth(keep, Sample::F(v))
            } else {
                Some(Sample::F(v))
            }
        }
        (Sample::H(a), Sample::H(b)) => match op {
            T_ADD | T_SUB => {
                let mut h = (*a).clone();
                let ok = if op == T_ADD { h.add(&b) } else { h.sub(&b) };
                ok.ok()?;
                h.compact();
                Some(Sample::H(Arc::new(h)))
            }
            T_EQLC | T_NEQ => {
                let same = a.same_as(&b);
                truth(same == (op == T_EQLC), Sample::H(a))
            }
            _ => None,
        },
        (Sample::H(h), Sample::F(f)) => match op {
            T_MUL => scaled(&h, f, false),
            T_DIV => scaled(&h, f, true),
            _ => None,
        },
        (Sample::F(f), Sample::H(h)) => match op {
            T_MUL => scaled(&h, f, false),
            _ => None,
        },
    }
}

/// Most accumulators (groups × steps) an aggregation keeps at once to go
/// series by series (about 40 MB).
const SERIES_MAJOR_ACCS: usize = 1 << 20;

/// The `k` of `topk`, `bottomk` and `limitk` at one step (0 below 1).
fn topk_param(kf: f64) -> Result<usize> {
    if kf.is_nan() {
        return Err(EvalError::Execution("Parameter value is NaN".into()));
    }
    if kf >= 9.2e18 {
        return Err(EvalError::Execution(format!(
            "Scalar value {kf} overflows int64"
        )));
    }
    Ok(if kf < 1.0 { 0 } else { kf as usize })
}

fn missing_param(op: TokenId) -> EvalError {
    EvalError::BadData(format!(
        "aggregation {} needs a parameter",
        promql_parser::parser::token::TokenType::new(op)
    ))
}

/// A running aggregate over one group at one step, computed as Prometheus
/// does (Kahan summation; the mean switches to incremental form when the
/// sum would overflow).
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    count: f64,
    value: f64,
    kahan: f64,
    mean: f64,
    incremental: bool,
}

impl Acc {
    fn add(&mut self, op: TokenId, f: f64) {
        let first = self.count == 0.0;
        self.count += 1.0;
        if first {
            self.value = f;
            self.mean = f;
            self.kahan = 0.0;
            if matches!(op, T_STDDEV | T_STDVAR) {
                self.value = 0.0;
            }
            return;
        }
        match op {
            T_SUM => (self.value, self.kahan) = kahan_sum_inc(f, self.value, self.kahan),
            T_AVG => {
                if !self.incremental {
                    let (v, c) = kahan_sum_inc(f, self.value, self.kahan);
                    if !v.is_infinite() {
                        self.value = v;
                        self.kahan = c;
                        return;
                    }
                    self.incremental = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan /= self.count - 1.0;
                }
                if self.mean.is_infinite() {
                    if f.is_infinite() && (self.mean > 0.0) == (f > 0.0) {
                        return;
                    }
                    if !f.is_infinite() && !f.is_nan() {
                        return;
                    }
                }
                let current = self.mean + self.kahan;
                (self.mean, self.kahan) =
                    kahan_sum_inc(f / self.count - current / self.count, self.mean, self.kahan);
            }
            T_MAX if self.value < f || self.value.is_nan() => self.value = f,
            T_MIN if self.value > f || self.value.is_nan() => self.value = f,
            T_STDDEV | T_STDVAR => {
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            _ => {}
        }
    }

    fn result(&self, op: TokenId) -> f64 {
        match op {
            T_SUM => self.value + self.kahan,
            T_AVG => {
                if self.incremental {
                    self.mean + self.kahan
                } else {
                    (self.value + self.kahan) / self.count
                }
            }
            T_COUNT => self.count,
            T_GROUP => 1.0,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

/// Kahan-Neumaier summation step, as Prometheus's `kahanSumInc`.
pub(super) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The φ-quantile of `values`, as Prometheus's `quantile`.
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn is_set_op(op: TokenId) -> bool {
    matches!(op, T_LAND | T_LOR | T_LUNLESS)
}

/// `lhs op rhs`: the value, and whether a comparison holds (always true
/// for arithmetic).
fn elem_binop(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<SSeries>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    delayed: bool,
) -> Vec<SSeries> {
    let cmp = is_comparison(op);
    v.into_iter()
        .filter_map(|mut series| {
            let mut any = false;
            if !series.hists.is_empty() {
                for (i, &sv) in s.iter().enumerate().take(series.vals.len()) {
                    let Some(x) = series.sample(i) else { continue };
                    let (l, r) = if swap {
                        (Sample::F(sv), x.clone())
                    } else {
                        (x.clone(), Sample::F(sv))
                    };
                    let mut v = sample_binop(op, l, r, return_bool);
                    if cmp && !return_bool && v.is_some() {
                        // A comparison filters: the vector's own value stays.
                        v = Some(x);
                    }
                    any |= v.is_some();
                    series.set(i, v);
                }
                if !cmp || return_bool {
                    series.drop_name(delayed);
                }
                return any.then_some(series);
            }
            for (i, slot) in series.vals.iter_mut().enumerate() {
                let Some(x) = *slot else { continue };
                let (l, r) = if swap { (s[i], x) } else { (x, s[i]) };
                let (mut val, keep) = elem_binop(op, l, r);
                if cmp {
                    if return_bool {
                        val = if keep { 1.0 } else { 0.0 };
                    } else if !keep {
                        *slot = None;
                        continue;
                    } else {
                        // A comparison filters: the vector's own value stays.
                        val = x;
                    }
                }
                *slot = Some(val);
                any = true;
            }
            if !cmp || return_bool {
                series.drop_name(delayed);
            }
            any.then_some(series)
        })
        .collect()
}

/// Whether label `k` is one `m` keeps: `by`/`on` keep the listed labels,
/// `without`/`ignoring` all others but `__name__`; with no modifier, all but
/// `__name__` when `none_keeps_all` (matching), else none (aggregation).
fn kept(k: &str, m: &Option<LabelModifier>, none_keeps_all: bool) -> bool {
    match m {
        Some(LabelModifier::Include(on)) => on.labels.iter().any(|x| x == k),
        Some(LabelModifier::Exclude(ign)) => k != "__name__" && !ign.labels.iter().any(|x| x == k),
        None => none_keeps_all && k != "__name__",
    }
}

/// The labels of `l` that `m` keeps (see [`kept`]).
fn kept_labels(l: &Labels, m: &Option<LabelModifier>, none_keeps_all: bool) -> Labels {
    l.iter()
        .filter(|(k, _)| kept(k, m, none_keeps_all))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels a binary operation matches series on, as one key.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> String {
    let mut s = String::new();
    for (k, v) in l.iter().filter(|(k, _)| kept(k, matching, true)) {
        s.push_str(k);
        s.push('\u{ff}');
        s.push_str(v);
        s.push('\u{fe}');
    }
    s
}

fn match_group(l: &Labels, matching: &Option<LabelModifier>) -> String {
    labels_string(&kept_labels(l, matching, true))
}

/// The labels of a binary operation's result, as Prometheus's
/// `resultMetric`, and whether its name is to be dropped from the result.
#[allow(clippy::too_many_arguments)]
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: TokenId,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
    include: &[String],
    return_bool: bool,
    delayed: bool,
) -> (Labels, bool) {
    let mut l = many.clone();
    let drop = !is_comparison(op) || return_bool;
    if drop && !delayed {
        l.remove("__name__");
    }
    if matches!(card, VectorMatchCardinality::OneToOne) {
        match matching {
            Some(LabelModifier::Include(on)) => l.retain(|k, _| on.labels.iter().any(|x| x == k)),
            Some(LabelModifier::Exclude(ign)) => {
                l.retain(|k, _| !ign.labels.iter().any(|x| x == k))
            }
            None => {}
        }
    }
    for name in include {
        match one.get(name) {
            Some(v) if !v.is_empty() => {
                l.insert(name.clone(), v.clone());
            }
            _ => {
                l.remove(name);
            }
        }
    }
    let drop = drop && delayed && l.contains_key("__name__");
    (l, drop)
}

/// Joins series that ended up with the same labels (they never have values
/// at the same step, or the operation would have failed).
pub(super) fn merge_same_labels(series: Vec<SSeries>) -> Result<Vec<SSeries>> {
    let mut out: Vec<SSeries> = Vec::with_capacity(series.len());
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in series {
        if !s.any() {
            continue;
        }
        match index.get(&s.labels) {
            Some(&o) => {
                for i in 0..s.vals.len() {
                    if let Some(v) = s.sample(i) {
                        if out[o].has(i) {
                            return Err(EvalError::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        out[o].set(i, Some(v));
                    }
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

pub(super) fn duration_ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => duration_ms(*d),
        Some(Offset::Neg(d)) => -duration_ms(*d),
        None => 0,
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}
