//! Series ids of metric data points: a stable 64-bit hash (FNV-1a) of
//! everything that makes a point part of one stream: metric name, type,
//! unit, monotonicity, temporality, attributes and resource attributes
//! (order-independent), scope, and the bucket bounds or quantiles of
//! histograms and summaries. Segments sort metric rows by name, series id
//! and time, so each series is a run of rows; the runs are listed in the
//! segment's footer ([`SERIES_RUNS_KEY`]) for readers that want one series
//! without decoding the others.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, MapArray, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::Float64Type;

use crate::schema::Signal;
use crate::{Error, Result};

/// The footer key holding a segment's [`SeriesIndex`]: JSON, compressed
/// with zstd and written as `zstd:<JSON length>:<base64>` (the names and attributes of
/// a segment's series repeat, and footers are read often).
pub const SERIES_INDEX_KEY: &str = "lumen.series_index";

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// A field, then a separator no UTF-8 text contains.
    fn field(&mut self, b: &[u8]) {
        self.bytes(b);
        self.bytes(&[0xff]);
    }
}

fn text<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
}

fn hash_map(h: &mut Fnv, m: Option<&MapArray>, i: usize) {
    let mut pairs = map_pairs(m, i);
    pairs.sort();
    for (k, v) in &pairs {
        h.field(k.as_bytes());
        h.field(v.as_bytes());
    }
    h.field(b"\x01");
}

/// The series id of every row of a metrics batch.
pub fn series_ids(b: &RecordBatch) -> UInt64Array {
    let s = |n| text(b, n);
    let (name, kind, unit, temp, scope, scope_v) = (
        s("metric_name"),
        s("metric_type"),
        s("unit"),
        s("aggregation_temporality"),
        s("scope_name"),
        s("scope_version"),
    );
    let mono: Option<&BooleanArray> = b
        .column_by_name("is_monotonic")
        .and_then(|c| c.as_boolean_opt());
    let attrs = b.column_by_name("attributes").and_then(|c| c.as_map_opt());
    let res = b
        .column_by_name("resource_attributes")
        .and_then(|c| c.as_map_opt());
    let bounds = b
        .column_by_name("explicit_bounds")
        .and_then(|c| c.as_list_opt::<i32>());
    let quantiles = b
        .column_by_name("quantiles")
        .and_then(|c| c.as_list_opt::<i32>());
    let ids = (0..b.num_rows()).map(|i| {
        let mut h = Fnv::new();
        for col in [name, kind, unit, temp, scope, scope_v] {
            match col {
                Some(c) if c.is_valid(i) => h.field(c.value(i).as_bytes()),
                _ => h.field(b""),
            }
        }
        h.field(match mono {
            Some(m) if m.is_valid(i) => {
                if m.value(i) {
                    b"m"
                } else {
                    b"n"
                }
            }
            _ => b"",
        });
        hash_map(&mut h, attrs, i);
        hash_map(&mut h, res, i);
        if let Some(l) = bounds
            && l.is_valid(i)
            && let Some(v) = l.value(i).as_primitive_opt::<Float64Type>()
        {
            for x in v.values() {
                h.bytes(&x.to_bits().to_le_bytes());
            }
        }
        h.field(b"\x02");
        if let Some(l) = quantiles
            && l.is_valid(i)
            && let Some(q) = l
                .value(i)
                .as_struct_opt()
                .and_then(|s| s.column_by_name("quantile"))
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
        {
            for x in q.values() {
                h.bytes(&x.to_bits().to_le_bytes());
            }
        }
        Some(h.0)
    });
    ids.collect()
}

