//! PromQL functions, each as Prometheus 3 computes it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr, VectorSelector};

use super::EvalError;
use super::Labels;
use super::eval::Sample;
use super::eval::{
    Ev, Grid, RangeSeries, SSeries, Val, Window, kahan_sum_inc, merge_same_labels, quantile,
};
use super::histogram::{FloatHistogram, ResetHint};

type Result<T> = std::result::Result<T, EvalError>;

fn arg(c: &Call, i: usize) -> Result<&Expr> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| EvalError::BadData(format!("{}: missing argument {}", c.func.name, i + 1)))
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn drop_name(mut s: SSeries, delayed: bool) -> SSeries {
    s.drop_name(delayed);
    s
}

/// Applies `f` to every float of an instant vector, dropping the metric
/// name; histogram samples are dropped, as Prometheus's float functions do.
fn map_values(
    v: Vec<SSeries>,
    delayed: bool,
    f: impl Fn(f64, usize) -> Option<f64>,
) -> Vec<SSeries> {
    v.into_iter()
        .filter_map(|mut s| {
            s.hists = Vec::new();
            let mut any = false;
            for (i, slot) in s.vals.iter_mut().enumerate() {
                if let Some(x) = *slot {
                    *slot = f(x, i);
                    any |= slot.is_some();
                }
            }
            any.then(|| drop_name(s, delayed))
        })
        .collect()
}

