//! A runner for files in Prometheus's `promqltest` format, executed against
//! Lumen's engine: `load <interval>` blocks of series in the series
//! notation (`0+10x5`, `1 _ stale 3`, `Inf`), `clear`, and
//! `eval instant at <t> <expr>` / `eval range from <t> to <t> step <d>
//! <expr>` with the expected result below, in both the older spelling
//! (`eval_fail`, `eval_ordered`, `expected_fail_message`) and the newer
//! (`expect fail msg: ...`, `expect ordered`). Results are compared as
//! Prometheus's own test runner does (floats within a relative 1e-6, NaN
//! equals NaN, order only when asked for).
//!
//! Each case is also counted under every function, aggregation and
//! operator its expression uses, so a report shows pass rates per family.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};

use std::sync::Arc;

use super::histogram::FloatHistogram;
use super::{
    Engine, EvalError, Labels, MatrixSeries, QueryValue, Queryable, RawSeries, STALE_NAN, Sample,
    format_value, labels_string,
};

/// Series loaded by `load` commands, held in memory.
#[derive(Debug, Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<(i64, Sample)>>,
}

impl MemStorage {
    /// Adds samples to a series; a sample at a time the series already
    /// has replaces the older one.
    pub fn add(&mut self, labels: Labels, samples: impl IntoIterator<Item = (i64, Sample)>) {
        let s = self.series.entry(labels).or_default();
        s.extend(samples);
        // Stable: of equal times, the older sample comes first.
        s.sort_by_key(|p| p.0);
        super::dedup_keep_later(s);
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<RawSeries>, EvalError> {
        Ok(self
            .series
            .iter()
            .filter(|(l, _)| super::storage::matches_all(matchers, l))
            .map(|(l, s)| {
                let mut out = RawSeries {
                    labels: l.clone(),
                    samples: Vec::new(),
                    hists: Vec::new(),
                };
                for (t, v) in s.iter().filter(|(t, _)| *t >= mint && *t <= maxt) {
                    match v {
                        Sample::F(f) => out.samples.push((*t, *f)),
                        Sample::H(h) => out.hists.push((*t, h.clone())),
                    }
                }
                out
            })
            .collect())
    }
}

/// The outcome of one `eval`.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub line: usize,
    pub query: String,
    pub families: Vec<String>,
    /// `None` when it passed, else why not.
    pub failure: Option<String>,
}

/// The outcome of a file.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    /// Lines the runner could not read (unknown commands, bad series).
    pub errors: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }

    /// (family, passed, total), sorted by family.
    pub fn by_family(&self) -> Vec<(String, usize, usize)> {
        let mut m: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for c in &self.cases {
            for f in &c.families {
                let e = m.entry(f.as_str()).or_default();
                e.1 += 1;
                if c.failure.is_none() {
                    e.0 += 1;
                }
            }
        }
        m.into_iter()
            .map(|(f, (p, t))| (f.to_owned(), p, t))
            .collect()
    }

    /// A human-readable summary: totals, per family, then each failure.
    pub fn render(&self, name: &str) -> String {
        let mut s = format!(
            "{name}: {}/{} passed ({:.1}%)\n",
            self.passed(),
            self.cases.len(),
            100.0 * self.passed() as f64 / self.cases.len().max(1) as f64
        );
        for (f, p, t) in self.by_family() {
            s.push_str(&format!(
                "  {f:<28} {p:>4}/{t:<4} {:>5.1}%\n",
                100.0 * p as f64 / t as f64
            ));
        }
        for c in &self.cases {
            if let Some(f) = &c.failure {
                s.push_str(&format!(
                    "  FAIL line {}: {}\n      {}\n",
                    c.line,
                    c.query,
                    f.replace('\n', "\n      ")
                ));
            }
        }
        for e in &self.errors {
            s.push_str(&format!("  ERROR {e}\n"));
        }
        s
    }
}

