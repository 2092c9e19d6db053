//! Writing a flushed buffer as one immutable Parquet segment.

use std::fs::File;
use std::sync::Arc;

use std::collections::HashMap;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampNanosecondArray,
};
use datafusion::arrow::compute::{self, SortColumn, interleave_record_batch, lexsort_to_indices};
use datafusion::arrow::datatypes::{
    DataType, Int64Type, TimeUnit, TimestampNanosecondType, UInt64Type,
};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::{ArrowSchemaConverter, ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::bloom_filter::Sbbf;
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::reader::ChunkReader;
use datafusion::parquet::file::writer::SerializedFileWriter;

use crate::catalog::SegmentMeta;
use crate::objects::Objects;
use crate::schema::Signal;
use crate::{Error, Result};

/// Columns a segment is sorted by: the signal's main access path.
pub(crate) fn sort_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Logs => &["service_name", "timestamp"],
        Signal::Spans => &["trace_id", "start_time"],
        Signal::Metrics => &["metric_name", "series_id", "timestamp"],
    }
}

/// Rows per Parquet data page, at most (and the 1 MiB size limit still holds).
const PAGE_ROWS: usize = 4096;
/// Metric segments are read by whole series runs, not by point reads: larger
/// pages there cost less in page headers of their many mostly-null columns.
const METRIC_PAGE_ROWS: usize = 131072;

fn page_rows(signal: Signal) -> usize {
    if signal == Signal::Metrics {
        METRIC_PAGE_ROWS
    } else {
        PAGE_ROWS
    }
}

/// Largest dictionary page of a column chunk.
const DICTIONARY_BYTES: usize = 128 << 10;

fn writer_properties(signal: Signal, zstd_level: i32) -> Result<WriterProperties> {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(256 * 1024))
        // Point reads (search results, traces by id) decode whole pages:
        // pages of at most this many rows keep that cheap.
        .set_data_page_row_count_limit(page_rows(signal))
        .set_write_batch_size(page_rows(signal))
        // A point read decodes the dictionary of every row group it touches:
        // past this size a column chunk falls back to plain pages (which
        // zstd still compresses).
        .set_dictionary_page_size_limit(DICTIONARY_BYTES);
    if matches!(signal, Signal::Logs | Signal::Spans) {
        b = b.set_column_bloom_filter_enabled("trace_id".into(), true);
    }
    // No min/max where no predicate can use them: free text and the leaves
    // of maps and lists (attributes, events, links, buckets), which
    // DataFusion does not prune on. Computing string min/max per page was
    // 11.5% of the flush thread's CPU.
    let descr = ArrowSchemaConverter::new().convert(&signal.schema())?;
    for col in descr.columns() {
        let path = col.path();
        let top = path.parts().first().map(String::as_str);
        if path.parts().len() > 1 || top == Some("body") {
            b = b.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
    }
    // Nearly unique per row: a dictionary costs CPU (interning) and saves nothing.
    for col in ["body", "trace_id", "span_id", "parent_span_id"] {
        b = b.set_column_dictionary_enabled(col.into(), false);
    }
    // Timestamps are close to sorted within a segment: delta encoding halves
    // them (measured 3.1 → 1.5 B/row for logs' `timestamp`).
    for col in delta_columns(signal) {
        b = b
            .set_column_dictionary_enabled((*col).into(), false)
            .set_column_encoding((*col).into(), Encoding::DELTA_BINARY_PACKED);
    }
    if signal == Signal::Metrics {
        // Counter values of one series are close to each other: split into
        // byte streams, zstd finds the constant high bytes.
        b = b
            .set_column_dictionary_enabled("value".into(), false)
            .set_column_encoding("value".into(), Encoding::BYTE_STREAM_SPLIT)
            .set_column_dictionary_enabled("value_int".into(), false)
            .set_column_encoding("value_int".into(), Encoding::BYTE_STREAM_SPLIT);
    }
    Ok(b.build())
}

fn delta_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Logs => &["timestamp", "observed_timestamp"],
        Signal::Spans => &["start_time", "end_time"],
        Signal::Metrics => &["start_timestamp"],
    }
}

/// Length of a time partition: one hour, in nanoseconds.
pub(crate) const PARTITION_NS: i64 = 3_600_000_000_000;

