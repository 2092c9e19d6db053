//! The store's OTLP metrics as Prometheus series, for the engine.
//!
//! Every data point becomes the samples of the series the OpenTelemetry
//! compatibility spec makes of it ([`crate::promnames`]): gauges and sums one
//! series (`_total` for monotonic sums), histograms `_bucket{le}` (cumulative
//! counts), `_sum` and `_count`, exponential histograms the same with their
//! bucket boundaries as `le` (so `histogram_quantile` reads them), summaries
//! `{quantile}`, `_sum` and `_count`. A point flagged "no recorded value"
//! is a staleness marker. Delta points are summed into a running total per
//! series from the start of the query's window, which is what `rate` and
//! `increase` need of a counter.
//!
//! Segments list their series runs in the footer (`lumen_store::series`):
//! a query turns each run into its Prometheus series once per segment
//! (cached), keeps the runs whose series match, and reads only the value
//! columns of those rows. The buffer, and segments written before series
//! ids existed, are read row by row.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int32Array, ListArray, MapArray, RecordBatch,
    StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use lumen_store::{SegmentMeta, Signal, Store};
use promql_parser::label::Matcher;

use super::{EvalError, FloatHistogram, Labels, Queryable, RawSeries, STALE_NAN};
use crate::json::missing;
use crate::promnames::{self, MetricKind};
use crate::search::{
    Source, Sources, footer_value, for_each_batch, for_each_selected, read_segment,
};

/// The columns a query reads.
const COLUMNS: &[&str] = &[
    "metric_name",
    "metric_type",
    "description",
    "value_int",
    "unit",
    "timestamp",
    "flags",
    "value",
    "is_monotonic",
    "aggregation_temporality",
    "count",
    "sum",
    "bucket_counts",
    "explicit_bounds",
    "scale",
    "zero_count",
    "zero_threshold",
    "positive_offset",
    "positive_bucket_counts",
    "negative_offset",
    "negative_bucket_counts",
    "quantiles",
    "attributes",
    "resource_attributes",
];

/// The columns a run's rows are read with, for the parts chosen of it.
fn value_columns<'p>(parts: impl Iterator<Item = &'p Part>) -> Vec<&'static str> {
    let mut cols = vec!["timestamp", "flags"];
    for p in parts {
        if matches!(p, Part::Value) && !cols.contains(&"value_int") {
            // Segments store an integer point's `value` as null.
            cols.push("value_int");
        }
        let c = match p {
            Part::Value => "value",
            Part::Count => "count",
            Part::Sum => "sum",
            Part::Bucket(_) => "bucket_counts",
            Part::Quantile(_) => "quantiles",
        };
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    cols
}

/// The typed columns of a metrics batch.
/// The columns that hold a point's values.
struct ValueCols<'b> {
    ts: &'b TimestampNanosecondArray,
    flags: &'b UInt32Array,
    // Only the columns a read asked for are there.
    value: Option<&'b Float64Array>,
    /// An integer point's exact value; segments store its `value` as null.
    value_int: Option<&'b datafusion::arrow::array::Int64Array>,
    count: Option<&'b UInt64Array>,
    sum: Option<&'b Float64Array>,
    buckets: Option<&'b ListArray>,
    /// The flat bucket counts of `buckets`, read through its offsets.
    bucket_counts: Option<&'b [u64]>,
    quantiles: Option<&'b ListArray>,
}

impl<'b> ValueCols<'b> {
    fn new(b: &'b RecordBatch) -> crate::Result<ValueCols<'b>> {
        Ok(ValueCols {
            ts: col(b, "timestamp")?,
            flags: col(b, "flags")?,
            value: col(b, "value").ok(),
            value_int: col(b, "value_int").ok(),
            count: col(b, "count").ok(),
            sum: col(b, "sum").ok(),
            buckets: col::<ListArray>(b, "bucket_counts").ok(),
            bucket_counts: col::<ListArray>(b, "bucket_counts")
                .ok()
                .and_then(|l| l.values().as_primitive_opt::<UInt64Type>())
                .map(|a| &a.values()[..]),
            quantiles: col(b, "quantiles").ok(),
        })
    }

    fn quantile_list(&self, i: usize) -> Vec<(f64, f64)> {
        let Some(quantiles) = self.quantiles.filter(|q| q.is_valid(i)) else {
            return Vec::new();
        };
        let v = quantiles.value(i);
        let Some(s) = v.as_struct_opt() else {
            return Vec::new();
        };
        let (Some(q), Some(val)) = (
            s.column_by_name("quantile")
                .and_then(|c| c.as_primitive_opt::<Float64Type>()),
            s.column_by_name("value")
                .and_then(|c| c.as_primitive_opt::<Float64Type>()),
        ) else {
            return Vec::new();
        };
        (0..q.len()).map(|j| (q.value(j), val.value(j))).collect()
    }

    fn part_value(&self, i: usize, part: Part) -> Option<f64> {
        match part {
            Part::Value => match self.value.filter(|a| a.is_valid(i)) {
                Some(a) => Some(a.value(i)),
                None => self
                    .value_int
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i) as f64),
            },
            Part::Count => self
                .count
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i) as f64),
            Part::Sum => self.sum.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            Part::Bucket(j) => {
                // The cumulative count through bucket j, without slicing the list.
                let l = self.buckets.filter(|a| a.is_valid(i))?;
                let counts = self.bucket_counts?;
                let offsets = l.value_offsets();
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                let upto = (start + j + 1).min(end);
                Some(counts.get(start..upto)?.iter().sum::<u64>() as f64)
            }
            Part::Quantile(j) => self.quantile_list(i).get(j).map(|q| q.1),
        }
    }
}

/// The typed columns of a metrics batch.
struct Cols<'b> {
    v: ValueCols<'b>,
    name: &'b StringArray,
    desc: &'b StringArray,
    kind: &'b StringArray,
    unit: &'b StringArray,
    mono: &'b BooleanArray,
    temporality: &'b StringArray,
    bounds: &'b ListArray,
    scale: &'b Int32Array,
    zero_count: &'b UInt64Array,
    zero_threshold: &'b Float64Array,
    pos_offset: &'b Int32Array,
    pos_buckets: &'b ListArray,
    neg_offset: &'b Int32Array,
    neg_buckets: &'b ListArray,
    attrs: &'b MapArray,
    res: &'b MapArray,
}