/// A Prometheus duration (`1h30m`, `5m`, `10s`, `1d`, `100ms`) or plain
/// seconds, in ms.
fn parse_duration(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1000.0).round() as i64);
    }
    let mut total = 0i64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// One value of the series notation: a number or `_` (no sample).
fn parse_number(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        "stale" => Some(f64::from_bits(STALE_NAN)),
        _ => {
            if let Some(h) = s.strip_prefix("0x") {
                return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
            }
            s.parse::<f64>().ok()
        }
    }
}

/// Expands series notation into values (`None` for `_`): floats, and
/// native histograms as `{{...}}`, `{{a}}xN` (N+1 copies) and
/// `{{a}}+{{b}}xN` (a, a+b, ..., a+Nb; `-` subtracts).
fn expand_values(tokens: &[&str]) -> Result<Vec<Option<Sample>>, String> {
    let mut out = Vec::new();
    for tok in tokens {
        if tok.starts_with("{{") {
            expand_histograms(tok, &mut out)?;
            continue;
        }
        if *tok == "_" {
            out.push(None);
            continue;
        }
        if let Some((base, times)) = tok.split_once('x') {
            let n: usize = times
                .parse()
                .map_err(|_| format!("bad repetition {tok:?}"))?;
            if base == "_" {
                out.extend(std::iter::repeat_n(None, n));
                continue;
            }
            // `a+bxn`, `a-bxn` or `axn`: a then n more steps of b.
            let (start, inc) = split_increment(base).ok_or_else(|| format!("bad value {tok:?}"))?;
            if start.to_bits() == STALE_NAN {
                out.extend(std::iter::repeat_n(Some(Sample::F(start)), n));
                continue;
            }
            for k in 0..=n {
                out.push(Some(Sample::F(start + inc * k as f64)));
            }
            continue;
        }
        out.push(Some(Sample::F(
            parse_number(tok).ok_or_else(|| format!("bad value {tok:?}"))?,
        )));
    }
    Ok(out)
}

fn expand_histograms(tok: &str, out: &mut Vec<Option<Sample>>) -> Result<(), String> {
    let first_end = tok
        .find("}}")
        .ok_or_else(|| format!("unclosed histogram {tok:?}"))?
        + 2;
    let start = FloatHistogram::parse_test(&tok[..first_end])?;
    let rest = &tok[first_end..];
    if rest.is_empty() {
        out.push(Some(Sample::H(Arc::new(start))));
        return Ok(());
    }
    let (inc, times) = match rest.strip_prefix('x') {
        Some(n) => (None, n),
        None => {
            let sub = rest.starts_with('-');
            let body = rest
                .strip_prefix('+')
                .or_else(|| rest.strip_prefix('-'))
                .ok_or_else(|| format!("bad histogram series {tok:?}"))?;
            let end = body
                .find("}}x")
                .ok_or_else(|| format!("bad histogram series {tok:?}"))?;
            let mut inc = FloatHistogram::parse_test(&body[..end + 2])?;
            if sub {
                inc.mul(-1.0);
            }
            (Some(inc), &body[end + 3..])
        }
    };
    let n: usize = times
        .parse()
        .map_err(|_| format!("bad repetition in {tok:?}"))?;
    let mut cur = start;
    out.push(Some(Sample::H(Arc::new(cur.clone()))));
    for _ in 0..n {
        if let Some(inc) = &inc {
            cur.add(inc)
                .map_err(|_| format!("incompatible histograms in {tok:?}"))?;
        }
        out.push(Some(Sample::H(Arc::new(cur.clone()))));
    }
    Ok(())
}

fn split_increment(s: &str) -> Option<(f64, f64)> {
    // The sign of the increment is the first + or - after the first char
    // (which may be the start value's own sign), not part of an exponent.
    let b = s.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E') {
            let start = parse_number(&s[..i])?;
            let inc = parse_number(&s[i + 1..])?;
            return Some((start, if b[i] == b'-' { -inc } else { inc }));
        }
    }
    Some((parse_number(s)?, 0.0))
}

