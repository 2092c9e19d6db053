//! Lumen's storage engine: WAL → in-memory Arrow buffers → Parquet segments.
//!
//! [`Store::append`] returns only once the batch is in an fsync'd WAL frame
//! and in the buffer, so an acknowledged record is both durable and visible.
//! A flusher thread turns buffers into immutable segments, commits them to
//! the catalog and trims the WAL. [`Store::snapshot`] gives queries a
//! consistent view of buffers and segments: a record is in exactly one of
//! them at any instant.

pub mod auth;
pub mod budget;
pub mod catalog;
pub mod compact;
mod fsutil;
pub mod index;
pub mod metrics;
pub mod objects;
pub mod scan;
pub mod schema;
mod segment;
pub mod series;
pub mod tail;
pub mod tenants;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::errors::ParquetError;
use tokio::sync::oneshot;

pub use budget::{Budget, Reservation};
pub use catalog::SegmentMeta;
pub use metrics::Metrics;
pub use schema::Signal;
pub use segment::{FlushBench, index_file};

use catalog::Catalog;
use wal::{Command, WalFile};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("write-ahead log write failed: {0}")]
    WalWrite(String),
    #[error("the store is shutting down")]
    Closed,
    /// A tenant that cannot be opened: a bad name, or one too many.
    #[error("{0}")]
    Tenant(String),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// True when the same request may succeed later (the client should retry).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::WalWrite(_) | Error::Closed | Error::Io { .. } | Error::ObjectStore(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the store behaves; the binary fills it from its configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Global budget for unflushed data and in-flight requests, in bytes.
    pub memory_budget: usize,
    /// Flush a signal's buffer once it holds this many bytes.
    pub flush_bytes: usize,
    /// Flush a non-empty buffer at least this often.
    pub flush_interval: Duration,
    /// Size WAL files are preallocated to; a new one is started past it.
    pub wal_file_bytes: u64,
    /// How long each signal's data is kept (by `Signal::index`); `None` keeps it forever.
    /// Whole hour partitions are dropped once their end is older than this.
    pub retention: [Option<Duration>; 3],
    pub compaction: compact::CompactionConfig,
    /// Where segments and the catalog live (the WAL is always in `data_dir`).
    pub storage: objects::Storage,
    /// A budget shared with other stores (tenants) instead of one of
    /// `memory_budget` of its own.
    pub budget: Option<Arc<Budget>>,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            memory_budget: 256 << 20,
            flush_bytes: 48 << 20,
            flush_interval: Duration::from_secs(30),
            wal_file_bytes: 16 << 20,
            retention: [None; 3],
            compaction: compact::CompactionConfig::default(),
            storage: objects::Storage::Local,
            budget: None,
        }
    }
}

/// The records of one signal a query should read: buffered batches and segments.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub batches: Vec<RecordBatch>,
    pub segments: Vec<Arc<SegmentMeta>>,
}

#[derive(Default)]
struct SignalBuffer {
    batches: Vec<RecordBatch>,
    min_lsn: Option<u64>,
    max_lsn: u64,
    bytes: usize,
    since: Option<Instant>,
    /// Batches being written as a segment: still visible until it commits.
    flushing: Vec<RecordBatch>,
}

#[derive(Default)]
struct State {
    buffers: [SignalBuffer; 3],
    segments: [Vec<Arc<SegmentMeta>>; 3],
}

/// What the WAL thread, the flusher and the handle share.
pub(crate) struct Shared {
    config: StoreConfig,
    objects: objects::Objects,
    state: Mutex<State>,
    budget: Arc<Budget>,
    metrics: Metrics,
    catalog: Mutex<Catalog>,
    /// Closed WAL files, oldest first, waiting to be trimmed.
    wal_files: Mutex<Vec<WalFile>>,
    /// Segments removed from the catalog whose files may still be read by a
    /// running query; deleted once nothing else holds them.
    graveyard: Mutex<Vec<Arc<SegmentMeta>>>,
    stop: AtomicBool,
    /// Held from picking a group to committing its merge: two merges of the
    /// same inputs would write the same output names and each delete the
    /// other's files when it finds its inputs gone. Held means a merge is
    /// running (for `/metrics`).
    merge_lock: Mutex<()>,
    wake: Condvar,
    wake_lock: Mutex<()>,
    /// Live-tail subscribers.
    fanout: Arc<tail::Fanout>,
}

