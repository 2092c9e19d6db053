//! Index = scan, property-tested: random OTLP logs and spans go through the
//! real converter and store (WAL, flush, sorted Parquet segment, tantivy
//! index, concatenation of indexed segments); random queries answered from
//! each segment's index must return exactly the rows a brute-force scan of
//! the segment's Parquet file returns.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use lumen_store::index::{self, Query, SegmentIndex, TermField};
use lumen_store::scan::Matcher;
use lumen_store::{Signal, Store, StoreConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// splitmix64: a small, seedable generator, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// Words chosen to exercise the tokenizer: case, digits, unicode, punctuation
// inside tokens, and one token too long to index.
const WORDS: &[&str] = &[
    "error",
    "Error",
    "ERROR",
    "timeout",
    "connection",
    "refused",
    "user",
    "42",
    "id-7f3a",
    "GET",
    "/api/v1/items",
    "café",
    "Straße",
    "ΣΟΦΙΑ",
    "σοφια",
    "naïve",
    "日本語",
    "a",
    "the",
    "payment.failed",
    "x_y_z",
    "500",
    "ms",
    "retry",
    "db",
    "slow",
    "query",
    "ok",
];

fn long_token() -> String {
    "z".repeat(300)
}

fn sentence(rng: &mut Rng) -> String {
    let n = 1 + rng.below(10);
    let mut words = Vec::with_capacity(n);
    for _ in 0..n {
        if rng.chance(3) {
            words.push(long_token());
        } else {
            words.push((*rng.pick(WORDS)).to_owned());
        }
    }
    let seps = [" ", " ", ", ", ": ", " - ", "\t"];
    let mut s = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            let sep: &&str = rng.pick(&seps[..]);
            s.push_str(sep);
        }
        s.push_str(w);
    }
    s
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn attrs(rng: &mut Rng) -> Vec<KeyValue> {
    let keys = [
        "http.method",
        "http.status_code",
        "user.id",
        "region",
        "retry",
    ];
    let mut out = Vec::new();
    for k in keys {
        if rng.chance(50) {
            let v = match k {
                "http.method" => Value::StringValue((*rng.pick(&["GET", "POST", "get"])).into()),
                "http.status_code" => Value::IntValue(*rng.pick(&[200, 404, 500])),
                "retry" => Value::BoolValue(rng.chance(50)),
                _ => Value::StringValue(format!("v{}", rng.below(4))),
            };
            out.push(KeyValue {
                key: k.into(),
                value: Some(AnyValue { value: Some(v) }),
                ..Default::default()
            });
        }
    }
    out
}

const SERVICES: &[&str] = &["checkout", "cart", "Checkout", "payments"];

fn resource(rng: &mut Rng) -> Resource {
    Resource {
        attributes: vec![
            string_kv("service.name", rng.pick::<&str>(SERVICES)),
            string_kv("region", &format!("v{}", rng.below(4))),
        ],
        ..Default::default()
    }
}

fn id(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next() as u8).collect()
}