/// The value tokens of a series line; a native histogram `{{...}}` (which
/// has spaces inside) is one token, with any `+{{...}}` or `xN` after it.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, None);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(st) = start.take() {
                out.push(&s[st..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}

/// Splits `metric{a="b"} 1 2 3` into the labels and the value tokens.
fn split_series_line(line: &str) -> Result<(Labels, Vec<&str>), String> {
    let line = line.trim();
    let end = match line.find('{') {
        Some(open) if !line[..open].contains(char::is_whitespace) => {
            let mut in_str = false;
            let mut escaped = false;
            let mut close = None;
            for (i, c) in line[open..].char_indices() {
                if escaped {
                    escaped = false;
                    continue;
                }
                match c {
                    '\\' if in_str => escaped = true,
                    '"' => in_str = !in_str,
                    '}' if !in_str => {
                        close = Some(open + i + 1);
                        break;
                    }
                    _ => {}
                }
            }
            close.ok_or_else(|| format!("unclosed braces in {line:?}"))?
        }
        _ => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    let (sel, rest) = line.split_at(end);
    let labels = parse_labels(sel)?;
    Ok((labels, tokens(rest)))
}

fn parse_labels(sel: &str) -> Result<Labels, String> {
    if sel == "{}" {
        return Ok(Labels::new());
    }
    match parser::parse(sel) {
        Ok(Expr::VectorSelector(vs)) => {
            let mut l = Labels::new();
            if let Some(n) = vs.name {
                l.insert("__name__".into(), n);
            }
            for m in vs.matchers.matchers {
                if !matches!(m.op, MatchOp::Equal) {
                    return Err(format!("series {sel:?}: only = is allowed"));
                }
                l.insert(m.name, m.value);
            }
            Ok(l)
        }
        Ok(_) => Err(format!("not a series: {sel:?}")),
        Err(e) => Err(format!("series {sel:?}: {e}")),
    }
}

/// What an `eval` expects.
#[derive(Debug, Default)]
struct Expect {
    fail: bool,
    /// `expect range vector from <t> to <t> step <d>`: an instant query
    /// (evaluated at the end) answering a range vector at these times.
    range: Option<(i64, i64, i64)>,
    /// `expect string "..."`.
    string: Option<String>,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    lines: Vec<(usize, String)>,
}

enum Mode {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// Runs a test file. Lines are read as Prometheus's runner reads them:
/// trimmed, `#` lines blank, and a command's block running to the next
/// blank line.
pub fn run(text: &str, engine: &Engine) -> Report {
    let mut report = Report::default();
    let mut storage = MemStorage::default();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let lineno = i + 1;
        i += 1;
        if line.is_empty() {
            continue;
        }
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd.to_ascii_lowercase().as_str() {
            "clear" => storage = MemStorage::default(),
            c if c.starts_with("load") => {
                let interval = parse_duration(rest.trim());
                if interval.is_none() {
                    report
                        .errors
                        .push(format!("line {lineno}: bad load interval {rest:?}"));
                }
                // Within one load, a series given twice takes its last
                // definition (as in Prometheus); loads add to each other.
                let mut block: BTreeMap<Labels, Vec<(i64, Sample)>> = BTreeMap::new();
                while i < lines.len() && !lines[i].is_empty() {
                    let l = lines[i];
                    i += 1;
                    let Some(interval) = interval else { continue };
                    match split_series_line(l)
                        .and_then(|(labels, toks)| Ok((labels, expand_values(&toks)?)))
                    {
                        Ok((labels, vals)) => {
                            let samples = vals
                                .into_iter()
                                .enumerate()
                                .filter_map(|(k, v)| v.map(|v| (k as i64 * interval, v)))
                                .collect();
                            block.insert(labels, samples);
                        }
                        Err(e) => report.errors.push(format!("line {i}: {e}")),
                    }
                }
                for (labels, samples) in block {
                    storage.add(labels, samples);
                }
            }
            c if c.starts_with("eval") => {
                let mut expect = Expect::default();
                match c {
                    "eval" | "eval_warn" | "eval_info" => {}
                    "eval_fail" => expect.fail = true,
                    "eval_ordered" => expect.ordered = true,
                    _ => {
                        report
                            .errors
                            .push(format!("line {lineno}: unknown command {c}"));
                        continue;
                    }
                }
                while i < lines.len() && !lines[i].is_empty() {
                    let l = lines[i];
                    i += 1;
                    if let Some(m) = l.strip_prefix("expected_fail_message") {
                        expect.fail_msg = Some(m.trim().to_owned());
                        break;
                    } else if let Some(r) = l.strip_prefix("expected_fail_regexp") {
                        expect.fail_regex = Some(r.trim().to_owned());
                        break;
                    } else if let Some(r) = l.strip_prefix("expect range vector") {
                        let w: Vec<&str> = r.split_whitespace().collect();
                        match (w.as_slice(), w.len()) {
                            (["from", a, "to", b, "step", c], 6) => {
                                match (parse_duration(a), parse_duration(b), parse_duration(c)) {
                                    (Some(a), Some(b), Some(c)) => expect.range = Some((a, b, c)),
                                    _ => report
                                        .errors
                                        .push(format!("line {i}: bad range vector definition")),
                                }
                            }
                            _ => report
                                .errors
                                .push(format!("line {i}: bad range vector definition")),
                        }
                    } else if let Some(s) = l.strip_prefix("expect string") {
                        expect.string = Some(unquote(s.trim()));
                    } else if l.split(' ').next() == Some("expect") {
                        let e = l["expect".len()..].trim();
                        let (kind, detail) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
                        let detail = detail.trim();
                        match kind {
                            "fail" => {
                                expect.fail = true;
                                if let Some(m) = detail.strip_prefix("msg:") {
                                    expect.fail_msg = Some(m.trim().to_owned());
                                } else if let Some(r) = detail.strip_prefix("regex:") {
                                    expect.fail_regex = Some(r.trim().to_owned());
                                }
                            }
                            "ordered" => expect.ordered = true,
                            // Annotations (warn, info, no_warn, no_info) are not modelled.
                            "warn" | "info" | "no_warn" | "no_info" => {}
                            _ => report
                                .errors
                                .push(format!("line {i}: invalid expect statement {l:?}")),
                        }
                    } else if parse_number(l).is_some() {
                        expect.lines.push((i, l.to_owned()));
                        break;
                    } else {
                        expect.lines.push((i, l.to_owned()));
                    }
                }
                match parse_eval(rest) {
                    Ok((mut mode, query)) => {
                        if let (Some((_, end, _)), Mode::Instant(t)) = (expect.range, &mut mode) {
                            *t = end;
                        }
                        let families = super::parse(query)
                            .map(|e| families(&e))
                            .unwrap_or_else(|_| vec!["(parse error)".into()]);
                        let failure = run_eval(engine, &storage, &mode, query, &expect).err();
                        report.cases.push(CaseResult {
                            line: lineno,
                            query: query.to_owned(),
                            families,
                            failure,
                        });
                    }
                    Err(e) => report.errors.push(format!("line {lineno}: {e}")),
                }
            }
            _ => report
                .errors
                .push(format!("line {lineno}: unknown command {cmd:?}")),
        }
    }
    report
}

/// A Go-quoted string's contents (`"a\"b"` → `a"b`).
fn unquote(s: &str) -> String {
    let inner = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_eval(rest: &str) -> Result<(Mode, &str), String> {
    let rest = rest.trim();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r
            .trim_start()
            .strip_prefix("at")
            .ok_or("expected `instant at <time>`")?
            .trim_start();
        let (t, q) = r.split_once(char::is_whitespace).ok_or("missing query")?;
        let t = parse_duration(t).ok_or_else(|| format!("bad time {t:?}"))?;
        Ok((Mode::Instant(t), q.trim()))
    } else if let Some(r) = rest.strip_prefix("range") {
        let words: Vec<&str> = r.trim_start().splitn(7, char::is_whitespace).collect();
        if words.len() < 7 || words[0] != "from" || words[2] != "to" || words[4] != "step" {
            return Err("expected `range from <t> to <t> step <d> <query>`".into());
        }
        let p = |s: &str| parse_duration(s).ok_or_else(|| format!("bad time {s:?}"));
        Ok((
            Mode::Range {
                start: p(words[1])?,
                end: p(words[3])?,
                step: p(words[5])?,
            },
            words[6].trim(),
        ))
    } else {
        Err(format!(
            "expected `instant` or `range` after eval: {rest:?}"
        ))
    }
}

fn run_eval(
    engine: &Engine,
    storage: &MemStorage,
    mode: &Mode,
    query: &str,
    expect: &Expect,
) -> Result<(), String> {
    let result = super::parse(query)
        .map_err(EvalError::BadData)
        .and_then(|expr| match mode {
            Mode::Instant(t) => engine.instant(storage, &expr, *t),
            Mode::Range { start, end, step } => engine.range(storage, &expr, *start, *end, *step),
        });
    if expect.fail {
        return match result {
            Ok(v) => Err(format!("expected an error, got {}", show(&v))),
            Err(e) => {
                let msg = e.to_string();
                if let Some(m) = &expect.fail_msg
                    && &msg != m
                {
                    return Err(format!("error message {msg:?}, expected {m:?}"));
                }
                if let Some(r) = &expect.fail_regex {
                    let re =
                        regex::Regex::new(r).map_err(|e| format!("bad expected regex: {e}"))?;
                    if !re.is_match(&msg) {
                        return Err(format!("error message {msg:?} does not match {r:?}"));
                    }
                }
                Ok(())
            }
        };
    }
    let v = result.map_err(|e| format!("error: {e}"))?;
    match (mode, v) {
        (_, QueryValue::Scalar { v, .. }) => {
            let want = match expect.lines.as_slice() {
                [(_, l)] => parse_number(l.trim())
                    .ok_or_else(|| format!("expected {l:?}, got scalar {}", format_value(v)))?,
                _ => {
                    return Err(format!(
                        "expected {} lines, got scalar {}",
                        expect.lines.len(),
                        format_value(v)
                    ));
                }
            };
            if almost_equal_test(want, v) {
                Ok(())
            } else {
                Err(format!(
                    "expected scalar {}, got {}",
                    format_value(want),
                    format_value(v)
                ))
            }
        }
        (_, QueryValue::String { v, .. }) => match (&expect.string, expect.lines.as_slice()) {
            (Some(want), _) if *want == v => Ok(()),
            (None, [(_, l)]) if l.trim().trim_matches('"') == v => Ok(()),
            _ => Err(format!("got string {v:?}")),
        },
        (Mode::Instant(_), QueryValue::Vector(got)) => {
            let mut want: Vec<(Labels, Sample)> = Vec::new();
            for (ln, l) in &expect.lines {
                let (labels, toks) = split_series_line(l).map_err(|e| format!("line {ln}: {e}"))?;
                let mut vals = expand_values(&toks).map_err(|e| format!("line {ln}: {e}"))?;
                match (vals.pop(), vals.is_empty()) {
                    (Some(Some(v)), true) => want.push((labels, v)),
                    _ => return Err(format!("line {ln}: expected one value")),
                }
            }
            compare_vector(&want, &got, expect.ordered)
        }
        (Mode::Instant(_), QueryValue::Matrix(got)) if expect.range.is_some() => {
            let (start, _, step) = expect.range.unwrap_or_default();
            compare_matrix(&expect.lines, &got, start, step)
        }
        (Mode::Instant(_), QueryValue::Matrix(got)) => {
            // A range selector at the top: compare the sample values in order.
            let mut want: Vec<(Labels, Vec<Sample>)> = Vec::new();
            for (ln, l) in &expect.lines {
                let (labels, toks) = split_series_line(l).map_err(|e| format!("line {ln}: {e}"))?;
                let vals = expand_values(&toks).map_err(|e| format!("line {ln}: {e}"))?;
                want.push((labels, vals.into_iter().flatten().collect()));
            }
            let got_s = show(&QueryValue::Matrix(got.clone()));
            if want.len() != got.len() {
                return Err(format!("expected {} series, got {got_s}", want.len()));
            }
            for (labels, vals) in &want {
                let Some(m) = got.iter().find(|m| &m.labels == labels) else {
                    return Err(format!("missing {}", labels_string(labels)));
                };
                let pts = points_of(m);
                if pts.len() != vals.len()
                    || pts.iter().zip(vals).any(|(p, v)| !same_sample(v, &p.1))
                {
                    return Err(format!("{}: got {got_s}", labels_string(labels)));
                }
            }
            Ok(())
        }
        (Mode::Range { start, step, .. }, QueryValue::Matrix(got)) => {
            compare_matrix(&expect.lines, &got, *start, *step)
        }
        (Mode::Range { .. }, v) => Err(format!("range query gave {}", v.type_name())),
    }
}

/// A matrix series' points of both kinds, by time.
fn points_of(m: &MatrixSeries) -> Vec<(i64, Sample)> {
    let mut pts: Vec<(i64, Sample)> = m.floats.iter().map(|&(t, v)| (t, Sample::F(v))).collect();
    pts.extend(m.hists.iter().map(|(t, h)| (*t, Sample::H(h.clone()))));
    pts.sort_by_key(|p| p.0);
    pts
}

/// Samples equal as Prometheus's runner compares them: floats within a
/// relative 1e-6 (NaN equal to NaN), histograms field by field so.
fn same_sample(want: &Sample, got: &Sample) -> bool {
    match (want, got) {
        (Sample::F(a), Sample::F(b)) => almost_equal_test(*a, *b),
        (Sample::H(a), Sample::H(b)) => a.approx_eq(b, almost_equal_test),
        _ => false,
    }
}

fn show_sample(v: &Sample) -> String {
    match v {
        Sample::F(f) => format_value(*f),
        Sample::H(h) => h.test_expr(),
    }
}

/// Expected series lines (values at `start + k * step`) against a matrix.
fn compare_matrix(
    lines: &[(usize, String)],
    got: &[MatrixSeries],
    start: i64,
    step: i64,
) -> Result<(), String> {
    let mut want: Vec<(Labels, Vec<(i64, Sample)>)> = Vec::new();
    for (ln, l) in lines {
        let (labels, toks) = split_series_line(l).map_err(|e| format!("line {ln}: {e}"))?;
        let vals = expand_values(&toks).map_err(|e| format!("line {ln}: {e}"))?;
        let pts = vals
            .into_iter()
            .enumerate()
            .filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v)))
            .collect();
        want.push((labels, pts));
    }
    let got_s = show(&QueryValue::Matrix(got.to_vec()));
    if want.len() != got.len() {
        return Err(format!("expected {} series, got {got_s}", want.len()));
    }
    for (labels, pts) in &want {
        let Some(m) = got.iter().find(|m| &m.labels == labels) else {
            return Err(format!("missing {} in {got_s}", labels_string(labels)));
        };
        let g = points_of(m);
        if g.len() != pts.len()
            || g.iter()
                .zip(pts)
                .any(|(a, b)| a.0 != b.0 || !same_sample(&b.1, &a.1))
        {
            let want_s: Vec<String> = pts
                .iter()
                .map(|(t, v)| format!("{}@{t}", show_sample(v)))
                .collect();
            return Err(format!(
                "{}: expected [{}], got {got_s}",
                labels_string(labels),
                want_s.join(" ")
            ));
        }
    }
    Ok(())
}