fn col<'b, T: 'static>(b: &'b RecordBatch, name: &'static str) -> crate::Result<&'b T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| missing(name))
}

impl<'b> Cols<'b> {
    fn new(b: &'b RecordBatch) -> crate::Result<Cols<'b>> {
        Ok(Cols {
            v: ValueCols::new(b)?,
            name: col(b, "metric_name")?,
            desc: col(b, "description")?,
            kind: col(b, "metric_type")?,
            unit: col(b, "unit")?,
            mono: col(b, "is_monotonic")?,
            temporality: col(b, "aggregation_temporality")?,
            bounds: col(b, "explicit_bounds")?,
            scale: col(b, "scale")?,
            zero_count: col(b, "zero_count")?,
            zero_threshold: col(b, "zero_threshold")?,
            pos_offset: col(b, "positive_offset")?,
            pos_buckets: col(b, "positive_bucket_counts")?,
            neg_offset: col(b, "negative_offset")?,
            neg_buckets: col(b, "negative_bucket_counts")?,
            attrs: col(b, "attributes")?,
            res: col(b, "resource_attributes")?,
        })
    }

    fn str_or_empty(a: &StringArray, i: usize) -> &str {
        if a.is_valid(i) { a.value(i) } else { "" }
    }

    fn metric_kind(&self, i: usize) -> Option<MetricKind> {
        kind_of(
            self.kind.value(i),
            self.mono.is_valid(i).then(|| self.mono.value(i)),
        )
    }

    fn is_delta(&self, i: usize) -> bool {
        Self::str_or_empty(self.temporality, i) == "AGGREGATION_TEMPORALITY_DELTA"
    }

    fn f64_list(l: &ListArray, i: usize) -> Vec<f64> {
        Self::list::<Float64Type>(l, i)
    }

    fn u64_list(l: &ListArray, i: usize) -> Vec<u64> {
        Self::list::<UInt64Type>(l, i)
    }

    /// The values of row `i` of a list of primitives (none when null).
    fn list<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
        l: &ListArray,
        i: usize,
    ) -> Vec<T::Native> {
        if !l.is_valid(i) {
            return Vec::new();
        }
        l.value(i)
            .as_primitive_opt::<T>()
            .map(|a| a.values().to_vec())
            .unwrap_or_default()
    }

    /// A hash of everything that decides a point's series (two hashers, so
    /// 128 bits: a collision would merge two series).
    fn series_key(&self, i: usize) -> u128 {
        let mut a = DefaultHasher::new();
        let mut b = DefaultHasher::new();
        0xa5u8.hash(&mut b);
        let mut both = |s: &str| {
            s.hash(&mut a);
            s.hash(&mut b);
        };
        both(self.name.value(i));
        both(self.kind.value(i));
        both(Self::str_or_empty(self.unit, i));
        both(if self.mono.is_valid(i) && self.mono.value(i) {
            "m"
        } else {
            ""
        });
        for m in [self.attrs, self.res] {
            if m.is_valid(i) {
                let e = m.value(i);
                if let (Some(k), Some(v)) = (
                    e.column(0).as_string_opt::<i32>(),
                    e.column(1).as_string_opt::<i32>(),
                ) {
                    for j in 0..k.len() {
                        both(k.value(j));
                        both(if v.is_valid(j) { v.value(j) } else { "" });
                    }
                }
            }
            both("\u{1}");
        }
        for x in Self::f64_list(self.bounds, i) {
            x.to_bits().hash(&mut a);
            x.to_bits().hash(&mut b);
        }
        for (q, _) in self.v.quantile_list(i) {
            q.to_bits().hash(&mut a);
            q.to_bits().hash(&mut b);
        }
        ((a.finish() as u128) << 64) | b.finish() as u128
    }

    /// The family name and the labels (without `__name__`) of point `i`.
    fn base(&self, i: usize, kind: MetricKind) -> (String, Labels) {
        let attrs = crate::json::map_entries(self.attrs, i);
        let res = crate::json::map_entries(self.res, i);
        prom_labels(
            self.name.value(i),
            Self::str_or_empty(self.unit, i),
            kind,
            &attrs,
            &res,
        )
    }
}