/// Test hook: with `LUMEN_TEST_CRASH_AT=<point>` in the environment the
/// process aborts at that step (as a SIGKILL there would), so the crash tests
/// can hit every step of the flush, compaction and retention protocols.
pub(crate) fn crash_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("LUMEN_TEST_CRASH_AT").ok())
        .as_deref()
        == Some(point)
    {
        std::process::abort();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not wedge the whole store.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl wal::Sink for Arc<Shared> {
    fn committed(&self, records: Vec<(u64, Signal, RecordBatch)>, fsync_seconds: f64) {
        self.metrics.wal_fsync_seconds.observe(fsync_seconds);
        let mut charged = 0;
        let tailed: Vec<(Signal, RecordBatch)> = if self.fanout.subscribers() > 0 {
            records.iter().map(|(_, s, b)| (*s, b.clone())).collect()
        } else {
            Vec::new()
        };
        let mut state = lock(&self.state);
        for (lsn, signal, batch) in records {
            let bytes = batch.get_array_memory_size();
            charged += bytes;
            let buf = &mut state.buffers[signal.index()];
            buf.min_lsn.get_or_insert(lsn);
            buf.max_lsn = lsn;
            buf.bytes += bytes;
            buf.since.get_or_insert_with(Instant::now);
            buf.batches.push(batch);
        }
        drop(state);
        self.budget.charge(charged);
        // Now durable and visible to queries: on to the tails.
        for (signal, batch) in &tailed {
            self.fanout.publish(*signal, batch);
        }
    }

    fn file_closed(&self, file: WalFile) {
        lock(&self.wal_files).push(file);
    }
}

pub struct Store {
    shared: Arc<Shared>,
    wal_tx: Mutex<Option<mpsc::Sender<Command>>>,
    wal_thread: Mutex<Option<JoinHandle<()>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    compactor: Mutex<Option<JoinHandle<()>>>,
    indexes: Mutex<IndexCache>,
}

/// Opened segment indexes by index key (segments are immutable, so an entry
/// never goes stale), least recently used evicted past [`INDEX_CACHE`].
#[derive(Default)]
struct IndexCache {
    tick: u64,
    entries: std::collections::HashMap<String, (u64, Arc<index::SegmentIndex>)>,
}

/// Opened indexes kept: each costs little (local bundles are read on demand),
/// but opening one reads its term dictionary's block index.
const INDEX_CACHE: usize = 1024;

impl Store {
    /// Opens (or creates) the store in `config.data_dir`, replaying the WAL.
    pub fn open(config: StoreConfig) -> Result<Arc<Store>> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating data directory", &dir, e))?;
        let objects = objects::Objects::open(&dir, &config.storage)?;
        let catalog = Catalog::load(&objects)?;
        remove_orphans(&objects, &catalog)?;
        let budget = config
            .budget
            .clone()
            .unwrap_or_else(|| Budget::new(config.memory_budget));
        let mut state = State::default();
        for seg in &catalog.segments {
            state.segments[seg.signal.index()].push(Arc::new(seg.clone()));
        }
        let flushed = catalog.flushed_lsn;
        let mut replayed = 0usize;
        let wal_dir = dir.join("wal");
        let wal::Replay {
            files,
            next_lsn,
            next_seq,
        } = wal::replay(&wal_dir, |r| {
            if r.lsn <= flushed[r.signal.index()] {
                return;
            }
            let batch = match r.signal {
                // A WAL of an older version: its batches lack series ids.
                Signal::Metrics if r.batch.column_by_name("series_id").is_none() => {
                    match series::with_series_ids(r.batch) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!(error = %e, lsn = r.lsn, "unreadable metrics batch in the WAL");
                            return;
                        }
                    }
                }
                _ => r.batch,
            };
            replayed += batch.num_rows();
            let bytes = batch.get_array_memory_size();
            budget.charge(bytes);
            let buf = &mut state.buffers[r.signal.index()];
            buf.min_lsn.get_or_insert(r.lsn);
            buf.max_lsn = r.lsn;
            buf.bytes += bytes;
            buf.since.get_or_insert_with(Instant::now);
            buf.batches.push(batch);
        })?;
        let next_lsn = next_lsn.max(flushed.iter().copied().max().unwrap_or(0) + 1);
        tracing::info!(
            records = replayed,
            wal_files = files.len(),
            segments = catalog.segments.len(),
            "store opened"
        );

        let shared = Arc::new(Shared {
            config: config.clone(),
            objects,
            state: Mutex::new(state),
            budget,
            metrics: Metrics::default(),
            catalog: Mutex::new(catalog),
            wal_files: Mutex::new(files),
            graveyard: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            merge_lock: Mutex::new(()),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
            fanout: Arc::new(tail::Fanout::default()),
        });
        trim_wal(&shared);

        let writer = wal::Writer::create(&wal_dir, next_lsn, next_seq, config.wal_file_bytes)?;
        let (tx, rx) = mpsc::channel();
        let sink: Box<dyn wal::Sink> = Box::new(Arc::clone(&shared));
        let wal_thread = std::thread::Builder::new()
            .name("lumen-wal".into())
            .spawn(move || writer.run(rx, sink))
            .map_err(|e| Error::io("spawning WAL thread", &wal_dir, e))?;
        let store = Arc::new(Store {
            shared: Arc::clone(&shared),
            wal_tx: Mutex::new(Some(tx.clone())),
            wal_thread: Mutex::new(Some(wal_thread)),
            flusher: Mutex::new(None),
            compactor: Mutex::new(None),
            indexes: Mutex::new(IndexCache::default()),
        });
        let for_compactor = Arc::clone(&shared);
        let compactor = std::thread::Builder::new()
            .name("lumen-compact".into())
            .spawn(move || compact::run(for_compactor))
            .map_err(|e| Error::io("spawning compaction thread", &dir, e))?;
        *lock(&store.compactor) = Some(compactor);
        let flusher = std::thread::Builder::new()
            .name("lumen-flush".into())
            .spawn(move || flush_loop(shared, tx))
            .map_err(|e| Error::io("spawning flush thread", &dir, e))?;
        *lock(&store.flusher) = Some(flusher);
        Ok(store)
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.config.data_dir
    }

    /// The opened index of `seg`, `None` if it has none (not yet compacted,
    /// or metrics). Blocking: reads the object store.
    pub fn segment_index(&self, seg: &SegmentMeta) -> Result<Option<Arc<index::SegmentIndex>>> {
        let Some(key) = seg.index_path() else {
            return Ok(None);
        };
        {
            let mut cache = lock(&self.indexes);
            cache.tick += 1;
            let tick = cache.tick;
            if let Some(entry) = cache.entries.get_mut(&key) {
                entry.0 = tick;
                return Ok(Some(Arc::clone(&entry.1)));
            }
        }
        let opened = Arc::new(index::SegmentIndex::open_slice(
            seg.signal,
            index::bundle(&self.shared.objects, &key)?,
        )?);
        let mut cache = lock(&self.indexes);
        let tick = cache.tick;
        if cache.entries.len() >= INDEX_CACHE
            && let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
        {
            cache.entries.remove(&oldest);
        }
        cache.entries.insert(key, (tick, Arc::clone(&opened)));
        Ok(Some(opened))
    }

    /// Where segments, indexes and the catalog are.
    pub fn objects(&self) -> &objects::Objects {
        &self.shared.objects
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.shared.budget
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Appends a batch durably: returns once it is fsync'd in the WAL and
    /// visible to queries. Concurrent appends share one fsync.
    pub async fn append(&self, signal: Signal, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let batch = match signal {
            Signal::Metrics => series::with_series_ids(batch)?,
            _ => batch,
        };
        let payload = wal::encode_batch(&batch)?;
        let len = payload.len();
        let (done, rx) = oneshot::channel();
        {
            let tx = lock(&self.wal_tx);
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(Command::Append(wal::Append {
                signal,
                batch,
                payload,
                done,
            }))
            .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)??;
        let m = &self.shared.metrics;
        m.records_received[signal.index()].fetch_add(rows as u64, Ordering::Relaxed);
        m.wal_bytes.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Subscribes to `signal`'s new records as they become visible, with a
    /// queue of at most `max_rows` records (the oldest are dropped past it).
    pub fn subscribe(&self, signal: Signal, max_rows: usize) -> tail::Subscription {
        self.shared.fanout.subscribe(signal, max_rows)
    }

    /// Live-tail subscribers now.
    pub fn tail_subscribers(&self) -> usize {
        self.shared.fanout.subscribers()
    }

    /// A consistent view of one signal for a query.
    pub fn snapshot(&self, signal: Signal) -> Snapshot {
        let state = lock(&self.shared.state);
        let buf = &state.buffers[signal.index()];
        let mut batches = Vec::with_capacity(buf.flushing.len() + buf.batches.len());
        batches.extend(buf.flushing.iter().cloned());
        batches.extend(buf.batches.iter().cloned());
        Snapshot {
            batches,
            segments: state.segments[signal.index()].clone(),
        }
    }

    /// Point-in-time gauges for `/metrics`.
    pub fn gauges(&self) -> Vec<(&'static str, &'static str, f64)> {
        let state = lock(&self.shared.state);
        let buffered: usize = state.buffers.iter().map(|b| b.bytes).sum();
        let segments: usize = state.segments.iter().map(Vec::len).sum();
        let segment_bytes: u64 = state.segments.iter().flatten().map(|s| s.bytes).sum();
        let unindexed = state
            .segments
            .iter()
            .flatten()
            .filter(|s| index::indexed(s.signal) && s.index_bytes == 0)
            .count();
        let index_bytes: u64 = state.segments.iter().flatten().map(|s| s.index_bytes).sum();
        drop(state);
        vec![
            (
                "lumen_buffer_bytes",
                "Bytes of acknowledged records not yet in segments.",
                buffered as f64,
            ),
            (
                "lumen_memory_budget_used_bytes",
                "Bytes held against the memory budget (buffers + in-flight requests).",
                self.shared.budget.used() as f64,
            ),
            (
                "lumen_memory_budget_bytes",
                "The memory budget.",
                self.shared.budget.limit() as f64,
            ),
            (
                "lumen_segments",
                "Parquet segments in the catalog.",
                segments as f64,
            ),
            (
                "lumen_tail_subscribers",
                "Live-tail subscribers connected.",
                self.shared.fanout.subscribers() as f64,
            ),
            (
                "lumen_segment_bytes",
                "Bytes of Parquet segments in the catalog.",
                segment_bytes as f64,
            ),
            (
                "lumen_index_bytes",
                "Bytes of segment indexes in the catalog.",
                index_bytes as f64,
            ),
            (
                "lumen_segments_unindexed",
                "Logs and spans segments not yet indexed (searched by scan until compaction indexes them).",
                unindexed as f64,
            ),
            (
                "lumen_compaction_running",
                "1 while a compaction merge is running.",
                f64::from(u8::from(matches!(
                    self.shared.merge_lock.try_lock(),
                    Err(std::sync::TryLockError::WouldBlock)
                ))),
            ),
        ]
    }

    /// Writes every buffer out now (used by tests and shutdown).
    pub fn flush_all(&self) -> Result<()> {
        let tx = lock(&self.wal_tx).clone();
        for s in Signal::ALL {
            flush_signal(&self.shared, s)?;
        }
        if let Some(tx) = tx {
            let _ = tx.send(Command::Rotate);
        }
        Ok(())
    }

    /// Compacts until nothing is left to merge, indexing every flushed
    /// segment now instead of after `index_delay` (tests, tools).
    pub fn compact_all(&self) -> Result<()> {
        let config = compact::CompactionConfig {
            index_delay: Duration::ZERO,
            ..self.shared.config.compaction.clone()
        };
        for signal in Signal::ALL {
            while compact::merge_next(&self.shared, signal, &config, i64::MAX)? {}
        }
        Ok(())
    }

    /// Flushes everything and stops the background threads. Appends after
    /// this fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
        if let Some(h) = lock(&self.compactor).take() {
            let _ = h.join();
        }
        let result = self.flush_all();
        // Dropping the last sender ends the WAL thread after it drains its queue.
        lock(&self.wal_tx).take();
        if let Some(h) = lock(&self.wal_thread).take() {
            let _ = h.join();
        }
        trim_wal(&self.shared);
        // Segments merged away just before shutdown: no query holds them any more.
        sweep_graveyard(&self.shared);
        result
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }
}