/// The partition (hour) a time falls in, as a directory name: `2024-05-01T13`.
pub(crate) fn partition_name(t: i64) -> String {
    let hour = t.div_euclid(PARTITION_NS);
    match datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(hour * 3600) {
        Some(dt) => dt.format("%Y-%m-%dT%H").to_string(),
        None => format!("h{hour}"),
    }
}

/// Sorts `batches` by hour partition and then the signal's access path, and
/// writes one segment per hour as
/// `segments/<signal>/<hour>/<min lsn>-<max lsn>.parquet` (temp name, fsync,
/// rename, fsync dir). The caller commits them to the catalog together.
pub(crate) fn write(
    objects: &Objects,
    signal: Signal,
    batches: &[RecordBatch],
    min_lsn: u64,
    max_lsn: u64,
) -> Result<Vec<SegmentMeta>> {
    let schema = signal.schema();
    let concat_column = |name: &str| -> Result<Arc<dyn Array>> {
        let idx = schema.index_of(name)?;
        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(idx).as_ref()).collect();
        Ok(compute::concat(&parts)?)
    };
    let times = concat_column(signal.time_column())?;
    let times = times
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "{} is not a nanosecond timestamp",
                signal.time_column()
            ))
        })?;
    let hours: Arc<dyn Array> = Arc::new(Int64Array::from_iter(
        times.iter().map(|t| t.map(|t| t.div_euclid(PARTITION_NS))),
    ));
    // Sort on the key columns only, then gather every column once with
    // `interleave`, instead of concatenating all columns and copying them
    // again in sorted order.
    let mut keys = vec![Arc::clone(&hours)];
    for c in sort_columns(signal) {
        keys.push(concat_column(c)?);
    }
    let indices = sort_indices(&keys)?;
    let mut starts = Vec::with_capacity(batches.len());
    let mut total = 0usize;
    for b in batches {
        starts.push(total);
        total += b.num_rows();
    }
    let hours = hours
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Corrupt("hours".into()))?;
    // Runs of equal hour in sorted order: one segment each.
    let mut runs: Vec<(i64, Vec<(usize, usize)>)> = Vec::new();
    for &i in &indices {
        let i = i as usize;
        let hour = hours.value(i);
        let batch = starts.partition_point(|&s| s <= i) - 1;
        match runs.last_mut() {
            Some((h, pairs)) if *h == hour => pairs.push((batch, i - starts[batch])),
            _ => runs.push((hour, vec![(batch, i - starts[batch])])),
        }
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut metas = Vec::with_capacity(runs.len());
    for (hour, pairs) in runs {
        let sorted = interleave_record_batch(&refs, &pairs)?;
        let partition = partition_name(hour.saturating_mul(PARTITION_NS));
        metas.push(write_one(
            objects, signal, &sorted, &partition, min_lsn, max_lsn,
        )?);
    }
    Ok(metas)
}

/// Most key columns [`sort_indices`] sorts on without `lexsort_to_indices`.
const SORT_KEYS: usize = 4;

/// The rows of `keys` (equal-length columns) in ascending order, nulls first,
/// as `lexsort_to_indices` with default options orders them. Without nulls,
/// each column becomes an order-preserving `u64` per row (integers and times
/// with the sign bit flipped, strings by rank among their distinct values)
/// and the rows are sorted as fixed-width tuples: `lexsort_to_indices`
/// compares every pair through dynamic per-column comparators, which was
/// 13.5% of a logs flush's instructions.
fn sort_indices(keys: &[ArrayRef]) -> Result<Vec<u32>> {
    let n = keys.first().map_or(0, |k| k.len());
    let fast = keys.len() <= SORT_KEYS
        && u32::try_from(n).is_ok()
        && keys.iter().all(|k| k.len() == n && k.null_count() == 0);
    let ranked = fast
        .then(|| keys.iter().map(order_keys).collect::<Option<Vec<_>>>())
        .flatten();
    let Some(ranked) = ranked else {
        return lexsort(keys);
    };
    let mut rows: Vec<([u64; SORT_KEYS], u32)> = (0..n)
        .map(|i| {
            let mut k = [0u64; SORT_KEYS];
            for (slot, col) in k.iter_mut().zip(&ranked) {
                *slot = col[i];
            }
            // `n` fits in u32 (checked above).
            (k, i as u32)
        })
        .collect();
    rows.sort_unstable();
    Ok(rows.into_iter().map(|(_, i)| i).collect())
}

