//! `lumen bench-index`: the cost of building segment indexes, measured on
//! the segments of a real data directory (left as it is: each index is
//! built into a scratch directory and thrown away). Compaction builds an
//! index for every flushed segment, and that is most of its CPU, so this
//! times exactly that step, repeatably, without ingest running beside it.

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
    /// Build each index this many times; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
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

/// Prints one line per segment and a `result` line.
#[allow(clippy::print_stdout)]
pub(crate) fn run(args: &BenchIndexArgs) -> Result<()> {
    let signal = match args.signal.as_str() {
        "logs" => Signal::Logs,
        "spans" => Signal::Spans,
        other => bail!("--signal: expected logs or spans, not {other:?}"),
    };
    let mut segments: Vec<_> = lumen_store::catalog::committed_segments(&args.data_dir)
        .with_context(|| format!("reading the catalog in {}", args.data_dir.display()))?
        .into_iter()
        .filter(|s| s.signal == signal)
        .collect();
    if segments.is_empty() {
        bail!("no {} segments in {}", args.signal, args.data_dir.display());
    }
    segments.sort_by_key(|s| std::cmp::Reverse(s.rows));
    segments.truncate(args.segments);
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let out = scratch.path().join("bench.idx");
    let (mut rows, mut wall, mut cpu, mut bytes) = (0u64, 0.0, 0.0, 0u64);
    for s in &segments {
        let path = args.data_dir.join(&s.path);
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        let mut len = 0;
        for _ in 0..args.repeat.max(1) {
            let (t0, c0) = (Instant::now(), process_cpu()?);
            len = lumen_store::index_file(signal, &path, &out, scratch.path())
                .with_context(|| format!("indexing {}", s.path))?;
            walls.push(t0.elapsed().as_secs_f64());
            cpus.push((process_cpu()? - c0).as_secs_f64());
        }
        let (w, c) = (median(walls), median(cpus));
        println!(
            "segment {} rows={} wall_s={w:.3} rows_per_s={:.0} cpu_us_per_row={:.2} index_bytes_per_row={:.2}",
            s.path,
            s.rows,
            s.rows as f64 / w,
            c * 1e6 / s.rows as f64,
            len as f64 / s.rows as f64
        );
        rows += s.rows;
        wall += w;
        cpu += c;
        bytes += len;
    }
    println!(
        "result signal={} segments={} rows={rows} rows_per_s={:.0} cpu_us_per_row={:.2} index_bytes_per_row={:.2}",
        args.signal,
        segments.len(),
        rows as f64 / wall,
        cpu * 1e6 / rows as f64,
        bytes as f64 / rows as f64
    );
    Ok(())
}
