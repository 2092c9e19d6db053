//! Log search and histograms: the search language answered from each
//! segment's tantivy index (segments not yet indexed, and the fresh buffer,
//! by scan with the same semantics), newest first, with a cursor that stays
//! stable while data arrives.
//!
//! Order is `(timestamp, key)` descending, where `key` is a hash of the
//! record's content: it does not change when a record moves from the buffer
//! to a segment or between segments, so a cursor (the last record's
//! timestamp and key) resumes exactly where a page ended.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::TimestampNanosecondType;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use datafusion::parquet::file::reader::ChunkReader;
use lumen_store::index::Query;
use lumen_store::scan::Matcher;
use lumen_store::{SegmentMeta, Signal, Store};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Most records one search page returns.
pub const MAX_LIMIT: usize = 10_000;
/// Most histogram buckets.
pub const MAX_BUCKETS: usize = 10_000;

/// Where a page ended: records strictly older (in search order) come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) ts: i64,
    pub key: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{:016x}", self.ts, self.key)
    }

    pub fn decode(s: &str) -> Result<Cursor> {
        let bad = || {
            Error::BadRequest(format!(
                "invalid cursor {s:?}: pass next_cursor back unchanged"
            ))
        };
        let (ts, key) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| bad())?,
            key: u64::from_str_radix(key, 16).map_err(|_| bad())?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Query,
    /// Inclusive bounds, ns since the epoch.
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub cursor: Option<Cursor>,
    /// When the search gives up with `Error::Timeout`.
    pub deadline: Option<Instant>,
}

#[derive(Debug, serde::Serialize)]
pub struct Page {
    pub logs: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
}

/// The columns of a search result, and their names in the answer.
pub(crate) const RESULT_COLUMNS: &[(&str, &str)] = &[
    ("timestamp", "timestamp"),
    ("observed_timestamp", "observed_timestamp"),
    ("service_name", "service_name"),
    ("severity_text", "severity_text"),
    ("severity_number", "severity_number"),
    ("body", "body"),
    ("trace_id", "trace_id"),
    ("span_id", "span_id"),
    ("log_attributes", "attributes"),
    ("resource_attributes", "resource_attributes"),
    ("scope_name", "scope_name"),
];

/// A fetched record: its time, its key (see the module docs) and its JSON.
type Record = (i64, u64, Map<String, Value>);

/// Where matching rows come from.
pub(crate) enum Source {
    Buffer(RecordBatch),
    Segment(Arc<SegmentMeta>),
}

/// A matching row: its time, its source (index into the sources) and row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub(crate) ts: i64,
    pub source: usize,
    pub row: u32,
}

/// One consistent snapshot of a signal's records: buffer, then segments.
pub(crate) struct Sources {
    pub signal: Signal,
    pub list: Vec<Source>,
    /// When scanning gives up (`Error::Timeout`).
    deadline: Option<Instant>,
}

impl Sources {
    /// The buffer's batches, then the segments overlapping `[start, end]`,
    /// newest first.
    pub(crate) fn new(store: &Store, signal: Signal, start: i64, end: i64) -> Sources {
        let snap = store.snapshot(signal);
        let mut segs: Vec<Arc<SegmentMeta>> = snap
            .segments
            .into_iter()
            .filter(|s| s.max_time >= start && s.min_time <= end)
            .collect();
        segs.sort_by_key(|s| std::cmp::Reverse(s.max_time));
        let mut list: Vec<Source> = snap.batches.into_iter().map(Source::Buffer).collect();
        list.extend(segs.into_iter().map(Source::Segment));
        Sources {
            signal,
            list,
            deadline: None,
        }
    }

    /// The same sources, with scans that stop at `deadline`.
    pub(crate) fn until(mut self, deadline: Option<Instant>) -> Sources {
        self.deadline = deadline;
        self
    }