/// The Prometheus family name and labels (without `__name__`) of an OTLP
/// stream: attributes as labels, the resource's service as job/instance.
fn prom_labels(
    name: &str,
    unit: &str,
    kind: MetricKind,
    attrs: &[(String, String)],
    resource: &[(String, String)],
) -> (String, Labels) {
    let family = promnames::metric_name(name, unit, kind);
    let mut labels: Labels = promnames::labels(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .into_iter()
        .collect();
    let get = |k: &str| {
        resource
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let (job, instance) = promnames::job_and_instance(
        get("service.name"),
        get("service.namespace"),
        get("service.instance.id"),
    );
    if let Some(j) = job {
        labels.insert("job".into(), j);
    }
    if let Some(inst) = instance {
        labels.insert("instance".into(), inst);
    }
    (family, labels)
}

fn kind_of(kind: &str, monotonic: Option<bool>) -> Option<MetricKind> {
    Some(match kind {
        "gauge" => MetricKind::Gauge,
        "sum" if monotonic == Some(true) => MetricKind::Counter,
        "sum" => MetricKind::UpDownSum,
        "histogram" => MetricKind::Histogram,
        "exponential_histogram" => MetricKind::ExponentialHistogram,
        "summary" => MetricKind::Summary,
        _ => return None,
    })
}

/// What `/api/v1/metadata` reports of a metric family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FamilyMeta {
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

impl FamilyMeta {
    fn new(kind: MetricKind, help: &str, unit: &str) -> FamilyMeta {
        FamilyMeta {
            kind: match kind {
                MetricKind::Gauge | MetricKind::UpDownSum => "gauge",
                MetricKind::Counter => "counter",
                MetricKind::Histogram | MetricKind::ExponentialHistogram => "histogram",
                MetricKind::Summary => "summary",
            },
            help: help.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

/// Metadata of each metric family, by its Prometheus name.
pub(crate) type FamilyMetadata =
    std::collections::BTreeMap<String, std::collections::BTreeSet<FamilyMeta>>;

/// What a series reads of its data point.
#[derive(Debug, Clone, Copy)]
enum Part {
    Value,
    /// The cumulative count through explicit bucket `j`.
    Bucket(usize),
    Count,
    Sum,
    Quantile(usize),
}

fn with(labels: &Labels, name: String, extra: Option<(&str, String)>) -> Labels {
    let mut l = labels.clone();
    l.insert("__name__".into(), name);
    if let Some((k, v)) = extra {
        l.insert(k.into(), v);
    }
    l
}

/// The series of a point whose shape depends only on its series key.
fn fixed_series(
    family: String,
    labels: Labels,
    kind: MetricKind,
    bounds: &[f64],
    quantiles: &[f64],
) -> Vec<(Labels, Part)> {
    let fmt = super::format_value;
    match kind {
        MetricKind::Gauge | MetricKind::UpDownSum | MetricKind::Counter => {
            vec![(with(&labels, family, None), Part::Value)]
        }
        MetricKind::Histogram => {
            let mut out: Vec<(Labels, Part)> = bounds
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    (
                        with(&labels, format!("{family}_bucket"), Some(("le", fmt(*b)))),
                        Part::Bucket(j),
                    )
                })
                .collect();
            out.push((
                with(
                    &labels,
                    format!("{family}_bucket"),
                    Some(("le", "+Inf".into())),
                ),
                Part::Count,
            ));
            out.push((with(&labels, format!("{family}_sum"), None), Part::Sum));
            out.push((with(&labels, format!("{family}_count"), None), Part::Count));
            out
        }
        MetricKind::Summary => {
            let mut out: Vec<(Labels, Part)> = quantiles
                .iter()
                .enumerate()
                .map(|(j, q)| {
                    (
                        with(&labels, family.clone(), Some(("quantile", fmt(*q)))),
                        Part::Quantile(j),
                    )
                })
                .collect();
            out.push((with(&labels, format!("{family}_sum"), None), Part::Sum));
            out.push((with(&labels, format!("{family}_count"), None), Part::Count));
            out
        }
        MetricKind::ExponentialHistogram => Vec::new(),
    }
}

/// The series a run of a segment makes, decided from the footer alone.
#[derive(Debug)]
struct RunPlan {
    first: u64,
    rows: u64,
    /// First and last timestamps, ms.
    min_ms: i64,
    max_ms: i64,
    meta: (String, FamilyMeta),
    delta: bool,
    /// Exponential histograms: read row by row.
    per_row: bool,
    parts: Vec<(Labels, Part)>,
}

type PlanCache = std::sync::Mutex<HashMap<String, std::sync::Arc<Vec<RunPlan>>>>;

/// Run plans by segment key: segments never change, so each is worked out
/// once.
fn plan_cache() -> &'static PlanCache {
    static CACHE: std::sync::OnceLock<PlanCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Plans kept; past this the cache starts over.
const PLAN_CACHE: usize = 4096;

fn plans_of(index: &lumen_store::series::SeriesIndex) -> Vec<RunPlan> {
    index
        .runs
        .iter()
        .filter_map(|r| {
            let kind = kind_of(&r.kind, r.monotonic)?;
            let delta = r.temporality.as_deref() == Some("AGGREGATION_TEMPORALITY_DELTA")
                && !matches!(kind, MetricKind::Gauge | MetricKind::Summary);
            let per_row = kind == MetricKind::ExponentialHistogram;
            let resource = index
                .resources
                .get(r.resource)
                .map_or(&[][..], Vec::as_slice);
            let (family, labels) = prom_labels(&r.name, &r.unit, kind, &r.attributes, resource);
            let meta = (
                family.clone(),
                FamilyMeta::new(kind, &r.description, &r.unit),
            );
            let parts = if per_row {
                Vec::new()
            } else {
                fixed_series(family, labels, kind, &r.bounds, &r.quantiles)
            };
            Some(RunPlan {
                first: r.first,
                rows: r.rows,
                min_ms: r.min_time.div_euclid(1_000_000),
                max_ms: r.max_time.div_euclid(1_000_000),
                meta,
                delta,
                per_row,
                parts,
            })
        })
        .collect()
}

/// The run plans of a segment, or `None` for a segment without a series
/// index (written before series ids existed).
fn segment_plans(
    store: &Store,
    seg: &SegmentMeta,
) -> crate::Result<Option<std::sync::Arc<Vec<RunPlan>>>> {
    let key = store
        .data_dir()
        .join(&seg.path)
        .to_string_lossy()
        .into_owned();
    let poisoned = |_| crate::Error::Internal("series plan cache poisoned".into());
    if let Some(p) = plan_cache().lock().map_err(poisoned)?.get(&key) {
        return Ok(Some(std::sync::Arc::clone(p)));
    }
    let Some(text) = footer_value(store, seg, lumen_store::series::SERIES_INDEX_KEY)? else {
        return Ok(None);
    };
    let index = lumen_store::series::decode_index(&text).ok_or_else(|| {
        crate::Error::Internal(format!("segment {}: unreadable series index", seg.path))
    })?;
    let plans = std::sync::Arc::new(plans_of(&index));
    let mut cache = plan_cache().lock().map_err(poisoned)?;
    if cache.len() >= PLAN_CACHE {
        cache.clear();
    }
    cache.insert(key, std::sync::Arc::clone(&plans));
    Ok(Some(plans))
}

/// An exponential histogram point as cumulative `le` buckets, `_sum` and
/// `_count`: bucket `k` of scale `s` holds (base^k, base^(k+1)], base =
/// 2^(2^-s); negative buckets mirror it, and the zero bucket ends at the
/// zero threshold.
fn exponential_series(c: &Cols, i: usize) -> Vec<(Labels, f64)> {
    let (family, labels) = c.base(i, MetricKind::ExponentialHistogram);
    let scale = if c.scale.is_valid(i) {
        c.scale.value(i)
    } else {
        0
    };
    let base = 2f64.powf(2f64.powi(-scale));
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let neg = Cols::u64_list(c.neg_buckets, i);
    let neg_off = if c.neg_offset.is_valid(i) {
        c.neg_offset.value(i)
    } else {
        0
    };
    for (k, n) in neg.iter().enumerate().rev() {
        buckets.push((-base.powi(neg_off + k as i32), *n));
    }
    let zt = if c.zero_threshold.is_valid(i) {
        c.zero_threshold.value(i)
    } else {
        0.0
    };
    buckets.push((
        zt,
        if c.zero_count.is_valid(i) {
            c.zero_count.value(i)
        } else {
            0
        },
    ));
    let pos = Cols::u64_list(c.pos_buckets, i);
    let pos_off = if c.pos_offset.is_valid(i) {
        c.pos_offset.value(i)
    } else {
        0
    };
    for (k, n) in pos.iter().enumerate() {
        buckets.push((base.powi(pos_off + k as i32 + 1), *n));
    }
    let mut out = Vec::with_capacity(buckets.len() + 3);
    let mut cum = 0u64;
    for (le, n) in buckets {
        cum += n;
        out.push((
            with(
                &labels,
                format!("{family}_bucket"),
                Some(("le", super::format_value(le))),
            ),
            cum as f64,
        ));
    }
    let count = c.v.part_value(i, Part::Count).unwrap_or(cum as f64);
    out.push((
        with(
            &labels,
            format!("{family}_bucket"),
            Some(("le", "+Inf".into())),
        ),
        count,
    ));
    if let Some(sum) = c.v.part_value(i, Part::Sum) {
        out.push((with(&labels, format!("{family}_sum"), None), sum));
    }
    out.push((with(&labels, format!("{family}_count"), None), count));
    out
}

/// An exponential histogram point as a native histogram of the family's
/// own name (beside its classic series).
fn native_histogram(c: &Cols, i: usize) -> Option<(Labels, FloatHistogram)> {
    let (family, labels) = c.base(i, MetricKind::ExponentialHistogram);
    let int = |a: &Int32Array| if a.is_valid(i) { a.value(i) } else { 0 };
    let counts = |l: &ListArray| -> Vec<f64> {
        Cols::u64_list(l, i).into_iter().map(|n| n as f64).collect()
    };
    let pos = counts(c.pos_buckets);
    let neg = counts(c.neg_buckets);
    let zero = if c.zero_count.is_valid(i) {
        c.zero_count.value(i) as f64
    } else {
        0.0
    };
    let total = pos.iter().chain(&neg).sum::<f64>() + zero;
    let h = FloatHistogram::from_otlp_exponential(
        int(c.scale),
        if c.zero_threshold.is_valid(i) {
            c.zero_threshold.value(i)
        } else {
            0.0
        },
        zero,
        c.v.part_value(i, Part::Count).unwrap_or(total),
        c.v.part_value(i, Part::Sum).unwrap_or(f64::NAN),
        int(c.pos_offset),
        &pos,
        int(c.neg_offset),
        &neg,
    )?;
    Some((with(&labels, family, None), h))
}

/// The store, read as Prometheus series.
pub struct StoreQueryable<'a> {
    pub store: &'a Store,
    pub deadline: Option<Instant>,
    /// Rows of indexed segments past which a read goes on two threads.
    pub parallel_rows: usize,
}

impl<'a> StoreQueryable<'a> {
    pub fn new(store: &'a Store, deadline: Option<Instant>) -> StoreQueryable<'a> {
        StoreQueryable {
            store,
            deadline,
            parallel_rows: PARALLEL_ROWS,
        }
    }
}

/// A series being collected: labels, float samples, whether they are
/// deltas, and native histogram samples.
type Collecting = (Labels, Vec<(i64, f64)>, bool, Vec<(i64, FloatHistogram)>);

#[derive(Default)]
struct Collected {
    series: Vec<Collecting>,
    /// Rows the indexed segments will give each series (to size them once).
    expected: Vec<usize>,
    index: HashMap<Labels, usize>,
    /// Series key → for each derived series, its output index (None: it
    /// does not match) and what it reads.
    cache: HashMap<u128, Vec<(Option<usize>, Part)>>,
}

impl Collected {
    fn slot(&mut self, labels: &Labels, delta: bool) -> usize {
        if let Some(&o) = self.index.get(labels) {
            return o;
        }
        self.series
            .push((labels.clone(), Vec::new(), delta, Vec::new()));
        self.expected.push(0);
        self.index.insert(labels.clone(), self.series.len() - 1);
        self.series.len() - 1
    }
}

/// Whether `l` matches every matcher (an absent label matches as empty).
pub(super) fn matches_all(matchers: &[Matcher], l: &Labels) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(l.get(&m.name).map_or("", String::as_str)))
}

impl StoreQueryable<'_> {
    fn visit(
        &self,
        b: &RecordBatch,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut Collected,
    ) -> crate::Result<()> {
        self.check()?;
        let c = Cols::new(b)?;
        for i in 0..b.num_rows() {
            let t = c.v.ts.value(i).div_euclid(1_000_000);
            if t < mint || t > maxt {
                continue;
            }
            let Some(kind) = c.metric_kind(i) else {
                continue;
            };
            let stale = c.v.flags.value(i) & 1 == 1;
            let delta = c.is_delta(i) && !matches!(kind, MetricKind::Gauge | MetricKind::Summary);
            if kind == MetricKind::ExponentialHistogram {
                for (labels, v) in exponential_series(&c, i) {
                    if matches_all(matchers, &labels) {
                        let o = out.slot(&labels, delta);
                        out.series[o]
                            .1
                            .push((t, if stale { f64::from_bits(STALE_NAN) } else { v }));
                    }
                }
                if let Some((labels, h)) = native_histogram(&c, i)
                    && matches_all(matchers, &labels)
                {
                    let o = out.slot(&labels, delta);
                    if stale {
                        out.series[o].1.push((t, f64::from_bits(STALE_NAN)));
                    } else {
                        out.series[o].3.push((t, h));
                    }
                }
                continue;
            }
            let key = c.series_key(i);
            if !out.cache.contains_key(&key) {
                let (family, labels) = c.base(i, kind);
                let bounds = Cols::f64_list(c.bounds, i);
                let quantiles: Vec<f64> = c.v.quantile_list(i).into_iter().map(|q| q.0).collect();
                let derived: Vec<(Option<usize>, Part)> =
                    fixed_series(family, labels, kind, &bounds, &quantiles)
                        .into_iter()
                        .map(|(labels, part)| {
                            let o =
                                matches_all(matchers, &labels).then(|| out.slot(&labels, delta));
                            (o, part)
                        })
                        .collect();
                out.cache.insert(key, derived);
            }
            let Some(parts) = out.cache.get(&key) else {
                continue;
            };
            for &(o, part) in parts {
                let Some(o) = o else { continue };
                let v = if stale {
                    Some(f64::from_bits(STALE_NAN))
                } else {
                    c.v.part_value(i, part)
                };
                if let Some(v) = v {
                    out.series[o].1.push((t, v));
                }
            }
        }
        Ok(())
    }
}