fn logs_request(rng: &mut Rng, trace_ids: &[Vec<u8>]) -> ExportLogsServiceRequest {
    let severities = [
        (1, "TRACE"),
        (5, "DEBUG"),
        (9, "INFO"),
        (9, "info"),
        (13, "WARN"),
        (17, "ERROR"),
        (21, "FATAL"),
        (0, ""),
    ];
    let mut resource_logs = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let mut records = Vec::new();
        for _ in 0..rng.below(60) {
            let (number, text) = *rng.pick(&severities);
            records.push(LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + rng.below(1_000_000_000) as u64,
                severity_number: number,
                severity_text: text.into(),
                body: rng.chance(95).then(|| AnyValue {
                    value: Some(Value::StringValue(sentence(rng))),
                }),
                attributes: attrs(rng),
                trace_id: if rng.chance(70) {
                    rng.pick(trace_ids).clone()
                } else {
                    Vec::new()
                },
                span_id: if rng.chance(70) {
                    id(rng, 8)
                } else {
                    Vec::new()
                },
                ..Default::default()
            });
        }
        resource_logs.push(ResourceLogs {
            resource: Some(resource(rng)),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportLogsServiceRequest { resource_logs }
}

fn spans_request(rng: &mut Rng, trace_ids: &[Vec<u8>]) -> ExportTraceServiceRequest {
    let ops = ["GET /cart", "POST /pay", "db.query", "GET /cart/items"];
    let mut resource_spans = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let mut spans = Vec::new();
        for _ in 0..rng.below(60) {
            let start = 1_700_000_000_000_000_000 + rng.below(1_000_000_000) as u64;
            spans.push(Span {
                trace_id: rng.pick(trace_ids).clone(),
                span_id: id(rng, 8),
                name: (*rng.pick(&ops)).into(),
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.below(1_000_000) as u64,
                attributes: attrs(rng),
                ..Default::default()
            });
        }
        resource_spans.push(ResourceSpans {
            resource: Some(resource(rng)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest { resource_spans }
}

/// A glob matching `word`, mostly: a prefix and `*`, `*` and a suffix, one
/// character replaced by `?`, or `*` alone.
fn glob_from(rng: &mut Rng, word: String) -> String {
    let chars: Vec<char> = word.chars().collect();
    if chars.is_empty() {
        return "*".into();
    }
    let k = rng.below(chars.len() + 1);
    match rng.below(4) {
        0 => chars[..k].iter().chain(['*'].iter()).collect(),
        1 => ['*'].iter().chain(chars[k..].iter()).collect(),
        2 => {
            let mut c = chars;
            let i = k.min(c.len() - 1);
            c[i] = '?';
            c.into_iter().collect()
        }
        _ => "*".into(),
    }
}

/// A random query built from values that occur in `rows` (so most match
/// something) and some that do not.
fn query(rng: &mut Rng, signal: Signal, rows: &[index::RowView], depth: usize) -> Query {
    let row = rng.pick(rows).clone();
    let leaf = |rng: &mut Rng| -> Query {
        match (signal, rng.below(11)) {
            (Signal::Logs, 0) => Query::Text((*rng.pick(WORDS)).to_uppercase()),
            (Signal::Logs, 1) => {
                // A phrase cut from a real body, so phrases do match.
                let body = row.body.clone().unwrap_or_default();
                let words: Vec<&str> = body.split(' ').collect();
                let start = rng.below(words.len());
                let len = 1 + rng.below(3);
                Query::Text(words[start..(start + len).min(words.len())].join(" "))
            }
            (Signal::Logs, 2) => {
                let (min, max) = (rng.below(25) as i32, rng.below(25) as i32);
                Query::Severity { min, max }
            }
            (Signal::Logs, 3) => Query::Term(
                TermField::SeverityText,
                (*rng.pick(&["error", "INFO", "Warn", "nope"])).into(),
            ),
            (Signal::Spans, 0..=1) => Query::Term(
                TermField::Operation,
                row.terms.get("operation").cloned().unwrap_or_default(),
            ),
            (_, 4) => Query::Term(
                TermField::TraceId,
                row.terms
                    .get("trace_id")
                    .cloned()
                    .unwrap_or_else(|| "00ff".into()),
            ),
            (_, 5) => Query::Term(TermField::Service, (*rng.pick(SERVICES)).into()),
            (_, 6) if !row.attrs.is_empty() => {
                let (key, value) = rng.pick(&row.attrs).clone();
                Query::Attr { key, value }
            }
            (_, 7) => Query::Term(
                TermField::SpanId,
                row.terms.get("span_id").cloned().unwrap_or_default(),
            ),
            (Signal::Logs, 8) => {
                // A glob cut from a word of the body (or a list word), in
                // any case: a prefix, a suffix, or one character as `?`.
                let body = row.body.clone().unwrap_or_default();
                let mut words: Vec<String> = index::tokens(&body).into_iter().flatten().collect();
                words.push((*rng.pick(WORDS)).to_uppercase());
                let word = rng.pick(&words).clone();
                Query::TextWildcard(glob_from(rng, word))
            }
            (_, 9) if !row.attrs.is_empty() => {
                let (key, value) = rng.pick(&row.attrs).clone();
                let pattern = glob_from(rng, value);
                Query::AttrWildcard { key, pattern }
            }
            (_, 10) => {
                let service = (*rng.pick(SERVICES)).to_owned();
                Query::TermWildcard(TermField::Service, glob_from(rng, service))
            }
            _ => Query::Attr {
                key: "region".into(),
                value: format!("v{}", rng.below(5)),
            },
        }
    };
    if depth == 0 || rng.chance(40) {
        return leaf(rng);
    }
    match rng.below(4) {
        0 => Query::Not(Box::new(query(rng, signal, rows, depth - 1))),
        1 => Query::Or(vec![
            query(rng, signal, rows, depth - 1),
            query(rng, signal, rows, depth - 1),
        ]),
        _ => Query::And(vec![
            query(rng, signal, rows, depth - 1),
            query(rng, signal, rows, depth - 1),
        ]),
    }
}

fn read_segment(path: &std::path::Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Only the named columns of a batch (those present).
fn project(batch: &RecordBatch, columns: &[&str]) -> RecordBatch {
    let indices: Vec<usize> = columns
        .iter()
        .filter_map(|c| batch.schema().index_of(c).ok())
        .collect();
    batch.project(&indices).unwrap()
}

#[derive(Default)]
struct Checked {
    total: usize,
    /// Queries that matched at least one row.
    some: usize,
    /// Queries that did not match every row.
    selective: usize,
}

fn check_segments(
    store: &Arc<Store>,
    signal: Signal,
    rng: &mut Rng,
    seed: u64,
    checked: &mut Checked,
) {
    for seg in store.snapshot(signal).segments {
        let batch = read_segment(&store.data_dir().join(&seg.path));
        let rows = index::row_views(signal, &batch).unwrap();
        // File-backed, as queries open it; and from memory, as from a remote store.
        let idx = store.segment_index(&seg).unwrap().unwrap();
        let bundle = std::fs::read(store.data_dir().join(seg.index_path().unwrap())).unwrap();
        let in_memory = SegmentIndex::open(signal, &bundle).unwrap();
        // The times (and span durations) the index keeps are the segment's.
        let times = batch
            .column_by_name(signal.time_column())
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
            .clone();
        let durations = batch.column_by_name("duration_ns").map(|c| {
            c.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .clone()
        });
        for _ in 0..300 {
            let q = query(rng, signal, &rows, 2);
            let from_index = idx.search(&q).unwrap();
            assert_eq!(in_memory.search(&q).unwrap(), from_index);
            let timed = idx
                .search_timed(&q)
                .unwrap()
                .expect("new indexes keep times");
            assert_eq!(timed.iter().map(|t| t.row).collect::<Vec<_>>(), from_index);
            for t in &timed {
                assert_eq!(t.time, times.value(t.row as usize));
                let d = durations.as_ref().map_or(0, |d| d.value(t.row as usize));
                assert_eq!(t.duration, d);
            }
            let from_scan: Vec<u32> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| index::matches_row(&q, r))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(from_index, from_scan, "seed {seed}, {signal}, query {q:?}");
            // The scan path (fresh segments, the buffer, the tail) agrees,
            // reading only the columns it says it needs.
            let matcher = Matcher::new(signal, &q);
            let projected = project(&batch, matcher.columns());
            assert_eq!(
                matcher.matching_rows(&projected).unwrap(),
                from_scan,
                "seed {seed}, {signal}, scan of query {q:?}"
            );
            checked.total += 1;
            checked.some += usize::from(!from_scan.is_empty());
            checked.selective += usize::from(from_scan.len() < rows.len());
        }
    }
}

#[test]
fn index_answers_equal_a_brute_force_scan() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut checked = Checked::default();
    let mut concatenated = 0;
    for seed in 1..=12u64 {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path());
        // Every merge of indexed segments concatenates them, however small.
        config.compaction.concat_min_rows = 1;
        config.compaction.min_inputs = 2;
        let store = Store::open(config).unwrap();
        let trace_ids: Vec<Vec<u8>> = (0..20).map(|_| id(&mut rng, 16)).collect();
        for _ in 0..4 {
            for _ in 0..2 {
                let logs =
                    lumen_collector::convert::logs(&logs_request(&mut rng, &trace_ids)).unwrap();
                let spans =
                    lumen_collector::convert::spans(&spans_request(&mut rng, &trace_ids)).unwrap();
                rt.block_on(async {
                    store.append(Signal::Logs, logs.batch).await.unwrap();
                    store.append(Signal::Spans, spans.batch).await.unwrap();
                });
                // Several flushes: several segments.
                store.flush_all().unwrap();
            }
            // Flushed segments get their index from compaction (a rewrite);
            // indexed ones of about one size are then concatenated.
            store.compact_all().unwrap();
        }
        concatenated += store.metrics().concatenations.load(Ordering::Relaxed);
        check_segments(&store, Signal::Logs, &mut rng, seed, &mut checked);
        check_segments(&store, Signal::Spans, &mut rng, seed, &mut checked);
    }
    // The queries must be worth checking: many, and mostly neither empty nor everything.
    let Checked {
        total,
        some,
        selective,
    } = checked;
    assert!(total > 10_000, "only {total} queries checked");
    assert!(concatenated >= 12, "only {concatenated} concatenations");
    assert!(
        some * 2 > total && selective * 2 > total,
        "{some} matched, {selective} selective of {total}"
    );
}
