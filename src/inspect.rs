//! `lumen inspect`: what a data directory holds, per signal, and where the
//! index bytes go (per field and part), read from the catalog and the
//! segment indexes. For operators and for the store benchmarks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lumen_store::Signal;
use lumen_store::index::SegmentIndex;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The data directory of a Lumen that is not running (or whose catalog is settled).
    #[arg(long, env = "LUMEN_DATA_DIR", default_value = "./lumen-data")]
    pub(crate) data_dir: PathBuf,
    /// Also break each signal's index bytes down per field and part.
    #[arg(long)]
    pub(crate) fields: bool,
}

#[derive(Default)]
struct Totals {
    segments: u64,
    rows: u64,
    parquet: u64,
    index: u64,
    indexed_segments: u64,
    indexed_rows: u64,
    indexed_parquet: u64,
    parts: BTreeMap<(String, &'static str), u64>,
}

#[allow(clippy::print_stdout)]
pub(crate) fn run(args: &InspectArgs) -> Result<()> {
    let segments = lumen_store::catalog::committed_segments(&args.data_dir)
        .with_context(|| format!("reading the catalog in {}", args.data_dir.display()))?;
    let mut by_signal: BTreeMap<&'static str, Totals> = BTreeMap::new();
    for s in &segments {
        let t = by_signal.entry(s.signal.table()).or_default();
        t.segments += 1;
        t.rows += s.rows;
        t.parquet += s.bytes;
        t.index += s.index_bytes;
        if s.index_bytes > 0 {
            t.indexed_segments += 1;
            t.indexed_rows += s.rows;
            t.indexed_parquet += s.bytes;
            if args.fields {
                let path = s.index_path().unwrap_or_default();
                let bundle = std::fs::read(args.data_dir.join(&path))
                    .with_context(|| format!("reading {path}"))?;
                let index = SegmentIndex::open(s.signal, &bundle)?;
                for (field, part, bytes) in index.space_usage()? {
                    *t.parts.entry((field, part)).or_default() += bytes;
                }
            }
        }
    }
    let per = |bytes: u64, rows: u64| bytes as f64 / rows.max(1) as f64;
    for signal in [Signal::Logs, Signal::Spans, Signal::Metrics] {
        let Some(t) = by_signal.get(signal.table()) else {
            continue;
        };
        println!(
            "{}: {} segments, {} rows, parquet {} B ({:.2} B/row), index {} B; indexed: {} segments, {} rows, parquet {:.2} B/row, index {:.2} B/row",
            signal.table(),
            t.segments,
            t.rows,
            t.parquet,
            per(t.parquet, t.rows),
            t.index,
            t.indexed_segments,
            t.indexed_rows,
            per(t.indexed_parquet, t.indexed_rows),
            per(t.index, t.indexed_rows),
        );
        for ((field, part), bytes) in &t.parts {
            println!(
                "  {field:<14} {part:<10} {bytes:>12} B  {:>7.2} B/row",
                per(*bytes, t.indexed_rows)
            );
        }
    }
    Ok(())
}
