//! A PromQL engine with Prometheus 3's semantics, over any [`Queryable`]:
//! the store's metrics ([`storage`]) or the series a `promqltest` file
//! loads ([`promqltest`]).
//!
//! Queries are parsed by `promql-parser` and evaluated over a grid of steps
//! (an instant query is a grid of one step), node by node, as Prometheus's
//! own engine does: instant vectors are series with an optional value per
//! step, range vectors are windows of raw samples cut per step. Times are
//! milliseconds, as in Prometheus.

mod eval;
mod funcs;
pub mod histogram;
pub mod promqltest;
pub mod storage;

use std::collections::BTreeMap;
use std::sync::Arc;

use promql_parser::label::Matcher;

pub use eval::{Engine, MatrixSeries, QueryValue, Sample};
pub use histogram::FloatHistogram;

/// A label set, sorted by name; `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// The NaN bit pattern Prometheus writes as a staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// One series as storage returns it: its float samples (ms, value) sorted
/// by time, staleness markers included, and its native histogram samples,
/// sorted by time (a series may change kind; a staleness marker among the
/// floats ends both).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
    pub hists: Vec<(i64, Arc<FloatHistogram>)>,
}

/// Where the engine reads series from.
pub trait Queryable: Sync {
    /// The series matching every matcher, with their samples in
    /// `[mint, maxt]` (ms). A series that has no sample there may be left out.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<RawSeries>, EvalError>;
}

/// Why a query failed, in Prometheus's error types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The query or a parameter is malformed (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The query is valid but cannot be evaluated (`execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its time limit (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// Reading series failed (`internal`).
    #[error("{0}")]
    Storage(String),
}

/// Deepest nesting of brackets and longest run of unary signs a query may
/// have: parsing and evaluating recurse once per level, and a query of
/// thousands of `(` would overflow the stack of the thread serving it.
pub const MAX_NESTING: usize = 128;

/// The characters of a query, each with whether it is inside a string
/// literal (the opening quote is not, the closing one is).
fn chars_and_quoting(q: &str) -> impl Iterator<Item = (char, bool)> + '_ {
    let (mut quote, mut escaped) = (None::<char>, false);
    q.chars().map(move |c| {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && open != '`' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            return (c, true);
        }
        if matches!(c, '"' | '\'' | '`') {
            quote = Some(c);
        }
        (c, false)
    })
}

/// Longest duration (or `@` time) a query may write as a number, in seconds:
/// about 31 million years, far inside what `Duration` holds.
const MAX_DURATION_SECONDS: f64 = 1e15;

/// A number written where the parser makes a `Duration` of it (in `[...]`,
/// after `offset` or `@`) that is too large or too long: promql-parser
/// panics on them (`x[1e99]`, `x[1222…2299]`, found by fuzzing). Refused
/// up front, so that a hostile query does not even print a panic.
fn duration_out_of_range(q: &str) -> Option<String> {
    let too_big = |w: &str| {
        let digits = w.chars().filter(char::is_ascii_hexdigit).count();
        digits > 15
            || w.parse::<f64>()
                .is_ok_and(|v| !v.is_finite() || v > MAX_DURATION_SECONDS)
    };
    let mut square = 0usize;
    let mut word = String::new();
    // Whether the word being read follows `offset` or `@`.
    let (mut after_keyword, mut keyword_next) = (false, false);
    for (c, quoted) in chars_and_quoting(q).chain(std::iter::once((' ', false))) {
        if quoted {
            continue;
        }
        let exponent_sign = (c == '+' || c == '-')
            && word.starts_with(|d: char| d.is_ascii_digit())
            && word.ends_with(['e', 'E']);
        if c.is_alphanumeric() || c == '.' || c == '_' || exponent_sign {
            if word.is_empty() {
                after_keyword = keyword_next;
            }
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            if word.starts_with(|d: char| d.is_ascii_digit())
                && (square > 0 || after_keyword)
                && too_big(&word)
            {
                return Some(word);
            }
            keyword_next = word.eq_ignore_ascii_case("offset");
            word.clear();
        }
        match c {
            '[' => square += 1,
            ']' => square = square.saturating_sub(1),
            '@' => keyword_next = true,
            c if c.is_whitespace() => {}
            '-' | '+' => {}
            _ => keyword_next = false,
        }
    }
    None
}

