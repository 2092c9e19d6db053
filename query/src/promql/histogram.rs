//! Native histograms, as Prometheus's float histograms: exponential
//! buckets of a schema (bucket `i` of schema `s` is `(2^((i-1)/2^s),
//! 2^(i/2^s)]`, mirrored for negative values), a zero bucket
//! `[-threshold, threshold]`, or custom bounds (schema -53, the buckets of a
//! classic histogram). Buckets are held densely from an offset; an absent
//! bucket and an empty one mean the same.

use super::eval::kahan_sum_inc;

/// The schema of histograms with custom bucket bounds.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Consecutive buckets from index `offset`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<f64>,
}

impl Buckets {
    fn get(&self, idx: i32) -> f64 {
        let k = idx as i64 - self.offset as i64;
        if k < 0 {
            return 0.0;
        }
        self.counts.get(k as usize).copied().unwrap_or(0.0)
    }

    /// Adds `c` to bucket `idx`, growing the range as needed.
    fn add(&mut self, idx: i32, c: f64) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(c);
            return;
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = idx;
        }
        let k = (idx - self.offset) as usize;
        if k >= self.counts.len() {
            self.counts.resize(k + 1, 0.0);
        }
        self.counts[k] += c;
    }

    /// (index, count) of every bucket, empty ones included.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, f64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(k, &c)| (self.offset + k as i32, c))
    }

    /// Drops empty buckets at both ends.
    fn trim(&mut self) {
        let lead = self.counts.iter().take_while(|c| **c == 0.0).count();
        if lead == self.counts.len() {
            *self = Buckets::default();
            return;
        }
        self.counts.drain(..lead);
        self.offset += lead as i32;
        while self.counts.last() == Some(&0.0) {
            self.counts.pop();
        }
    }
}

/// What the producer says about counter resets (Prometheus's
/// `CounterResetHint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetHint {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

/// One native histogram sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive: Buckets,
    pub negative: Buckets,
    /// Upper bounds of the buckets of a custom-bucket histogram (the last,
    /// `+Inf`, implied).
    pub custom_values: Vec<f64>,
    pub hint: ResetHint,
}

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incompatible {
    /// One has exponential buckets and the other custom ones.
    MixedBucketKinds,
    /// Both have custom buckets, with different bounds.
    CustomBounds,
}

/// One bucket, as iteration and the JSON API see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
}

/// The upper bound of exponential bucket `idx` of `schema`, computed as
/// Prometheus does: a power of two for schemas below 1, else a fraction in
/// `[0.5, 1)` times a power of two, so bounds are exact where they can be.
pub fn exponential_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = (idx as i64) << (-schema);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = (frac_idx as f64 / (1u32 << schema) as f64).exp2() / 2.0;
    let exp = ((idx >> schema) + 1) as i64;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

