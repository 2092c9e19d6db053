//! Writing a flushed buffer as one immutable Parquet segment.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::{self, SortColumn, interleave_record_batch, lexsort_to_indices};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::catalog::SegmentMeta;
use crate::schema::Signal;
use crate::{Error, Result};

/// Columns a segment is sorted by: the signal's main access path.
fn sort_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Logs => &["service_name", "timestamp"],
        Signal::Spans => &["trace_id", "start_time"],
        Signal::Metrics => &["metric_name", "timestamp"],
    }
}

fn writer_properties(signal: Signal) -> Result<WriterProperties> {
    let mut b = WriterProperties::builder()
        // Flushes run beside ingest: a light level here; compaction can spend more.
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(256 * 1024));
    if matches!(signal, Signal::Logs | Signal::Spans) {
        b = b.set_column_bloom_filter_enabled("trace_id".into(), true);
    }
    // Nearly unique per row: a dictionary costs CPU (interning) and saves nothing.
    for col in ["body", "trace_id", "span_id", "parent_span_id"] {
        b = b.set_column_dictionary_enabled(col.into(), false);
    }
    Ok(b.build())
}

/// Sorts and writes `batches` as `segments/<signal>/<min lsn>-<max lsn>.parquet`:
/// temp name, fsync, rename, fsync dir. The caller commits it to the catalog.
pub(crate) fn write(
    data_dir: &Path,
    signal: Signal,
    batches: &[RecordBatch],
    min_lsn: u64,
    max_lsn: u64,
) -> Result<SegmentMeta> {
    let schema = signal.schema();
    // Sort on the key columns only, then gather every column once with
    // `interleave`, instead of concatenating all columns and copying them
    // again in sorted order.
    let sort: Vec<SortColumn> = sort_columns(signal)
        .iter()
        .map(|c| -> Result<SortColumn> {
            let idx = schema.index_of(c)?;
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(idx).as_ref()).collect();
            Ok(SortColumn {
                values: compute::concat(&parts)?,
                options: None,
            })
        })
        .collect::<Result<_>>()?;
    let indices = lexsort_to_indices(&sort, None)?;
    let mut starts = Vec::with_capacity(batches.len());
    let mut total = 0usize;
    for b in batches {
        starts.push(total);
        total += b.num_rows();
    }
    let pairs: Vec<(usize, usize)> = indices
        .values()
        .iter()
        .map(|&i| {
            let i = i as usize;
            let batch = starts.partition_point(|&s| s <= i) - 1;
            (batch, i - starts[batch])
        })
        .collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let sorted = if refs.is_empty() {
        RecordBatch::new_empty(Arc::clone(&schema))
    } else {
        interleave_record_batch(&refs, &pairs)?
    };

    let (min_time, max_time) = time_range(&sorted, signal);
    let rel = format!(
        "segments/{}/{min_lsn:020}-{max_lsn:020}.parquet",
        signal.table()
    );
    let path = data_dir.join(&rel);
    let dir = path.parent().unwrap_or(data_dir).to_owned();
    fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties(signal)?))?;
    writer.write(&sorted)?;
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
    let bytes = file
        .metadata()
        .map_err(|e| Error::io("stat", &tmp, e))?
        .len();
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))?;
    crate::fsutil::sync_dir(&dir)?;
    Ok(SegmentMeta {
        signal,
        path: rel,
        rows: sorted.num_rows() as u64,
        bytes,
        min_time,
        max_time,
        min_lsn,
        max_lsn,
    })
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