    /// `Error::Timeout` once the deadline has passed.
    pub(crate) fn check_deadline(&self) -> Result<()> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(Error::Timeout(
                "the search ran past its time limit (--sql-timeout): narrow the time range or the query"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// Newest time a source can hold (buffers: unknown, so the maximum).
    pub(crate) fn max_time(&self, i: usize) -> i64 {
        match &self.list[i] {
            Source::Buffer(_) => i64::MAX,
            Source::Segment(s) => s.max_time,
        }
    }

    /// Every row of source `i` matching `q` with a time in `[start, end]`.
    pub(crate) fn hits(
        &self,
        store: &Store,
        i: usize,
        q: &Query,
        start: i64,
        end: i64,
    ) -> Result<Vec<Hit>> {
        self.check_deadline()?;
        let in_range = |ts: i64| ts >= start && ts <= end;
        let time_column = self.signal.time_column();
        let matcher = Matcher::new(self.signal, q);
        let mut scratch = String::new();
        // `offset`: the batch's first row within its source.
        let mut scan = |batch: &RecordBatch, offset: usize, hits: &mut Vec<Hit>| -> Result<()> {
            self.check_deadline()?;
            let ts = timestamps(batch, time_column)?;
            let cols = matcher.bind(batch).map_err(internal)?;
            hits.extend(
                (0..batch.num_rows())
                    .filter(|&r| in_range(ts[r]) && matcher.matches(&cols, r, &mut scratch))
                    .map(|r| Hit {
                        ts: ts[r],
                        source: i,
                        row: (offset + r) as u32,
                    }),
            );
            Ok(())
        };
        let mut hits = Vec::new();
        match &self.list[i] {
            Source::Buffer(batch) => {
                scan(batch, 0, &mut hits)?;
                Ok(hits)
            }
            Source::Segment(seg) => match store.segment_index(seg).map_err(internal)? {
                // Not indexed yet: scanned a batch at a time, so memory stays
                // that of one batch however large the segment, reading only
                // the columns the query looks at.
                None => {
                    let mut columns = matcher.columns().to_vec();
                    columns.push(time_column);
                    let mut offset = 0;
                    for_each_rows(store, seg, None, Some(&columns), |b| {
                        scan(b, offset, &mut hits)?;
                        offset += b.num_rows();
                        Ok(())
                    })?;
                    Ok(hits)
                }
                Some(idx) => {
                    if let Some(timed) = idx.search_timed(q).map_err(internal)? {
                        return Ok(timed
                            .into_iter()
                            .filter(|t| in_range(t.time))
                            .map(|t| Hit {
                                ts: t.time,
                                source: i,
                                row: t.row,
                            })
                            .collect());
                    }
                    // An index from before times were kept: read them from Parquet.
                    let rows = idx.search(q).map_err(internal)?;
                    if rows.is_empty() {
                        return Ok(Vec::new());
                    }
                    let ts = segment_times(store, seg, &rows, time_column)?;
                    Ok(rows
                        .iter()
                        .zip(ts)
                        .filter(|(_, t)| in_range(*t))
                        .map(|(&row, ts)| Hit { ts, source: i, row })
                        .collect())
                }
            },
        }
    }

    /// The result records of `hits` (any order), with their keys.
    fn fetch(&self, store: &Store, hits: &[Hit]) -> Result<Vec<Record>> {
        let mut by_source: std::collections::BTreeMap<usize, Vec<Hit>> = Default::default();
        for h in hits {
            by_source.entry(h.source).or_default().push(*h);
        }
        let mut out = Vec::with_capacity(hits.len());
        for (source, mut hs) in by_source {
            hs.sort_by_key(|h| h.row);
            hs.dedup_by_key(|h| h.row);
            let rows: Vec<u32> = hs.iter().map(|h| h.row).collect();
            let batch = match &self.list[source] {
                Source::Buffer(b) => {
                    let idx = datafusion::arrow::array::UInt32Array::from(rows.clone());
                    take_record_batch(b, &idx)?
                }
                Source::Segment(seg) => {
                    let names: Vec<&str> = RESULT_COLUMNS.iter().map(|c| c.0).collect();
                    read_segment(store, seg, Some(&rows), Some(&names))?
                }
            };
            let batch = project(&batch, RESULT_COLUMNS)?;
            for (h, rec) in hs.iter().zip(crate::json::rows(&[batch])?) {
                let key = record_key(&rec);
                out.push((h.ts, key, rec));
            }
        }
        Ok(out)
    }
}

pub(crate) fn internal(e: lumen_store::Error) -> Error {
    Error::Internal(e.to_string())
}

/// Columns `(column, name in the answer)` of a batch, renamed.
pub(crate) fn project(batch: &RecordBatch, columns: &[(&str, &str)]) -> Result<RecordBatch> {
    use datafusion::arrow::datatypes::{Field, Schema};
    let mut fields = Vec::with_capacity(columns.len());
    let mut cols = Vec::with_capacity(columns.len());
    for (col, name) in columns {
        let (i, f) = batch
            .schema()
            .column_with_name(col)
            .map(|(i, f)| (i, f.clone()))
            .ok_or_else(|| Error::Internal(format!("column {col} missing")))?;
        fields.push(Field::new(*name, f.data_type().clone(), true));
        cols.push(Arc::clone(batch.column(i)));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// A stable 64-bit hash of a record (FNV-1a over its JSON rendering, whose
/// keys are sorted): the tie-breaker of the search order.
fn record_key(rec: &Map<String, Value>) -> u64 {
    let text = serde_json::to_string(rec).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(crate) fn timestamps(batch: &RecordBatch, column: &str) -> Result<Vec<i64>> {
    let col = batch
        .column_by_name(column)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| Error::Internal(format!("time column {column} missing")))?;
    Ok(col.values().to_vec())
}

/// A segment's Parquet file, for the synchronous reader: the local file, or
/// the object's bytes from a remote store.
enum SegmentFile {
    Local(std::fs::File),
    Remote(bytes::Bytes),
}

fn open_segment(store: &Store, seg: &SegmentMeta) -> Result<SegmentFile> {
    let objects = store.objects();
    match objects.local_path(&seg.path) {
        Some(path) => std::fs::File::open(&path)
            .map(SegmentFile::Local)
            .map_err(|e| Error::Internal(format!("opening {}: {e}", path.display()))),
        None => objects
            .get(&seg.path)
            .map_err(internal)?
            .map(SegmentFile::Remote)
            .ok_or_else(|| Error::Internal(format!("segment {} is missing", seg.path))),
    }
}

/// A segment's key in the process-wide caches (footers, series plans):
/// keys are relative to a store, so the data directory is part of it.
pub(crate) fn segment_key(store: &Store, seg: &SegmentMeta) -> String {
    store
        .data_dir()
        .join(&seg.path)
        .to_string_lossy()
        .into_owned()
}

/// Rows `rows` (ascending; all when `None`) of columns `columns` (all when
/// `None`) of a segment, reading only the pages that hold them.
pub(crate) fn read_segment(
    store: &Store,
    seg: &SegmentMeta,
    rows: Option<&[u32]>,
    columns: Option<&[&str]>,
) -> Result<RecordBatch> {
    let key = segment_key(store, seg);
    match open_segment(store, seg)? {
        SegmentFile::Local(f) => read_parquet(&key, f, rows, columns),
        SegmentFile::Remote(b) => read_parquet(&key, b, rows, columns),
    }
}

type MetadataCache = std::sync::Mutex<std::collections::HashMap<String, ArrowReaderMetadata>>;

/// Parsed footers (with page indexes) of segments by key: parsing them is
/// most of the cost of reading a few rows, and segments never change.
fn metadata_cache() -> &'static MetadataCache {
    static CACHE: std::sync::OnceLock<MetadataCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Footers kept; past this the cache starts over.
const METADATA_CACHE: usize = 1024;

fn read_parquet<R: ChunkReader + 'static>(
    key: &str,
    file: R,
    rows: Option<&[u32]>,
    columns: Option<&[&str]>,
) -> Result<RecordBatch> {
    let reader = parquet_reader(key, file, rows, columns)?;
    let out_schema = datafusion::arrow::record_batch::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    Ok(concat_batches(&out_schema, &batches)?)
}

/// A segment's parsed footer (with page indexes), from the cache.
fn load_metadata<R: ChunkReader + 'static>(key: &str, file: &R) -> Result<ArrowReaderMetadata> {
    let perr = |e: datafusion::parquet::errors::ParquetError| {
        Error::Internal(format!("reading a segment: {e}"))
    };
    let poisoned = |_| Error::Internal("segment metadata cache poisoned".into());
    let cached = metadata_cache().lock().map_err(poisoned)?.get(key).cloned();
    Ok(match cached {
        Some(m) => m,
        None => {
            // The offset index lets a row selection skip whole pages.
            let options = ArrowReaderOptions::new().with_page_index_policy(
                datafusion::parquet::file::metadata::PageIndexPolicy::Optional,
            );
            let m = ArrowReaderMetadata::load(file, options).map_err(perr)?;
            let mut cache = metadata_cache().lock().map_err(poisoned)?;
            if cache.len() >= METADATA_CACHE {
                cache.clear();
            }
            cache.insert(key.to_owned(), m.clone());
            m
        }
    })
}

/// The value of key `name` in a segment's footer metadata.
pub(crate) fn footer_value(store: &Store, seg: &SegmentMeta, name: &str) -> Result<Option<String>> {
    let key = segment_key(store, seg);
    let meta = match open_segment(store, seg)? {
        SegmentFile::Local(f) => load_metadata(&key, &f)?,
        SegmentFile::Remote(b) => load_metadata(&key, &b)?,
    };
    Ok(meta
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == name))
        .and_then(|kv| kv.value.clone()))
}