fn compare_vector(
    want: &[(Labels, Sample)],
    got: &[(Labels, i64, Sample)],
    ordered: bool,
) -> Result<(), String> {
    let got_s = show(&QueryValue::Vector(got.to_vec()));
    if want.len() != got.len() {
        return Err(format!("expected {} series, got {got_s}", want.len()));
    }
    for (k, (labels, v)) in want.iter().enumerate() {
        let pos = got.iter().position(|(l, _, _)| l == labels);
        let Some(pos) = pos else {
            return Err(format!("missing {} in {got_s}", labels_string(labels)));
        };
        if ordered && pos != k {
            return Err(format!(
                "{} at position {pos}, expected {k}: {got_s}",
                labels_string(labels)
            ));
        }
        if !same_sample(v, &got[pos].2) {
            return Err(format!(
                "{}: expected {}, got {}",
                labels_string(labels),
                show_sample(v),
                show_sample(&got[pos].2)
            ));
        }
    }
    Ok(())
}

fn almost_equal_test(want: f64, got: f64) -> bool {
    super::funcs::almost_equal(want, got, 1e-6)
}

fn show(v: &QueryValue) -> String {
    match v {
        QueryValue::Scalar { v, .. } => format!("scalar {}", format_value(*v)),
        QueryValue::String { v, .. } => format!("string {v:?}"),
        QueryValue::Vector(s) => {
            let items: Vec<String> = s
                .iter()
                .map(|(l, _, v)| format!("{} {}", labels_string(l), show_sample(v)))
                .collect();
            format!("vector [{}]", items.join(", "))
        }
        QueryValue::Matrix(s) => {
            let items: Vec<String> = s
                .iter()
                .map(|m| {
                    let pts: Vec<String> = points_of(m)
                        .iter()
                        .map(|(t, v)| format!("{}@{}", show_sample(v), t))
                        .collect();
                    format!("{} [{}]", labels_string(&m.labels), pts.join(" "))
                })
                .collect();
            format!("matrix [{}]", items.join(", "))
        }
    }
}