pub(super) fn call(ev: &Ev, c: &Call) -> Result<Val> {
    let name = c.func.name;
    let delayed = ev.eng.delayed_name_removal;
    let nargs = c.args.args.len();
    match name {
        "time" => Ok(Val::Scalar(
            (0..ev.n).map(|i| ev.ts(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; ev.n])),
        "vector" => {
            let s = ev.eval_scalar(arg(c, 0)?, name)?;
            Ok(Val::Vector(vec![SSeries::new(
                Labels::new(),
                s.into_iter().map(Some).collect(),
            )]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(c, 0)?, name)?;
            Ok(Val::Scalar(
                (0..ev.n)
                    .map(|i| {
                        let mut present = v.iter().filter_map(|s| s.vals[i]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "timestamp" => {
            let a = unwrap_parens(arg(c, 0)?);
            let v = match a {
                Expr::VectorSelector(vs) => ev.select_vector(vs, true)?,
                _ => {
                    let mut v = ev.eval_vector(a, name)?;
                    // A histogram has a timestamp too.
                    for s in &mut v {
                        for i in 0..s.vals.len() {
                            if s.hist(i).is_some() {
                                s.vals[i] = Some(0.0);
                            }
                        }
                    }
                    map_values(v, delayed, |_, i| Some(ev.ts(i) as f64 / 1000.0))
                }
            };
            Ok(Val::Vector(merge_same_labels(
                v.into_iter().map(|s| drop_name(s, delayed)).collect(),
            )?))
        }
        "absent" => {
            let a = arg(c, 0)?;
            let v = ev.eval_vector(a, name)?;
            let labels = match unwrap_parens(a) {
                Expr::VectorSelector(vs) => absent_labels(vs),
                _ => Labels::new(),
            };
            let vals: Vec<Option<f64>> = (0..ev.n)
                .map(|i| (!v.iter().any(|s| s.has(i))).then_some(1.0))
                .collect();
            Ok(Val::Vector(absent_result(labels, vals)))
        }
        "absent_over_time" => {
            let a = arg(c, 0)?;
            let (series, w) = ev.range_input(a)?;
            let labels = match unwrap_parens(a) {
                Expr::MatrixSelector(ms) => absent_labels(&ms.vs),
                _ => Labels::new(),
            };
            let mut present = vec![false; ev.n];
            let g = ev.grid();
            for s in &series {
                for_each_window(&g, &s.points, &w, |i, lo, hi| {
                    if lo < hi {
                        present[i] = true;
                    }
                });
                for_each_window(&g, &s.hpoints, &w, |i, lo, hi| {
                    if lo < hi {
                        present[i] = true;
                    }
                });
            }
            let vals = present.into_iter().map(|p| (!p).then_some(1.0)).collect();
            Ok(Val::Vector(absent_result(labels, vals)))
        }
        "label_replace" => {
            let v = ev.eval_vector(arg(c, 0)?, name)?;
            let dst = ev.eval_string(arg(c, 1)?, name)?;
            let repl = ev.eval_string(arg(c, 2)?, name)?;
            let src = ev.eval_string(arg(c, 3)?, name)?;
            let re_src = ev.eval_string(arg(c, 4)?, name)?;
            let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
                EvalError::Execution(format!(
                    "invalid regular expression in label_replace(): {re_src}: {e}"
                ))
            })?;
            check_destination(&dst, name)?;
            let out = v
                .into_iter()
                .map(|mut s| {
                    let value = s.labels.get(&src).cloned().unwrap_or_default();
                    if let Some(caps) = re.captures(&value) {
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        set_label(&mut s, &dst, res);
                    }
                    s
                })
                .collect();
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        "label_join" => {
            let v = ev.eval_vector(arg(c, 0)?, name)?;
            let dst = ev.eval_string(arg(c, 1)?, name)?;
            let sep = ev.eval_string(arg(c, 2)?, name)?;
            let mut srcs = Vec::new();
            for i in 3..nargs {
                srcs.push(ev.eval_string(arg(c, i)?, name)?);
            }
            check_destination(&dst, name)?;
            let out = v
                .into_iter()
                .map(|mut s| {
                    let joined = srcs
                        .iter()
                        .map(|k| s.labels.get(k).map_or("", String::as_str))
                        .collect::<Vec<_>>()
                        .join(&sep);
                    set_label(&mut s, &dst, joined);
                    s
                })
                .collect();
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(c, 0)?, name)?;
            let desc = name == "sort_desc";
            // Only an instant query's order is visible; NaN goes last.
            v.sort_by(|a, b| {
                let (x, y) = (a.vals[0].unwrap_or(f64::NAN), b.vals[0].unwrap_or(f64::NAN));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if desc => y.total_cmp(&x),
                    _ => x.total_cmp(&y),
                }
            });
            Ok(Val::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(arg(c, 0)?, name)?;
            let mut keys = Vec::new();
            for i in 1..nargs {
                keys.push(ev.eval_string(arg(c, i)?, name)?);
            }
            v.sort_by(|a, b| {
                let mut o = Ordering::Equal;
                for k in &keys {
                    let x = a.labels.get(k).map_or("", String::as_str);
                    let y = b.labels.get(k).map_or("", String::as_str);
                    if x != y {
                        o = natural_cmp(x, y);
                        break;
                    }
                }
                let o = o.then_with(|| a.labels.cmp(&b.labels));
                if name == "sort_by_label_desc" {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Val::Vector(v))
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(c, 0)?, name)?;
            let v = ev.eval_vector(arg(c, 1)?, name)?;
            Ok(Val::Vector(merge_same_labels(histogram_quantile(
                ev, &q, v, delayed,
            ))?))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" | "histogram_fraction" => {
            // These read native histograms only; floats are ignored.
            let (bounds, v) = if name == "histogram_fraction" {
                let lo = ev.eval_scalar(arg(c, 0)?, name)?;
                let hi = ev.eval_scalar(arg(c, 1)?, name)?;
                (Some((lo, hi)), ev.eval_vector(arg(c, 2)?, name)?)
            } else {
                (None, ev.eval_vector(arg(c, 0)?, name)?)
            };
            let f = |h: &FloatHistogram, i: usize| -> f64 {
                match name {
                    "histogram_count" => h.count,
                    "histogram_sum" => h.sum,
                    "histogram_avg" => h.sum / h.count,
                    "histogram_stddev" => h.variance().sqrt(),
                    "histogram_stdvar" => h.variance(),
                    _ => {
                        let (lo, hi) = bounds
                            .as_ref()
                            .map_or((f64::NAN, f64::NAN), |b| (b.0[i], b.1[i]));
                        h.fraction(lo, hi)
                    }
                }
            };
            let out = v
                .into_iter()
                .filter(|s| !s.hists.is_empty())
                .map(|s| {
                    let vals = (0..ev.n).map(|i| s.hist(i).map(|h| f(h, i))).collect();
                    let mut o = SSeries::new(s.labels, vals);
                    o.drop = s.drop;
                    drop_name(o, delayed)
                })
                .collect();
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.eval_vector(arg(c, 0)?, name)?;
            let p1 = ev.eval_scalar(arg(c, 1)?, name)?;
            let p2 = if name == "clamp" {
                Some(ev.eval_scalar(arg(c, 2)?, name)?)
            } else {
                None
            };
            Ok(Val::Vector(map_values(v, delayed, |x, i| match name {
                "clamp" => {
                    let (lo, hi) = (p1[i], p2.as_ref().map_or(f64::NAN, |p| p[i]));
                    (hi >= lo || lo.is_nan() || hi.is_nan()).then(|| go_max(lo, go_min(hi, x)))
                }
                "clamp_min" => Some(go_max(x, p1[i])),
                _ => Some(go_min(x, p1[i])),
            })))
        }
        "round" => {
            let v = ev.eval_vector(arg(c, 0)?, name)?;
            let to = if nargs > 1 {
                ev.eval_scalar(arg(c, 1)?, name)?
            } else {
                vec![1.0; ev.n]
            };
            Ok(Val::Vector(map_values(v, delayed, |x, i| {
                let inv = 1.0 / to[i];
                Some((x * inv + 0.5).floor() / inv)
            })))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if nargs == 0 {
                vec![SSeries::new(
                    Labels::new(),
                    (0..ev.n).map(|i| Some(ev.ts(i) as f64 / 1000.0)).collect(),
                )]
            } else {
                ev.eval_vector(arg(c, 0)?, name)?
            };
            Ok(Val::Vector(map_values(v, delayed, |x, _| {
                Some(date_part(name, x))
            })))
        }
        "holt_winters" => Err(EvalError::BadData(
            "unknown function with name \"holt_winters\" (Prometheus 3 removed it)".into(),
        )),
        "rate"
        | "irate"
        | "increase"
        | "delta"
        | "idelta"
        | "deriv"
        | "predict_linear"
        | "avg_over_time"
        | "min_over_time"
        | "max_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "quantile_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "present_over_time"
        | "changes"
        | "resets"
        | "first_over_time"
        | "mad_over_time"
        | "ts_of_first_over_time"
        | "ts_of_last_over_time"
        | "ts_of_max_over_time"
        | "ts_of_min_over_time"
        | "double_exponential_smoothing" => range_call(ev, c),
        _ => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => |x| x * 180.0 / std::f64::consts::PI,
                "rad" => |x| x * std::f64::consts::PI / 180.0,
                _ => {
                    return Err(EvalError::BadData(format!(
                        "function {name:?} is not supported"
                    )));
                }
            };
            let v = ev.eval_vector(arg(c, 0)?, name)?;
            Ok(Val::Vector(merge_same_labels(map_values(
                v,
                delayed,
                |x, _| Some(f(x)),
            ))?))
        }
    }
}

/// `label_replace`/`label_join` write `value` to `dst` (an empty value
/// removes it); a name written so is the result's, not to be dropped.
fn set_label(s: &mut SSeries, dst: &str, value: String) {
    if value.is_empty() {
        s.labels.remove(dst);
    } else {
        s.labels.insert(dst.to_owned(), value);
    }
    if dst == "__name__" {
        s.drop = false;
    }
}

fn check_destination(dst: &str, func: &str) -> Result<()> {
    if crate::promnames::is_valid_label_name(dst) {
        Ok(())
    } else {
        Err(EvalError::Execution(format!(
            "invalid destination label name in {func}(): {dst}"
        )))
    }
}

/// Go's `math.Max`: NaN wins, except that +Inf beats everything.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins, except that -Inf beats everything.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let Some(t) = DateTime::from_timestamp(secs as i64, 0) else {
        return f64::NAN;
    };
    match name {
        "day_of_month" => t.day() as f64,
        "day_of_week" => t.weekday().num_days_from_sunday() as f64,
        "day_of_year" => t.ordinal() as f64,
        "days_in_month" => {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 {
                chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
            };
            match (next, chrono::NaiveDate::from_ymd_opt(y, m, 1)) {
                (Some(n), Some(f)) => (n - f).num_days() as f64,
                _ => f64::NAN,
            }
        }
        "hour" => t.hour() as f64,
        "minute" => t.minute() as f64,
        "month" => t.month() as f64,
        _ => t.year() as f64,
    }
}

/// Natural order: runs of digits compare by number.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
            let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
            let (dx, dy) = (&x[..nx], &y[..ny]);
            let tx = trim_zeros(dx);
            let ty = trim_zeros(dy);
            let o = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
            if o != Ordering::Equal {
                return o;
            }
            x = &x[nx..];
            y = &y[ny..];
        } else {
            if x[0] != y[0] {
                return x[0].cmp(&y[0]);
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|c| **c == b'0').count();
    &d[z..]
}

/// The labels `absent` gives: the equality matchers of the selector.
fn absent_labels(vs: &VectorSelector) -> Labels {
    let mut l = Labels::new();
    let mut removed: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, MatchOp::Equal)
            && !l.contains_key(&m.name)
            && !removed.contains(&m.name.as_str())
        {
            l.insert(m.name.clone(), m.value.clone());
        } else {
            l.remove(&m.name);
            removed.push(&m.name);
        }
    }
    l
}