fn ldexp(frac: f64, exp: i64) -> f64 {
    let exp = exp.clamp(-2200, 2200) as i32;
    // Two steps keep 2^exp representable for exponents past ±1023.
    let half = exp / 2;
    frac * 2f64.powi(half) * 2f64.powi(exp - half)
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Lower and upper bound of bucket `idx` on the positive side.
    fn positive_bounds(&self, idx: i32) -> (f64, f64) {
        if self.uses_custom_buckets() {
            let cv = &self.custom_values;
            let at = |i: i64| -> f64 {
                if i < 0 {
                    f64::NEG_INFINITY
                } else {
                    cv.get(i as usize).copied().unwrap_or(f64::INFINITY)
                }
            };
            return (at(idx as i64 - 1), at(idx as i64));
        }
        (
            exponential_bound(idx - 1, self.schema),
            exponential_bound(idx, self.schema),
        )
    }

    /// Every bucket in ascending order of value: negative buckets, the zero
    /// bucket, positive buckets (empty ones included).
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out =
            Vec::with_capacity(self.positive.counts.len() + self.negative.counts.len() + 1);
        for (idx, count) in self.negative.iter().rev() {
            let (l, u) = self.positive_bounds(idx);
            out.push(Bucket {
                lower: -u,
                upper: -l,
                count,
                lower_inclusive: true,
                upper_inclusive: false,
            });
        }
        if !self.uses_custom_buckets() && (self.zero_threshold != 0.0 || self.zero_count != 0.0) {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                count: self.zero_count,
                lower_inclusive: true,
                upper_inclusive: true,
            });
        }
        for (idx, count) in self.positive.iter() {
            let (l, u) = self.positive_bounds(idx);
            out.push(Bucket {
                lower: l,
                upper: u,
                count,
                lower_inclusive: false,
                upper_inclusive: true,
            });
        }
        out
    }

    /// Lowers the resolution to `target` (a smaller schema), merging buckets.
    pub fn reduce_schema(&mut self, target: i32) {
        if target >= self.schema || self.uses_custom_buckets() {
            return;
        }
        let d = self.schema - target;
        for side in [&mut self.positive, &mut self.negative] {
            let mut merged = Buckets::default();
            for (idx, c) in side.iter() {
                merged.add(((idx - 1) >> d) + 1, c);
            }
            *side = merged;
        }
        self.schema = target;
    }

    /// The zero count after widening the zero bucket to at least `t`, and
    /// the threshold it ends up with (a bucket straddling `t` is taken in
    /// whole), as Prometheus's `zeroCountForLargerThreshold`.
    fn zero_count_for_threshold(&self, mut t: f64) -> (f64, f64) {
        if t == self.zero_threshold {
            return (self.zero_count, t);
        }
        'outer: loop {
            let mut count = self.zero_count;
            for (idx, c) in self.positive.iter() {
                let (l, u) = self.positive_bounds(idx);
                if l >= t {
                    break;
                }
                count += c;
                if u > t {
                    if c != 0.0 {
                        t = u;
                    }
                    break;
                }
            }
            for (idx, c) in self.negative.iter() {
                let (l, u) = self.positive_bounds(idx);
                if l >= t {
                    break;
                }
                count += c;
                if u > t {
                    if c != 0.0 {
                        t = u;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (count, t);
        }
    }

    /// Widens the zero bucket to at least `t`, moving the buckets inside it
    /// into it. Returns the threshold reached.
    fn widen_zero_bucket(&mut self, t: f64) -> f64 {
        if t <= self.zero_threshold || self.uses_custom_buckets() {
            return self.zero_threshold;
        }
        let (count, t) = self.zero_count_for_threshold(t);
        for side in 0..2 {
            let b = if side == 0 {
                &self.positive
            } else {
                &self.negative
            };
            let mut kept = Buckets::default();
            for (idx, c) in b.iter() {
                if self.positive_bounds(idx).1 > t {
                    kept.add(idx, c);
                }
            }
            if side == 0 {
                self.positive = kept;
            } else {
                self.negative = kept;
            }
        }
        self.zero_count = count;
        self.zero_threshold = t;
        t
    }

    /// Brings `self` and `other` to a common schema and zero bucket; the
    /// copy of `other` that matches `self` is returned.
    fn align(&mut self, other: &FloatHistogram) -> Result<FloatHistogram, Incompatible> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(Incompatible::MixedBucketKinds);
        }
        if self.uses_custom_buckets() && self.custom_values != other.custom_values {
            return Err(Incompatible::CustomBounds);
        }
        let mut o = other.clone();
        let schema = self.schema.min(o.schema);
        self.reduce_schema(schema);
        o.reduce_schema(schema);
        if !self.uses_custom_buckets() {
            let mut t = self.zero_threshold.max(o.zero_threshold);
            // Widening one may widen past the other's buckets: repeat.
            loop {
                let a = self.widen_zero_bucket(t);
                let b = o.widen_zero_bucket(a);
                if a == b {
                    break;
                }
                t = a.max(b);
            }
        }
        Ok(o)
    }

    /// `self += other`.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<(), Incompatible> {
        let o = self.align(other)?;
        self.count += o.count;
        self.sum += o.sum;
        self.zero_count += o.zero_count;
        for (idx, c) in o.positive.iter() {
            self.positive.add(idx, c);
        }
        for (idx, c) in o.negative.iter() {
            self.negative.add(idx, c);
        }
        self.hint = match (self.hint, o.hint) {
            (a, b) if a == b => a,
            (ResetHint::Gauge, _) | (_, ResetHint::Gauge) => ResetHint::Gauge,
            _ => ResetHint::Unknown,
        };
        Ok(())
    }

    /// `self -= other`; the result is a gauge histogram.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<(), Incompatible> {
        let mut neg = other.clone();
        neg.mul(-1.0);
        neg.hint = ResetHint::Gauge;
        self.add(&neg)?;
        self.hint = ResetHint::Gauge;
        Ok(())
    }

    /// Scales every count and the sum by `f`.
    pub fn mul(&mut self, f: f64) {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        self.positive.counts.iter_mut().for_each(|c| *c *= f);
        self.negative.counts.iter_mut().for_each(|c| *c *= f);
    }

    /// Divides every count and the sum by `f`.
    pub fn div(&mut self, f: f64) {
        self.count /= f;
        self.sum /= f;
        self.zero_count /= f;
        self.positive.counts.iter_mut().for_each(|c| *c /= f);
        self.negative.counts.iter_mut().for_each(|c| *c /= f);
    }

    /// Drops empty buckets at the ends of each side.
    pub fn compact(&mut self) {
        self.positive.trim();
        self.negative.trim();
    }

    /// Whether `self`, following `prev` in a counter histogram series, marks
    /// a counter reset: the hint says so, or any count went down, or the
    /// buckets changed in a way only a reset allows, as Prometheus's
    /// `DetectReset`.
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.hint {
            ResetHint::Reset => return true,
            ResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() && self.custom_values != prev.custom_values {
            return true;
        }
        if self.schema > prev.schema || self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let (prev_zero, t) = prev.zero_count_for_threshold(self.zero_threshold);
        if t != self.zero_threshold || self.zero_count < prev_zero {
            return true;
        }
        let mut p = prev.clone();
        p.reduce_schema(self.schema);
        p.widen_zero_bucket(self.zero_threshold);
        let lower = |a: &Buckets, b: &Buckets| a.iter().any(|(idx, c)| b.get(idx) < c);
        lower(&p.positive, &self.positive) || lower(&p.negative, &self.negative)
    }

    /// Same distribution: equal fields, absent and empty buckets alike.
    pub fn same_as(&self, o: &FloatHistogram) -> bool {
        self.approx_eq(o, |a, b| a == b || (a.is_nan() && b.is_nan()))
    }

    /// Like [`same_as`](Self::same_as), with floats compared by `eq`.
    pub fn approx_eq(&self, o: &FloatHistogram, eq: impl Fn(f64, f64) -> bool) -> bool {
        let sides = |a: &Buckets, b: &Buckets| {
            a.iter().all(|(i, c)| eq(c, b.get(i))) && b.iter().all(|(i, c)| eq(c, a.get(i)))
        };
        self.schema == o.schema
            && eq(self.count, o.count)
            && eq(self.sum, o.sum)
            && self.zero_threshold == o.zero_threshold
            && eq(self.zero_count, o.zero_count)
            && self.custom_values == o.custom_values
            && sides(&self.positive, &o.positive)
            && sides(&self.negative, &o.negative)
    }

    /// Whether a bucket side has any bucket (empty ones count, as spans do
    /// in Prometheus).
    fn has_negative(&self) -> bool {
        !self.negative.counts.is_empty()
    }

    fn has_positive(&self) -> bool {
        !self.positive.counts.is_empty()
    }

    /// The φ-quantile, as Prometheus's `HistogramQuantile`: exponential
    /// interpolation within exponential buckets, linear within the zero
    /// bucket and custom buckets.
    pub fn quantile(&self, q: f64) -> f64 {
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if self.count == 0.0 || q.is_nan() {
            return f64::NAN;
        }
        let all = self.buckets();
        let forward = self.sum.is_nan() || q < 0.5;
        let rank = if forward {
            q * self.count
        } else {
            (1.0 - q) * self.count
        };
        let mut count = 0.0;
        let mut bucket: Option<Bucket> = None;
        let order: Box<dyn Iterator<Item = &Bucket>> = if forward {
            Box::new(all.iter())
        } else {
            Box::new(all.iter().rev())
        };
        for b in order {
            if b.count == 0.0 {
                continue;
            }
            count += b.count;
            bucket = Some(*b);
            if count >= rank {
                break;
            }
        }
        let Some(mut b) = bucket else {
            return f64::NAN;
        };
        if !self.uses_custom_buckets() && b.lower < 0.0 && b.upper > 0.0 {
            if !self.has_negative() && self.has_positive() {
                b.lower = 0.0;
            } else if !self.has_positive() && self.has_negative() {
                b.upper = 0.0;
            }
        } else if self.uses_custom_buckets() {
            if b.lower == f64::NEG_INFINITY {
                if b.upper <= 0.0 {
                    return b.upper;
                }
                b.lower = 0.0;
            } else if b.upper == f64::INFINITY {
                return b.lower;
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            return if forward { b.upper } else { b.lower };
        }
        let mut fraction = (rank - (count - b.count)) / b.count;
        if !forward {
            fraction = 1.0 - fraction;
        }
        if self.uses_custom_buckets() || (b.lower <= 0.0 && b.upper >= 0.0) {
            return b.lower + (b.upper - b.lower) * fraction;
        }
        let log_lower = b.lower.abs().log2();
        let log_upper = b.upper.abs().log2();
        if b.lower > 0.0 {
            (log_lower + (log_upper - log_lower) * fraction).exp2()
        } else {
            -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
        }
    }

    /// The estimated share of observations in `[lower, upper]`, as
    /// Prometheus's `HistogramFraction`.
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return f64::NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        for mut b in self.buckets() {
            let mut zero = false;
            if !self.uses_custom_buckets() && b.lower <= 0.0 && b.upper >= 0.0 {
                zero = true;
                if !self.has_negative() && self.has_positive() {
                    b.lower = 0.0;
                } else if !self.has_positive() && self.has_negative() {
                    b.upper = 0.0;
                }
            }
            if self.uses_custom_buckets() && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
                b.lower = 0.0;
            }
            let linear = self.uses_custom_buckets() || zero;
            let interpolate = |v: f64| -> f64 {
                if linear {
                    return rank + b.count * (v - b.lower) / (b.upper - b.lower);
                }
                let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
                let f = if v > 0.0 {
                    (lv - ll) / (lu - ll)
                } else {
                    1.0 - (lv - lu) / (ll - lu)
                };
                rank + b.count * f
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        if !lower_set || lower_rank > self.count {
            lower_rank = self.count;
        }
        if !upper_set || upper_rank > self.count {
            upper_rank = self.count;
        }
        (upper_rank - lower_rank) / self.count
    }

    /// The estimated variance of the observations: each bucket's
    /// observations taken at its geometric mean (arithmetic for custom
    /// buckets, zero in the zero bucket), around the histogram's mean.
    pub fn variance(&self) -> f64 {
        let mean = self.sum / self.count;
        let (mut var, mut c) = (0.0, 0.0);
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            let val = if self.uses_custom_buckets() {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let g = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 { -g } else { g }
            };
            let delta = val - mean;
            (var, c) = kahan_sum_inc(b.count * delta * delta, var, c);
        }
        (var + c) / self.count
    }

    /// Parses the test notation inside `{{...}}`: `schema:0 sum:5 count:4
    /// z_bucket:1 z_bucket_w:0.5 buckets:[1 2 1] offset:1 n_buckets:[...]
    /// n_offset:0 custom_values:[...] counter_reset_hint:gauge`.
    pub fn parse_test(s: &str) -> Result<FloatHistogram, String> {
        let inner = s
            .trim()
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .ok_or_else(|| format!("bad histogram {s:?}"))?;
        let mut h = FloatHistogram::default();
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        let (mut pos_off, mut neg_off) = (0i32, 0i32);
        let mut rest = inner.trim();
        let num = |v: &str| -> Result<f64, String> {
            match v {
                "Inf" | "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => v
                    .parse::<f64>()
                    .map_err(|_| format!("bad number {v:?} in histogram {s:?}")),
            }
        };
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once(':')
                .ok_or_else(|| format!("bad histogram field in {s:?}"))?;
            let key = key.trim();
            let after = after.trim_start();
            let (value, next) = if let Some(list) = after.strip_prefix('[') {
                let end = list
                    .find(']')
                    .ok_or_else(|| format!("unclosed list in {s:?}"))?;
                (&list[..end], &list[end + 1..])
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            let list =
                || -> Result<Vec<f64>, String> { value.split_whitespace().map(num).collect() };
            match key {
                "schema" => h.schema = value.parse().map_err(|_| format!("bad schema in {s:?}"))?,
                "sum" => h.sum = num(value)?,
                "count" => h.count = num(value)?,
                "z_bucket" => h.zero_count = num(value)?,
                "z_bucket_w" => h.zero_threshold = num(value)?,
                "buckets" => pos = list()?,
                "n_buckets" => neg = list()?,
                "offset" => pos_off = value.parse().map_err(|_| format!("bad offset in {s:?}"))?,
                "n_offset" => {
                    neg_off = value
                        .parse()
                        .map_err(|_| format!("bad n_offset in {s:?}"))?
                }
                "custom_values" => h.custom_values = list()?,
                "counter_reset_hint" => {
                    h.hint = match value {
                        "unknown" => ResetHint::Unknown,
                        "reset" => ResetHint::Reset,
                        "not_reset" => ResetHint::NotReset,
                        "gauge" => ResetHint::Gauge,
                        _ => return Err(format!("bad counter_reset_hint in {s:?}")),
                    }
                }
                _ => return Err(format!("unknown histogram field {key:?} in {s:?}")),
            }
            rest = next.trim_start();
        }
        h.positive = Buckets {
            offset: pos_off,
            counts: pos,
        };
        h.negative = Buckets {
            offset: neg_off,
            counts: neg,
        };
        Ok(h)
    }

    /// The test notation of the histogram (for messages).
    pub fn test_expr(&self) -> String {
        let list = |c: &[f64]| {
            c.iter()
                .map(|v| super::format_value(*v).replace("+Inf", "Inf"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        if self.schema != 0 {
            parts.push(format!("schema:{}", self.schema));
        }
        parts.push(format!("count:{}", super::format_value(self.count)));
        parts.push(format!("sum:{}", super::format_value(self.sum)));
        if self.zero_count != 0.0 {
            parts.push(format!("z_bucket:{}", super::format_value(self.zero_count)));
        }
        if self.zero_threshold != 0.0 {
            parts.push(format!("z_bucket_w:{}", self.zero_threshold));
        }
        if !self.custom_values.is_empty() {
            parts.push(format!("custom_values:[{}]", list(&self.custom_values)));
        }
        if !self.positive.counts.is_empty() {
            if self.positive.offset != 0 {
                parts.push(format!("offset:{}", self.positive.offset));
            }
            parts.push(format!("buckets:[{}]", list(&self.positive.counts)));
        }
        if !self.negative.counts.is_empty() {
            if self.negative.offset != 0 {
                parts.push(format!("n_offset:{}", self.negative.offset));
            }
            parts.push(format!("n_buckets:[{}]", list(&self.negative.counts)));
        }
        match self.hint {
            ResetHint::Unknown => {}
            ResetHint::Reset => parts.push("counter_reset_hint:reset".into()),
            ResetHint::NotReset => parts.push("counter_reset_hint:not_reset".into()),
            ResetHint::Gauge => parts.push("counter_reset_hint:gauge".into()),
        }
        format!("{{{{{}}}}}", parts.join(" "))
    }

    /// The non-empty buckets as the HTTP API lists them: `[boundary rule,
    /// lower, upper, count]`, the rule 0 for `(l,u]`, 1 for `[l,u)`, 2 for
    /// `(l,u)`, 3 for `[l,u]`.
    pub fn api_buckets(&self) -> Vec<(u8, f64, f64, f64)> {
        self.buckets()
            .into_iter()
            .filter(|b| b.count != 0.0)
            .map(|b| {
                let rule = match (b.lower_inclusive, b.upper_inclusive) {
                    (false, true) => 0,
                    (true, false) => 1,
                    (false, false) => 2,
                    (true, true) => 3,
                };
                (rule, b.lower, b.upper, b.count)
            })
            .collect()
    }

    /// A histogram from OTLP's exponential histogram point: OTLP's bucket
    /// `i` (offset included) is `(base^i, base^(i+1)]`, Prometheus's `i+1`;
    /// scales above 8 are reduced to 8, as Prometheus's OTLP receiver does.
    #[allow(clippy::too_many_arguments)]
    pub fn from_otlp_exponential(
        scale: i32,
        zero_threshold: f64,
        zero_count: f64,
        count: f64,
        sum: f64,
        positive_offset: i32,
        positive: &[f64],
        negative_offset: i32,
        negative: &[f64],
    ) -> Option<FloatHistogram> {
        if scale < -4 {
            return None;
        }
        let mut h = FloatHistogram {
            schema: scale,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive: Buckets {
                offset: positive_offset.saturating_add(1),
                counts: positive.to_vec(),
            },
            negative: Buckets {
                offset: negative_offset.saturating_add(1),
                counts: negative.to_vec(),
            },
            custom_values: Vec::new(),
            hint: ResetHint::Unknown,
        };
        h.reduce_schema(8);
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> FloatHistogram {
        FloatHistogram::parse_test(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn bounds_follow_the_schema() {
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(-1, 0), 0.5);
        assert_eq!(exponential_bound(1, -1), 4.0);
        assert!((exponential_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(exponential_bound(2, 1), 2.0);
    }

    #[test]
    fn adding_merges_to_the_lower_resolution() {
        let mut a = h("{{schema:-1 sum:4 count:1 buckets:[1] offset:1}}");
        a.add(&h("{{schema:0 sum:4 count:4 buckets:[2 2] offset:1}}"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(a.same_as(&h("{{schema:-1 count:5 sum:8 offset:1 buckets:[5]}}")));
    }

    #[test]
    fn a_wider_zero_bucket_takes_in_the_buckets_below_it() {
        let mut a = h("{{schema:0 count:2 sum:1 z_bucket_w:1 z_bucket:1 buckets:[1] offset:1}}");
        let b = h("{{schema:0 count:3 sum:1 buckets:[1 1 1] offset:-1}}");
        a.add(&b).unwrap_or_else(|e| panic!("{e:?}"));
        // Buckets -1 (0.25,0.5] and 0 (0.5,1] fall into [-1, 1].
        assert_eq!(a.zero_count, 3.0);
        assert_eq!(a.positive.get(1), 2.0);
    }

    #[test]
    fn quantile_and_fraction_interpolate_exponentially() {
        let s = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
        assert!((s.quantile(0.5) - std::f64::consts::SQRT_2).abs() < 1e-12);
        assert_eq!(s.fraction(1.0, 2.0), 0.5);
        assert_eq!(s.fraction(0.0, 8.0), 1.0);
        let z = h("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 buckets:[2 3 0 1 4]}}");
        assert_eq!(z.quantile(1.0), 16.0);
        assert!((z.quantile(0.1) - 0.0006).abs() < 1e-12);
        let balanced = h("{{schema:0 sum:0 count:8 buckets:[1 2 1] n_buckets:[1 2 1]}}");
        assert_eq!(balanced.quantile(0.5), 0.5);
    }

    #[test]
    fn a_count_going_down_is_a_reset() {
        let a = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
        let b = h("{{schema:0 sum:6 count:5 buckets:[1 3 1]}}");
        assert!(!b.detect_reset(&a));
        assert!(a.detect_reset(&b));
        // Same count, one bucket lower: a reset too.
        let c = h("{{schema:0 sum:6 count:5 buckets:[2 2 1]}}");
        assert!(c.detect_reset(&b));
    }

    #[test]
    fn test_notation_round_trips() {
        let s = "{{schema:1 count:3 sum:2.5 z_bucket:1 z_bucket_w:0.001 offset:-2 buckets:[1 0 1] n_buckets:[1]}}";
        let a = h(s);
        assert!(a.same_as(&h(&a.test_expr())));
        assert!(FloatHistogram::parse_test("{{bogus:1}}").is_err());
    }
}
