//! Lumen's own metrics, rendered in the Prometheus text format at `/metrics`.
//! Counters are plain atomics: cheap enough to bump on every request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::schema::Signal;

/// A fixed-bucket histogram of seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Debug)]
pub struct Metrics {
    pub records_received: [AtomicU64; 3],
    pub records_rejected: [AtomicU64; 3],
    /// Requests refused with a retryable answer (over the memory budget, WAL failure).
    pub requests_refused: [AtomicU64; 3],
    /// Requests refused as malformed.
    pub requests_invalid: [AtomicU64; 3],
    pub wal_fsync_seconds: Histogram,
    pub wal_bytes: AtomicU64,
    pub segments_written: AtomicU64,
    pub compactions: AtomicU64,
    /// Compactions that concatenated indexed segments rather than rewrite them.
    pub concatenations: AtomicU64,
    /// Flushed segments indexed in place (their Parquet file kept), and their rows.
    pub segments_indexed: AtomicU64,
    pub indexed_rows: AtomicU64,
    /// Rows written by flushes and by compactions (throughput = rows / seconds).
    pub flushed_rows: AtomicU64,
    pub compacted_rows: AtomicU64,
    pub flush_seconds: Histogram,
    pub compaction_seconds: Histogram,
    /// Time compaction spent waiting for the flusher under memory pressure.
    pub compaction_yield_micros: AtomicU64,
    pub query_seconds: Histogram,
    pub queries_failed: AtomicU64,
    /// Attributes dropped past the per-list limit, values cut to the length limit.
    pub attributes_dropped: AtomicU64,
    pub values_truncated: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            records_received: Default::default(),
            records_rejected: Default::default(),
            requests_refused: Default::default(),
            requests_invalid: Default::default(),
            wal_fsync_seconds: Histogram::new(LATENCY_BOUNDS),
            wal_bytes: AtomicU64::new(0),
            segments_written: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            concatenations: AtomicU64::new(0),
            segments_indexed: AtomicU64::new(0),
            indexed_rows: AtomicU64::new(0),
            flushed_rows: AtomicU64::new(0),
            compacted_rows: AtomicU64::new(0),
            flush_seconds: Histogram::new(LATENCY_BOUNDS),
            compaction_seconds: Histogram::new(LATENCY_BOUNDS),
            compaction_yield_micros: AtomicU64::new(0),
            query_seconds: Histogram::new(LATENCY_BOUNDS),
            queries_failed: AtomicU64::new(0),
            attributes_dropped: AtomicU64::new(0),
            values_truncated: AtomicU64::new(0),
        }
    }
}

fn per_signal(out: &mut String, name: &str, help: &str, values: &[AtomicU64; 3]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for s in Signal::ALL {
        let _ = writeln!(
            out,
            "{name}{{signal=\"{s}\"}} {}",
            values[s.index()].load(Ordering::Relaxed)
        );
    }
}

impl Metrics {
    /// Renders everything; `gauges` are point-in-time values the caller reads from the store.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(4096);
        per_signal(
            &mut out,
            "lumen_records_received_total",
            "Records accepted and durably stored.",
            &self.records_received,
        );
        per_signal(
            &mut out,
            "lumen_records_rejected_total",
            "Records rejected as invalid (OTLP partial success).",
            &self.records_rejected,
        );
        per_signal(
            &mut out,
            "lumen_requests_refused_total",
            "Export requests refused with a retryable code.",
            &self.requests_refused,
        );
        per_signal(
            &mut out,
            "lumen_requests_invalid_total",
            "Export requests refused as malformed.",
            &self.requests_invalid,
        );
        self.wal_fsync_seconds.render(
            &mut out,
            "lumen_wal_fsync_seconds",
            "Latency of WAL group-commit write + fsync.",
        );
        let _ = writeln!(
            out,
            "# HELP lumen_wal_bytes_total Bytes appended to the WAL.\n# TYPE lumen_wal_bytes_total counter\nlumen_wal_bytes_total {}",
            self.wal_bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_segments_written_total Parquet segments written.\n# TYPE lumen_segments_written_total counter\nlumen_segments_written_total {}",
            self.segments_written.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_compactions_total Merges of small segments into larger ones.\n# TYPE lumen_compactions_total counter\nlumen_compactions_total {}",
            self.compactions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_compactions_concatenated_total Compactions that appended indexed segments to each other (column chunks copied, indexes merged) instead of rewriting their rows.\n# TYPE lumen_compactions_concatenated_total counter\nlumen_compactions_concatenated_total {}",
            self.concatenations.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_segments_indexed_total Flushed segments indexed in place (their Parquet file kept as written).\n# TYPE lumen_segments_indexed_total counter\nlumen_segments_indexed_total {}",
            self.segments_indexed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_indexed_rows_total Rows of flushed segments indexed in place.\n# TYPE lumen_indexed_rows_total counter\nlumen_indexed_rows_total {}",
            self.indexed_rows.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_flushed_rows_total Rows written to segments by flushes.\n# TYPE lumen_flushed_rows_total counter\nlumen_flushed_rows_total {}",
            self.flushed_rows.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_compacted_rows_total Rows written to segments by compactions.\n# TYPE lumen_compacted_rows_total counter\nlumen_compacted_rows_total {}",
            self.compacted_rows.load(Ordering::Relaxed)
        );
        self.flush_seconds.render(
            &mut out,
            "lumen_flush_seconds",
            "Time to write one buffer flush as segments (Parquet and index).",
        );
        self.compaction_seconds.render(
            &mut out,
            "lumen_compaction_seconds",
            "Time of one compaction step (a merge: read, merge or concatenate, write, commit; or indexing a flushed segment in place).",
        );
        let _ = writeln!(
            out,
            "# HELP lumen_compaction_yield_seconds_total Time compaction paused so the flusher could bring memory use down.\n# TYPE lumen_compaction_yield_seconds_total counter\nlumen_compaction_yield_seconds_total {}",
            self.compaction_yield_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        self.query_seconds
            .render(&mut out, "lumen_query_seconds", "Latency of queries.");
        let _ = writeln!(
            out,
            "# HELP lumen_queries_failed_total Queries that ended in an error.\n# TYPE lumen_queries_failed_total counter\nlumen_queries_failed_total {}",
            self.queries_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lumen_attributes_dropped_total Attributes dropped past the per-list limit (--max-attributes).\n# TYPE lumen_attributes_dropped_total counter\nlumen_attributes_dropped_total {}\n# HELP lumen_attribute_values_truncated_total Values cut to --max-attribute-length.\n# TYPE lumen_attribute_values_truncated_total counter\nlumen_attribute_values_truncated_total {}",
            self.attributes_dropped.load(Ordering::Relaxed),
            self.values_truncated.load(Ordering::Relaxed)
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
