//! Compaction: merges the small segments of one hour partition into larger
//! sorted ones, in the background, with bounded memory.
//!
//! The merged segment is written and made durable first; one catalog commit
//! then swaps it in for its inputs. The inputs go to the graveyard and are
//! deleted once no query holds them. A crash before the commit leaves an
//! uncommitted file (deleted on start); after it, garbage inputs (likewise).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

use crate::catalog::SegmentMeta;
use crate::objects::Objects;
use crate::schema::Signal;
use crate::{Error, Result, Shared, lock, segment};

/// What compaction aims for and may use.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// Stop adding inputs to a merge once they hold this many Parquet bytes.
    pub target_bytes: u64,
    /// Stop adding inputs once they hold this many rows.
    pub max_rows: u64,
    /// Merge when a partition has at least this many small segments.
    pub min_inputs: usize,
    /// At most this many inputs per merge: the merge holds one decoded batch
    /// (and one row group's pages) per input.
    pub max_inputs: usize,
    /// Pause between merges, so compaction takes a bounded share of CPU.
    pub pause: Duration,
    /// Flushed segments are written without an index (indexing at flush
    /// cost ingest three quarters of its rate); compaction builds it. A
    /// flushed segment this old is compacted, alone if need be, for its index.
    pub index_delay: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        // A merge streams its inputs (one batch per input in memory), so the
        // row limit bounds merge time, not memory.
        CompactionConfig {
            target_bytes: 256 << 20,
            max_rows: 8_000_000,
            min_inputs: 4,
            max_inputs: 16,
            pause: Duration::from_millis(500),
            index_delay: Duration::from_secs(30),
        }
    }
}

/// Picks one group of segments to merge: consecutive small segments of one
/// partition, oldest first, once there are `min_inputs` of them; or the
/// partition's unindexed (freshly flushed) segments once the oldest of them
/// is `index_delay` old, even alone, so every segment gets its index.
pub(crate) fn pick(
    segments: &[Arc<SegmentMeta>],
    config: &CompactionConfig,
    now_ns: i64,
) -> Option<Vec<Arc<SegmentMeta>>> {
    let unindexed = |s: &SegmentMeta| crate::index::indexed(s.signal) && s.index_bytes == 0;
    let delay = i64::try_from(config.index_delay.as_nanos()).unwrap_or(i64::MAX);
    let mut by_partition: BTreeMap<&str, Vec<&Arc<SegmentMeta>>> = BTreeMap::new();
    for s in segments {
        if s.bytes < config.target_bytes / 2 || unindexed(s) {
            by_partition
                .entry(s.partition.as_str())
                .or_default()
                .push(s);
        }
    }
    for (_, mut small) in by_partition {
        small.sort_by_key(|s| s.min_lsn);
        let overdue = small
            .iter()
            .any(|s| unindexed(s) && now_ns.saturating_sub(s.created_ns) >= delay);
        let lone = small.len() < config.min_inputs;
        // A partition of a signal without indexes (metrics) that has had no
        // new segment for a while is done: merge its few small segments into
        // one (fewer footers, and PromQL reads one run per series). A live
        // partition, flushed every few seconds, waits for `min_inputs`.
        let quiet = small.len() >= 2
            && small.iter().all(|s| {
                !crate::index::indexed(s.signal)
                    && now_ns.saturating_sub(s.created_ns) >= delay.saturating_mul(10)
            });
        if lone && !overdue && !quiet {
            continue;
        }
        if lone && !quiet {
            small.retain(|s| unindexed(s));
        }
        let mut group = Vec::new();
        let (mut bytes, mut rows) = (0, 0);
        for s in small {
            if !group.is_empty()
                && (bytes + s.bytes > config.target_bytes
                    || rows + s.rows > config.max_rows
                    || group.len() >= config.max_inputs)
            {
                break;
            }
            bytes += s.bytes;
            rows += s.rows;
            group.push(Arc::clone(s));
        }
        if group.len() >= 2 || group.first().is_some_and(|s| unindexed(s)) {
            return Some(group);
        }
    }
    None
}