/// Deletes segment files the catalog does not name: leftovers of a flush
/// or compaction that crashed before its commit.
fn remove_orphans(objects: &objects::Objects, catalog: &Catalog) -> Result<()> {
    let known: std::collections::HashSet<String> =
        catalog.segments.iter().flat_map(|s| s.files()).collect();
    for key in objects.list("segments/")? {
        if !known.contains(&key) {
            tracing::info!(file = %key, "removing uncommitted segment file");
            objects.delete(&key)?;
        }
    }
    Ok(())
}

fn flush_loop(shared: Arc<Shared>, wal_tx: mpsc::Sender<Command>) {
    let tick = Duration::from_millis(200);
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let guard = lock(&shared.wake_lock);
            let _ = shared.wake.wait_timeout(guard, tick);
        }
        if let Err(e) = apply_retention(&shared) {
            tracing::error!(error = %e, "retention failed; will retry");
        }
        sweep_graveyard(&shared);
        let due: Vec<Signal> = {
            let state = lock(&shared.state);
            let pressure = shared.budget.pressure() > 0.5;
            let largest = Signal::ALL
                .into_iter()
                .max_by_key(|s| state.buffers[s.index()].bytes);
            Signal::ALL
                .into_iter()
                .filter(|s| {
                    let b = &state.buffers[s.index()];
                    !b.batches.is_empty()
                        && (b.bytes >= shared.config.flush_bytes
                            || b.since
                                .is_some_and(|t| t.elapsed() >= shared.config.flush_interval)
                            || (pressure && Some(*s) == largest))
                })
                .collect()
        };
        if due.is_empty() {
            continue;
        }
        for s in due {
            if let Err(e) = flush_signal(&shared, s) {
                tracing::error!(signal = %s, error = %e, "flush failed; will retry");
            }
        }
        let _ = wal_tx.send(Command::Rotate);
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Drops every segment of a partition that ended before its signal's
/// retention: one catalog commit, then the files go to the graveyard.
fn apply_retention(shared: &Shared) -> Result<()> {
    let now = now_ns();
    let expired = |s: &SegmentMeta| {
        shared.config.retention[s.signal.index()].is_some_and(|r| {
            let cutoff = now.saturating_sub(i64::try_from(r.as_nanos()).unwrap_or(i64::MAX));
            let partition_end = s
                .min_time
                .div_euclid(segment::PARTITION_NS)
                .saturating_add(1)
                .saturating_mul(segment::PARTITION_NS);
            partition_end <= cutoff
        })
    };
    let mut catalog = lock(&shared.catalog);
    if !catalog.segments.iter().any(&expired) {
        return Ok(());
    }
    let mut next = catalog.clone();
    next.segments.retain(|s| !expired(s));
    next.store(&shared.objects)?;
    let dropped = catalog.segments.len() - next.segments.len();
    *catalog = next;
    drop(catalog);
    crash_point("retention-after-commit");
    let mut state = lock(&shared.state);
    let mut removed = Vec::new();
    for list in state.segments.iter_mut() {
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(list).into_iter().partition(|s| expired(s));
        *list = kept;
        removed.extend(gone);
    }
    drop(state);
    tracing::info!(segments = dropped, "retention dropped expired partitions");
    lock(&shared.graveyard).extend(removed);
    Ok(())
}