/// The function, aggregation and operator families an expression uses.
pub fn families(e: &Expr) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    walk(e, &mut out);
    if out.is_empty() {
        out.insert("selectors and literals".into());
    }
    out.into_iter().collect()
}

fn walk(e: &Expr, out: &mut std::collections::BTreeSet<String>) {
    match e {
        Expr::Aggregate(a) => {
            out.insert(format!("aggregation {}", a.op));
            walk(&a.expr, out);
            if let Some(p) = &a.param {
                walk(p, out);
            }
        }
        Expr::Unary(u) => {
            out.insert("operator unary -".into());
            walk(&u.expr, out);
        }
        Expr::Binary(b) => {
            let bool_ = b.return_bool();
            let matching = b
                .modifier
                .as_ref()
                .is_some_and(|m| m.matching.is_some() || m.card.labels().is_some());
            out.insert(format!(
                "operator {}{}{}",
                b.op,
                if bool_ { " bool" } else { "" },
                if matching { " (with matching)" } else { "" }
            ));
            walk(&b.lhs, out);
            walk(&b.rhs, out);
        }
        Expr::Paren(p) => walk(&p.expr, out),
        Expr::Subquery(s) => {
            out.insert("subquery".into());
            if s.at.is_some() || s.offset.is_some() {
                out.insert("offset and @".into());
            }
            walk(&s.expr, out);
        }
        Expr::VectorSelector(vs) => {
            if vs.at.is_some() || vs.offset.is_some() {
                out.insert("offset and @".into());
            }
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_some() || ms.vs.offset.is_some() {
                out.insert("offset and @".into());
            }
        }
        Expr::Call(c) => {
            out.insert(format!("function {}", c.func.name));
            for a in &c.args.args {
                walk(a, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation_expands_as_prometheus_does() {
        let v = expand_values(&["0+10x3", "_", "1x2", "-2-1x1", "stale", "_x2", "Inf", "1e3"])
            .unwrap_or_else(|e| panic!("{e}"));
        let f: Vec<String> = v
            .iter()
            .map(|x| match x {
                None => "_".into(),
                Some(Sample::F(x)) if x.to_bits() == STALE_NAN => "stale".into(),
                Some(s) => show_sample(s),
            })
            .collect();
        assert_eq!(
            f,
            [
                "0", "10", "20", "30", "_", "1", "1", "1", "-2", "-3", "stale", "_", "_", "+Inf",
                "1000"
            ]
        );
        let toks = tokens("1 {{schema:0 sum:5 count:4 buckets:[1 2 1]}} {{sum:1 count:1}}x2 _");
        assert_eq!(
            toks,
            [
                "1",
                "{{schema:0 sum:5 count:4 buckets:[1 2 1]}}",
                "{{sum:1 count:1}}x2",
                "_"
            ]
        );
        let v = expand_values(&toks).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.len(), 6);
        assert!(v[1..5].iter().all(|x| matches!(x, Some(Sample::H(_)))));
        // a+bxN adds b N times.
        let v = expand_values(&[
            "{{schema:0 sum:1 count:1 buckets:[1]}}+{{sum:2 count:1 buckets:[1]}}x2",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Some(Some(Sample::H(last))) = v.last() else {
            panic!("no histogram")
        };
        assert_eq!((v.len(), last.count, last.sum), (3, 3.0, 5.0));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("50m"), Some(3_000_000));
        assert_eq!(parse_duration("100"), Some(100_000));
    }

    #[test]
    fn a_small_file_passes_and_a_wrong_expectation_fails() {
        let text = r#"
load 5m
  http_requests{job="api", instance="0"} 0+10x10
  http_requests{job="api", instance="1"} 0+20x10

eval instant at 50m sum(http_requests)
  {} 300

eval instant at 50m http_requests{instance="0"}
  http_requests{job="api", instance="0"} 999

eval range from 0 to 10m step 5m sum by (job) (http_requests)
  {job="api"} 0 30 60

eval_fail instant at 0m http_requests + on(job) http_requests
"#;
        let r = run(text, &Engine::default());
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.cases.len(), 4);
        assert_eq!(r.passed(), 3, "{}", r.render("t"));
        assert!(
            r.cases[1]
                .failure
                .as_deref()
                .unwrap_or("")
                .contains("expected 999")
        );
    }

    #[test]
    fn the_newer_expect_syntax_is_read_as_prometheus_reads_it() {
        let text = r#"
load 1m
metric{a="x"} 1 2 3 4
# A comment ends a block, as a blank line does.
eval instant at 2m metric
expect ordered
expect no_warn
metric{a="x"} 3

eval instant at 1m metric[2m]
    expect range vector from 0 to 1m step 1m
    metric{a="x"} 1 2

eval instant at 0m "hello"
    expect string "hello"

eval instant at 0m 1 + 1
    2

eval instant at 0m label_replace(metric, "a-b", "", "a", "")
    expect fail msg: some other message

eval instant at 0m label_replace(metric, "a-b", "", "a", "")
    expect fail regex: destination label
"#;
        let r = run(text, &Engine::default());
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.cases.len(), 6, "{}", r.render("t"));
        let failures: Vec<usize> = r
            .cases
            .iter()
            .filter(|c| c.failure.is_some())
            .map(|c| c.line)
            .collect();
        // Only the case whose expected message differs.
        assert_eq!(failures, [20], "{}", r.render("t"));
    }
}