/// The rows of `group` (sorted segments of one partition) as one stream in
/// the segments' sort order: DataFusion reads each file as its own sorted
/// partition and `SortPreservingMergeExec` merges them batch by batch, so
/// memory is one batch per input however many rows the merge has.
fn merged_stream(
    objects: &Objects,
    signal: Signal,
    group: &[Arc<SegmentMeta>],
) -> Result<SendableRecordBatchStream> {
    let schema = signal.schema();
    let mut ordering = Vec::new();
    for c in segment::sort_columns(signal) {
        ordering.push(PhysicalSortExpr::new_default(col(c, &schema)?));
    }
    let ordering =
        LexOrdering::new(ordering).ok_or_else(|| Error::Corrupt("empty sort order".into()))?;
    let groups = group
        .iter()
        .map(|s| FileGroup::new(vec![PartitionedFile::new(s.path.clone(), s.bytes)]))
        .collect();
    let config = FileScanConfigBuilder::new(
        Objects::url(),
        Arc::new(ParquetSource::new(Arc::clone(&schema))),
    )
    .with_file_groups(groups)
    .with_output_ordering(vec![ordering.clone()])
    .build();
    let scan = DataSourceExec::from_data_source(config);
    let merge = SortPreservingMergeExec::new(ordering, scan);
    // Small batches: one is held per input.
    let session = SessionConfig::new().with_batch_size(2048);
    let ctx = SessionContext::new_with_config(session);
    ctx.register_object_store(Objects::url().as_ref(), objects.store());
    Ok(merge.execute(0, ctx.task_ctx())?)
}