/// Deletes files of dropped segments that no query holds any more.
pub(crate) fn sweep_graveyard(shared: &Shared) {
    let mut graveyard = lock(&shared.graveyard);
    graveyard.retain(|seg| {
        if Arc::strong_count(seg) > 1 {
            return true;
        }
        // The index first: the Parquet file going is what marks the segment gone.
        let mut files = seg.files();
        files.reverse();
        for f in files {
            if let Err(e) = shared.objects.delete(&f) {
                tracing::warn!(file = %f, error = %e, "could not delete a dropped segment");
                return true;
            }
        }
        false
    });
}

/// Removes the files of segments that were written but not committed.
pub(crate) fn discard(objects: &objects::Objects, metas: &[SegmentMeta]) {
    for f in metas.iter().flat_map(SegmentMeta::files) {
        let _ = objects.delete(&f);
    }
}

/// Writes one signal's buffer as a segment and commits it.
fn flush_signal(shared: &Arc<Shared>, signal: Signal) -> Result<()> {
    let i = signal.index();
    let (batches, min_lsn, max_lsn, bytes) = {
        let mut state = lock(&shared.state);
        let buf = &mut state.buffers[i];
        if buf.batches.is_empty() || !buf.flushing.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut buf.batches);
        buf.flushing = batches.clone();
        let min_lsn = buf.min_lsn.take().unwrap_or(buf.max_lsn);
        let bytes = std::mem::take(&mut buf.bytes);
        buf.since = None;
        (batches, min_lsn, buf.max_lsn, bytes)
    };
    let started = Instant::now();
    let result =
        segment::write(&shared.objects, signal, &batches, min_lsn, max_lsn).and_then(|metas| {
            crash_point("flush-before-commit");
            let mut catalog = lock(&shared.catalog);
            let mut next = catalog.clone();
            next.segments.extend(metas.iter().cloned());
            next.flushed_lsn[i] = max_lsn;
            if let Err(e) = next.store(&shared.objects) {
                discard(&shared.objects, &metas);
                return Err(e);
            }
            *catalog = next;
            Ok(metas)
        });
    let mut state = lock(&shared.state);
    let buf = &mut state.buffers[i];
    match result {
        Ok(metas) => {
            buf.flushing.clear();
            let written = metas.len() as u64;
            let rows: u64 = metas.iter().map(|m| m.rows).sum();
            shared
                .metrics
                .flushed_rows
                .fetch_add(rows, Ordering::Relaxed);
            state.segments[i].extend(metas.into_iter().map(Arc::new));
            drop(state);
            shared.budget.release(bytes);
            shared
                .metrics
                .segments_written
                .fetch_add(written, Ordering::Relaxed);
            shared
                .metrics
                .flush_seconds
                .observe(started.elapsed().as_secs_f64());
            crash_point("flush-after-commit");
            trim_wal(shared);
            Ok(())
        }
        Err(e) => {
            // Put the batches back in front, in LSN order, to retry later.
            let mut restored = std::mem::take(&mut buf.flushing);
            restored.append(&mut buf.batches);
            buf.batches = restored;
            buf.min_lsn = Some(min_lsn);
            buf.bytes += bytes;
            buf.since.get_or_insert_with(Instant::now);
            Err(e)
        }
    }
}