fn absent_result(labels: Labels, vals: Vec<Option<f64>>) -> Vec<SSeries> {
    if vals.iter().any(Option::is_some) {
        vec![SSeries::new(labels, vals)]
    } else {
        Vec::new()
    }
}

/// Calls `f(step, lo, hi)` for each step with the range `lo..hi` of
/// `points` in that step's window `(t - range, t]`.
fn for_each_window<T>(
    g: &Grid,
    points: &[(i64, T)],
    w: &Window,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (mut lo, mut hi) = (0, 0);
    for i in 0..g.n {
        let r = g.ref_time(i, w);
        if w.at.is_some() && i > 0 {
            // The same window at every step.
            f(i, lo, hi);
            continue;
        }
        while hi < points.len() && points[hi].0 <= r {
            hi += 1;
        }
        while lo < hi && points[lo].0 <= r - w.range {
            lo += 1;
        }
        f(i, lo, hi);
    }
}

/// Series whose range functions are worth two threads (points in all).
const PARALLEL_POINTS: usize = 200_000;

fn range_call(ev: &Ev, c: &Call) -> Result<Val> {
    let name = c.func.name;
    let (matrix_arg, scalar_args): (usize, &[usize]) = match name {
        "quantile_over_time" => (1, &[0]),
        "predict_linear" => (0, &[1]),
        "double_exponential_smoothing" => (0, &[1, 2]),
        _ => (0, &[]),
    };
    // Up to two scalar parameters per step.
    let mut param: Vec<[f64; 2]> = Vec::new();
    for (k, &i) in scalar_args.iter().enumerate() {
        let v = ev.eval_scalar(arg(c, i)?, name)?;
        param.resize(v.len(), [f64::NAN; 2]);
        for (p, x) in param.iter_mut().zip(v) {
            p[k] = x;
        }
    }
    if name == "double_exponential_smoothing" {
        for p in &param {
            for (x, what) in [(p[0], "smoothing"), (p[1], "trend")] {
                if !(x > 0.0 && x < 1.0) {
                    return Err(EvalError::Execution(format!(
                        "invalid {what} factor. Expected: 0 < {} < 1, got: {x:.6}",
                        if what == "smoothing" { "sf" } else { "tf" }
                    )));
                }
            }
        }
    }
    let (mut series, w) = ev.range_input(arg(c, matrix_arg)?)?;
    ev.charge(series.len().saturating_mul(ev.n))?;
    let g = ev.grid();
    let points: usize = series
        .iter()
        .map(|s| s.points.len() + s.hpoints.len())
        .sum();
    let out = if points >= PARALLEL_POINTS && series.len() >= 2 {
        let second = series.split_off(series.len() / 2);
        let (a, b) = std::thread::scope(|scope| {
            let h = scope.spawn(|| range_series(&g, name, &param, &w, second));
            let a = range_series(&g, name, &param, &w, series);
            (a, h.join())
        });
        let mut a = a?;
        a.extend(b.map_err(|_| EvalError::Execution(format!("{name}: a worker thread failed")))??);
        a
    } else {
        range_series(&g, name, &param, &w, series)?
    };
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// A range function over each series' windows.
fn range_series(
    g: &Grid,
    name: &str,
    param: &[[f64; 2]],
    w: &Window,
    series: Vec<RangeSeries>,
) -> Result<Vec<SSeries>> {
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let counter = matches!(name, "rate" | "increase");
    let mut out = Vec::with_capacity(series.len());
    let mut scratch: Vec<f64> = Vec::new();
    let mut resets: Vec<u32> = Vec::new();
    let mut hwins: Vec<(usize, usize)> = Vec::new();
    for RangeSeries {
        labels,
        points,
        hpoints,
        drop,
    } in series
    {
        g.check("function evaluation")?;
        if counter {
            // resets[k]: counter resets among points 1..=k, so a window
            // without any skips the reset scan.
            resets.clear();
            let mut n = 0;
            resets.push(0);
            for p in points.windows(2) {
                n += u32::from(p[1].1 < p[0].1);
                resets.push(n);
            }
        }
        // The histogram points of each step's window, if there are any.
        hwins.clear();
        if !hpoints.is_empty() {
            for_each_window(g, &hpoints, w, |_, lo, hi| hwins.push((lo, hi)));
        }
        let mut s = SSeries::empty(labels, g.n, drop);
        let mut any = false;
        for_each_window(g, &points, w, |i, lo, hi| {
            let hw = hwins.get(i).map_or(&hpoints[..0], |&(a, b)| &hpoints[a..b]);
            if lo == hi && hw.is_empty() {
                return;
            }
            let r = g.ref_time(i, w);
            let win = &points[lo..hi];
            let p = param.get(i).copied().unwrap_or([f64::NAN; 2]);
            let v = if hw.is_empty() {
                let has_resets = !counter || resets[hi - 1] != resets[lo];
                range_fn(
                    name,
                    win,
                    r - w.range,
                    r,
                    w.range,
                    g.ts(i),
                    p,
                    has_resets,
                    &mut scratch,
                )
                .map(Sample::F)
            } else if win.is_empty() {
                hist_range_fn(name, hw, r - w.range, r, w.range)
            } else {
                // Floats and histograms in one window.
                match name {
                    "count_over_time" => Some(Sample::F((win.len() + hw.len()) as f64)),
                    "present_over_time" => Some(Sample::F(1.0)),
                    "last_over_time" => {
                        let (ft, fv) = win[win.len() - 1];
                        let (ht, h) = &hw[hw.len() - 1];
                        Some(if *ht > ft {
                            Sample::H(h.clone())
                        } else {
                            Sample::F(fv)
                        })
                    }
                    "first_over_time" => {
                        let (ft, fv) = win[0];
                        let (ht, h) = &hw[0];
                        Some(if *ht < ft {
                            Sample::H(h.clone())
                        } else {
                            Sample::F(fv)
                        })
                    }
                    "ts_of_first_over_time" => {
                        Some(Sample::F(win[0].0.min(hw[0].0) as f64 / 1000.0))
                    }
                    "ts_of_last_over_time" => Some(Sample::F(
                        win[win.len() - 1].0.max(hw[hw.len() - 1].0) as f64 / 1000.0,
                    )),
                    // Prometheus gives nothing (and a warning) for a mix.
                    "rate" | "increase" | "delta" | "irate" | "idelta" | "sum_over_time"
                    | "avg_over_time" | "changes" | "resets" => None,
                    // The rest read the floats only.
                    _ => range_fn(
                        name,
                        win,
                        r - w.range,
                        r,
                        w.range,
                        g.ts(i),
                        p,
                        true,
                        &mut scratch,
                    )
                    .map(Sample::F),
                }
            };
            any |= v.is_some();
            s.set(i, v);
        });
        if any {
            if !keep_name {
                s.drop_name(g.delayed_name_removal);
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// A range function over a window of histograms only.
fn hist_range_fn(
    name: &str,
    win: &[(i64, Arc<FloatHistogram>)],
    range_start: i64,
    range_end: i64,
    range: i64,
) -> Option<Sample> {
    let hist = |h: FloatHistogram| Some(Sample::H(Arc::new(h)));
    let (last_t, last) = &win[win.len() - 1];
    match name {
        "rate" | "increase" | "delta" => {
            let counter = name != "delta";
            let h = hist_extrapolated_rate(
                win,
                range_start,
                range_end,
                range,
                counter,
                name == "rate",
            )?;
            hist(h)
        }
        "irate" | "idelta" => {
            if win.len() < 2 {
                return None;
            }
            let (prev_t, prev) = &win[win.len() - 2];
            let mut h = (**last).clone();
            if name == "idelta" || !last.detect_reset(prev) {
                h.sub(prev).ok()?;
            }
            if name == "irate" {
                let dt = (last_t - prev_t) as f64 / 1000.0;
                if dt == 0.0 {
                    return None;
                }
                h.div(dt);
            }
            h.hint = ResetHint::Gauge;
            h.compact();
            hist(h)
        }
        "sum_over_time" | "avg_over_time" => {
            let mut sum = (*win[0].1).clone();
            for (_, h) in &win[1..] {
                sum.add(h).ok()?;
            }
            if name == "avg_over_time" {
                sum.div(win.len() as f64);
            }
            sum.compact();
            hist(sum)
        }
        "count_over_time" => Some(Sample::F(win.len() as f64)),
        "present_over_time" => Some(Sample::F(1.0)),
        "last_over_time" => Some(Sample::H(last.clone())),
        "first_over_time" => Some(Sample::H(win[0].1.clone())),
        "ts_of_first_over_time" => Some(Sample::F(win[0].0 as f64 / 1000.0)),
        "ts_of_last_over_time" => Some(Sample::F(*last_t as f64 / 1000.0)),
        "resets" => Some(Sample::F(
            win.windows(2)
                .filter(|p| p[1].1.detect_reset(&p[0].1))
                .count() as f64,
        )),
        "changes" => Some(Sample::F(
            win.windows(2).filter(|p| !p[1].1.same_as(&p[0].1)).count() as f64,
        )),
        // The other range functions take floats only.
        _ => None,
    }
}

/// `rate`, `increase` and `delta` of histograms: the last minus the first
/// (plus what counter resets took away), at the lowest schema in the
/// window, extrapolated as for floats, as Prometheus's `histogramRate`.
fn hist_extrapolated_rate(
    win: &[(i64, Arc<FloatHistogram>)],
    range_start: i64,
    range_end: i64,
    range: i64,
    counter: bool,
    rate: bool,
) -> Option<FloatHistogram> {
    if win.len() < 2 {
        return None;
    }
    let (first_t, first) = &win[0];
    let (last_t, last) = &win[win.len() - 1];
    let custom = first.uses_custom_buckets();
    if last.uses_custom_buckets() != custom {
        return None;
    }
    let mut min_schema = first.schema.min(last.schema);
    if counter {
        for (_, h) in &win[1..win.len() - 1] {
            if h.uses_custom_buckets() != custom {
                return None;
            }
            min_schema = min_schema.min(h.schema);
        }
    }
    let mut h = (**last).clone();
    h.reduce_schema(min_schema);
    h.sub(first).ok()?;
    if counter {
        for p in win.windows(2) {
            if p[1].1.detect_reset(&p[0].1) {
                h.add(&p[0].1).ok()?;
            }
        }
    }
    h.hint = ResetHint::Gauge;
    h.compact();
    let zero = (counter && h.count > 0.0 && first.count >= 0.0).then_some((first.count, h.count));
    let span = Span {
        first_t: *first_t,
        last_t: *last_t,
        samples: win.len(),
        range_start,
        range_end,
        range,
    };
    let factor = span.extrapolation(zero, rate);
    h.mul(factor);
    Some(h)
}

#[allow(clippy::too_many_arguments)]
fn range_fn(
    name: &str,
    win: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range: i64,
    t: i64,
    params: [f64; 2],
    has_resets: bool,
    scratch: &mut Vec<f64>,
) -> Option<f64> {
    let last = win[win.len() - 1];
    let param = params[0];
    match name {
        "rate" => extrapolated_rate(win, range_start, range_end, range, has_resets, true, true),
        "increase" => {
            extrapolated_rate(win, range_start, range_end, range, has_resets, true, false)
        }
        "delta" => extrapolated_rate(win, range_start, range_end, range, false, false, false),
        "irate" | "idelta" => {
            if win.len() < 2 {
                return None;
            }
            let prev = win[win.len() - 2];
            let mut v = if name == "irate" && last.1 < prev.1 {
                last.1
            } else {
                last.1 - prev.1
            };
            let dt = last.0 - prev.0;
            if dt == 0 {
                return None;
            }
            if name == "irate" {
                v /= dt as f64 / 1000.0;
            }
            Some(v)
        }
        "deriv" => (win.len() >= 2).then(|| linear_regression(win, win[0].0).0),
        "predict_linear" => (win.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(win, t);
            slope * param + intercept
        }),
        "avg_over_time" => Some(avg_over_time(win)),
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for &(_, v) in win {
                (s, c) = kahan_sum_inc(v, s, c);
            }
            Some(if s.is_infinite() { s } else { s + c })
        }
        "count_over_time" => Some(win.len() as f64),
        "min_over_time" => {
            Some(win.iter().skip(1).fold(
                win[0].1,
                |m, &(_, v)| if v < m || m.is_nan() { v } else { m },
            ))
        }
        "max_over_time" => {
            Some(win.iter().skip(1).fold(
                win[0].1,
                |m, &(_, v)| if v > m || m.is_nan() { v } else { m },
            ))
        }
        "last_over_time" => Some(last.1),
        "first_over_time" => Some(win[0].1),
        "ts_of_first_over_time" => Some(win[0].0 as f64 / 1000.0),
        "ts_of_last_over_time" => Some(last.0 as f64 / 1000.0),
        // The last time of the extreme (ties go to the later sample).
        "ts_of_max_over_time" | "ts_of_min_over_time" => {
            let max = name == "ts_of_max_over_time";
            let (mut at, mut best) = win[0];
            for &(t, v) in win {
                let better = if max { v >= best } else { v <= best };
                if better || best.is_nan() {
                    (best, at) = (v, t);
                }
            }
            Some(at as f64 / 1000.0)
        }
        "mad_over_time" => {
            scratch.clear();
            scratch.extend(win.iter().map(|p| p.1));
            let median = quantile(0.5, scratch);
            scratch.clear();
            scratch.extend(win.iter().map(|p| (p.1 - median).abs()));
            Some(quantile(0.5, scratch))
        }
        "double_exponential_smoothing" => {
            if win.len() < 2 {
                return None;
            }
            let (sf, tf) = (params[0], params[1]);
            let (mut s0, mut s1) = (0.0, win[0].1);
            let mut b = win[1].1 - win[0].1;
            for (i, &(_, v)) in win.iter().enumerate().skip(1) {
                if i > 1 {
                    b = tf * (s1 - s0) + (1.0 - tf) * b;
                }
                let next = sf * v + (1.0 - sf) * (s1 + b);
                (s0, s1) = (s1, next);
            }
            Some(s1)
        }
        "present_over_time" => Some(1.0),
        "quantile_over_time" => {
            scratch.clear();
            scratch.extend(win.iter().map(|p| p.1));
            Some(quantile(param, scratch))
        }
        "stddev_over_time" | "stdvar_over_time" => {
            let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &(_, v) in win {
                count += 1.0;
                let delta = v - (mean + cmean);
                (mean, cmean) = kahan_sum_inc(delta / count, mean, cmean);
                (aux, caux) = kahan_sum_inc(delta * (v - (mean + cmean)), aux, caux);
            }
            let var = (aux + caux) / count;
            Some(if name == "stddev_over_time" {
                var.sqrt()
            } else {
                var
            })
        }
        "changes" => Some(
            win.windows(2)
                .filter(|p| p[0].1 != p[1].1 && !(p[0].1.is_nan() && p[1].1.is_nan()))
                .count() as f64,
        ),
        "resets" => Some(win.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
        _ => None,
    }
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated
/// toward the window's edges as Prometheus does.
fn extrapolated_rate(
    win: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range: i64,
    has_resets: bool,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if win.len() < 2 {
        return None;
    }
    let (first_t, first_v) = win[0];
    let (last_t, last_v) = win[win.len() - 1];
    let mut result = last_v - first_v;
    if counter && has_resets {
        let mut prev = first_v;
        for &(_, v) in &win[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let zero = (counter && result > 0.0 && first_v >= 0.0).then_some((first_v, result));
    let span = Span {
        first_t,
        last_t,
        samples: win.len(),
        range_start,
        range_end,
        range,
    };
    let factor = span.extrapolation(zero, rate);
    Some(result * factor)
}

/// Where a window's samples sit in it, for extrapolation.
struct Span {
    first_t: i64,
    last_t: i64,
    samples: usize,
    range_start: i64,
    range_end: i64,
    range: i64,
}

impl Span {
    /// Prometheus's factor from the change between the first and last
    /// samples to the change over the window: extrapolated to an edge the
    /// samples come close to, else by half the mean sample interval; a
    /// counter (`zero`: its first value and its change) not below zero;
    /// per second for `rate`.
    fn extrapolation(&self, zero: Option<(f64, f64)>, rate: bool) -> f64 {
        let mut to_start = (self.first_t - self.range_start) as f64 / 1000.0;
        let mut to_end = (self.range_end - self.last_t) as f64 / 1000.0;
        let sampled = (self.last_t - self.first_t) as f64 / 1000.0;
        let avg = sampled / (self.samples - 1) as f64;
        let threshold = avg * 1.1;
        if to_start >= threshold {
            to_start = avg / 2.0;
        }
        if let Some((first, change)) = zero {
            // A counter does not go below zero: extrapolate at most to
            // where it would have been zero.
            let to_zero = sampled * (first / change);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        if to_end >= threshold {
            to_end = avg / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if rate {
            factor /= self.range as f64 / 1000.0;
        }
        factor
    }
}

/// Least-squares slope and intercept (at `intercept_time`), as Prometheus's
/// `linearRegression`.
fn linear_regression(win: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = win[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in win.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_sum_inc(x, sx, cx);
        (sy, cy) = kahan_sum_inc(v, sy, cy);
        (sxy, cxy) = kahan_sum_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn avg_over_time(win: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (win[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, v)) in win[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (s, nc) = kahan_sum_inc(v, sum, c);
            if !s.is_infinite() {
                sum = s;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_sum_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// `histogram_quantile` over native histograms (each on its own) and
/// classic ones: float series grouped by their labels without `le`, one
/// bucket per series.
fn histogram_quantile(ev: &Ev, q: &[f64], v: Vec<SSeries>, delayed: bool) -> Vec<SSeries> {
    let mut out = Vec::new();
    for s in v.iter().filter(|s| !s.hists.is_empty()) {
        let vals = (0..ev.n)
            .map(|i| s.hist(i).map(|h| h.quantile(q[i])))
            .collect();
        let mut o = SSeries::new(s.labels.clone(), vals);
        o.drop = s.drop;
        o.drop_name(delayed);
        out.push(o);
    }
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (j, s) in v.iter().enumerate() {
        let Some(le) = s.labels.get("le").and_then(|l| parse_go_float(l)) else {
            continue;
        };
        let mut key = s.labels.clone();
        key.remove("le");
        if !delayed {
            key.remove("__name__");
        }
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((le, j));
    }
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (labels, members) in groups {
        let mut vals = vec![None; ev.n];
        for (i, slot) in vals.iter_mut().enumerate() {
            buckets.clear();
            buckets.extend(
                members
                    .iter()
                    .filter_map(|&(le, j)| v[j].vals[i].map(|c| (le, c))),
            );
            if !buckets.is_empty() {
                *slot = Some(bucket_quantile(q[i], &mut buckets));
            }
        }
        if vals.iter().any(Option::is_some) {
            let drop = labels.contains_key("__name__");
            let mut o = SSeries::new(labels, vals);
            o.drop = drop;
            out.push(o);
        }
    }
    out
}

/// A float as Go's `strconv.ParseFloat` reads it (`+Inf`, `1e3`, ...).
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Prometheus's `BucketQuantile`: (upper bound, cumulative count) buckets.
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    *buckets = merged;
    // Force monotonic counts; ignore differences below the precision.
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            b.1 = prev;
            continue;
        }
        prev = curr;
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|x| x.1 < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut start = 0.0;
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus's `almost.Equal`.
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}