/// The rows of `keys` in `lexsort_to_indices`'s order (default options).
fn lexsort(keys: &[ArrayRef]) -> Result<Vec<u32>> {
    let sort: Vec<SortColumn> = keys
        .iter()
        .map(|k| SortColumn {
            values: Arc::clone(k),
            options: None,
        })
        .collect();
    Ok(lexsort_to_indices(&sort, None)?.values().to_vec())
}

/// A `u64` per row that orders as the column's values do, for the column
/// types segments sort on; `None` for any other type.
fn order_keys(a: &ArrayRef) -> Option<Vec<u64>> {
    const SIGN: u64 = 1 << 63;
    let flip = |v: &i64| v.cast_unsigned() ^ SIGN;
    match a.data_type() {
        DataType::Int64 => Some(
            a.as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(flip)
                .collect(),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(
            a.as_primitive::<TimestampNanosecondType>()
                .values()
                .iter()
                .map(flip)
                .collect(),
        ),
        DataType::UInt64 => Some(a.as_primitive::<UInt64Type>().values().to_vec()),
        DataType::Utf8 => {
            // Ids in order of first appearance, then each id's rank among
            // the distinct values (bytewise, as Arrow compares strings).
            let strings = a.as_string::<i32>();
            let mut ids: HashMap<&str, u64> = HashMap::new();
            let first_seen: Vec<u64> = (0..strings.len())
                .map(|i| {
                    let next = ids.len() as u64;
                    *ids.entry(strings.value(i)).or_insert(next)
                })
                .collect();
            let mut distinct: Vec<(&str, u64)> = ids.into_iter().collect();
            distinct.sort_unstable();
            let mut rank = vec![0u64; distinct.len()];
            for (r, (_, id)) in distinct.iter().enumerate() {
                rank[*id as usize] = r as u64;
            }
            Some(first_seen.iter().map(|id| rank[*id as usize]).collect())
        }
        _ => None,
    }
}

fn write_one(
    objects: &Objects,
    signal: Signal,
    sorted: &RecordBatch,
    partition: &str,
    min_lsn: u64,
    max_lsn: u64,
) -> Result<SegmentMeta> {
    // No index at flush: compaction builds it (see `CompactionConfig::index_delay`).
    write_sorted(
        objects,
        signal,
        std::iter::once(Ok(sorted.clone())),
        partition,
        (min_lsn, max_lsn),
        FLUSH_ZSTD_LEVEL,
        false,
    )
}

/// zstd level of flushed segments: they are written beside ingest.
pub(crate) const FLUSH_ZSTD_LEVEL: i32 = 1;
/// zstd level of compacted segments: written once, in the background, kept
/// long. Measured on fresh loadgen logs (pyarrow, same data): level 3 29.7
/// B/row, 6 27.6 B/row for 1.6x the encoding CPU, 9 26.4 B/row for 2.3x.
pub(crate) const COMPACT_ZSTD_LEVEL: i32 = 6;

/// Writes one segment of `partition` (with its index if `with_index` and the
/// signal has one) from batches already in the segment's sort order, streaming: Parquet row groups and the index are built as the
/// batches arrive, so memory does not grow with the segment. Temp names,
/// fsync, rename; the caller commits the returned segment to the catalog.
pub(crate) fn write_sorted(
    objects: &Objects,
    signal: Signal,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    partition: &str,
    (min_lsn, max_lsn): (u64, u64),
    zstd_level: i32,
    with_index: bool,
) -> Result<SegmentMeta> {
    let created_ns = crate::now_ns();
    let rel = segment_key(
        signal,
        partition,
        (min_lsn, max_lsn),
        with_index,
        created_ns,
    );
    let idx = crate::catalog::index_path(&rel);
    let result = write_files(objects, signal, batches, &rel, &idx, zstd_level, with_index);
    if result.is_err() {
        abandon(objects, &[&rel, &idx]);
    }
    let (rows, bytes, index_bytes, (mut min_time, mut max_time)) = result?;
    if rows == 0 {
        (min_time, max_time) = (i64::MIN, i64::MAX);
    }
    Ok(SegmentMeta {
        signal,
        partition: partition.to_owned(),
        path: rel,
        rows,
        bytes,
        min_time,
        max_time,
        min_lsn,
        max_lsn,
        index_bytes,
        created_ns,
    })
}

/// The object key of a new segment. Compaction output gets its own name: a
/// lone segment rewritten for its index covers the same LSNs as its input,
/// and a committed object is never overwritten (a query may be reading it).
fn segment_key(
    signal: Signal,
    partition: &str,
    (min_lsn, max_lsn): (u64, u64),
    compacted: bool,
    created_ns: i64,
) -> String {
    let generation = if compacted {
        format!(".{created_ns:x}")
    } else {
        String::new()
    };
    format!(
        "segments/{}/{partition}/{min_lsn:020}-{max_lsn:020}{generation}.parquet",
        signal.table()
    )
}

/// Removes what a failed write left of new objects `keys`: nothing names
/// them yet, so they must not stay for the next start.
fn abandon(objects: &Objects, keys: &[&str]) {
    for key in keys {
        let _ = std::fs::remove_file(objects.staging_path(key));
        let _ = objects.delete(key);
    }
}

/// Inputs of [`concat`] need at least this many rows each (by default): their
/// row groups are kept as they are, and small ones compress poorly and bloat
/// footers, so small segments are merged by rewriting (cheap at their size).
pub(crate) const CONCAT_MIN_ROWS: u64 = 100_000;

/// Writes the concatenation of `group` (indexed segments of one partition,
/// in this order) as one segment, without decoding a row: Parquet column
/// chunks are copied as they are, with their statistics, page indexes and
/// bloom filters, and the indexes are concatenated ([`crate::index::concat`]).
/// The result is sorted per input, which is all that queries rely on (row
/// group statistics and the index prune; nothing assumes a global order).
/// `None` if the inputs can't be concatenated (formats of different
/// versions): then the caller merges them by rewriting.
pub(crate) fn concat(
    objects: &Objects,
    signal: Signal,
    group: &[std::sync::Arc<SegmentMeta>],
    partition: &str,
    lsns: (u64, u64),
) -> Result<Option<SegmentMeta>> {
    let created_ns = crate::now_ns();
    let rel = segment_key(signal, partition, lsns, true, created_ns);
    let idx = crate::catalog::index_path(&rel);
    let result = concat_files(objects, signal, group, &rel, &idx);
    if !matches!(result, Ok(Some(_))) {
        abandon(objects, &[&rel, &idx]);
    }
    let Some((bytes, index_bytes)) = result? else {
        return Ok(None);
    };
    Ok(Some(SegmentMeta {
        signal,
        partition: partition.to_owned(),
        path: rel,
        rows: group.iter().map(|s| s.rows).sum(),
        bytes,
        min_time: group.iter().map(|s| s.min_time).min().unwrap_or(i64::MIN),
        max_time: group.iter().map(|s| s.max_time).max().unwrap_or(i64::MAX),
        min_lsn: lsns.0,
        max_lsn: lsns.1,
        index_bytes,
        created_ns,
    }))
}

/// Parquet and index bytes of the concatenated segment, committed.
fn concat_files(
    objects: &Objects,
    signal: Signal,
    group: &[std::sync::Arc<SegmentMeta>],
    rel: &str,
    idx: &str,
) -> Result<Option<(u64, u64)>> {
    let tmp_idx = objects.staging_file(idx)?;
    // The index first: it is where an input of an older format shows.
    let mut bundles = Vec::with_capacity(group.len());
    for s in group {
        let key = s
            .index_path()
            .ok_or_else(|| Error::Corrupt(format!("{} has no index to concatenate", s.path)))?;
        bundles.push(crate::index::bundle(objects, &key)?);
    }
    if crate::index::concat(signal, bundles, &objects.scratch_dir(), &tmp_idx)?.is_none() {
        return Ok(None);
    }
    let tmp = objects.staging_path(rel);
    let mut writer: Option<SerializedFileWriter<File>> = None;
    let mut schema = None;
    for s in group {
        // One input in memory at a time when objects are remote.
        let appended = match objects.local_path(&s.path) {
            Some(path) => {
                let input = File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
                append_segment(&input, &mut writer, &tmp, &mut schema, signal)?
            }
            None => {
                let input = objects
                    .get(&s.path)?
                    .ok_or_else(|| Error::Corrupt(format!("segment {} is missing", s.path)))?;
                append_segment(&input, &mut writer, &tmp, &mut schema, signal)?
            }
        };
        match appended {
            Some(n) if n == s.rows => {}
            Some(n) => {
                return Err(Error::Corrupt(format!(
                    "{} holds {n} rows, the catalog says {}",
                    s.path, s.rows
                )));
            }
            None => return Ok(None),
        }
    }
    let writer = writer.ok_or_else(|| Error::Corrupt("empty concatenation".into()))?;
    writer.close()?;
    let bytes = objects.commit_file(rel)?;
    crate::crash_point("concat-parquet-written");
    let index_bytes = objects.commit_file(idx)?;
    crate::crash_point("concat-index-written");
    Ok(Some((bytes, index_bytes)))
}

/// Appends every row group of the Parquet file in `input` to `writer`
/// (created at `tmp` on the first input, with that input's schema and
/// key-value metadata, which holds the Arrow schema); its rows, or `None` if its schema differs
/// from the first input's.
fn append_segment<R: ChunkReader>(
    input: &R,
    writer: &mut Option<SerializedFileWriter<File>>,
    tmp: &std::path::Path,
    schema: &mut Option<datafusion::parquet::schema::types::SchemaDescPtr>,
    signal: Signal,
) -> Result<Option<u64>> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(input)?;
    let descr = metadata.file_metadata().schema_descr_ptr();
    match schema {
        Some(first) if **first != *descr => return Ok(None),
        Some(_) => {}
        None => *schema = Some(std::sync::Arc::clone(&descr)),
    }
    if writer.is_none() {
        let out = File::create(tmp).map_err(|e| Error::io("creating", tmp, e))?;
        let mut w = SerializedFileWriter::new(
            out,
            descr.root_schema_ptr(),
            std::sync::Arc::new(writer_properties(signal, COMPACT_ZSTD_LEVEL)?),
        )?;
        for kv in metadata
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
        {
            w.append_key_value_metadata(kv.clone());
        }
        *writer = Some(w);
    }
    let w = writer
        .as_mut()
        .ok_or_else(|| Error::Corrupt("concatenation writer missing".into()))?;
    let mut rows = 0u64;
    for (g, rg) in metadata.row_groups().iter().enumerate() {
        let mut out = w.next_row_group()?;
        for (c, column) in rg.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: column.compressed_size() as u64,
                rows_written: rg.num_rows() as u64,
                metadata: column.clone(),
                bloom_filter: Sbbf::read_from_column_chunk(column, input)?,
                column_index: metadata
                    .column_index()
                    .and_then(|ci| ci.get(g)?.get(c).cloned()),
                offset_index: metadata
                    .offset_index()
                    .and_then(|oi| oi.get(g)?.get(c).cloned()),
            };
            out.append_column(input, close)?;
        }
        out.close()?;
        rows += rg.num_rows() as u64;
    }
    Ok(Some(rows))
}