/// A metrics batch in the current schema with its series ids filled in:
/// batches from the collector carry a null `series_id`, batches from the
/// WAL of an older version none at all.
pub fn with_series_ids(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = Signal::Metrics.schema();
    let ids: ArrayRef = Arc::new(series_ids(&batch));
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        if f.name() == "series_id" {
            cols.push(Arc::clone(&ids));
            continue;
        }
        match batch.column_by_name(f.name()) {
            Some(c) => cols.push(Arc::clone(c)),
            None if f.is_nullable() => cols.push(datafusion::arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
            None => {
                return Err(Error::Corrupt(format!(
                    "metrics batch lacks column {}",
                    f.name()
                )));
            }
        }
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// One run of rows of a series in a segment, with what identifies the
/// series (so a reader can choose runs without decoding any row).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesRun {
    pub id: u64,
    pub first: u64,
    pub rows: u64,
    /// The run's first and last timestamps (ns).
    pub min_time: i64,
    pub max_time: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: String,
    pub unit: String,
    pub monotonic: Option<bool>,
    pub temporality: Option<String>,
    /// Index into [`SeriesIndex::resources`].
    pub resource: usize,
    pub attributes: Vec<(String, String)>,
    pub bounds: Vec<f64>,
    pub quantiles: Vec<f64>,
}

/// A segment's series runs, in row order, and the resources they name.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesIndex {
    pub resources: Vec<Vec<(String, String)>>,
    pub runs: Vec<SeriesRun>,
}

fn map_pairs(m: Option<&MapArray>, i: usize) -> Vec<(String, String)> {
    m.map(|m| crate::schema::map_entries(m, i))
        .unwrap_or_default()
}