fn parquet_reader<R: ChunkReader + 'static>(
    key: &str,
    file: R,
    rows: Option<&[u32]>,
    columns: Option<&[&str]>,
) -> Result<datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let perr = |e: datafusion::parquet::errors::ParquetError| {
        Error::Internal(format!("reading a segment: {e}"))
    };
    let meta = load_metadata(key, &file)?;
    let mut b = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
    let schema = Arc::clone(b.schema());
    if let Some(names) = columns {
        let roots: Vec<usize> = names
            .iter()
            .filter_map(|n| schema.index_of(n).ok())
            .collect();
        let mask = ProjectionMask::roots(b.parquet_schema(), roots);
        b = b.with_projection(mask);
    }
    if let Some(rows) = rows {
        b = b.with_row_selection(selection(rows));
    }
    b.with_batch_size(8192).build().map_err(perr)
}

/// Every row of columns `columns` of a segment, batch by batch, in file
/// order, without holding more than one batch.
pub(crate) fn for_each_batch(
    store: &Store,
    seg: &SegmentMeta,
    columns: &[&str],
    f: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    for_each_rows(store, seg, None, Some(columns), f)
}

/// Rows `rows` (ascending) of columns `columns` of a segment, batch by
/// batch, reading only the pages that hold them.
pub(crate) fn for_each_selected(
    store: &Store,
    seg: &SegmentMeta,
    rows: &[u32],
    columns: &[&str],
    f: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    for_each_rows(store, seg, Some(rows), Some(columns), f)
}