/// Builds the index of the committed segment `rel` from its Parquet file
/// (only the indexed columns are read) and commits it as `idx`; returns its
/// bytes. The Parquet file is not touched: a flushed segment is final but
/// for its index. The caller commits the catalog entry.
pub(crate) fn index_segment(
    objects: &Objects,
    signal: Signal,
    rel: &str,
    idx: &str,
    between_batches: &dyn Fn(),
) -> Result<u64> {
    let result = index_files(objects, signal, rel, idx, between_batches);
    if result.is_err() {
        abandon(objects, &[idx]);
    }
    result
}

fn index_files(
    objects: &Objects,
    signal: Signal,
    rel: &str,
    idx: &str,
    between_batches: &dyn Fn(),
) -> Result<u64> {
    let tmp = objects.staging_file(idx)?;
    let scratch = objects.scratch_dir();
    match objects.local_path(rel) {
        Some(path) => {
            index_local_file(signal, &path, &tmp, &scratch, between_batches)?;
        }
        None => {
            let bytes = objects
                .get(rel)?
                .ok_or_else(|| Error::Corrupt(format!("segment {rel} is missing")))?;
            let mut index = crate::index::Builder::new(signal, &scratch)?;
            let columns = crate::index::builder_columns(signal);
            index_rows(bytes, &columns, &mut index, between_batches)?;
            index.finish(&tmp)?;
        }
    }
    objects.commit_file(idx)
}