/// Merges `group` (segments of one signal and partition) and commits the result.
pub(crate) fn merge(shared: &Shared, signal: Signal, group: &[Arc<SegmentMeta>]) -> Result<()> {
    let started = std::time::Instant::now();
    let dir = &shared.config.data_dir;
    let objects = &shared.objects;
    let min_lsn = group.iter().map(|s| s.min_lsn).min().unwrap_or(0);
    let max_lsn = group.iter().map(|s| s.max_lsn).max().unwrap_or(0);
    let partition = group
        .first()
        .map(|s| s.partition.clone())
        .ok_or_else(|| Error::Corrupt("empty merge".into()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the compaction runtime", dir, e))?;
    let mut stream = merged_stream(objects, signal, group)?;
    let batches = std::iter::from_fn(|| {
        rt.block_on(stream.next())
            .map(|r| r.map_err(|e| Error::Corrupt(format!("merging segments: {e}"))))
    });
    let merged = vec![segment::write_sorted(
        objects,
        signal,
        batches,
        &partition,
        (min_lsn, max_lsn),
        segment::COMPACT_ZSTD_LEVEL,
        true,
    )?];
    crate::crash_point("compaction-before-commit");
    let paths: std::collections::HashSet<&str> = group.iter().map(|s| s.path.as_str()).collect();
    {
        let mut catalog = lock(&shared.catalog);
        // Retention may have dropped an input meanwhile: then give up this merge.
        let present = catalog
            .segments
            .iter()
            .filter(|s| paths.contains(s.path.as_str()))
            .count();
        let clash = merged.iter().any(|m| paths.contains(m.path.as_str()));
        if present != group.len() || clash {
            drop(catalog);
            if !clash {
                crate::discard(objects, &merged);
            }
            return Ok(());
        }
        let mut next = catalog.clone();
        next.segments.retain(|s| !paths.contains(s.path.as_str()));
        next.segments.extend(merged.iter().cloned());
        if let Err(e) = next.store(objects) {
            crate::discard(objects, &merged);
            return Err(e);
        }
        *catalog = next;
        // Swap in memory while still holding the catalog lock, so retention sees one order of events.
        let mut state = lock(&shared.state);
        let list = &mut state.segments[signal.index()];
        list.retain(|s| !paths.contains(s.path.as_str()));
        list.extend(merged.into_iter().map(Arc::new));
    }
    crate::crash_point("compaction-after-commit");
    lock(&shared.graveyard).extend(group.iter().cloned());
    let m = &shared.metrics;
    m.compactions.fetch_add(1, Ordering::Relaxed);
    m.compacted_rows
        .fetch_add(group.iter().map(|s| s.rows).sum(), Ordering::Relaxed);
    m.compaction_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// The compaction thread's loop.
pub(crate) fn run(shared: Arc<Shared>) {
    let config = shared.config.compaction.clone();
    while !shared.stop.load(Ordering::SeqCst) {
        let mut merged_any = false;
        for signal in Signal::ALL {
            let segments = lock(&shared.state).segments[signal.index()].clone();
            if let Some(group) = pick(&segments, &config, crate::now_ns()) {
                shared.compacting.store(true, Ordering::Relaxed);
                let result = merge(&shared, signal, &group);
                shared.compacting.store(false, Ordering::Relaxed);
                if let Err(e) = result {
                    tracing::error!(signal = %signal, error = %e, "compaction failed; will retry");
                }
                merged_any = true;
            }
        }
        let guard = lock(&shared.wake_lock);
        let pause = if merged_any {
            config.pause
        } else {
            Duration::from_secs(2)
        };
        let _ = shared.wake.wait_timeout(guard, pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(lsn: u64, indexed: bool, created_ns: i64) -> Arc<SegmentMeta> {
        Arc::new(SegmentMeta {
            signal: Signal::Logs,
            partition: "2024-05-01T13".into(),
            path: format!("segments/logs/2024-05-01T13/{lsn}.parquet"),
            rows: 10,
            bytes: 1000,
            min_time: 0,
            max_time: 1,
            min_lsn: lsn,
            max_lsn: lsn,
            index_bytes: u64::from(indexed) * 100,
            created_ns,
        })
    }

    #[test]
    fn flushed_segments_get_their_index_after_the_delay_even_alone() {
        let config = CompactionConfig::default();
        let delay = config.index_delay.as_nanos() as i64;
        let fresh = [seg(1, false, 1_000)];
        // Too young and too few: left alone.
        assert!(pick(&fresh, &config, 1_000 + delay - 1).is_none());
        // Old enough: rewritten alone, to build its index.
        let group = pick(&fresh, &config, 1_000 + delay).expect("picked");
        assert_eq!(group.len(), 1);
        // An indexed segment alone is never rewritten.
        assert!(pick(&[seg(1, true, 0)], &config, i64::MAX).is_none());
        // With an old indexed one beside it, only the unindexed one is taken.
        let mixed = [seg(1, true, 0), seg(2, false, 0)];
        let group = pick(&mixed, &config, i64::MAX).expect("picked");
        assert_eq!(group.iter().map(|s| s.min_lsn).collect::<Vec<_>>(), vec![2]);
        // Enough small segments: merged regardless of age or index.
        let many: Vec<_> = (1..=4).map(|i| seg(i, i % 2 == 0, 0)).collect();
        assert_eq!(pick(&many, &config, 0).expect("picked").len(), 4);
    }

    #[test]
    fn a_quiet_metrics_partition_merges_its_few_small_segments() {
        let config = CompactionConfig::default();
        let quiet = 10 * config.index_delay.as_nanos() as i64;
        let metric = |lsn: u64, created_ns: i64| {
            let mut s = (*seg(lsn, false, created_ns)).clone();
            s.signal = Signal::Metrics;
            Arc::new(s)
        };
        let two = [metric(1, 0), metric(2, 1_000)];
        // Still receiving flushes: left for later.
        assert!(pick(&two, &config, 1_000 + quiet - 1).is_none());
        // Quiet: the two become one.
        assert_eq!(pick(&two, &config, 1_000 + quiet).expect("picked").len(), 2);
        // One alone is never rewritten.
        assert!(pick(&[metric(1, 0)], &config, i64::MAX).is_none());
    }
}
