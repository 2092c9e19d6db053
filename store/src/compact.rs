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
    /// Indexed segments of at least this many rows each are merged by
    /// concatenation ([`segment::concat`]); smaller ones are rewritten, since
    /// concatenation keeps their small row groups.
    pub concat_min_rows: u64,
    /// Added to the compaction thread's nice value (0 to 19; 0 leaves it
    /// as is), so that under load ingest and queries get the CPU first and
    /// compaction runs on what they leave.
    pub nice: i32,
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
            concat_min_rows: segment::CONCAT_MIN_ROWS,
            nice: 10,
        }
    }
}

/// Picks one group of segments to merge (or one to index), in two tiers
/// per partition:
///
/// 1. fresh (flushed, unindexed) segments, which are searched by scan until
///    indexed, so they come first: one of at least `concat_min_rows` rows
///    alone, to be indexed in place; small ones merged among themselves once
///    there are `min_inputs` of them, or once the oldest is `index_delay`
///    old (even alone, so every segment gets its index);
/// 2. small indexed segments (and a signal's without indexes), merged with
///    others of about the same size (rows within a factor of 4), once
///    `min_inputs` of one size are there; or, for a quiet partition of a
///    signal without indexes, all of its few.
///
/// Tiers by size keep every row merged a few times (log₄ of the growth), not
/// once per new group: merging fresh segments into the partition's oldest
/// small one, as this did before, re-merged (and re-indexed) that one on
/// every round, and under sustained ingest compaction fell ever further
/// behind (measured: 4 merges in 400 s at 127k logs/s).
pub(crate) fn pick(
    segments: &[Arc<SegmentMeta>],
    config: &CompactionConfig,
    now_ns: i64,
) -> Option<Vec<Arc<SegmentMeta>>> {
    let unindexed = |s: &SegmentMeta| crate::index::indexed(s.signal) && s.index_bytes == 0;
    let delay = i64::try_from(config.index_delay.as_nanos()).unwrap_or(i64::MAX);
    // Per partition: its unindexed (fresh) and its indexed (settled) segments.
    type Split<'a> = (Vec<&'a Arc<SegmentMeta>>, Vec<&'a Arc<SegmentMeta>>);
    let mut by_partition: BTreeMap<&str, Split<'_>> = BTreeMap::new();
    for s in segments {
        let (fresh, settled) = by_partition.entry(s.partition.as_str()).or_default();
        if unindexed(s) {
            fresh.push(s);
        } else if s.bytes < config.target_bytes / 2 {
            settled.push(s);
        }
    }
    // The oldest first, up to the merge's limits.
    let take = |candidates: &[&Arc<SegmentMeta>]| {
        let mut group: Vec<Arc<SegmentMeta>> = Vec::new();
        let (mut bytes, mut rows) = (0, 0);
        for s in candidates {
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
        group
    };
    for (_, (mut fresh, mut settled)) in by_partition {
        fresh.sort_by_key(|s| s.min_lsn);
        // A large flushed segment is indexed where it is, at once: its
        // Parquet file is final, and it is then concatenated with others.
        if let Some(large) = fresh.iter().find(|s| s.rows >= config.concat_min_rows) {
            return Some(vec![Arc::clone(large)]);
        }
        let overdue = fresh
            .iter()
            .any(|s| now_ns.saturating_sub(s.created_ns) >= delay);
        if fresh.len() >= config.min_inputs || overdue {
            return Some(take(&fresh));
        }
        settled.sort_by_key(|s| s.min_lsn);
        // A partition of a signal without indexes (metrics) that has had no
        // new segment for a while is done: merge its few small segments into
        // one (fewer footers, and PromQL reads one run per series). A live
        // partition, flushed every few seconds, waits for `min_inputs`.
        let quiet = settled.len() >= 2
            && settled.iter().all(|s| {
                !crate::index::indexed(s.signal)
                    && now_ns.saturating_sub(s.created_ns) >= delay.saturating_mul(10)
            });
        if quiet {
            let group = take(&settled);
            if group.len() >= 2 {
                return Some(group);
            }
        }
        // Size tiers: rows 0–3, 4–15, 16–63, … (powers of 4).
        let tier = |s: &SegmentMeta| s.rows.max(1).ilog2() / 2;
        let mut tiers: BTreeMap<u32, Vec<&Arc<SegmentMeta>>> = BTreeMap::new();
        for s in settled {
            tiers.entry(tier(s)).or_default().push(s);
        }
        for (_, same_size) in tiers {
            if same_size.len() >= config.min_inputs {
                let group = take(&same_size);
                if group.len() >= 2 {
                    return Some(group);
                }
            }
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

/// Merges `group` (segments of one signal and partition) and commits the
/// result; a lone flushed segment is indexed in place instead.
pub(crate) fn merge(shared: &Shared, signal: Signal, group: &[Arc<SegmentMeta>]) -> Result<()> {
    if let [seg] = group
        && crate::index::indexed(signal)
        && seg.index_bytes == 0
    {
        return index_in_place(shared, signal, seg);
    }
    let started = std::time::Instant::now();
    let dir = &shared.config.data_dir;
    let objects = &shared.objects;
    let min_lsn = group.iter().map(|s| s.min_lsn).min().unwrap_or(0);
    let max_lsn = group.iter().map(|s| s.max_lsn).max().unwrap_or(0);
    let partition = group
        .first()
        .map(|s| s.partition.clone())
        .ok_or_else(|| Error::Corrupt("empty merge".into()))?;
    // Indexed segments were sorted and indexed by an earlier merge: append
    // them to each other rather than sort, encode and index their rows again.
    let concatenable = crate::index::indexed(signal)
        && group.len() >= 2
        && group
            .iter()
            .all(|s| s.index_bytes > 0 && s.rows >= shared.config.compaction.concat_min_rows);
    let concatenated = if concatenable {
        segment::concat(objects, signal, group, &partition, (min_lsn, max_lsn))?
    } else {
        None
    };
    let concat = concatenated.is_some();
    let merged = match concatenated {
        Some(m) => vec![m],
        None => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting the compaction runtime", dir, e))?;
            let mut stream = merged_stream(objects, signal, group)?;
            let batches = std::iter::from_fn(|| {
                yield_to_flush(shared);
                rt.block_on(stream.next())
                    .map(|r| r.map_err(|e| Error::Corrupt(format!("merging segments: {e}"))))
            });
            vec![segment::write_sorted(
                objects,
                signal,
                batches,
                &partition,
                (min_lsn, max_lsn),
                segment::COMPACT_ZSTD_LEVEL,
                true,
            )?]
        }
    };
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
    let rows: u64 = group.iter().map(|s| s.rows).sum();
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        %signal,
        %partition,
        inputs = group.len(),
        rows,
        how = if concat { "concatenated" } else { "rewritten" },
        seconds = format!("{seconds:.1}"),
        rows_per_s = (rows as f64 / seconds.max(1e-9)) as u64,
        "merged segments"
    );
    let m = &shared.metrics;
    m.compactions.fetch_add(1, Ordering::Relaxed);
    if concat {
        m.concatenations.fetch_add(1, Ordering::Relaxed);
    }
    m.compacted_rows
        .fetch_add(group.iter().map(|s| s.rows).sum(), Ordering::Relaxed);
    m.compaction_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds the index of flushed segment `seg` from its Parquet file, which
/// stays as it is, and commits the segment with it. The catalog entry it
/// replaces names the same Parquet file, so it does not go to the
/// graveyard; a crash before the commit leaves an index file the catalog
/// does not name (deleted on start).
fn index_in_place(shared: &Shared, signal: Signal, seg: &Arc<SegmentMeta>) -> Result<()> {
    let started = std::time::Instant::now();
    let objects = &shared.objects;
    let idx = crate::catalog::index_path(&seg.path);
    let index_bytes =
        segment::index_segment(objects, signal, &seg.path, &idx, &|| yield_to_flush(shared))?;
    crate::crash_point("index-in-place-written");
    let indexed = SegmentMeta {
        index_bytes,
        ..(**seg).clone()
    };
    {
        let mut catalog = lock(&shared.catalog);
        // Retention may have dropped it meanwhile.
        let Some(at) = catalog
            .segments
            .iter()
            .position(|s| s.path == seg.path && s.index_bytes == 0)
        else {
            drop(catalog);
            let _ = objects.delete(&idx);
            return Ok(());
        };
        let mut next = catalog.clone();
        next.segments[at] = indexed.clone();
        if let Err(e) = next.store(objects) {
            let _ = objects.delete(&idx);
            return Err(e);
        }
        *catalog = next;
        let mut state = lock(&shared.state);
        if let Some(s) = state.segments[signal.index()]
            .iter_mut()
            .find(|s| s.path == seg.path)
        {
            *s = Arc::new(indexed);
        }
    }
    crate::crash_point("index-in-place-committed");
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        %signal,
        partition = %seg.partition,
        rows = seg.rows,
        seconds = format!("{seconds:.1}"),
        rows_per_s = (seg.rows as f64 / seconds.max(1e-9)) as u64,
        "indexed segment"
    );
    let m = &shared.metrics;
    m.segments_indexed.fetch_add(1, Ordering::Relaxed);
    m.indexed_rows.fetch_add(seg.rows, Ordering::Relaxed);
    m.compaction_seconds.observe(seconds);
    Ok(())
}

/// Lowers the calling thread's CPU priority by `nice` steps.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // On Linux the nice value belongs to a thread, and setpriority with a
    // thread id changes only that thread.
    #[cfg(target_os = "linux")]
    {
        let tid = Some(rustix::thread::gettid());
        let result = rustix::process::getpriority_process(tid)
            .and_then(|now| rustix::process::setpriority_process(tid, (now + nice).min(19)));
        if let Err(e) = result {
            tracing::warn!(nice, error = %e, "could not lower the compaction thread's priority");
        }
    }
}

/// Picks the next group of `signal`'s segments to merge and merges it;
/// false when there is nothing to do. One merge runs at a time, whoever
/// asks (the compaction thread, [`crate::Store::compact_all`]).
pub(crate) fn merge_next(
    shared: &Shared,
    signal: Signal,
    config: &CompactionConfig,
    now_ns: i64,
) -> Result<bool> {
    let _one_at_a_time = lock(&shared.merge_lock);
    let segments = lock(&shared.state).segments[signal.index()].clone();
    let Some(group) = pick(&segments, config, now_ns) else {
        return Ok(false);
    };
    merge(shared, signal, &group).map(|()| true)
}

/// Budget use past which compaction pauses for the flusher.
const YIELD_PRESSURE: f64 = 0.5;
/// Longest single pause: compaction is slowed under pressure, never starved.
const MAX_YIELD: Duration = Duration::from_secs(2);

/// Waits while unflushed data holds more than half the memory budget, up to
/// [`MAX_YIELD`]. Ingest is refused at the budget, and only a finished flush
/// gives budget back; on two cores a merge running beside a flush, even
/// niced, took about half a core from it (measured: the flush thread spent
/// a third of its run time waiting for a CPU), so the next buffer grew while
/// the flush ran, and refusals followed. Called before each merge and
/// between the batches of one.
pub(crate) fn yield_to_flush(shared: &Shared) {
    if shared.budget.pressure() <= YIELD_PRESSURE {
        return;
    }
    let started = std::time::Instant::now();
    while shared.budget.pressure() > YIELD_PRESSURE
        && started.elapsed() < MAX_YIELD
        && !shared.stop.load(Ordering::SeqCst)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    shared
        .metrics
        .compaction_yield_micros
        .fetch_add(waited, Ordering::Relaxed);
}

/// The compaction thread's loop.
pub(crate) fn run(shared: Arc<Shared>) {
    let config = shared.config.compaction.clone();
    lower_priority(config.nice);
    while !shared.stop.load(Ordering::SeqCst) {
        let mut merged_any = false;
        for signal in Signal::ALL {
            yield_to_flush(&shared);
            match merge_next(&shared, signal, &config, crate::now_ns()) {
                Ok(merged) => merged_any |= merged,
                Err(e) => {
                    tracing::error!(signal = %signal, error = %e, "compaction failed; will retry");
                    merged_any = true;
                }
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

    #[cfg(target_os = "linux")]
    #[test]
    fn lower_priority_changes_only_the_calling_thread() {
        let mine =
            || rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice");
        let before = mine();
        let inside = std::thread::spawn(move || {
            lower_priority(5);
            mine()
        })
        .join()
        .expect("thread");
        assert_eq!(inside, (before + 5).min(19));
        assert_eq!(mine(), before, "the other threads keep their priority");
    }

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
        // Enough fresh segments: merged among themselves, young or not.
        let many: Vec<_> = (1..=4).map(|i| seg(i, false, 0)).collect();
        assert_eq!(pick(&many, &config, 0).expect("picked").len(), 4);
    }

    fn sized(lsn: u64, indexed: bool, rows: u64) -> Arc<SegmentMeta> {
        let mut s = (*seg(lsn, indexed, 0)).clone();
        s.rows = rows;
        s.bytes = rows * 30;
        Arc::new(s)
    }

    #[test]
    fn fresh_segments_are_merged_among_themselves_and_indexed_ones_by_size() {
        let config = CompactionConfig::default();
        // An earlier merge's output is not merged again with each new group
        // of fresh segments (that re-indexed it on every round).
        let mut segs = vec![sized(1, true, 2_000_000)];
        segs.extend((2..=5).map(|i| sized(i, false, 50_000)));
        let group = pick(&segs, &config, 0).expect("picked");
        assert_eq!(
            group.iter().map(|s| s.min_lsn).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        // A large flushed segment is taken alone (to be indexed in place),
        // young or not, before the small ones.
        segs.push(sized(6, false, config.concat_min_rows));
        let group = pick(&segs, &config, 0).expect("picked");
        assert_eq!(group.iter().map(|s| s.min_lsn).collect::<Vec<_>>(), vec![6]);
        // Indexed segments of about one size are merged once there are
        // enough of them; a bigger one waits for its peers.
        let mut segs = vec![sized(1, true, 2_000_000)];
        segs.extend((2..=4).map(|i| sized(i, true, 600_000)));
        assert!(pick(&segs, &config, 0).is_none());
        segs.push(sized(5, true, 550_000));
        let group = pick(&segs, &config, 0).expect("picked");
        assert_eq!(
            group.iter().map(|s| s.min_lsn).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        // Limits hold: at most `max_rows` (8M) per merge.
        let segs: Vec<_> = (1..=4).map(|i| sized(i, true, 3_000_000)).collect();
        assert_eq!(pick(&segs, &config, 0).expect("picked").len(), 2);
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