/// Builds the index of the segment file at `path` and writes it to `out` (not
/// synced), as compaction does for a flushed segment; returns its length.
/// For `lumen bench-index`, which times this on a copy of real segments.
pub fn index_file(
    signal: Signal,
    path: &std::path::Path,
    out: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<u64> {
    index_local_file(signal, path, out, scratch, &|| ())
}

fn index_local_file(
    signal: Signal,
    path: &std::path::Path,
    out: &std::path::Path,
    scratch: &std::path::Path,
    between_batches: &dyn Fn(),
) -> Result<u64> {
    let mut index = crate::index::Builder::new(signal, scratch)?;
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let columns = crate::index::builder_columns(signal);
    index_rows(file, &columns, &mut index, between_batches)?;
    index.finish(out)
}

/// The flush step alone, for `lumen bench-flush`: segments written as the
/// flusher writes them (sorted, Parquet, no index) into a scratch directory.
pub struct FlushBench {
    objects: Objects,
}

impl FlushBench {
    /// Writes under `dir` (local storage, as a data directory).
    pub fn new(dir: &std::path::Path) -> Result<FlushBench> {
        Ok(FlushBench {
            objects: Objects::open(dir, &crate::objects::Storage::Local)?,
        })
    }

    /// The rows of the segment file at `path` back in arrival order (by
    /// time, as ingest delivered them, services interleaved), in batches of
    /// `batch_rows`: what the flusher had in its buffer.
    pub fn arrival_batches(
        signal: Signal,
        path: &std::path::Path,
        batch_rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        let all = compute::concat_batches(&signal.schema(), &batches)?;
        let time = all.column(all.schema().index_of(signal.time_column())?);
        let order = compute::sort_to_indices(time, None, None)?;
        let all = compute::take_record_batch(&all, &order)?;
        let mut out = Vec::new();
        let mut at = 0;
        while at < all.num_rows() {
            let n = batch_rows.max(1).min(all.num_rows() - at);
            out.push(all.slice(at, n));
            at += n;
        }
        Ok(out)
    }

    /// Flushes `batches` as one buffer (the flusher's `write`); returns the
    /// Parquet bytes written.
    pub fn write(&self, signal: Signal, batches: &[RecordBatch], lsn: u64) -> Result<u64> {
        let metas = write(&self.objects, signal, batches, lsn, lsn)?;
        Ok(metas.iter().map(|m| m.bytes).sum())
    }
}

/// Adds the rows of a Parquet file to `index`, reading only `columns`;
/// calls `between_batches` before each batch (compaction's pacing).
fn index_rows<R: ChunkReader + 'static>(
    input: R,
    columns: &[&str],
    index: &mut crate::index::Builder,
    between_batches: &dyn Fn(),
) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(input)?;
    let schema = builder.schema();
    let roots: Vec<usize> = columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<_, _>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    for batch in builder
        .with_projection(mask)
        .with_batch_size(PAGE_ROWS)
        .build()?
    {
        between_batches();
        index.add(&batch?)?;
    }
    Ok(())
}