/// Parses a query, refusing nesting past [`MAX_NESTING`] before the parser
/// sees it.
pub fn parse(q: &str) -> Result<promql_parser::parser::Expr, String> {
    let (mut depth, mut max_depth, mut signs, mut max_signs) = (0usize, 0usize, 0usize, 0usize);
    for (c, quoted) in chars_and_quoting(q) {
        if quoted {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == '-' || c == '+' {
            signs += 1;
            max_signs = max_signs.max(signs);
        } else if !c.is_whitespace() {
            signs = 0;
        }
    }
    if max_depth > MAX_NESTING || max_signs > MAX_NESTING {
        return Err(format!("the query nests deeper than {MAX_NESTING} levels"));
    }
    if let Some(word) = duration_out_of_range(q) {
        return Err(format!(
            "duration {word:?} is out of range (at most {MAX_DURATION_SECONDS:e} seconds)"
        ));
    }
    // The parser panics on some input (fuzzing found `x[1e99]`: a duration
    // past `Duration`'s range); a panic there is a bad query, not a crash.
    std::panic::catch_unwind(|| promql_parser::parser::parse(q)).unwrap_or_else(|_| {
        Err("the query cannot be parsed (a number or duration out of range?)".into())
    })
}

/// The matchers of a selector (its name as `__name__=`), one list per
/// alternative of `{a="1" or b="2"}`: a series matches if it matches any.
pub(crate) fn alternatives(vs: &promql_parser::parser::VectorSelector) -> Vec<Vec<Matcher>> {
    let mut base: Vec<Matcher> = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(
            promql_parser::label::MatchOp::Equal,
            "__name__",
            name,
        ));
    }
    base.extend(vs.matchers.matchers.iter().cloned());
    if vs.matchers.or_matchers.is_empty() {
        return vec![base];
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|group| {
            let mut ms = base.clone();
            ms.extend(group.iter().cloned());
            ms
        })
        .collect()
}

/// Of samples at one time (sorted, older first), keeps the later.
pub(crate) fn dedup_keep_later<T>(samples: &mut Vec<(i64, T)>) {
    samples.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            std::mem::swap(earlier, later);
            true
        } else {
            false
        }
    });
}

