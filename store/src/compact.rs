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

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::catalog::SegmentMeta;
use crate::schema::Signal;
use crate::{Error, Result, Shared, lock, segment};

/// What compaction aims for and may use.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// Stop adding inputs to a merge once they hold this many Parquet bytes.
    pub target_bytes: u64,
    /// Stop adding inputs once they hold this many rows (bounds memory: the
    /// inputs are decoded in full).
    pub max_rows: u64,
    /// Merge when a partition has at least this many small segments.
    pub min_inputs: usize,
    /// Pause between merges, so compaction takes a bounded share of CPU.
    pub pause: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        // Inputs are decoded whole (~0.5 KiB of Arrow per log row, plus the
        // sorted copy): 250k rows keeps one merge near 300 MiB at its peak.
        CompactionConfig {
            target_bytes: 64 << 20,
            max_rows: 250_000,
            min_inputs: 4,
            pause: Duration::from_millis(500),
        }
    }
}

/// Picks one group of segments to merge: consecutive small segments of one
/// partition, oldest first.
pub(crate) fn pick(
    segments: &[Arc<SegmentMeta>],
    config: &CompactionConfig,
) -> Option<Vec<Arc<SegmentMeta>>> {
    let mut by_partition: BTreeMap<&str, Vec<&Arc<SegmentMeta>>> = BTreeMap::new();
    for s in segments {
        if s.bytes < config.target_bytes / 2 {
            by_partition
                .entry(s.partition.as_str())
                .or_default()
                .push(s);
        }
    }
    for (_, mut small) in by_partition {
        if small.len() < config.min_inputs {
            continue;
        }
        small.sort_by_key(|s| s.min_lsn);
        let mut group = Vec::new();
        let (mut bytes, mut rows) = (0, 0);
        for s in small {
            if !group.is_empty()
                && (bytes + s.bytes > config.target_bytes || rows + s.rows > config.max_rows)
            {
                break;
            }
            bytes += s.bytes;
            rows += s.rows;
            group.push(Arc::clone(s));
        }
        if group.len() >= 2 {
            return Some(group);
        }
    }
    None
}

/// Merges `group` (segments of one signal and partition) and commits the result.
pub(crate) fn merge(shared: &Shared, signal: Signal, group: &[Arc<SegmentMeta>]) -> Result<()> {
    let dir = &shared.config.data_dir;
    let mut batches = Vec::new();
    for s in group {
        let path = dir.join(&s.path);
        let file =
            std::fs::File::open(&path).map_err(|e| Error::io("opening segment", &path, e))?;
        for b in ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(64 * 1024)
            .build()?
        {
            batches.push(b?);
        }
    }
    let min_lsn = group.iter().map(|s| s.min_lsn).min().unwrap_or(0);
    let max_lsn = group.iter().map(|s| s.max_lsn).max().unwrap_or(0);
    let merged = segment::write(dir, signal, &batches, min_lsn, max_lsn)?;
    drop(batches);
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
                for m in &merged {
                    for f in m.files() {
                        let _ = std::fs::remove_file(dir.join(f));
                    }
                }
            }
            return Ok(());
        }
        let mut next = catalog.clone();
        next.segments.retain(|s| !paths.contains(s.path.as_str()));
        next.segments.extend(merged.iter().cloned());
        if let Err(e) = next.store(dir) {
            for m in &merged {
                for f in m.files() {
                    let _ = std::fs::remove_file(dir.join(f));
                }
            }
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
    shared.metrics.compactions.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The compaction thread's loop.
pub(crate) fn run(shared: Arc<Shared>) {
    let config = shared.config.compaction.clone();
    while !shared.stop.load(Ordering::SeqCst) {
        let mut merged_any = false;
        for signal in Signal::ALL {
            let segments = lock(&shared.state).segments[signal.index()].clone();
            if let Some(group) = pick(&segments, &config) {
                if let Err(e) = merge(&shared, signal, &group) {
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
