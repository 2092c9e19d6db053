//! `lumen bench-index` and `lumen bench-flush`: the cost of building segment
//! indexes and of flushing, measured on the segments of a real data
//! directory (left as it is: output goes to a scratch directory and is
//! thrown away). Compaction builds an index for every flushed segment and the
//! flusher sorts and encodes every row; together they are most of the
//! server's CPU beside ingest, so these time exactly those steps,
//! repeatably, without ingest running beside them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use lumen_store::Signal;

#[derive(Debug, Args)]
pub(crate) struct BenchIndexArgs {
    /// The data directory whose segments are indexed (not modified).
    #[arg(long, default_value = "./lumen-data")]
    pub(crate) data_dir: PathBuf,
    /// Which signal's segments: logs or spans.
    #[arg(long, default_value = "logs")]
    pub(crate) signal: String,
    /// Index at most this many segments (the largest first).
    #[arg(long, default_value_t = 4)]
    pub(crate) segments: usize,
    /// Only segments of at most this many rows (e.g. flush-sized ones).
    #[arg(long)]
    pub(crate) max_rows: Option<u64>,
    /// Build each index this many times; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
}

#[derive(Debug, Args)]
pub(crate) struct BenchFlushArgs {
    #[command(flatten)]
    pub(crate) segments: BenchIndexArgs,
    /// Rows per buffered batch (one export request's worth).
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_rows: usize,
}

/// CPU time of this process so far (all threads: tantivy indexes on its own).
fn process_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at state.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .context("parsing /proc/self/stat")
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the state;
    // the kernel counts them in USER_HZ, 100 on Linux.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The signal and the segments `args` selects, largest first.
fn select(args: &BenchIndexArgs) -> Result<(Signal, Vec<lumen_store::SegmentMeta>)> {
    let signal = match args.signal.as_str() {
        "logs" => Signal::Logs,
        "spans" => Signal::Spans,
        other => bail!("--signal: expected logs or spans, not {other:?}"),
    };
    let mut segments: Vec<_> = lumen_store::catalog::committed_segments(&args.data_dir)
        .with_context(|| format!("reading the catalog in {}", args.data_dir.display()))?
        .into_iter()
        .filter(|s| s.signal == signal && args.max_rows.is_none_or(|m| s.rows <= m))
        .collect();
    if segments.is_empty() {
        bail!("no {} segments in {}", args.signal, args.data_dir.display());
    }
    segments.sort_by_key(|s| std::cmp::Reverse(s.rows));
    segments.truncate(args.segments);
    Ok((signal, segments))
}

/// Times `step` `repeat` times; medians of wall and process CPU seconds.
fn timed(repeat: usize, mut step: impl FnMut() -> Result<u64>) -> Result<(f64, f64, u64)> {
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    let mut len = 0;
    for _ in 0..repeat.max(1) {
        let (t0, c0) = (Instant::now(), process_cpu()?);
        len = step()?;
        walls.push(t0.elapsed().as_secs_f64());
        cpus.push((process_cpu()? - c0).as_secs_f64());
    }
    Ok((median(walls), median(cpus), len))
}

/// The figures of a run: one line per segment as it is timed, then a
/// `result` line over all of them.
struct Totals {
    /// Name of the bytes-per-row figure (what the timed step writes).
    bytes_name: &'static str,
    rows: u64,
    wall: f64,
    cpu: f64,
    bytes: u64,
}

impl Totals {
    fn new(bytes_name: &'static str) -> Self {
        Totals {
            bytes_name,
            rows: 0,
            wall: 0.0,
            cpu: 0.0,
            bytes: 0,
        }
    }

    fn line(&self, rows: u64, wall: f64, cpu: f64, bytes: u64) -> String {
        let rows_f = rows as f64;
        format!(
            "rows_per_s={:.0} cpu_us_per_row={:.2} {}={:.2}",
            rows_f / wall,
            cpu * 1e6 / rows_f,
            self.bytes_name,
            bytes as f64 / rows_f
        )
    }

    /// Prints and adds one segment's (median wall s, median CPU s, bytes).
    #[allow(clippy::print_stdout)]
    fn segment(&mut self, path: &str, rows: u64, (wall, cpu, bytes): (f64, f64, u64)) {
        println!(
            "segment {path} rows={rows} wall_s={wall:.3} {}",
            self.line(rows, wall, cpu, bytes)
        );
        self.rows += rows;
        self.wall += wall;
        self.cpu += cpu;
        self.bytes += bytes;
    }

    #[allow(clippy::print_stdout)]
    fn result(&self, signal: &impl std::fmt::Display, segments: usize) {
        println!(
            "result signal={signal} segments={segments} rows={} {}",
            self.rows,
            self.line(self.rows, self.wall, self.cpu, self.bytes)
        );
    }
}

/// Prints one line per segment and a `result` line.
pub(crate) fn run(args: &BenchIndexArgs) -> Result<()> {
    let (signal, segments) = select(args)?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let out = scratch.path().join("bench.idx");
    let mut totals = Totals::new("index_bytes_per_row");
    for s in &segments {
        let path = args.data_dir.join(&s.path);
        let (w, c, len) = timed(args.repeat, || {
            lumen_store::index_file(signal, &path, &out, scratch.path())
                .with_context(|| format!("indexing {}", s.path))
        })?;
        totals.segment(&s.path, s.rows, (w, c, len));
    }
    totals.result(&args.signal, segments.len());
    Ok(())
}

/// Flushes each selected segment's rows again, from arrival order; prints
/// one line per segment and a `result` line.
pub(crate) fn run_flush(args: &BenchFlushArgs) -> Result<()> {
    let (signal, segments) = select(&args.segments)?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let bench = lumen_store::FlushBench::new(scratch.path())?;
    let mut totals = Totals::new("parquet_bytes_per_row");
    let mut lsn = 0;
    for s in &segments {
        let path = args.segments.data_dir.join(&s.path);
        let batches = lumen_store::FlushBench::arrival_batches(signal, &path, args.batch_rows)
            .with_context(|| format!("reading {}", s.path))?;
        let (w, c, len) = timed(args.segments.repeat, || {
            lsn += 1;
            bench
                .write(signal, &batches, lsn)
                .with_context(|| format!("flushing {}", s.path))
        })?;
        totals.segment(&s.path, s.rows, (w, c, len));
    }
    totals.result(&args.segments.signal, segments.len());
    Ok(())
}