/// Rows, Parquet bytes, index bytes and time range of the written segment.
type Written = (u64, u64, u64, (i64, i64));

fn write_files(
    objects: &Objects,
    signal: Signal,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    rel: &str,
    idx: &str,
    zstd_level: i32,
    with_index: bool,
) -> Result<Written> {
    let tmp = objects.staging_file(rel)?;
    let file = File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        signal.schema(),
        Some(writer_properties(signal, zstd_level)?),
    )?;
    let mut index = if with_index && crate::index::indexed(signal) {
        Some(crate::index::Builder::new(signal, &objects.scratch_dir())?)
    } else {
        None
    };
    let (mut min_time, mut max_time, mut rows) = (i64::MAX, i64::MIN, 0u64);
    let mut runs = (signal == Signal::Metrics).then(crate::series::Runs::default);
    for batch in batches {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let (lo, hi) = time_range(&batch, signal);
        min_time = min_time.min(lo);
        max_time = max_time.max(hi);
        rows += batch.num_rows() as u64;
        let batch = if signal == Signal::Metrics {
            without_int_values(&batch)?
        } else {
            batch
        };
        writer.write(&batch)?;
        if let Some(index) = index.as_mut() {
            index.add(&batch)?;
        }
        if let Some(runs) = runs.as_mut() {
            runs.add(&batch);
        }
    }
    if let Some(encoded) = runs.as_ref().and_then(crate::series::Runs::encode) {
        writer.append_key_value_metadata(datafusion::parquet::file::metadata::KeyValue::new(
            crate::series::SERIES_INDEX_KEY.to_owned(),
            encoded,
        ));
    }
    writer.into_inner()?;
    // The Parquet file is durable (and, remote, uploaded) before its index;
    // neither is used until the catalog names them.
    let bytes = objects.commit_file(rel)?;
    crate::crash_point("segment-parquet-written");
    let index_bytes = match index {
        Some(index) => {
            index.finish(&objects.staging_path(idx))?;
            objects.commit_file(idx)?
        }
        None => 0,
    };
    crate::crash_point("segment-index-written");
    Ok((rows, bytes, index_bytes, (min_time, max_time)))
}