/// Formats a float as Prometheus does in results and `le`/`quantile`
/// labels: shortest round-trip form, no exponent, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// A label set as Prometheus prints it: `name{a="1", b="2"}`.
pub fn labels_string(l: &Labels) -> String {
    let mut s = l.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = l
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !rest.is_empty() || s.is_empty() {
        s.push('{');
        s.push_str(&rest.join(", "));
        s.push('}');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::promqltest::MemStorage;
    use super::*;

    /// Found by the `promql` fuzz target: the parser panicked on it.
    #[test]
    fn durations_out_of_range_are_errors_not_panics() {
        for q in [
            "x[1e99]",
            "5-temperaturx99[1e99]%%",
            "rate(x[1e308])",
            "x offset 1e99",
            "x99\x0c[1222222222222222222222222222222222299]%%",
            "x[1e+99]",
            "x @ 1e99",
            "x[5m:1e99]",
        ] {
            let err = parse(q).expect_err(q);
            assert!(err.contains("out of range"), "{q}: {err}");
            assert!(duration_out_of_range(q).is_some(), "{q}");
        }
        // Large numbers elsewhere, and in strings, are fine.
        for q in [
            "rate(x[5m])",
            "x[1h30m] offset 1w",
            "x * 1e99",
            "x{a=\"[1e99]\"}",
            "x[90d] @ 1700000000",
            "sum(x offset 5m) > 1e20",
        ] {
            assert_eq!(duration_out_of_range(q), None, "{q}");
        }
        assert!(parse("rate(x[5m])").is_ok());
        assert!(parse("x * 1e99").is_ok());
    }

    /// Enough points for range functions to split the series between two
    /// threads: every series must come back, with its own rate.
    #[test]
    fn range_functions_over_many_points_give_every_series_its_value() {
        let mut m = MemStorage::default();
        for i in 0..8u32 {
            let labels: Labels = [
                ("__name__".to_owned(), "c".to_owned()),
                ("i".to_owned(), i.to_string()),
            ]
            .into();
            m.add(
                labels,
                (0..30_000i64).map(|t| (t * 1000, Sample::F((t as f64) * f64::from(i + 1)))),
            );
        }
        let engine = Engine::default();
        let expr = promql_parser::parser::parse("rate(c[1m])").unwrap_or_else(|e| panic!("{e}"));
        let QueryValue::Matrix(series) = engine
            .range(&m, &expr, 20_000_000, 20_600_000, 60_000)
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("expected a matrix");
        };
        assert_eq!(series.len(), 8);
        for MatrixSeries {
            labels,
            floats: points,
            ..
        } in &series
        {
            let i: f64 = labels["i"].parse().unwrap_or(f64::NAN);
            assert!(!labels.contains_key("__name__"));
            assert_eq!(points.len(), 11);
            assert!(
                points.iter().all(|p| (p.1 - (i + 1.0)).abs() < 1e-9),
                "{labels:?} {points:?}"
            );
        }
    }

    /// With delayed name removal the name survives until the result, so
    /// `label_replace` can still read it and two rates of different metrics
    /// do not collide; without it, they do.
    #[test]
    fn delayed_name_removal_keeps_the_name_until_the_result() {
        let q = |delayed: bool, query: &str| {
            let mut m = MemStorage::default();
            for (name, step) in [("a", 1.0), ("b", 2.0)] {
                let labels: Labels = [
                    ("__name__".to_owned(), name.to_owned()),
                    ("job".to_owned(), "x".to_owned()),
                ]
                .into();
                m.add(
                    labels,
                    (0..=10i64).map(|k| (k * 60_000, Sample::F(k as f64 * step))),
                );
            }
            let engine = Engine {
                delayed_name_removal: delayed,
                ..Engine::default()
            };
            let expr = promql_parser::parser::parse(query).unwrap_or_else(|e| panic!("{e}"));
            engine.instant(&m, &expr, 600_000)
        };
        let lr = r#"label_replace(rate(a[5m]), "was", "$1", "__name__", "(.*)")"#;
        let Ok(QueryValue::Vector(v)) = q(true, lr) else {
            panic!("expected a vector")
        };
        assert_eq!(v[0].0.get("was").map(String::as_str), Some("a"));
        assert!(!v[0].0.contains_key("__name__"));
        let Ok(QueryValue::Vector(v)) = q(false, lr) else {
            panic!("expected a vector")
        };
        assert!(!v[0].0.contains_key("was"));
        // Two metrics' rates left with one label set: an error either way,
        // at once or at the end; and grouping by the name to be dropped
        // still ends with one label set twice (as in Prometheus).
        assert!(q(false, r#"rate({__name__=~"a|b"}[5m])"#).is_err());
        assert!(q(true, r#"rate({__name__=~"a|b"}[5m])"#).is_err());
        assert!(q(true, r#"sum by (__name__) (rate({__name__=~"a|b"}[5m]))"#).is_err());
        let Ok(QueryValue::Vector(v)) = q(true, r#"sum by (__name__) ({__name__=~"a|b"})"#) else {
            panic!("expected a vector")
        };
        assert_eq!(v.len(), 2);
    }

    /// Nesting is bounded before the parser (which recurses) sees a query;
    /// brackets inside strings do not count.
    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_NESTING)).is_ok());
        assert!(parse(&nested(MAX_NESTING + 1)).is_err_and(|e| e.contains("nests deeper")));
        assert!(parse(&format!("{}1", "-".repeat(MAX_NESTING + 1))).is_err());
        assert!(parse(&format!("up{{job=\"{}\"}}", "(".repeat(1000))).is_ok());
    }

    /// Series × steps count against the sample budget, not only the
    /// samples read: a wide range query over many sparse series is refused
    /// instead of allocating without bound.
    #[test]
    fn the_sample_budget_counts_steps_too() {
        let mut m = MemStorage::default();
        for i in 0..100u32 {
            let labels: Labels = [
                ("__name__".to_owned(), "x".to_owned()),
                ("i".to_owned(), i.to_string()),
            ]
            .into();
            m.add(labels, [(0, Sample::F(1.0))]);
        }
        let engine = Engine {
            max_samples: 50_000,
            ..Engine::default()
        };
        let expr = promql_parser::parser::parse("x").unwrap_or_else(|e| panic!("{e}"));
        // 100 samples read, but 100 series × 1,000 steps to hold.
        let err = engine.range(&m, &expr, 0, 999_000, 1000).err();
        assert!(
            matches!(err, Some(EvalError::Execution(ref m)) if m.contains("too many samples")),
            "{err:?}"
        );
        assert!(engine.range(&m, &expr, 0, 99_000, 1000).is_ok());
    }
}