/// Rows `rows` (all: `None`) of columns `columns` (all: `None`), batch by batch.
fn for_each_rows(
    store: &Store,
    seg: &SegmentMeta,
    rows: Option<&[u32]>,
    columns: Option<&[&str]>,
    mut f: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    let key = segment_key(store, seg);
    let mut run = |reader: datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader| {
        for batch in reader {
            f(&batch?)?;
        }
        Ok(())
    };
    match open_segment(store, seg)? {
        SegmentFile::Local(file) => run(parquet_reader(&key, file, rows, columns)?),
        SegmentFile::Remote(b) => run(parquet_reader(&key, b, rows, columns)?),
    }
}

/// The row selection of ascending `rows`.
pub(crate) fn selection(rows: &[u32]) -> RowSelection {
    let mut sel = Vec::new();
    let mut next = 0u32;
    let mut i = 0;
    while i < rows.len() {
        let start = rows[i];
        let mut end = start + 1;
        i += 1;
        while i < rows.len() && rows[i] == end {
            end += 1;
            i += 1;
        }
        if start > next {
            sel.push(RowSelector::skip((start - next) as usize));
        }
        sel.push(RowSelector::select((end - start) as usize));
        next = end;
    }
    RowSelection::from(sel)
}

/// The timestamps of `rows` (ascending) of a segment: the whole column when
/// many rows match, else only the pages holding them.
fn segment_times(store: &Store, seg: &SegmentMeta, rows: &[u32], column: &str) -> Result<Vec<i64>> {
    if rows.len() as u64 > seg.rows / 8 {
        let all = timestamps(&read_segment(store, seg, None, Some(&[column]))?, column)?;
        return rows
            .iter()
            .map(|&r| all.get(r as usize).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Error::Internal(format!("index of {} names rows past its end", seg.path))
            });
    }
    let ts = timestamps(
        &read_segment(store, seg, Some(rows), Some(&[column]))?,
        column,
    )?;
    if ts.len() != rows.len() {
        return Err(Error::Internal(format!(
            "index of {} names rows past its end",
            seg.path
        )));
    }
    Ok(ts)
}