/// A metrics batch with `value` null where `value_int` holds the point (an
/// integer point's `value` is exactly `value_int as f64`, so readers fill it
/// back): counters are not stored twice.
pub(crate) fn without_int_values(batch: &RecordBatch) -> Result<RecordBatch> {
    let (Some(vi), Some(v)) = (
        batch.schema().index_of("value_int").ok(),
        batch.schema().index_of("value").ok(),
    ) else {
        return Ok(batch.clone());
    };
    let ints = batch.column(vi);
    if ints.null_count() == ints.len() {
        return Ok(batch.clone());
    }
    let has_int = compute::is_not_null(ints)?;
    let mut cols = batch.columns().to_vec();
    cols[v] = compute::nullif(batch.column(v), &has_int)?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

pub(crate) fn time_range(batch: &RecordBatch, signal: Signal) -> (i64, i64) {
    let col = batch
        .column_by_name(signal.time_column())
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
    match col {
        Some(a) if a.len() > a.null_count() => (
            compute::min(a).unwrap_or(i64::MIN),
            compute::max(a).unwrap_or(i64::MAX),
        ),
        _ => (i64::MIN, i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, UInt64Array};

    /// Tiny deterministic generator: the test needs varied keys, not quality.
    fn next(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    /// The key tuples of `keys` in the order `order` puts their rows.
    fn tuples(keys: &[ArrayRef], order: &[u32]) -> Vec<Vec<String>> {
        use datafusion::arrow::util::display::array_value_to_string;
        order
            .iter()
            .map(|&i| {
                keys.iter()
                    .map(|k| array_value_to_string(k, i as usize).unwrap_or_default())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn sort_indices_orders_rows_as_lexsort_does() {
        let mut st = 7u64;
        let n = 5000;
        let words = [
            "",
            "a",
            "ab",
            "b",
            "checkout",
            "cart",
            "Checkout",
            "\u{e9}t\u{e9}",
            "z",
        ];
        let hours: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..n).map(|_| next(&mut st) as i64 % 3 - 1),
        ));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|_| words[next(&mut st) as usize % words.len()]),
        ));
        let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values((0..n).map(|_| {
            next(&mut st) % 50
                + if next(&mut st).is_multiple_of(2) {
                    u64::MAX - 60
                } else {
                    0
                }
        })));
        let times: ArrayRef = Arc::new(TimestampNanosecondArray::from_iter_values(
            (0..n).map(|_| (next(&mut st) as i64 % 1000 - 500) * 1_000_000_007),
        ));
        for keys in [
            vec![Arc::clone(&hours), Arc::clone(&names), Arc::clone(&times)],
            vec![
                Arc::clone(&hours),
                Arc::clone(&names),
                Arc::clone(&ids),
                Arc::clone(&times),
            ],
        ] {
            let fast = sort_indices(&keys).expect("sorts");
            let mut seen = fast.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n as u32).collect::<Vec<_>>(), "a permutation");
            assert_eq!(
                tuples(&keys, &fast),
                tuples(&keys, &lexsort(&keys).expect("sorts"))
            );
        }
        // With nulls it falls back to lexsort (nulls first).
        let with_null: ArrayRef = Arc::new(StringArray::from(vec![Some("b"), None, Some("a")]));
        assert_eq!(sort_indices(&[with_null]).expect("sorts"), vec![1, 2, 0]);
    }
}