/// Pushes rows `rows` of a run with a null-free value column (read by
/// `value`) whose time is in `[mint, maxt]` (ms); flagged rows become
/// staleness markers.
fn push_rows(
    dst: &mut Vec<(i64, f64)>,
    rows: std::ops::Range<usize>,
    ts: &[i64],
    flags: &[u32],
    mint: i64,
    maxt: i64,
    value: impl Fn(usize) -> f64,
) {
    for r in rows {
        let t = ts[r].div_euclid(1_000_000);
        if t >= mint && t <= maxt {
            let x = if flags[r] & 1 == 1 {
                f64::from_bits(STALE_NAN)
            } else {
                value(r)
            };
            dst.push((t, x));
        }
    }
}

/// Rows of indexed segments worth reading on two threads.
const PARALLEL_ROWS: usize = 200_000;

/// What a query reads of one indexed segment: the matching runs with their
/// output series, and the rows to read row by row.
struct Chosen<'p> {
    runs: Vec<(&'p RunPlan, Vec<(usize, Part)>)>,
    per_row: Vec<u32>,
}

impl StoreQueryable<'_> {
    /// The runs of a segment whose series match, each series given its
    /// output slot (and room for the run's rows).
    fn choose<'p>(
        plans: &'p [RunPlan],
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut Collected,
    ) -> Chosen<'p> {
        let mut chosen = Chosen {
            runs: Vec::new(),
            per_row: Vec::new(),
        };
        for plan in plans {
            if plan.max_ms < mint || plan.min_ms > maxt {
                continue;
            }
            if plan.per_row {
                chosen
                    .per_row
                    .extend((plan.first..plan.first + plan.rows).map(|r| r as u32));
                continue;
            }
            let parts: Vec<(usize, Part)> = plan
                .parts
                .iter()
                .filter(|(l, _)| matches_all(matchers, l))
                .map(|(l, p)| (out.slot(l, plan.delta), *p))
                .collect();
            for &(o, _) in &parts {
                out.expected[o] += plan.rows as usize;
            }
            if !parts.is_empty() {
                chosen.runs.push((plan, parts));
            }
        }
        chosen
    }

    /// Reads the chosen runs of a segment into their series' samples.
    fn read_runs(
        &self,
        seg: &SegmentMeta,
        chosen: &Chosen,
        mint: i64,
        maxt: i64,
        sink: &mut [Vec<(i64, f64)>],
    ) -> crate::Result<()> {
        if !chosen.runs.is_empty() {
            let rows: Vec<u32> = chosen
                .runs
                .iter()
                .flat_map(|(p, _)| (p.first..p.first + p.rows).map(|r| r as u32))
                .collect();
            let cols = value_columns(
                chosen
                    .runs
                    .iter()
                    .flat_map(|(_, parts)| parts.iter().map(|(_, p)| p)),
            );
            // Batch by batch; the rows come run after run, in `chosen` order.
            let (mut k, mut left) = (0usize, chosen.runs[0].0.rows as usize);
            for_each_selected(self.store, seg, &rows, &cols, |b| {
                self.check()?;
                let v = ValueCols::new(b)?;
                let ts = v.ts.values();
                let flags = v.flags.values();
                let mut i = 0;
                while i < b.num_rows() {
                    while left == 0 {
                        k += 1;
                        left = chosen.runs.get(k).map_or(usize::MAX, |c| c.0.rows as usize);
                    }
                    let Some((_, parts)) = chosen.runs.get(k) else {
                        break;
                    };
                    // The rows of this run in this batch.
                    let n = left.min(b.num_rows() - i);
                    for &(o, part) in parts {
                        let dst = &mut sink[o];
                        match (part, v.value, v.value_int) {
                            (Part::Value, Some(values), _) if values.null_count() == 0 => {
                                let vals = values.values();
                                push_rows(dst, i..i + n, ts, flags, mint, maxt, |r| vals[r]);
                            }
                            // Integer points: `value` is null, `value_int` holds them.
                            (Part::Value, Some(values), Some(ints))
                                if values.null_count() == values.len()
                                    && ints.null_count() == 0 =>
                            {
                                let vals = ints.values();
                                push_rows(dst, i..i + n, ts, flags, mint, maxt, |r| vals[r] as f64);
                            }
                            _ => {
                                for r in i..i + n {
                                    let t = ts[r].div_euclid(1_000_000);
                                    if t < mint || t > maxt {
                                        continue;
                                    }
                                    let x = if flags[r] & 1 == 1 {
                                        Some(f64::from_bits(STALE_NAN))
                                    } else {
                                        v.part_value(r, part)
                                    };
                                    if let Some(x) = x {
                                        dst.push((t, x));
                                    }
                                }
                            }
                        }
                    }
                    i += n;
                    left -= n;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Reads the runs of indexed segments (in `jobs`' order) into their
    /// series: the older half of the rows and the newer half on two
    /// threads when there are many, each series' samples staying in order.
    fn read_all_runs(
        &self,
        jobs: &[(&SegmentMeta, &Chosen)],
        mint: i64,
        maxt: i64,
        out: &mut Collected,
    ) -> crate::Result<()> {
        let rows_of = |c: &Chosen| c.runs.iter().map(|(p, _)| p.rows as usize).sum::<usize>();
        let total: usize = jobs.iter().map(|(_, c)| rows_of(c)).sum();
        let mut sink: Vec<Vec<(i64, f64)>> = out
            .series
            .iter_mut()
            .map(|s| std::mem::take(&mut s.1))
            .collect();
        let result = if total >= self.parallel_rows && jobs.len() >= 2 {
            let mut acc = 0;
            let split = jobs
                .iter()
                .position(|(_, c)| {
                    acc += rows_of(c);
                    acc >= total / 2
                })
                .map_or(jobs.len() / 2, |p| (p + 1).min(jobs.len() - 1));
            let (older, newer) = jobs.split_at(split);
            let mut newer_sink: Vec<Vec<(i64, f64)>> = vec![Vec::new(); sink.len()];
            for (_, c) in newer {
                for (p, parts) in &c.runs {
                    for &(o, _) in parts {
                        newer_sink[o].reserve(p.rows as usize);
                    }
                }
            }
            let (a, b) = std::thread::scope(|scope| {
                let h = scope.spawn(|| -> crate::Result<()> {
                    for (seg, c) in newer {
                        self.read_runs(seg, c, mint, maxt, &mut newer_sink)?;
                    }
                    Ok(())
                });
                let a = older
                    .iter()
                    .try_for_each(|(seg, c)| self.read_runs(seg, c, mint, maxt, &mut sink));
                (a, h.join())
            });
            let b = b.unwrap_or_else(|_| {
                Err(crate::Error::Internal(
                    "a segment reader thread failed".into(),
                ))
            });
            for (dst, more) in sink.iter_mut().zip(newer_sink) {
                dst.extend(more);
            }
            a.and(b)
        } else {
            jobs.iter()
                .try_for_each(|(seg, c)| self.read_runs(seg, c, mint, maxt, &mut sink))
        };
        for (s, samples) in out.series.iter_mut().zip(sink) {
            s.1 = samples;
        }
        result
    }

    fn check(&self) -> crate::Result<()> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(crate::Error::Timeout(
                "the query ran past its time limit".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Every series with a data point in `[start, end]` (ns), with the
/// metadata of their families: what the metadata endpoints list.
pub(crate) fn series_and_metadata(
    store: &Store,
    start: i64,
    end: i64,
) -> crate::Result<(std::collections::BTreeSet<Labels>, FamilyMetadata)> {
    let mut series = std::collections::BTreeSet::new();
    let mut meta = FamilyMetadata::new();
    let (mint, maxt) = (start.div_euclid(1_000_000), end.div_euclid(1_000_000));
    let rows_visit = |b: &RecordBatch,
                      series: &mut std::collections::BTreeSet<Labels>,
                      meta: &mut FamilyMetadata|
     -> crate::Result<()> {
        let c = Cols::new(b)?;
        for i in 0..b.num_rows() {
            let t = c.v.ts.value(i);
            if t < start || t > end {
                continue;
            }
            let Some(kind) = c.metric_kind(i) else {
                continue;
            };
            let unit = Cols::str_or_empty(c.unit, i);
            let (family, labels) = c.base(i, kind);
            meta.entry(family.clone())
                .or_default()
                .insert(FamilyMeta::new(kind, Cols::str_or_empty(c.desc, i), unit));
            if kind == MetricKind::ExponentialHistogram {
                series.extend(exponential_series(&c, i).into_iter().map(|(l, _)| l));
                series.extend(native_histogram(&c, i).map(|(l, _)| l));
                continue;
            }
            let bounds = Cols::f64_list(c.bounds, i);
            let quantiles: Vec<f64> = c.v.quantile_list(i).into_iter().map(|q| q.0).collect();
            series.extend(
                fixed_series(family, labels, kind, &bounds, &quantiles)
                    .into_iter()
                    .map(|(l, _)| l),
            );
        }
        Ok(())
    };
    let sources = Sources::new(store, Signal::Metrics, start, end);
    for source in &sources.list {
        match source {
            Source::Buffer(b) => rows_visit(b, &mut series, &mut meta)?,
            Source::Segment(seg) => match segment_plans(store, seg)? {
                Some(plans) => {
                    let mut per_row = Vec::new();
                    for plan in plans
                        .iter()
                        .filter(|p| p.max_ms >= mint && p.min_ms <= maxt)
                    {
                        meta.entry(plan.meta.0.clone())
                            .or_default()
                            .insert(plan.meta.1.clone());
                        if plan.per_row {
                            per_row.extend((plan.first..plan.first + plan.rows).map(|r| r as u32));
                        }
                        series.extend(plan.parts.iter().map(|(l, _)| l.clone()));
                    }
                    if !per_row.is_empty() {
                        let b = read_segment(store, seg, Some(&per_row), Some(COLUMNS))?;
                        rows_visit(&b, &mut series, &mut meta)?;
                    }
                }
                None => for_each_batch(store, seg, COLUMNS, |b| {
                    rows_visit(b, &mut series, &mut meta)
                })?,
            },
        }
    }
    Ok((series, meta))
}

/// One stored exemplar, as `/api/v1/query_exemplars` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// ms
    pub time: i64,
}

/// The exemplars of the points in `[start, end]` (ns) whose series match
/// any of `selectors`, by series. A point's exemplars belong to its series;
/// a histogram's to the `_bucket` series its value falls in (the smallest
/// `le` at or above it), as Prometheus's OTLP translation attaches them.
pub(crate) fn exemplars(
    store: &Store,
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> crate::Result<std::collections::BTreeMap<Labels, Vec<Exemplar>>> {
    let mut out: std::collections::BTreeMap<Labels, Vec<Exemplar>> =
        std::collections::BTreeMap::new();
    let mut columns: Vec<&str> = COLUMNS.to_vec();
    columns.push("exemplars");
    let (mint, maxt) = (start.div_euclid(1_000_000), end.div_euclid(1_000_000));
    let matches_any = |l: &Labels| selectors.iter().any(|ms| matches_all(ms, l));
    let mut visit = |b: &RecordBatch| -> crate::Result<()> {
        let c = Cols::new(b)?;
        let Some(ex) = b
            .column_by_name("exemplars")
            .and_then(|c| c.as_list_opt::<i32>())
        else {
            return Ok(());
        };
        for i in 0..b.num_rows() {
            let t = c.v.ts.value(i);
            if t < start || t > end || !ex.is_valid(i) || ex.value(i).is_empty() {
                continue;
            }
            let Some(kind) = c.metric_kind(i) else {
                continue;
            };
            let series: Vec<Labels> = if kind == MetricKind::ExponentialHistogram {
                exponential_series(&c, i)
                    .into_iter()
                    .map(|(l, _)| l)
                    .collect()
            } else {
                let (family, labels) = c.base(i, kind);
                let bounds = Cols::f64_list(c.bounds, i);
                let quantiles: Vec<f64> = c.v.quantile_list(i).into_iter().map(|q| q.0).collect();
                fixed_series(family, labels, kind, &bounds, &quantiles)
                    .into_iter()
                    .map(|(l, _)| l)
                    .collect()
            };
            let list = ex.value(i);
            let Some(st) = list.as_struct_opt() else {
                continue;
            };
            let et = st.column_by_name("time").and_then(|c| {
                c.as_primitive_opt::<datafusion::arrow::datatypes::TimestampNanosecondType>()
            });
            let ev = st
                .column_by_name("value")
                .and_then(|c| c.as_primitive_opt::<Float64Type>());
            let evi = st
                .column_by_name("value_int")
                .and_then(|c| c.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>());
            let tid = st
                .column_by_name("trace_id")
                .and_then(|c| c.as_string_opt::<i32>());
            let sid = st
                .column_by_name("span_id")
                .and_then(|c| c.as_string_opt::<i32>());
            let attrs = st
                .column_by_name("filtered_attributes")
                .and_then(|c| c.as_map_opt());
            for j in 0..st.len() {
                let value = match (ev.filter(|a| a.is_valid(j)), evi.filter(|a| a.is_valid(j))) {
                    (Some(a), _) => a.value(j),
                    (None, Some(a)) => a.value(j) as f64,
                    _ => continue,
                };
                let time = et
                    .filter(|a| a.is_valid(j))
                    .map_or(t, |a| a.value(j))
                    .div_euclid(1_000_000);
                if time < mint || time > maxt {
                    continue;
                }
                // The series: for buckets, the smallest `le` at or above the value.
                let bucket = series
                    .iter()
                    .filter_map(|l| {
                        let le = l.get("le")?.parse::<f64>().ok()?;
                        (le >= value).then_some((le, l))
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, l)| l);
                let Some(target) = bucket.or_else(|| series.first()) else {
                    continue;
                };
                if !matches_any(target) {
                    continue;
                }
                let mut labels = Labels::new();
                if let Some(a) = attrs {
                    for (k, v) in crate::json::map_entries(a, j) {
                        labels.insert(promnames::label_name(&k), v);
                    }
                }
                if let Some(s) = tid.filter(|a| a.is_valid(j)) {
                    labels.insert("trace_id".into(), s.value(j).to_owned());
                }
                if let Some(s) = sid.filter(|a| a.is_valid(j)) {
                    labels.insert("span_id".into(), s.value(j).to_owned());
                }
                out.entry(target.clone()).or_default().push(Exemplar {
                    labels,
                    value,
                    time,
                });
            }
        }
        Ok(())
    };
    let sources = Sources::new(store, Signal::Metrics, start, end);
    for source in &sources.list {
        match source {
            Source::Buffer(b) => visit(b)?,
            Source::Segment(seg) => match segment_plans(store, seg)? {
                // Only the runs whose series could match, and overlap the range.
                Some(plans) => {
                    let rows: Vec<u32> = plans
                        .iter()
                        .filter(|p| p.max_ms >= mint && p.min_ms <= maxt)
                        .filter(|p| p.per_row || p.parts.iter().any(|(l, _)| matches_any(l)))
                        .flat_map(|p| (p.first..p.first + p.rows).map(|r| r as u32))
                        .collect();
                    if !rows.is_empty() {
                        visit(&read_segment(store, seg, Some(&rows), Some(&columns))?)?;
                    }
                }
                None => for_each_batch(store, seg, &columns, &mut visit)?,
            },
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|e| e.time);
    }
    Ok(out)
}

impl Queryable for StoreQueryable<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<RawSeries>, EvalError> {
        let to_ns = |ms: i64| ms.saturating_mul(1_000_000);
        let sources = Sources::new(
            self.store,
            Signal::Metrics,
            to_ns(mint),
            to_ns(maxt).saturating_add(999_999),
        );
        let mut out = Collected::default();
        // Oldest segments first, the buffer last: samples arrive in time
        // order and need no sort, unless segments overlap.
        let mut order: Vec<&Source> = sources
            .list
            .iter()
            .filter(|s| matches!(s, Source::Segment(_)))
            .collect();
        order.sort_by_key(|s| match s {
            Source::Segment(seg) => (seg.min_time, seg.max_time),
            Source::Buffer(_) => (i64::MAX, i64::MAX),
        });
        order.extend(
            sources
                .list
                .iter()
                .filter(|s| matches!(s, Source::Buffer(_))),
        );
        let mut run = || -> crate::Result<()> {
            // First which runs of which segments, so each series is sized once.
            let plans: Vec<Option<std::sync::Arc<Vec<RunPlan>>>> = order
                .iter()
                .map(|s| match s {
                    Source::Segment(seg) => segment_plans(self.store, seg),
                    Source::Buffer(_) => Ok(None),
                })
                .collect::<crate::Result<_>>()?;
            let chosen: Vec<Option<Chosen>> = plans
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map(|p| Self::choose(p, matchers, mint, maxt, &mut out))
                })
                .collect();
            for (s, n) in out.series.iter_mut().zip(&out.expected) {
                s.1.reserve_exact(*n);
            }
            let jobs: Vec<(&SegmentMeta, &Chosen)> = order
                .iter()
                .zip(&chosen)
                .filter_map(|(s, c)| match (s, c) {
                    (Source::Segment(seg), Some(c)) => Some((&**seg, c)),
                    _ => None,
                })
                .collect();
            self.read_all_runs(&jobs, mint, maxt, &mut out)?;
            // Then what is read row by row: exponential histograms, segments
            // without a series index, the buffer.
            for (source, chosen) in order.iter().zip(&chosen) {
                match (source, chosen) {
                    (Source::Buffer(b), _) => self.visit(b, matchers, mint, maxt, &mut out)?,
                    (Source::Segment(seg), Some(c)) if !c.per_row.is_empty() => {
                        let b = read_segment(self.store, seg, Some(&c.per_row), Some(COLUMNS))?;
                        self.visit(&b, matchers, mint, maxt, &mut out)?;
                    }
                    (Source::Segment(_), Some(_)) => {}
                    (Source::Segment(seg), None) => {
                        for_each_batch(self.store, seg, COLUMNS, |b| {
                            self.visit(b, matchers, mint, maxt, &mut out)
                        })?
                    }
                }
            }
            Ok(())
        };
        run().map_err(|e| match e {
            crate::Error::Timeout(_) => EvalError::Timeout("reading series"),
            e => EvalError::Storage(e.to_string()),
        })?;
        Ok(out
            .series
            .into_iter()
            .map(|(labels, mut samples, delta, mut hists)| {
                if !samples.is_sorted_by_key(|p| p.0) {
                    samples.sort_by_key(|p| p.0);
                }
                // Two points at one time (the same series from two
                // resources): the later one read wins.
                super::dedup_keep_later(&mut samples);
                if delta {
                    let mut total = 0.0;
                    for s in samples.iter_mut() {
                        if !super::is_stale(s.1) {
                            total += s.1;
                            s.1 = total;
                        }
                    }
                }
                if !hists.is_sorted_by_key(|p| p.0) {
                    hists.sort_by_key(|p| p.0);
                }
                super::dedup_keep_later(&mut hists);
                if delta {
                    // Deltas add up to the cumulative histogram; a point that
                    // cannot be added (another schema kind) starts over.
                    let mut total: Option<FloatHistogram> = None;
                    for (_, h) in hists.iter_mut() {
                        let summed = total.as_mut().is_some_and(|t| t.add(h).is_ok());
                        match &total {
                            Some(t) if summed => *h = t.clone(),
                            _ => total = Some(h.clone()),
                        }
                    }
                }
                let hists = hists.into_iter().map(|(t, h)| (t, Arc::new(h))).collect();
                RawSeries {
                    labels,
                    samples,
                    hists,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        number_data_point,
    };
    use promql_parser::label::MatchOp;

    fn gauge(series: u32, from_min: i64, to_min: i64) -> ExportMetricsServiceRequest {
        let points = (0..series)
            .flat_map(|s| {
                (from_min..to_min).map(move |m| NumberDataPoint {
                    attributes: vec![KeyValue {
                        key: "s".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue(s.to_string())),
                        }),
                        key_strindex: 0,
                    }],
                    time_unix_nano: (m * 60_000_000_000) as u64,
                    value: Some(number_data_point::Value::AsDouble(
                        (m * 10 + i64::from(s)) as f64,
                    )),
                    ..Default::default()
                })
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "load".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Segments written by flushes, read through their series index on one
    /// thread and on two, and the buffer: the same samples, in order.
    #[test]
    fn indexed_segments_read_alike_on_one_and_two_threads() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(lumen_store::StoreConfig::new(dir.path()))
            .unwrap_or_else(|e| panic!("{e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        // Three hours in three flushes, then a fourth hour left in the buffer.
        for (i, (from, to)) in [(0, 60), (60, 120), (120, 180), (180, 240)]
            .into_iter()
            .enumerate()
        {
            let batch = lumen_collector::convert::metrics(&gauge(5, from, to))
                .unwrap_or_else(|e| panic!("{e}"))
                .batch;
            rt.block_on(store.append(Signal::Metrics, batch))
                .unwrap_or_else(|e| panic!("{e}"));
            if i < 3 {
                store.flush_all().unwrap_or_else(|e| panic!("{e}"));
            }
        }
        assert!(store.snapshot(Signal::Metrics).segments.len() >= 3);
        let matchers = [Matcher::new(MatchOp::Equal, "__name__", "load")];
        let read = |parallel_rows| {
            let q = StoreQueryable {
                store: &store,
                deadline: None,
                parallel_rows,
            };
            let mut s = q
                .select(&matchers, 0, i64::MAX)
                .unwrap_or_else(|e| panic!("{e}"));
            s.sort_by(|a, b| a.labels.cmp(&b.labels));
            s
        };
        let one = read(usize::MAX);
        let two = read(1);
        assert_eq!(one, two);
        assert_eq!(one.len(), 5);
        for (k, s) in one.iter().enumerate() {
            assert_eq!(
                s.labels.get("s").map(String::as_str),
                Some(k.to_string().as_str())
            );
            let want: Vec<(i64, f64)> = (0..240)
                .map(|m| (m * 60_000, (m * 10 + k as i64) as f64))
                .collect();
            assert_eq!(s.samples, want);
        }
        // A window inside one hour prunes the other runs and rows.
        let q = StoreQueryable::new(&store, None);
        let s = q
            .select(&matchers, 61 * 60_000, 62 * 60_000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.iter().map(|s| s.samples.len()).sum::<usize>(), 10);
    }
}