/// Keeps the `n` newest hits and any that tie with the last of them.
fn keep_newest(hits: &mut Vec<Hit>, n: usize) {
    if hits.len() <= n || n == 0 {
        return;
    }
    hits.sort_unstable_by_key(|h| std::cmp::Reverse(h.ts));
    let boundary = hits[n - 1].ts;
    hits.retain(|h| h.ts >= boundary);
}

/// One page of records matching `req`, newest first.
pub fn search(store: &Store, req: &SearchRequest) -> Result<Page> {
    let end = req.cursor.map_or(req.end, |c| c.ts.min(req.end));
    let sources = Sources::new(store, Signal::Logs, req.start, end).until(req.deadline);
    let need = req.limit + 1;
    // Hits at the cursor's own time come after it only if their key is
    // lower, which needs the record: they are kept aside, all of them.
    let mut at_cursor: Vec<Hit> = Vec::new();
    let mut older: Vec<Hit> = Vec::new();
    for i in 0..sources.list.len() {
        // Sources come newest first (after the buffer): once `need` hits are
        // newer than everything a source holds, it and the rest can go.
        if older.len() >= need {
            keep_newest(&mut older, need);
            if older
                .iter()
                .map(|h| h.ts)
                .min()
                .is_some_and(|oldest| sources.max_time(i) < oldest)
            {
                break;
            }
        }
        for h in sources.hits(store, i, &req.query, req.start, end)? {
            if req.cursor.is_some_and(|c| c.ts == h.ts) {
                at_cursor.push(h);
            } else {
                older.push(h);
            }
        }
    }
    let mut records = sources.fetch(store, &at_cursor)?;
    if let Some(c) = req.cursor {
        records.retain(|(_, key, _)| *key < c.key);
    }
    keep_newest(&mut older, need.saturating_sub(records.len()));
    records.extend(sources.fetch(store, &older)?);
    records.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
    let more = records.len() > req.limit;
    records.truncate(req.limit);
    let next_cursor = if more {
        records
            .last()
            .map(|(ts, key, _)| Cursor { ts: *ts, key: *key }.encode())
    } else {
        None
    };
    Ok(Page {
        logs: records.into_iter().map(|(_, _, r)| r).collect(),
        next_cursor,
    })
}