/// Deletes closed WAL files whose every record is in a committed segment.
fn trim_wal(shared: &Shared) {
    let flushed = lock(&shared.catalog).flushed_lsn;
    let mut files = lock(&shared.wal_files);
    files.retain(|f| {
        if !f.fully_flushed(&flushed) {
            return true;
        }
        match std::fs::remove_file(&f.path) {
            Ok(()) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(file = %f.path.display(), error = %e, "could not trim WAL file");
                true
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logs batch whose bodies are `bodies`, every other column defaulted.
    fn logs(bodies: &[&str]) -> RecordBatch {
        let rows: Vec<(&str, i64, &str)> = bodies.iter().map(|b| ("svc", 1, *b)).collect();
        crate::partition_tests::rows(&rows)
    }

    fn bodies(store: &Store) -> Vec<String> {
        use crate::partition_tests::{batch_bodies, segment_bodies};
        let snap = store.snapshot(Signal::Logs);
        let mut out: Vec<String> = snap.batches.iter().flat_map(batch_bodies).collect();
        for seg in &snap.segments {
            out.extend(segment_bodies(store.objects(), &seg.path));
        }
        out.sort();
        out
    }

    fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            flush_interval: Duration::from_secs(3600),
            wal_file_bytes: 1 << 20,
            ..StoreConfig::new(dir)
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn replay_restores_unflushed_records_and_skips_flushed_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(config(dir.path())).expect("open");
            rt().block_on(async {
                store
                    .append(Signal::Logs, logs(&["a", "b"]))
                    .await
                    .expect("append");
            });
            store.flush_all().expect("flush");
            rt().block_on(async {
                store
                    .append(Signal::Logs, logs(&["c"]))
                    .await
                    .expect("append");
            });
            // Dropped without close(): like a crash after the last ack.
        }
        let store = Store::open(config(dir.path())).expect("reopen");
        assert_eq!(bodies(&store), vec!["a", "b", "c"]);
        store.close().expect("close");
        let store = Store::open(config(dir.path())).expect("reopen after close");
        assert_eq!(bodies(&store), vec!["a", "b", "c"]);
        assert!(
            store.snapshot(Signal::Logs).batches.is_empty(),
            "close() flushed everything"
        );
    }

    #[test]
    fn torn_or_corrupt_wal_tail_is_cut_off_never_half_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(config(dir.path())).expect("open");
            rt().block_on(async {
                store
                    .append(Signal::Logs, logs(&["one"]))
                    .await
                    .expect("append");
                store
                    .append(Signal::Logs, logs(&["two"]))
                    .await
                    .expect("append");
            });
        }
        let wal_dir = dir.path().join("wal");
        let mut files: Vec<_> = std::fs::read_dir(&wal_dir)
            .expect("wal dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        // Files are zero-filled past their frames: find the end of the data.
        let data_end = |bytes: &[u8]| {
            let mut at = 0;
            while at + 4 <= bytes.len() && bytes[at..at + 4] != [0; 4] {
                let len =
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
                at += 17 + len as usize;
            }
            at
        };
        let last = files
            .iter()
            .rev()
            .find(|p| data_end(&std::fs::read(p).expect("read")) > 0)
            .expect("data file")
            .clone();
        // A torn write: the start of a header after the last frame.
        let mut bytes = std::fs::read(&last).expect("read");
        let end = data_end(&bytes);
        bytes[end..end + 3].copy_from_slice(&[9, 0, 0]);
        std::fs::write(&last, &bytes).expect("write");
        {
            let store = Store::open(config(dir.path())).expect("reopen with torn tail");
            assert_eq!(bodies(&store), vec!["one", "two"]);
        }
        // Flip a byte inside the last frame's payload: that frame fails its checksum.
        let mut files: Vec<_> = std::fs::read_dir(&wal_dir)
            .expect("wal dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let with_data = files
            .iter()
            .rev()
            .find(|p| data_end(&std::fs::read(p).expect("read")) > 0)
            .expect("data file")
            .clone();
        let mut bytes = std::fs::read(&with_data).expect("read");
        let at = data_end(&bytes) - 10;
        bytes[at] ^= 0xff;
        std::fs::write(&with_data, &bytes).expect("write");
        let store = Store::open(config(dir.path())).expect("reopen with corrupt frame");
        assert_eq!(bodies(&store), vec!["one"]);
    }

    #[test]
    fn wal_writes_stay_inside_preallocated_files_across_rotations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = "x".repeat(50_000);
        let expected: Vec<String> = (0..60).map(|i| format!("{i:02}{body}")).collect();
        {
            let store = Store::open(config(dir.path())).expect("open");
            rt().block_on(async {
                for b in &expected {
                    store
                        .append(Signal::Logs, logs(&[b.as_str()]))
                        .await
                        .expect("append");
                }
            });
        }
        let sizes: Vec<u64> = std::fs::read_dir(dir.path().join("wal"))
            .expect("wal dir")
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .collect();
        // ~3 MB of frames in 1 MiB files: several rotations, no file grown past its preallocation.
        assert!(sizes.len() >= 3, "{sizes:?}");
        assert!(sizes.iter().all(|s| *s == 1 << 20), "{sizes:?}");
        let store = Store::open(config(dir.path())).expect("reopen");
        assert_eq!(bodies(&store), expected);
    }

    #[test]
    fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(config(dir.path())).expect("open");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..64 {
                let store = Arc::clone(&store);
                tasks.push(tokio::spawn(async move {
                    store.append(Signal::Logs, logs(&[&format!("r{i}")])).await
                }));
            }
            for t in tasks {
                t.await.expect("join").expect("append");
            }
        });
        assert_eq!(bodies(&store).len(), 64);
        let fsyncs = store.metrics().render(&[]);
        let count: u64 = fsyncs
            .lines()
            .find_map(|l| l.strip_prefix("lumen_wal_fsync_seconds_count "))
            .and_then(|v| v.parse().ok())
            .expect("fsync count");
        assert!(count < 64, "64 concurrent appends took {count} fsyncs");
    }

    #[test]
    fn orphaned_segment_files_are_removed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg_dir = dir.path().join("segments/logs/2023-11-14T22");
        std::fs::create_dir_all(&seg_dir).expect("mkdir");
        std::fs::write(
            seg_dir.join("00000000000000000001-00000000000000000009.parquet.tmp"),
            b"half",
        )
        .expect("write");
        let store = Store::open(config(dir.path())).expect("open");
        // The file is gone, and with it its empty partition directory.
        assert!(!seg_dir.exists());
        drop(store);
    }

    /// The remote code path (staging, upload, catalog object, listing for
    /// orphans, deletes) against an in-memory object store.
    #[test]
    fn remote_object_store_holds_segments_catalog_and_survives_restart() {
        use object_store::ObjectStore;
        let dir = tempfile::tempdir().expect("tempdir");
        let remote: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let cfg = || StoreConfig {
            storage: objects::Storage::Remote(Arc::clone(&remote)),
            ..config(dir.path())
        };
        let keys = || {
            let objects = objects::Objects::open(dir.path(), &cfg().storage).expect("objects");
            let mut k = objects.list("").expect("list");
            k.sort();
            k
        };
        {
            let store = Store::open(cfg()).expect("open");
            for b in [["a", "b"], ["c", "d"]] {
                rt().block_on(store.append(Signal::Logs, logs(&b)))
                    .expect("append");
                store.flush_all().expect("flush");
            }
            store.compact_all().expect("compact");
            assert_eq!(bodies(&store), vec!["a", "b", "c", "d"]);
            let segs = store.snapshot(Signal::Logs).segments;
            assert_eq!(segs.len(), 1, "two flushes merged into one");
            assert!(segs[0].index_bytes > 0);
            store.close().expect("close");
        }
        // Nothing but the catalog and the committed segment is in the bucket;
        // nothing of the segments is on local disk (only the WAL).
        let k = keys();
        assert_eq!(k.len(), 3, "{k:?}");
        assert!(k.iter().any(|k| k == "catalog.json"));
        assert!(k.iter().any(|k| k.ends_with(".parquet")));
        assert!(k.iter().any(|k| k.ends_with(".idx")));
        assert!(!dir.path().join("segments").exists());
        assert!(!dir.path().join("catalog.json").exists());
        // An object no commit names (an upload a crash interrupted) is removed on open.
        let stray = object_store::path::Path::from("segments/logs/2023-11-14T22/1-2.parquet");
        rt().block_on(remote.put_opts(
            &stray,
            object_store::PutPayload::from_static(b"half"),
            Default::default(),
        ))
        .expect("put");
        let store = Store::open(cfg()).expect("reopen");
        assert_eq!(bodies(&store), vec!["a", "b", "c", "d"]);
        assert_eq!(keys().len(), 3, "the stray object was removed");
        store.close().expect("close");
    }
}