fn f64_list(b: &RecordBatch, name: &str, i: usize) -> Vec<f64> {
    match b.column_by_name(name).and_then(|c| c.as_list_opt::<i32>()) {
        Some(l) if l.is_valid(i) => l
            .value(i)
            .as_primitive_opt::<Float64Type>()
            .map(|a| a.values().to_vec())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Builds a segment's [`SeriesIndex`] from its rows, in order.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    index: SeriesIndex,
    resources: std::collections::HashMap<Vec<(String, String)>, usize>,
    rows: u64,
    /// A row without an id (an older segment's, merged in): no index.
    broken: bool,
}

impl Runs {
    pub(crate) fn add(&mut self, b: &RecordBatch) {
        let ids = b
            .column_by_name("series_id")
            .and_then(|c| c.as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>());
        let Some(ids) = ids.filter(|ids| ids.null_count() == 0) else {
            self.broken = true;
            self.rows += b.num_rows() as u64;
            return;
        };
        let s = |n| text(b, n);
        let str_at = |a: Option<&StringArray>, i: usize| {
            a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_owned())
        };
        let mono: Option<&BooleanArray> = b
            .column_by_name("is_monotonic")
            .and_then(|c| c.as_boolean_opt());
        let times = b.column_by_name("timestamp").and_then(|c| {
            c.as_primitive_opt::<datafusion::arrow::datatypes::TimestampNanosecondType>()
        });
        for (i, id) in ids.values().iter().enumerate() {
            let row = self.rows + i as u64;
            let t = times.map_or(0, |t| t.value(i));
            if let Some(r) = self.index.runs.last_mut()
                && r.id == *id
                && r.first + r.rows == row
            {
                r.rows += 1;
                r.min_time = r.min_time.min(t);
                r.max_time = r.max_time.max(t);
                continue;
            }
            let resource = map_pairs(
                b.column_by_name("resource_attributes")
                    .and_then(|c| c.as_map_opt()),
                i,
            );
            let next = self.index.resources.len();
            let resource = *self.resources.entry(resource.clone()).or_insert_with(|| {
                self.index.resources.push(resource);
                next
            });
            let quantiles = match b
                .column_by_name("quantiles")
                .and_then(|c| c.as_list_opt::<i32>())
            {
                Some(l) if l.is_valid(i) => l
                    .value(i)
                    .as_struct_opt()
                    .and_then(|s| s.column_by_name("quantile"))
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .map(|a| a.values().to_vec())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            self.index.runs.push(SeriesRun {
                id: *id,
                first: row,
                rows: 1,
                min_time: t,
                max_time: t,
                name: str_at(s("metric_name"), i).unwrap_or_default(),
                description: str_at(s("description"), i).unwrap_or_default(),
                kind: str_at(s("metric_type"), i).unwrap_or_default(),
                unit: str_at(s("unit"), i).unwrap_or_default(),
                monotonic: mono.filter(|m| m.is_valid(i)).map(|m| m.value(i)),
                temporality: str_at(s("aggregation_temporality"), i),
                resource,
                attributes: map_pairs(
                    b.column_by_name("attributes").and_then(|c| c.as_map_opt()),
                    i,
                ),
                bounds: f64_list(b, "explicit_bounds", i),
                quantiles,
            });
        }
        self.rows += b.num_rows() as u64;
    }

    /// The footer value, unless some row had no id.
    pub(crate) fn encode(&self) -> Option<String> {
        if self.broken {
            return None;
        }
        use base64::Engine as _;
        let json = serde_json::to_vec(&self.index).ok()?;
        let packed = zstd::bulk::compress(&json, 3).ok()?;
        Some(format!(
            "zstd:{}:{}",
            json.len(),
            base64::engine::general_purpose::STANDARD.encode(packed)
        ))
    }
}

/// Parses a footer's series index.
pub fn decode_index(s: &str) -> Option<SeriesIndex> {
    use base64::Engine as _;
    match s.strip_prefix("zstd:") {
        Some(rest) => {
            let (len, b64) = rest.split_once(':')?;
            let len: usize = len.parse().ok()?;
            // A footer's index is at most a few MiB of JSON; refuse bombs.
            if len > 256 << 20 {
                return None;
            }
            let packed = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            let json = zstd::bulk::decompress(&packed, len).ok()?;
            serde_json::from_slice(&json).ok()
        }
        None => serde_json::from_str(s).ok(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(ids: Vec<Option<u64>>, names: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("series_id", DataType::UInt64, true),
            Field::new("metric_name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn runs_follow_changes_of_id_across_batches() {
        let mut r = Runs::default();
        r.add(&batch(vec![Some(7), Some(7), Some(9)], vec!["a", "a", "b"]));
        r.add(&batch(vec![Some(9), Some(9), Some(7)], vec!["b", "b", "a"]));
        let index = decode_index(&r.encode().unwrap()).unwrap();
        let runs: Vec<(u64, u64, u64, &str)> = index
            .runs
            .iter()
            .map(|r| (r.id, r.first, r.rows, r.name.as_str()))
            .collect();
        assert_eq!(runs, [(7, 0, 2, "a"), (9, 2, 3, "b"), (7, 5, 1, "a")]);
        assert_eq!(index.resources, vec![Vec::<(String, String)>::new()]);
        let mut broken = Runs::default();
        broken.add(&batch(vec![Some(1), None], vec!["a", "a"]));
        assert_eq!(broken.encode(), None);
    }

    #[test]
    fn ids_ignore_attribute_order_and_tell_streams_apart() {
        use datafusion::arrow::array::{MapBuilder, StringBuilder};
        let mut m = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for pairs in [
            [("a", "1"), ("b", "2")],
            [("b", "2"), ("a", "1")],
            [("a", "1"), ("b", "3")],
        ] {
            for (k, v) in pairs {
                m.keys().append_value(k);
                m.values().append_value(v);
            }
            m.append(true).unwrap();
        }
        let attrs: ArrayRef = Arc::new(m.finish());
        let names: ArrayRef = Arc::new(StringArray::from(vec!["m", "m", "m"]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("metric_name", DataType::Utf8, true),
            Field::new("attributes", attrs.data_type().clone(), true),
        ]));
        let b = RecordBatch::try_new(schema, vec![names, attrs]).unwrap();
        let ids = series_ids(&b);
        assert_eq!(ids.value(0), ids.value(1));
        assert_ne!(ids.value(0), ids.value(2));
    }
}