#[derive(Debug, serde::Serialize)]
pub struct Bucket {
    /// Start of the bucket, RFC 3339.
    pub start: String,
    pub count: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct Histogram {
    pub buckets: Vec<Bucket>,
    /// Width of each bucket in milliseconds (the last may be cut by `end`).
    pub interval_ms: f64,
}

/// Counts of records matching `q` in `buckets` equal slices of `[start,
/// end]`; unbounded sides are taken from the data.
pub fn histogram(
    store: &Store,
    q: &Query,
    start: i64,
    end: i64,
    buckets: usize,
    deadline: Option<Instant>,
) -> Result<Histogram> {
    let sources = Sources::new(store, Signal::Logs, start, end).until(deadline);
    let in_range = |ts: i64| ts >= start && ts <= end;
    let need_bounds = start == i64::MIN || end == i64::MAX;
    let (mut data_lo, mut data_hi) = (i64::MAX, i64::MIN);
    // Indexes that keep times are streamed (twice when the data's own range
    // is needed): nothing per matching record is collected. Other sources'
    // times are collected.
    let mut streamed = Vec::new();
    let mut collected: Vec<i64> = Vec::new();
    for i in 0..sources.list.len() {
        if let Source::Segment(seg) = &sources.list[i]
            && let Some(idx) = store.segment_index(seg).map_err(internal)?
        {
            // Every record of the segment matches: the catalog knows its range.
            let whole = matches!(q, Query::All) && seg.min_time >= start && seg.max_time <= end;
            let timed = if need_bounds && whole && idx.has_times() {
                data_lo = data_lo.min(seg.min_time);
                data_hi = data_hi.max(seg.max_time);
                Ok(true)
            } else if need_bounds {
                idx.for_each_timed(q, |t| {
                    if in_range(t.time) {
                        data_lo = data_lo.min(t.time);
                        data_hi = data_hi.max(t.time);
                    }
                })
            } else {
                Ok(idx.has_times())
            }
            .map_err(internal)?;
            if timed {
                streamed.push(idx);
                continue;
            }
        }
        for h in sources.hits(store, i, q, start, end)? {
            data_lo = data_lo.min(h.ts);
            data_hi = data_hi.max(h.ts);
            collected.push(h.ts);
        }
    }
    if data_lo > data_hi {
        (data_lo, data_hi) = (0, 0);
    }
    let (lo, hi) = (
        if start == i64::MIN { data_lo } else { start },
        if end == i64::MAX { data_hi } else { end },
    );
    let span = (i128::from(hi) - i128::from(lo) + 1).max(1);
    let width = ((span + buckets as i128 - 1) / buckets as i128).max(1);
    let mut counts = vec![0u64; buckets];
    let mut count = |ts: i64| {
        let b = ((i128::from(ts) - i128::from(lo)) / width) as usize;
        if let Some(c) = counts.get_mut(b) {
            *c += 1;
        }
    };
    collected.into_iter().for_each(&mut count);
    for idx in streamed {
        sources.check_deadline()?;
        idx.for_each_timed(q, |t| {
            if in_range(t.time) {
                count(t.time);
            }
        })
        .map_err(internal)?;
    }
    Ok(Histogram {
        buckets: counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| Bucket {
                start: crate::json::rfc3339_nanos((i128::from(lo) + width * i as i128) as i64),
                count,
            })
            .collect(),
        interval_ms: width as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_cover_exactly_the_rows() {
        let s: Vec<RowSelector> = selection(&[0, 1, 2, 5, 9, 10]).into();
        assert_eq!(
            s,
            vec![
                RowSelector::select(3),
                RowSelector::skip(2),
                RowSelector::select(1),
                RowSelector::skip(3),
                RowSelector::select(2)
            ]
        );
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor {
            ts: -5,
            key: 0xdead_beef,
        };
        assert_eq!(Cursor::decode(&c.encode()).expect("decodes"), c);
        assert!(Cursor::decode("x").is_err());
        assert!(Cursor::decode("1.zz").is_err());
    }

    #[test]
    fn keep_newest_keeps_ties() {
        let h = |ts| Hit {
            ts,
            source: 0,
            row: 0,
        };
        let mut hits = vec![h(1), h(5), h(3), h(5), h(4)];
        keep_newest(&mut hits, 1);
        assert_eq!(hits.len(), 2);
        let mut hits = vec![h(1), h(5), h(3), h(4)];
        keep_newest(&mut hits, 2);
        assert_eq!(hits.iter().map(|h| h.ts).collect::<Vec<_>>(), vec![5, 4]);
    }
}