#[cfg(test)]
mod partition_tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray, TimestampNanosecondArray};

    /// Logs with the given (service, time, body) rows.
    pub(super) fn rows(rows: &[(&str, i64, &str)]) -> RecordBatch {
        use datafusion::arrow::array::new_null_array;
        let schema = Signal::Logs.schema();
        let n = rows.len();
        let cols = schema
            .fields()
            .iter()
            .map(|f| -> Arc<dyn Array> {
                match f.name().as_str() {
                    "body" => Arc::new(StringArray::from(
                        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                    )),
                    "service_name" => Arc::new(StringArray::from(
                        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                    )),
                    "timestamp" => Arc::new(
                        TimestampNanosecondArray::from(
                            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                        )
                        .with_timezone("UTC"),
                    ),
                    "severity_number" => {
                        Arc::new(datafusion::arrow::array::Int32Array::from(vec![9; n]))
                    }
                    _ if f.data_type() == &datafusion::arrow::datatypes::DataType::UInt32 => {
                        Arc::new(datafusion::arrow::array::UInt32Array::from(vec![0u32; n]))
                    }
                    _ if !f.is_nullable() => {
                        let mut b = datafusion::arrow::array::MapBuilder::new(
                            None,
                            datafusion::arrow::array::StringBuilder::new(),
                            datafusion::arrow::array::StringBuilder::new(),
                        );
                        for _ in 0..n {
                            b.append(true).expect("map row");
                        }
                        Arc::new(b.finish())
                    }
                    _ => new_null_array(f.data_type(), n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, cols).expect("valid batch")
    }

    /// The `body` column of a logs batch.
    pub(super) fn batch_bodies(b: &RecordBatch) -> Vec<String> {
        let a = b
            .column_by_name("body")
            .expect("body")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8");
        (0..a.len()).map(|i| a.value(i).to_owned()).collect()
    }

    /// The `body` column of a logs segment, in file order.
    pub(super) fn segment_bodies(objects: &objects::Objects, key: &str) -> Vec<String> {
        let file = objects.get(key).expect("get").expect("segment exists");
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader")
            .flat_map(|b| batch_bodies(&b.expect("batch")))
            .collect()
    }

    #[test]
    fn a_flush_writes_one_sorted_segment_per_hour() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = segment::PARTITION_NS;
        let base = 1_700_000_000_000_000_000i64 / h * h; // 2023-11-14T22:00Z
        let a = rows(&[
            ("web", base + h + 5, "w-h1-b"),
            ("api", base + 3, "a-h0-b"),
            ("web", base + 1, "w-h0"),
        ]);
        let b = rows(&[("api", base + 1, "a-h0-a"), ("web", base + h + 1, "w-h1-a")]);
        let objects =
            objects::Objects::open(dir.path(), &objects::Storage::Local).expect("objects");
        let metas = segment::write(&objects, Signal::Logs, &[a, b], 1, 2).expect("write");
        assert_eq!(metas.len(), 2);
        assert_eq!(metas[0].partition, "2023-11-14T22");
        assert_eq!(metas[1].partition, "2023-11-14T23");
        assert_eq!((metas[0].rows, metas[1].rows), (3, 2));
        assert_eq!((metas[0].min_time, metas[0].max_time), (base + 1, base + 3));
        assert!(metas[0].path.starts_with("segments/logs/2023-11-14T22/"));
        let read = |path: &str| segment_bodies(&objects, path);
        // Sorted by service, then time, within each hour.
        assert_eq!(read(&metas[0].path), vec!["a-h0-a", "a-h0-b", "w-h0"]);
        assert_eq!(read(&metas[1].path), vec!["w-h1-a", "w-h1-b"]);
    }

    #[test]
    fn partition_names() {
        assert_eq!(segment::partition_name(0), "1970-01-01T00");
        assert_eq!(segment::partition_name(-1), "1969-12-31T23");
        assert_eq!(segment::partition_name(i64::MAX), "2262-04-11T23");
    }
}

#[cfg(test)]
mod compaction_tests {
    use super::*;

    #[test]
    fn compaction_merges_a_partition_and_defers_deleting_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, rt) = driven_store(dir.path());
        let base = 1_700_000_000_000_000_000i64;
        for i in 0..5i64 {
            let body = format!("b{i}");
            let svc = if i % 2 == 0 { "web" } else { "api" };
            let batch = partition_tests::rows(&[(svc, base + 10 - i, body.as_str())]);
            rt.block_on(store.append(Signal::Logs, batch))
                .expect("append");
            store.flush_all().expect("flush");
        }
        let before = store.snapshot(Signal::Logs).segments;
        assert_eq!(before.len(), 5);
        let group = compact::pick(
            &before,
            &compact::CompactionConfig {
                min_inputs: 4,
                ..Default::default()
            },
            now_ns(),
        )
        .expect("a group");
        assert!(
            before.iter().all(|s| s.index_bytes == 0),
            "flushes write no index"
        );
        assert_eq!(group.len(), 5);
        compact::merge(&store.shared, Signal::Logs, &group).expect("merge");
        let after = store.snapshot(Signal::Logs).segments;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].rows, 5);
        assert_eq!(
            (after[0].min_lsn, after[0].max_lsn),
            (
                before.iter().map(|s| s.min_lsn).min().unwrap_or(0),
                before.iter().map(|s| s.max_lsn).max().unwrap_or(0)
            )
        );
        // A query that planned on the old segments still holds them: nothing is deleted yet.
        sweep_graveyard(&store.shared);
        assert!(
            before
                .iter()
                .all(|s| store.data_dir().join(&s.path).exists())
        );
        drop(group);
        drop(before);
        sweep_graveyard(&store.shared);
        // Only the merged segment's Parquet file and its index remain.
        assert_only_files_of(&store, &after[0]);
        assert!(after[0].index_bytes > 0);
        // The catalog survives a restart with the merged segment only, and the data is whole.
        drop(after);
        store.close().expect("close");
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        let segs = store.snapshot(Signal::Logs).segments;
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].rows, 5);
    }

    #[test]
    fn a_lone_flushed_segment_is_indexed_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, rt) = driven_store(dir.path());
        let batch = partition_tests::rows(&[("web", 1_700_000_000_000_000_000, "only")]);
        rt.block_on(store.append(Signal::Logs, batch))
            .expect("append");
        store.flush_all().expect("flush");
        let flushed = store.snapshot(Signal::Logs).segments;
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].index_bytes, 0);
        let written = std::fs::read(store.data_dir().join(&flushed[0].path)).expect("parquet");
        // Returns: the index commits, so nothing is left to pick.
        store.compact_all().expect("compact");
        let after = store.snapshot(Signal::Logs).segments;
        assert_eq!(after.len(), 1);
        assert!(after[0].index_bytes > 0);
        assert_eq!(after[0].path, flushed[0].path, "the Parquet file is kept");
        assert_eq!(
            std::fs::read(store.data_dir().join(&after[0].path)).expect("parquet"),
            written,
            "and not rewritten"
        );
        assert_eq!(
            store
                .shared
                .metrics
                .segments_indexed
                .load(Ordering::Relaxed),
            1
        );
        let index = store
            .segment_index(&after[0])
            .expect("index")
            .expect("has one");
        assert_eq!(
            index
                .search(&index::Query::Text("only".into()))
                .expect("search"),
            [0]
        );
        // The entry it replaced named the same file: nothing to delete.
        drop(flushed);
        sweep_graveyard(&store.shared);
        assert_only_files_of(&store, &after[0]);
        drop(after);
        store.close().expect("close");
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        let segs = store.snapshot(Signal::Logs).segments;
        assert!(segs[0].index_bytes > 0, "the index survives a restart");
        assert_only_files_of(&store, &segs[0]);
    }

    /// One flushed segment of `rows`, then indexed (in place).
    fn indexed_segment(store: &Store, rt: &tokio::runtime::Runtime, rows: &[(&str, i64, &str)]) {
        let before: Vec<String> = store
            .snapshot(Signal::Logs)
            .segments
            .iter()
            .map(|s| s.path.clone())
            .collect();
        rt.block_on(store.append(Signal::Logs, partition_tests::rows(rows)))
            .expect("append");
        store.flush_all().expect("flush");
        let fresh: Vec<Arc<SegmentMeta>> = store
            .snapshot(Signal::Logs)
            .segments
            .into_iter()
            .filter(|s| !before.contains(&s.path))
            .collect();
        assert_eq!(fresh.len(), 1);
        compact::merge(&store.shared, Signal::Logs, &fresh).expect("index it");
    }

    #[test]
    fn indexed_segments_are_concatenated_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, rt) = driven_store_with(dir.path(), |c| c.compaction.concat_min_rows = 1);
        let t = 1_700_000_000_000_000_000i64;
        // Sorted by service, a rewrite would put the second segment's `api`
        // rows first; a concatenation keeps each input's rows in place.
        indexed_segment(
            &store,
            &rt,
            &[("web", t + 2, "alpha one"), ("web", t + 1, "alpha two")],
        );
        indexed_segment(
            &store,
            &rt,
            &[
                ("api", t + 9, "beta one"),
                ("api", t + 3, "beta two"),
                ("api", t + 4, "gamma"),
            ],
        );
        let inputs = store.snapshot(Signal::Logs).segments;
        assert_eq!(inputs.len(), 2);
        assert!(inputs.iter().all(|s| s.index_bytes > 0));
        let mut group = inputs.clone();
        group.sort_by_key(|s| s.min_lsn);
        compact::merge(&store.shared, Signal::Logs, &group).expect("merge");
        assert_eq!(
            store.shared.metrics.concatenations.load(Ordering::Relaxed),
            1
        );
        let after = store.snapshot(Signal::Logs).segments;
        assert_eq!(after.len(), 1);
        let seg = &after[0];
        assert_eq!((seg.rows, seg.min_time, seg.max_time), (5, t + 1, t + 9));
        let bodies = partition_tests::segment_bodies(store.objects(), &seg.path);
        assert_eq!(
            bodies,
            ["alpha two", "alpha one", "beta two", "gamma", "beta one"]
        );
        // The file is whole: the Arrow schema (time zones) is kept, and the
        // statistics, page index and row groups of both inputs are there.
        let file = std::fs::File::open(store.data_dir().join(&seg.path)).expect("open");
        let reader =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new_with_options(
                file,
                datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions::new()
                    .with_page_index_policy(datafusion::parquet::file::metadata::PageIndexPolicy::Required),
            )
            .expect("parquet with a page index");
        assert_eq!(reader.schema().fields(), Signal::Logs.schema().fields());
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 2);
        assert!(meta.row_group(1).column(0).statistics().is_some());
        // The merged index numbers rows as the file does.
        let index = store.segment_index(seg).expect("index").expect("has one");
        assert_eq!(index.num_rows(), 5);
        assert_eq!(
            index
                .search(&index::Query::Text("beta".into()))
                .expect("search"),
            [2, 4]
        );
        assert_eq!(
            index
                .search(&index::Query::Text("alpha one".into()))
                .expect("search"),
            [1]
        );
        let timed = index
            .search_timed(&index::Query::Text("gamma".into()))
            .expect("search")
            .expect("times");
        assert_eq!((timed[0].row, timed[0].time), (3, t + 4));
        drop((inputs, group, after));
        sweep_graveyard(&store.shared);
        let seg = store.snapshot(Signal::Logs).segments[0].clone();
        assert_only_files_of(&store, &seg);
        store.close().expect("close");
        let store = Store::open(StoreConfig::new(dir.path())).expect("reopen");
        assert_eq!(store.snapshot(Signal::Logs).segments[0].path, seg.path);
    }

    #[test]
    fn small_indexed_segments_are_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, rt) = driven_store(dir.path());
        let t = 1_700_000_000_000_000_000i64;
        indexed_segment(&store, &rt, &[("web", t + 2, "alpha")]);
        indexed_segment(&store, &rt, &[("api", t + 9, "beta")]);
        let mut group = store.snapshot(Signal::Logs).segments;
        group.sort_by_key(|s| s.min_lsn);
        compact::merge(&store.shared, Signal::Logs, &group).expect("merge");
        assert_eq!(
            store.shared.metrics.concatenations.load(Ordering::Relaxed),
            0
        );
        let seg = &store.snapshot(Signal::Logs).segments[0];
        // Sorted again, by service: `api` first.
        assert_eq!(
            partition_tests::segment_bodies(store.objects(), &seg.path),
            ["beta", "alpha"]
        );
        drop(group);
        store.close().expect("close");
    }

    /// A store whose background compactor stays out of the way (the test
    /// drives compaction), and a runtime to append with.
    #[test]
    fn concurrent_compactions_never_lose_a_segment_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, rt) = driven_store_with(dir.path(), |c| {
            c.compaction.concat_min_rows = 1;
            c.compaction.min_inputs = 2;
        });
        let t = 1_700_000_000_000_000_000i64;
        let mut rows = 0;
        for round in 0..6 {
            for k in 0..3 {
                let at = t + round * 10 + k;
                rt.block_on(store.append(
                    Signal::Logs,
                    partition_tests::rows(&[("api", at, "one"), ("web", at, "two")]),
                ))
                .expect("append");
                store.flush_all().expect("flush");
                rows += 2;
            }
            // Two callers at once (as the compaction thread and a tool would be)
            // pick the same groups; each must find the other's work intact.
            std::thread::scope(|s| {
                let a = s.spawn(|| store.compact_all());
                let b = s.spawn(|| store.compact_all());
                a.join().expect("thread").expect("compact");
                b.join().expect("thread").expect("compact");
            });
            let segments = store.snapshot(Signal::Logs).segments;
            assert_eq!(segments.iter().map(|s| s.rows).sum::<u64>(), rows);
            for seg in &segments {
                for f in seg.files() {
                    assert!(store.data_dir().join(&f).exists(), "{f} is gone");
                }
                store
                    .segment_index(seg)
                    .expect("index opens")
                    .expect("indexed");
            }
        }
    }

    #[test]
    fn compaction_waits_for_the_flusher_under_memory_pressure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _rt) = driven_store_with(dir.path(), |c| c.memory_budget = 1000);
        let shared = &store.shared;
        // Below half the budget: no wait.
        shared.budget.charge(400);
        compact::yield_to_flush(shared);
        assert_eq!(
            shared
                .metrics
                .compaction_yield_micros
                .load(Ordering::Relaxed),
            0
        );
        // Above it: compaction waits until a flush gives budget back.
        shared.budget.charge(300);
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                shared.budget.release(300);
            });
            compact::yield_to_flush(shared);
        });
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            shared.budget.pressure() <= 0.5,
            "returned only once released"
        );
        let waited = shared
            .metrics
            .compaction_yield_micros
            .load(Ordering::Relaxed);
        assert!(waited >= 200_000, "counted {waited} µs");
        // Under pressure that never ends, it still goes on (slowed, not starved).
        shared.budget.charge(300);
        compact::yield_to_flush(shared);
        assert!(shared.budget.pressure() > 0.5);
    }

    fn driven_store(dir: &Path) -> (Arc<Store>, tokio::runtime::Runtime) {
        driven_store_with(dir, |_| {})
    }

    fn driven_store_with(
        dir: &Path,
        tweak: impl FnOnce(&mut StoreConfig),
    ) -> (Arc<Store>, tokio::runtime::Runtime) {
        let mut cfg = StoreConfig {
            flush_interval: Duration::from_secs(3600),
            ..StoreConfig::new(dir)
        };
        cfg.compaction.min_inputs = usize::MAX;
        cfg.compaction.index_delay = Duration::MAX;
        tweak(&mut cfg);
        let store = Store::open(cfg).expect("open");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        (store, rt)
    }

    /// The segments directory holds exactly `seg`'s files.
    fn assert_only_files_of(store: &Store, seg: &SegmentMeta) {
        let mut files = walk(&store.data_dir().join("segments"));
        files.sort();
        let mut expected: Vec<PathBuf> = seg
            .files()
            .iter()
            .map(|f| store.data_dir().join(f))
            .collect();
        expected.sort();
        assert_eq!(files, expected);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
