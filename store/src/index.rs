//! Per-segment tantivy indexes: what makes "find this line among billions"
//! fast.
//!
//! Every logs and spans segment gets one index over the same rows, in the
//! same order, written next to its Parquet file as one bundle
//! (`<segment>.idx`, see [`Bundle`]) so it moves through object storage as a
//! single immutable object. A document per row holds only indexed terms and a
//! `row` fast field (the row's position in the Parquet file); nothing is
//! stored twice: matching rows are read from Parquet.
//!
//! Indexed, per signal:
//! - logs: `body` (full text, positions kept for phrases), `service`,
//!   `severity` (number, for ranges), `severity_text`, `trace_id`, `span_id`,
//!   `attr` (key and value of record and resource attributes);
//! - spans: `trace_id`, `span_id`, `service`, `operation`, `attr`.
//!
//! Text is split into maximal runs of alphanumeric characters and
//! lowercased; tokens longer than [`MAX_TOKEN_BYTES`] are not indexed.
//! [`Query`] is what callers ask; [`matches_row`] is the same semantics
//! evaluated by brute force, used by the property test (index = scan).

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, FileHandle, FileSlice, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle,
    WritePtr,
};
use tantivy::query::{AllQuery, PhraseQuery, Query as TQuery, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{DocId, Index, SegmentReader, SingleSegmentIndexWriter, Term};

use crate::schema::Signal;
use crate::{Error, Result};

/// Longest token (in bytes) that is indexed; longer ones are not searchable.
pub const MAX_TOKEN_BYTES: usize = 255;
/// Longest attribute term (key, separator, value) indexed; longer pairs are not searchable.
pub const MAX_ATTR_TERM_BYTES: usize = 4096;
const TOKENIZER: &str = "lumen_text";
/// Memory a part's tantivy writer may use before the builder cuts it (parts are
/// merged into one at the end: 29% of the instructions of indexing a
/// 359k-row segment in two parts). Its arena takes about 300 B per log row,
/// so a flushed segment (measured: up to 240k rows at the default 48 MiB
/// flush size) is indexed in one part; only large rewrites are cut.
const WRITER_MEMORY: usize = 128 << 20;

/// A field a [`Query::Term`] can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermField {
    Service,
    SeverityText,
    TraceId,
    SpanId,
    Operation,
}

impl TermField {
    /// The segment column the field indexes.
    pub(crate) fn column(self) -> &'static str {
        match self {
            TermField::Service => "service_name",
            TermField::SeverityText => "severity_text",
            TermField::TraceId => "trace_id",
            TermField::SpanId => "span_id",
            TermField::Operation => "name",
        }
    }

    /// Trace and span ids: indexed as bytes, not hex text (half the term
    /// dictionary, where these near-unique terms dominate).
    pub(crate) fn is_id(self) -> bool {
        matches!(self, TermField::TraceId | TermField::SpanId)
    }

    fn name(self) -> &'static str {
        match self {
            TermField::Service => "service",
            TermField::SeverityText => "severity_text",
            TermField::TraceId => "trace_id",
            TermField::SpanId => "span_id",
            TermField::Operation => "operation",
        }
    }
}

/// A search over one signal's records, answered by an index or by a scan
/// ([`matches_row`]) with the same result.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Every record.
    All,
    /// Text in the log body: the tokens of the text appearing consecutively
    /// (one token is a term, several a phrase). Text without tokens matches nothing.
    Text(String),
    /// An exact value of a field (case-sensitive, except `severity_text`,
    /// which is compared case-insensitively).
    Term(TermField, String),
    /// An attribute (of the record or its resource) with exactly this value.
    Attr {
        key: String,
        value: String,
    },
    /// A token of the log body matching a glob pattern (`*` any run of
    /// characters, `?` one), case-insensitively.
    TextWildcard(String),
    /// A field's whole value matching a glob pattern (not for ids).
    TermWildcard(TermField, String),
    /// An attribute whose whole value matches a glob pattern.
    AttrWildcard {
        key: String,
        pattern: String,
    },
    /// Severity number in `[min, max]`.
    Severity {
        min: i32,
        max: i32,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

/// The tokens of `text` at their positions, as the index sees them: `None`
/// where a token is too long to be indexed (it still takes its position).
pub fn tokens(text: &str) -> Vec<Option<String>> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        // Char by char, as tantivy's LowerCaser does (no final-sigma rule).
        .map(|t| {
            (t.len() <= MAX_TOKEN_BYTES).then(|| t.chars().flat_map(char::to_lowercase).collect())
        })
        .collect()
}

/// Whether all of `text` matches the glob `pattern` (`*` matches any run of
/// characters, `?` exactly one).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative, with backtracking to the last `*` only: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The glob as a regular expression over a whole term (every literal
/// character escaped).
fn glob_regex(pattern: &str) -> String {
    let mut re = String::with_capacity(pattern.len() * 2);
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => push_literal(&mut re, c),
        }
    }
    re
}

fn push_literal(re: &mut String, c: char) {
    if c.is_alphanumeric() {
        re.push(c);
    } else {
        re.push_str(&format!("\\x{{{:x}}}", c as u32));
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES + 1))
        .filter(LowerCaser)
        .build()
}

struct Fields {
    /// The row in the segment the document was indexed for. Readers use
    /// document ids, which are rows in a bundle of one tantivy segment (as
    /// [`Builder::finish`] writes) and stay rows when indexes are
    /// concatenated (this field does not); the field maps documents to rows
    /// in bundles of several tantivy segments.
    row: Field,
    body: Option<Field>,
    severity: Option<Field>,
    terms: Vec<(TermField, Field)>,
    attr: Field,
    /// The record's time (logs: `timestamp`, spans: `start_time`), so that
    /// searches need not read it from Parquet. Added after the first
    /// release of the format: older indexes lack it (and `duration`).
    time: Field,
    /// Spans: `duration_ns`.
    duration: Option<Field>,
}

/// A matching row with what the index keeps of it besides its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedRow {
    pub row: u32,
    /// ns since the epoch.
    pub time: i64,
    /// Spans: duration in ns; 0 for logs.
    pub duration: i64,
}

/// An exact-value field. No fieldnorms anywhere: nothing is scored, and they
/// cost a byte per document and field.
fn exact() -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic),
    )
}

fn schema(signal: Signal) -> Result<(Schema, Fields)> {
    let mut b = Schema::builder();
    let row = b.add_u64_field("row", FAST);
    let attr = b.add_text_field("attr", exact());
    let (body, severity, terms) = match signal {
        Signal::Logs => {
            let text = TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER)
                    .set_fieldnorms(false)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            );
            let body = b.add_text_field("body", text);
            let severity = b.add_i64_field("severity", NumericOptions::default().set_indexed());
            (Some(body), Some(severity), term_schema(&mut b, signal))
        }
        Signal::Spans => (None, None, term_schema(&mut b, signal)),
        Signal::Metrics => {
            return Err(Error::Corrupt("metrics segments have no index".into()));
        }
    };
    // New fields go last: field ids are positions, so older indexes keep theirs.
    let time = b.add_i64_field("time", FAST);
    let duration = (signal == Signal::Spans).then(|| b.add_i64_field("duration", FAST));
    Ok((
        b.build(),
        Fields {
            row,
            body,
            severity,
            terms,
            attr,
            time,
            duration,
        },
    ))
}

fn term_schema(b: &mut tantivy::schema::SchemaBuilder, signal: Signal) -> Vec<(TermField, Field)> {
    term_fields(signal)
        .iter()
        .map(|f| {
            let field = if f.is_id() {
                b.add_bytes_field(f.name(), tantivy::schema::INDEXED)
            } else {
                b.add_text_field(f.name(), exact())
            };
            (*f, field)
        })
        .collect()
}

/// The indexed term of a trace or span id: tag 0 and the bytes of a
/// lowercase hex id (what the converter stores), or tag 1 and the text of
/// anything else, so no two values share a term. The tag costs nothing: the
/// term dictionary shares prefixes.
fn id_term(value: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(value.len() + 1);
    push_id_term(&mut t, value);
    t
}

/// Appends [`id_term`]`(value)` to `out`.
fn push_id_term(out: &mut Vec<u8>, value: &str) {
    let hex = value.len().is_multiple_of(2)
        && value
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !hex {
        out.push(1);
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let nibble = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
    out.push(0);
    out.extend(
        value
            .as_bytes()
            .chunks_exact(2)
            .map(|p| nibble(p[0]) << 4 | nibble(p[1])),
    );
}

fn register(index: &Index) {
    index.tokenizers().register(TOKENIZER, analyzer());
}

/// The exact-value fields a signal's index has.
pub(crate) fn term_fields(signal: Signal) -> &'static [TermField] {
    match signal {
        Signal::Logs => &[
            TermField::Service,
            TermField::SeverityText,
            TermField::TraceId,
            TermField::SpanId,
        ],
        Signal::Spans => &[
            TermField::Service,
            TermField::TraceId,
            TermField::SpanId,
            TermField::Operation,
        ],
        Signal::Metrics => &[],
    }
}

/// The column of a signal's record attributes.
pub(crate) fn record_attrs_column(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "log_attributes",
        Signal::Spans => "span_attributes",
        Signal::Metrics => "attributes",
    }
}

/// The columns [`Builder::add`] reads: a segment is indexed from these alone.
pub(crate) fn builder_columns(signal: Signal) -> Vec<&'static str> {
    let mut cols: Vec<&'static str> = term_fields(signal).iter().map(|f| f.column()).collect();
    cols.extend([
        record_attrs_column(signal),
        "resource_attributes",
        signal.time_column(),
    ]);
    match signal {
        Signal::Logs => cols.extend(["body", "severity_number"]),
        Signal::Spans => cols.push("duration_ns"),
        Signal::Metrics => {}
    }
    cols
}

/// Does `signal` get an index?
pub fn indexed(signal: Signal) -> bool {
    matches!(signal, Signal::Logs | Signal::Spans)
}

fn str_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::Corrupt(format!("segment column {name} missing or not text")))
}

fn map_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a MapArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_map_opt())
        .ok_or_else(|| Error::Corrupt(format!("segment column {name} missing or not a map")))
}

/// A batch's attribute map column, its key and value arrays found once:
/// `MapArray::value` slices new arrays for every row it is asked for.
struct Attrs<'a> {
    map: &'a MapArray,
    keys: Option<&'a StringArray>,
    values: Option<&'a StringArray>,
}

impl<'a> Attrs<'a> {
    fn new(map: &'a MapArray) -> Self {
        Attrs {
            map,
            keys: map.keys().as_string_opt::<i32>(),
            values: map.values().as_string_opt::<i32>(),
        }
    }

    /// Key and value of every attribute of row `i` (none if the map's
    /// entries are not text, which no segment Lumen writes has).
    fn each(&self, i: usize, mut f: impl FnMut(&'a str, &'a str)) {
        let (Some(keys), Some(values)) = (self.keys, self.values) else {
            return;
        };
        if self.map.is_null(i) {
            return;
        }
        let offsets = self.map.value_offsets();
        let (Some(&start), Some(&end)) = (offsets.get(i), offsets.get(i + 1)) else {
            return;
        };
        for j in usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0) {
            if !values.is_null(j) {
                f(keys.value(j), values.value(j));
            }
        }
    }
}

/// What joins an attribute's key and value in its term: NUL, which OTLP
/// keys do not contain in practice.
const ATTR_SEP: &str = "\0";

/// Is the attribute `key` = `value` indexed (its term short enough)?
pub fn attr_term_fits(key: &str, value: &str) -> bool {
    key.len() + ATTR_SEP.len() + value.len() <= MAX_ATTR_TERM_BYTES
}

/// The indexed term of one attribute: key, [`ATTR_SEP`], value.
fn attr_term(key: &str, value: &str) -> Option<String> {
    if !attr_term_fits(key, value) {
        return None;
    }
    let mut term = String::with_capacity(key.len() + ATTR_SEP.len() + value.len());
    term.push_str(key);
    term.push_str(ATTR_SEP);
    term.push_str(value);
    Some(term)
}

/// The values of one batch's rows as tantivy indexes them, laid out once
/// per batch: a [`RowDoc`] borrows its row's values from here. Building a
/// `TantivyDocument` per row instead cost an allocation per value (a row of
/// logs has about twenty), and then tantivy copied each value again.
#[derive(Default)]
struct DocBatch {
    /// Text values of every row, one after another.
    text: String,
    /// Byte values (id terms) of every row.
    bytes: Vec<u8>,
    /// Every row's values, in row order.
    values: Vec<(Field, Slot)>,
    /// Where each row's values start in `values`, and one past the last.
    starts: Vec<usize>,
}

/// A value of a [`DocBatch`]: numbers inline, text and bytes as ranges.
#[derive(Debug, Clone, Copy)]
enum Slot {
    U64(u64),
    I64(i64),
    Text(usize, usize),
    Bytes(usize, usize),
}

impl DocBatch {
    fn number(&mut self, field: Field, v: Slot) {
        self.values.push((field, v));
    }

    fn text(&mut self, field: Field, parts: &[&str]) {
        let start = self.text.len();
        for p in parts {
            self.text.push_str(p);
        }
        self.values
            .push((field, Slot::Text(start, self.text.len())));
    }

    /// `v` lowercased as queries lowercase it (`str::to_lowercase`).
    fn lowercase(&mut self, field: Field, v: &str) {
        if v.chars().any(char::is_uppercase) {
            self.text(field, &[&v.to_lowercase()]);
        } else {
            self.text(field, &[v]);
        }
    }

    fn id(&mut self, field: Field, v: &str) {
        let start = self.bytes.len();
        push_id_term(&mut self.bytes, v);
        self.values
            .push((field, Slot::Bytes(start, self.bytes.len())));
    }
}

/// One row of a [`DocBatch`] as a tantivy document.
struct RowDoc {
    batch: std::sync::Arc<DocBatch>,
    row: usize,
}

/// A value of a [`RowDoc`], borrowed from its batch.
#[derive(Debug, Clone, Copy)]
enum RowValue<'a> {
    U64(u64),
    I64(i64),
    Str(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> tantivy::schema::Value<'a> for RowValue<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = std::iter::Empty<(&'a str, Self)>;

    fn as_value(&self) -> tantivy::schema::document::ReferenceValue<'a, Self> {
        use tantivy::schema::document::ReferenceValueLeaf as Leaf;
        tantivy::schema::document::ReferenceValue::Leaf(match *self {
            RowValue::U64(v) => Leaf::U64(v),
            RowValue::I64(v) => Leaf::I64(v),
            RowValue::Str(v) => Leaf::Str(v),
            RowValue::Bytes(v) => Leaf::Bytes(v),
        })
    }
}

/// The values of a [`RowDoc`].
struct RowValues<'a> {
    batch: &'a DocBatch,
    values: std::slice::Iter<'a, (Field, Slot)>,
}

impl<'a> Iterator for RowValues<'a> {
    type Item = (Field, RowValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (field, slot) = self.values.next()?;
        let b = self.batch;
        let value = match *slot {
            Slot::U64(v) => RowValue::U64(v),
            Slot::I64(v) => RowValue::I64(v),
            Slot::Text(s, e) => RowValue::Str(b.text.get(s..e).unwrap_or_default()),
            Slot::Bytes(s, e) => RowValue::Bytes(b.bytes.get(s..e).unwrap_or_default()),
        };
        Some((*field, value))
    }
}

impl tantivy::schema::Document for RowDoc {
    type Value<'a> = RowValue<'a>;
    type FieldsValuesIter<'a> = RowValues<'a>;

    fn iter_fields_and_values(&self) -> RowValues<'_> {
        let b = &*self.batch;
        let range = match (b.starts.get(self.row), b.starts.get(self.row + 1)) {
            (Some(&s), Some(&e)) => s..e,
            _ => 0..0,
        };
        RowValues {
            batch: b,
            values: b.values.get(range).unwrap_or_default().iter(),
        }
    }
}

/// Builds a segment's index from its batches, in the segment's row order.
/// tantivy writes to a scratch directory on disk, not to memory: the index
/// of a large merge is hundreds of MiB (and twice that while its parts are
/// merged), which must not count against the process's memory.
pub(crate) struct Builder {
    signal: Signal,
    schema: Schema,
    scratch: PathBuf,
    fields: Fields,
    /// Finished parts, in row order.
    parts: Vec<(tempfile::TempDir, Index)>,
    /// The part being written. tantivy's `SingleSegmentIndexWriter` indexes
    /// on the calling thread: its `IndexWriter` hands every document over a
    /// channel to an indexing thread, and that hand-off (the channel and the
    /// context switches) was ~20% of indexing's CPU here.
    part: Option<(tempfile::TempDir, SingleSegmentIndexWriter<RowDoc>)>,
    /// The first row of the part being written.
    part_start: u64,
    next_row: u64,
}

impl Builder {
    /// A builder working in new directories under `scratch`.
    pub(crate) fn new(signal: Signal, scratch: &Path) -> Result<Self> {
        let (schema, fields) = schema(signal)?;
        let mut b = Builder {
            signal,
            schema,
            scratch: scratch.to_owned(),
            fields,
            parts: Vec::new(),
            part: None,
            part_start: 0,
            next_row: 0,
        };
        b.part = Some(b.new_part()?);
        Ok(b)
    }

    fn new_part(&self) -> Result<(tempfile::TempDir, SingleSegmentIndexWriter<RowDoc>)> {
        let (dir, mmap) = scratch_directory(&self.scratch, "index-")?;
        let tokenizers = tantivy::tokenizer::TokenizerManager::default();
        tokenizers.register(TOKENIZER, analyzer());
        let writer = Index::builder()
            .schema(self.schema.clone())
            .tokenizers(tokenizers)
            .single_segment_index_writer(mmap, WRITER_MEMORY)?;
        Ok((dir, writer))
    }

    /// Finishes the part being written (if any) and keeps it, unless it is
    /// empty and not the only one.
    fn end_part(&mut self) -> Result<()> {
        if let Some((dir, writer)) = self.part.take()
            && (self.next_row > self.part_start || self.parts.is_empty())
        {
            self.parts.push((dir, writer.finalize()?));
        }
        Ok(())
    }

    /// Adds the next rows of the segment.
    pub(crate) fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let (signal, fields) = (self.signal, &self.fields);
        let mut term_cols: Vec<(Field, &StringArray, TermField)> = Vec::new();
        for (tf, f) in &fields.terms {
            term_cols.push((*f, str_col(batch, tf.column())?, *tf));
        }
        let attrs = Attrs::new(map_col(batch, record_attrs_column(signal))?);
        let resource = Attrs::new(map_col(batch, "resource_attributes")?);
        let body = match fields.body {
            Some(f) => Some((f, str_col(batch, "body")?)),
            None => None,
        };
        let time_col = self.signal.time_column();
        let times = batch
            .column_by_name(time_col)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| Error::Corrupt(format!("{time_col} missing")))?;
        let durations = match fields.duration {
            Some(f) => Some((
                f,
                batch
                    .column_by_name("duration_ns")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or_else(|| Error::Corrupt("duration_ns missing".into()))?,
            )),
            None => None,
        };
        let severity = match fields.severity {
            Some(f) => Some((
                f,
                batch
                    .column_by_name("severity_number")
                    .and_then(|c| c.as_primitive_opt::<Int32Type>())
                    .ok_or_else(|| Error::Corrupt("severity_number missing".into()))?,
            )),
            None => None,
        };
        let n = batch.num_rows();
        let mut d = DocBatch {
            values: Vec::with_capacity(n * 16),
            starts: Vec::with_capacity(n + 1),
            ..DocBatch::default()
        };
        for i in 0..n {
            d.starts.push(d.values.len());
            d.number(fields.row, Slot::U64(self.next_row + i as u64));
            d.number(fields.time, Slot::I64(times.value(i)));
            if let Some((f, col)) = durations {
                d.number(f, Slot::I64(col.value(i)));
            }
            if let Some((f, col)) = body.filter(|(_, c)| c.is_valid(i)) {
                d.text(f, &[col.value(i)]);
            }
            if let Some((f, col)) = severity {
                d.number(f, Slot::I64(i64::from(col.value(i))));
            }
            for (f, col, tf) in &term_cols {
                if col.is_valid(i) {
                    let v = col.value(i);
                    match tf {
                        TermField::SeverityText => d.lowercase(*f, v),
                        tf if tf.is_id() => d.id(*f, v),
                        _ => d.text(*f, &[v]),
                    }
                }
            }
            let mut add_attr = |k: &str, v: &str| {
                if attr_term_fits(k, v) {
                    d.text(fields.attr, &[k, ATTR_SEP, v]);
                }
            };
            attrs.each(i, &mut add_attr);
            resource.each(i, &mut add_attr);
        }
        d.starts.push(d.values.len());
        let d = std::sync::Arc::new(d);
        let Some((_, writer)) = self.part.as_mut() else {
            return Err(Error::Corrupt("index builder used after finishing".into()));
        };
        for row in 0..n {
            writer.add_document(RowDoc {
                batch: std::sync::Arc::clone(&d),
                row,
            })?;
        }
        // Checked per batch: a part overshoots by at most one batch.
        if writer.mem_usage() > WRITER_MEMORY {
            self.cut_part()?;
        }
        self.next_row += n as u64;
        Ok(())
    }

    /// Finishes the part being written and starts another.
    fn cut_part(&mut self) -> Result<()> {
        self.end_part()?;
        self.part = Some(self.new_part()?);
        self.part_start = self.next_row;
        Ok(())
    }

    /// Merges the parts into one tantivy segment (if there are several) and
    /// writes the bundle to `out` (not synced); returns its length. The
    /// scratch directories go.
    pub(crate) fn finish(mut self, out: &Path) -> Result<u64> {
        self.end_part()?;
        tracing::debug!(
            parts = self.parts.len(),
            rows = self.next_row,
            "index built"
        );
        match self.parts.as_slice() {
            [(dir, index)] => Bundle::write(index, dir.path(), out),
            parts => {
                // Merged documents are numbered in the order of the parts
                // given, so a document's id stays its row.
                let indexes: Vec<Index> = parts.iter().map(|(_, i)| i.clone()).collect();
                let (dir, mmap) = scratch_directory(&self.scratch, "merge-")?;
                let merged = tantivy::indexer::merge_indices(&indexes, mmap)?;
                Bundle::write(&merged, dir.path(), out)
            }
        }
    }
}

/// Writes to `out` (not synced) the index of the concatenation of segments
/// whose index bundles are `bundles`, in that order, and returns its length;
/// `None` if an input can't be concatenated (a bundle of an early format or
/// with other than one part): then the caller rebuilds the index.
///
/// tantivy merges the inputs' postings, term dictionaries and fast fields
/// without analysing any text again, and numbers the documents in the order
/// given, so document ids stay rows. This is what makes compaction index each
/// row once: only the first merge of flushed segments builds an index.
pub(crate) fn concat(
    signal: Signal,
    bundles: Vec<FileSlice>,
    scratch: &Path,
    out: &Path,
) -> Result<Option<u64>> {
    let (current, _) = schema(signal)?;
    let mut indexes = Vec::with_capacity(bundles.len());
    for bundle in bundles {
        let index = Bundle::open(bundle)?;
        if index.schema() != current || index.searchable_segment_metas()?.len() != 1 {
            return Ok(None);
        }
        indexes.push(index);
    }
    let (dir, mmap) = scratch_directory(scratch, "concat-")?;
    let merged = tantivy::indexer::merge_indices(&indexes, mmap)?;
    Bundle::write(&merged, dir.path(), out).map(Some)
}

/// A new directory under `scratch` (removed when dropped) for tantivy to
/// write an index in.
fn scratch_directory(scratch: &Path, prefix: &str) -> Result<(tempfile::TempDir, MmapDirectory)> {
    std::fs::create_dir_all(scratch).map_err(|e| Error::io("creating", scratch, e))?;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch)
        .map_err(|e| Error::io("creating a scratch directory in", scratch, e))?;
    let mmap = MmapDirectory::open(dir.path())
        .map_err(|e| Error::Corrupt(format!("opening scratch index directory: {e}")))?;
    Ok((dir, mmap))
}

/// The index bundle object `key`: a local file read on demand, or the
/// downloaded object.
pub(crate) fn bundle(objects: &crate::objects::Objects, key: &str) -> Result<FileSlice> {
    match objects.local_path(key) {
        Some(path) => bundle_file(&path),
        None => Ok(bundle_bytes(&objects.get(key)?.ok_or_else(|| {
            Error::Corrupt(format!("index {key} is missing"))
        })?)),
    }
}

/// A bundle in a local file, read on demand (see [`SegmentIndex::open_file`]).
pub(crate) fn bundle_file(path: &Path) -> Result<FileSlice> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("reading the size of", path, e))?
        .len();
    let len = usize::try_from(len).map_err(|_| Error::Corrupt("index too large".into()))?;
    Ok(FileSlice::new(std::sync::Arc::new(LocalFile { file, len })))
}

/// A bundle held in memory.
pub(crate) fn bundle_bytes(bytes: &[u8]) -> FileSlice {
    FileSlice::from(bytes.to_vec())
}

/// One file holding a whole tantivy index:
///
/// ```text
/// file bytes … | JSON [(name, offset, len)] | u64 LE length of the JSON | b"LUMENIX1"
/// ```
pub(crate) struct Bundle;

const MAGIC: &[u8; 8] = b"LUMENIX1";

impl Bundle {
    /// Concatenates the index files in `dir` into `out`, streaming.
    fn write(index: &Index, dir: &Path, out_path: &Path) -> Result<u64> {
        let mut names: Vec<PathBuf> = vec![PathBuf::from("meta.json")];
        for meta in index.searchable_segment_metas()? {
            use tantivy::index::SegmentComponent as C;
            for c in [
                C::Postings,
                C::Positions,
                C::FastFields,
                C::FieldNorms,
                C::Terms,
                C::Store,
                C::Delete,
            ] {
                names.push(meta.relative_path(c));
            }
        }
        let file =
            std::fs::File::create(out_path).map_err(|e| Error::io("creating", out_path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut table: Vec<(String, u64, u64)> = Vec::with_capacity(names.len());
        let mut offset = 0u64;
        for name in names {
            let path = dir.join(&name);
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // e.g. no deletes
                Err(e) => return Err(Error::io("reading", &path, e)),
            };
            let len =
                std::io::copy(&mut f, &mut out).map_err(|e| Error::io("copying", &path, e))?;
            table.push((name.to_string_lossy().into_owned(), offset, len));
            offset += len;
        }
        let json = serde_json::to_vec(&table)?;
        let mut tail = json.clone();
        tail.extend_from_slice(&(json.len() as u64).to_le_bytes());
        tail.extend_from_slice(MAGIC);
        out.write_all(&tail)
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("writing", out_path, e))?;
        Ok(offset + tail.len() as u64)
    }

    /// Opens the bundle in `file` without copying it: each inner file is a
    /// slice of it, read on demand.
    fn open(file: FileSlice) -> Result<Index> {
        let bad = |why: &str| Error::Corrupt(format!("index bundle: {why}"));
        let read = |range: std::ops::Range<usize>| {
            file.read_bytes_slice(range)
                .map_err(|e| Error::Corrupt(format!("index bundle: {e}")))
        };
        let n = tantivy::HasLen::len(&file);
        if n < 16 {
            return Err(bad("too short"));
        }
        let tail = read(n - 16..n)?;
        if &tail.as_slice()[8..] != MAGIC {
            return Err(bad("bad magic"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&tail.as_slice()[..8]);
        let json_len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad("length"))?;
        let json_start = (n - 16)
            .checked_sub(json_len)
            .ok_or_else(|| bad("length"))?;
        let table: Vec<(String, u64, u64)> =
            serde_json::from_slice(read(json_start..n - 16)?.as_slice())?;
        let mut files = HashMap::with_capacity(table.len());
        for (name, offset, len) in table {
            let start = usize::try_from(offset).map_err(|_| bad("offset"))?;
            let end = offset
                .checked_add(len)
                .and_then(|e| usize::try_from(e).ok())
                .filter(|&e| e <= json_start)
                .ok_or_else(|| bad("file out of range"))?;
            files.insert(PathBuf::from(name), file.slice(start..end));
        }
        let index = Index::open(BundleDirectory {
            files: std::sync::Arc::new(files),
        })?;
        register(&index);
        Ok(index)
    }
}

/// The files of one bundle, read-only, as a tantivy directory.
#[derive(Debug, Clone)]
struct BundleDirectory {
    files: std::sync::Arc<HashMap<PathBuf, FileSlice>>,
}

impl BundleDirectory {
    fn file(&self, path: &Path) -> Result<&FileSlice, OpenReadError> {
        self.files
            .get(path)
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_owned()))
    }
}

fn read_only() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "index bundles are read-only",
    )
}

impl Directory for BundleDirectory {
    fn get_file_handle(
        &self,
        path: &Path,
    ) -> Result<std::sync::Arc<dyn FileHandle>, OpenReadError> {
        Ok(std::sync::Arc::new(self.file(path)?.clone()))
    }

    fn open_read(&self, path: &Path) -> Result<FileSlice, OpenReadError> {
        Ok(self.file(path)?.clone())
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: std::sync::Arc::new(read_only()),
            filepath: path.to_owned(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.files.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: std::sync::Arc::new(read_only()),
            filepath: path.to_owned(),
        })
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let slice = self.file(path)?;
        slice
            .read_bytes()
            .map(|b| b.as_slice().to_vec())
            .map_err(|io_error| OpenReadError::IoError {
                io_error: std::sync::Arc::new(io_error),
                filepath: path.to_owned(),
            })
    }

    fn atomic_write(&self, _path: &Path, _data: &[u8]) -> std::io::Result<()> {
        Err(read_only())
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Nothing writes a bundle, so readers need no lock.
    fn acquire_lock(
        &self,
        _lock: &tantivy::directory::Lock,
    ) -> Result<tantivy::directory::DirectoryLock, tantivy::directory::error::LockError> {
        Ok(tantivy::directory::DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _cb: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}

/// A local bundle file read with positioned reads, so an opened index costs
/// no memory beyond what queries touch (the page cache does the caching).
#[derive(Debug)]
struct LocalFile {
    file: std::fs::File,
    len: usize,
}

impl tantivy::HasLen for LocalFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for LocalFile {
    fn read_bytes(&self, range: std::ops::Range<usize>) -> std::io::Result<OwnedBytes> {
        use std::os::unix::fs::FileExt as _;
        let end = range.end.min(self.len);
        if range.start >= end {
            return Ok(OwnedBytes::empty());
        }
        let mut buf = vec![0u8; end - range.start];
        self.file.read_exact_at(&mut buf, range.start as u64)?;
        Ok(OwnedBytes::new(buf))
    }
}

/// An opened segment index.
pub struct SegmentIndex {
    index: Index,
    reader: tantivy::IndexReader,
    fields: Fields,
    /// The index has the `time` (and spans' `duration`) fast fields.
    timed: bool,
    /// One tantivy segment, whose document ids are the segment's rows: every
    /// bundle is written so ([`Builder::finish`] merges its parts in row
    /// order, [`concat`] appends whole indexes in row order). Only bundles of
    /// an early version may have several; their rows come from the `row` field.
    doc_is_row: bool,
}

impl SegmentIndex {
    /// Opens an index bundle of a segment of `signal` held in memory.
    pub fn open(signal: Signal, bundle: &[u8]) -> Result<Self> {
        Self::open_slice(signal, bundle_bytes(bundle))
    }

    /// Opens the index bundle in a local file, reading it on demand.
    pub fn open_file(signal: Signal, path: &Path) -> Result<Self> {
        Self::open_slice(signal, bundle_file(path)?)
    }

    pub(crate) fn open_slice(signal: Signal, bundle: FileSlice) -> Result<Self> {
        let index = Bundle::open(bundle)?;
        let (_, fields) = schema(signal)?;
        let timed = index.schema().get_field("time").is_ok();
        let reader: tantivy::IndexReader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()?;
        let doc_is_row = reader.searcher().segment_readers().len() == 1;
        Ok(SegmentIndex {
            index,
            reader,
            fields,
            timed,
            doc_is_row,
        })
    }

    /// Rows (positions in the segment's Parquet file) matching `q`, ascending.
    pub fn search(&self, q: &Query) -> Result<Vec<u32>> {
        Ok(self.eval(q)?.rows())
    }

    /// Rows matching `q` with their time (and spans' duration), read from
    /// the index's fast fields, in no particular order; `None` for an index
    /// written before it kept them (then read them from Parquet).
    /// Whether the index keeps times (see [`SegmentIndex::search_timed`]).
    pub fn has_times(&self) -> bool {
        self.timed
    }

    pub fn search_timed(&self, q: &Query) -> Result<Option<Vec<TimedRow>>> {
        let mut out = Vec::new();
        Ok(self.for_each_timed(q, |t| out.push(t))?.then_some(out))
    }

    /// Calls `f` with every row matching `q` and its time (and duration),
    /// without collecting them; `false` (and no calls) for an index written
    /// before it kept times.
    pub fn for_each_timed(&self, q: &Query, mut f: impl FnMut(TimedRow)) -> Result<bool> {
        if !self.timed {
            return Ok(false);
        }
        let set = self.eval(q)?;
        let searcher = self.reader.searcher();
        for seg in searcher.segment_readers() {
            let ff = seg.fast_fields();
            let time = ff.i64("time")?;
            let duration = match self.fields.duration {
                Some(_) => Some(ff.i64("duration")?),
                None => None,
            };
            let timed = |doc: DocId, row: u32| TimedRow {
                row,
                time: time.first(doc).unwrap_or(i64::MIN),
                duration: duration.as_ref().and_then(|d| d.first(doc)).unwrap_or(0),
            };
            if self.doc_is_row {
                set.for_each(|r| f(timed(r, r)));
            } else {
                let rows = ff.u64("row")?;
                for doc in 0..seg.max_doc() {
                    if let Some(row) = rows.first(doc).and_then(|r| u32::try_from(r).ok())
                        && set.contains(row)
                    {
                        f(timed(doc, row));
                    }
                }
            }
        }
        Ok(true)
    }

    /// Bytes of the index per field and part (`terms`, `postings`,
    /// `positions`, `fast`), for `lumen inspect`.
    pub fn space_usage(&self) -> Result<Vec<(String, &'static str, u64)>> {
        let usage = self
            .reader
            .searcher()
            .space_usage()
            .map_err(tantivy::TantivyError::from)?;
        let mut out = Vec::new();
        for seg in usage.segments() {
            for (part, per_field) in [
                ("terms", seg.termdict()),
                ("postings", seg.postings()),
                ("positions", seg.positions()),
                ("fast", seg.fast_fields()),
            ] {
                for f in per_field.fields() {
                    out.push((f.field_name().to_owned(), part, f.total().get_bytes()));
                }
            }
        }
        Ok(out)
    }

    /// Number of rows (documents) in the segment.
    pub fn num_rows(&self) -> u32 {
        self.reader.searcher().num_docs() as u32
    }

    /// Leaves are answered by tantivy; AND/OR/NOT are combined on row
    /// bitsets (a segment has at most a few hundred thousand rows, so a
    /// bitset is a few KiB, and tantivy's exclusion of phrase scorers trips
    /// an assertion in 0.27).
    fn eval(&self, q: &Query) -> Result<RowSet> {
        let n = self.num_rows();
        Ok(match q {
            Query::All => RowSet::full(n),
            Query::And(qs) => {
                let mut acc = RowSet::full(n);
                for q in qs {
                    acc.and(&self.eval(q)?);
                }
                acc
            }
            Query::Or(qs) => {
                let mut acc = RowSet::empty(n);
                for q in qs {
                    acc.or(&self.eval(q)?);
                }
                acc
            }
            Query::Not(q) => {
                let mut set = self.eval(q)?;
                set.not();
                set
            }
            leaf => match self.leaf(leaf) {
                None => RowSet::empty(n),
                Some(query) => self.reader.searcher().search(
                    &*query,
                    &RowCollector {
                        rows: n,
                        doc_is_row: self.doc_is_row,
                    },
                )?,
            },
        })
    }

    /// The tantivy query of a leaf; `None` when it cannot match anything.
    fn leaf(&self, q: &Query) -> Option<Box<dyn TQuery>> {
        let f = &self.fields;
        match q {
            Query::Text(text) => {
                let body = f.body?;
                let mut analyzer = self
                    .index
                    .tokenizers()
                    .get(TOKENIZER)
                    .unwrap_or_else(analyzer);
                let mut stream = analyzer.token_stream(text);
                let mut terms: Vec<Term> = Vec::new();
                while let Some(t) = stream.next() {
                    terms.push(Term::from_field_text(body, &t.text));
                }
                match terms.len() {
                    0 => None,
                    1 => Some(Box::new(TermQuery::new(
                        terms.remove(0),
                        IndexRecordOption::Basic,
                    ))),
                    _ => Some(Box::new(PhraseQuery::new(terms))),
                }
            }
            Query::Term(field, value) => {
                let (tf, field) = f.terms.iter().find(|(tf, _)| tf == field)?;
                let term = match tf {
                    TermField::SeverityText => Term::from_field_text(*field, &value.to_lowercase()),
                    tf if tf.is_id() => Term::from_field_bytes(*field, &id_term(value)),
                    _ => Term::from_field_text(*field, value),
                };
                Some(Box::new(TermQuery::new(term, IndexRecordOption::Basic)))
            }
            Query::Attr { key, value } => Some(Box::new(TermQuery::new(
                Term::from_field_text(f.attr, &attr_term(key, value)?),
                IndexRecordOption::Basic,
            ))),
            Query::TextWildcard(pattern) => {
                let body = f.body?;
                regex(&glob_regex(&pattern.to_lowercase()), body)
            }
            Query::TermWildcard(field, pattern) => {
                let (tf, field) = f.terms.iter().find(|(tf, _)| tf == field)?;
                match tf {
                    tf if tf.is_id() => None,
                    TermField::SeverityText => regex(&glob_regex(&pattern.to_lowercase()), *field),
                    _ => regex(&glob_regex(pattern), *field),
                }
            }
            Query::AttrWildcard { key, pattern } => {
                let mut re = String::new();
                key.chars().for_each(|c| push_literal(&mut re, c));
                re.push_str("\\x{0}");
                re.push_str(&glob_regex(pattern));
                regex(&re, f.attr)
            }
            Query::Severity { min, max } => {
                let field = f.severity.filter(|_| min <= max)?;
                Some(Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_i64(field, i64::from(*min))),
                    Bound::Included(Term::from_field_i64(field, i64::from(*max))),
                )))
            }
            Query::All | Query::And(_) | Query::Or(_) | Query::Not(_) => Some(Box::new(AllQuery)),
        }
    }
}

/// A regular-expression query over a field's terms. Patterns come from
/// [`glob_regex`], so they always compile; if one did not, nothing matches.
fn regex(pattern: &str, field: Field) -> Option<Box<dyn TQuery>> {
    match tantivy::query::RegexQuery::from_pattern(pattern, field) {
        Ok(q) => Some(Box::new(q)),
        Err(e) => {
            tracing::warn!(error = %e, "wildcard pattern did not compile");
            None
        }
    }
}

/// A set of rows of one segment.
#[derive(Debug, Clone)]
struct RowSet {
    words: Vec<u64>,
    len: u32,
}

impl RowSet {
    fn empty(len: u32) -> Self {
        RowSet {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
        }
    }

    fn full(len: u32) -> Self {
        let mut s = RowSet::empty(len);
        s.not();
        s
    }

    fn insert(&mut self, row: u32) {
        if let Some(w) = self.words.get_mut(row as usize / 64) {
            *w |= 1 << (row % 64);
        }
    }

    fn contains(&self, row: u32) -> bool {
        self.words
            .get(row as usize / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    fn and(&mut self, other: &RowSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a &= b);
    }

    fn or(&mut self, other: &RowSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a |= b);
    }

    fn not(&mut self) {
        self.words.iter_mut().for_each(|w| *w = !*w);
        // Clear the bits past the last row.
        let tail = self.len % 64;
        if let Some(last) = self.words.last_mut().filter(|_| tail != 0) {
            *last &= (1u64 << tail) - 1;
        }
    }

    fn rows(&self) -> Vec<u32> {
        let mut out = Vec::new();
        self.for_each(|r| out.push(r));
        out
    }

    fn for_each(&self, mut f: impl FnMut(u32)) {
        for (i, w) in self.words.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                f(i as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
    }
}

/// Collects the rows of every match into a [`RowSet`]: their document ids,
/// or for an early multi-segment bundle their `row` fast field.
struct RowCollector {
    rows: u32,
    doc_is_row: bool,
}

struct RowSegmentCollector {
    column: Option<tantivy::columnar::Column<u64>>,
    set: RowSet,
}

impl Collector for RowCollector {
    type Fruit = RowSet;
    type Child = RowSegmentCollector;

    fn for_segment(&self, _ord: u32, segment: &SegmentReader) -> tantivy::Result<Self::Child> {
        let column = if self.doc_is_row {
            None
        } else {
            Some(segment.fast_fields().u64("row")?)
        };
        Ok(RowSegmentCollector {
            column,
            set: RowSet::empty(self.rows),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<RowSet>) -> tantivy::Result<RowSet> {
        let mut acc = RowSet::empty(self.rows);
        for f in &fruits {
            acc.or(f);
        }
        Ok(acc)
    }
}

impl SegmentCollector for RowSegmentCollector {
    type Fruit = RowSet;

    fn collect(&mut self, doc: DocId, _score: tantivy::Score) {
        match &self.column {
            None => self.set.insert(doc),
            Some(column) => {
                if let Some(row) = column.first(doc) {
                    self.set.insert(row as u32);
                }
            }
        }
    }

    fn harvest(self) -> RowSet {
        self.set
    }
}

/// The values of one row that queries look at, for brute-force evaluation.
#[derive(Debug, Clone, Default)]
pub struct RowView {
    pub body: Option<String>,
    pub severity_number: i32,
    pub terms: HashMap<&'static str, String>,
    /// Record and resource attributes.
    pub attrs: Vec<(String, String)>,
}

/// Evaluates `q` against one row by brute force: the reference the index is
/// tested against.
pub fn matches_row(q: &Query, row: &RowView) -> bool {
    match q {
        Query::All => true,
        Query::Text(text) => {
            // Too-long tokens drop out of a query; in the body they keep their place.
            let want: Vec<Option<String>> =
                tokens(text).into_iter().filter(Option::is_some).collect();
            if want.is_empty() {
                return false;
            }
            let have = row.body.as_deref().map(tokens).unwrap_or_default();
            have.windows(want.len()).any(|w| w == want.as_slice())
        }
        Query::Term(field, value) => row.terms.get(field.name()).is_some_and(|v| {
            if *field == TermField::SeverityText {
                v.to_lowercase() == value.to_lowercase()
            } else {
                v == value
            }
        }),
        Query::Attr { key, value } => {
            attr_term_fits(key, value) && row.attrs.iter().any(|(k, v)| k == key && v == value)
        }
        Query::TextWildcard(pattern) => {
            let pattern = pattern.to_lowercase();
            row.body
                .as_deref()
                .is_some_and(|b| tokens(b).iter().flatten().any(|t| glob_match(&pattern, t)))
        }
        Query::TermWildcard(field, pattern) => {
            !field.is_id()
                && row.terms.get(field.name()).is_some_and(|v| {
                    if *field == TermField::SeverityText {
                        glob_match(&pattern.to_lowercase(), &v.to_lowercase())
                    } else {
                        glob_match(pattern, v)
                    }
                })
        }
        Query::AttrWildcard { key, pattern } => row
            .attrs
            .iter()
            .any(|(k, v)| k == key && attr_term_fits(k, v) && glob_match(pattern, v)),
        Query::Severity { min, max } => (*min..=*max).contains(&row.severity_number),
        Query::And(qs) => qs.iter().all(|q| matches_row(q, row)),
        Query::Or(qs) => qs.iter().any(|q| matches_row(q, row)),
        Query::Not(q) => !matches_row(q, row),
    }
}

/// The [`RowView`]s of a batch of `signal` (logs or spans): the brute-force
/// reference the property test holds the index and [`crate::scan::Matcher`]
/// (which scans without these copies) to.
pub fn row_views(signal: Signal, batch: &RecordBatch) -> Result<Vec<RowView>> {
    if !indexed(signal) {
        return Err(Error::Corrupt("metrics have no search".into()));
    }
    let mut cols: Vec<(&'static str, &StringArray)> = Vec::new();
    for tf in term_fields(signal) {
        cols.push((tf.name(), str_col(batch, tf.column())?));
    }
    let record_attrs = Attrs::new(map_col(batch, record_attrs_column(signal))?);
    let resource = Attrs::new(map_col(batch, "resource_attributes")?);
    let body = if signal == Signal::Logs {
        Some(str_col(batch, "body")?)
    } else {
        None
    };
    let severity = batch
        .column_by_name("severity_number")
        .and_then(|c| c.as_primitive_opt::<Int32Type>());
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut row = RowView {
            body: body
                .filter(|b| b.is_valid(i))
                .map(|b| b.value(i).to_owned()),
            severity_number: severity.map_or(0, |s| s.value(i)),
            ..RowView::default()
        };
        for (name, col) in &cols {
            if col.is_valid(i) {
                row.terms.insert(name, col.value(i).to_owned());
            }
        }
        let mut push = |k: &str, v: &str| row.attrs.push((k.to_owned(), v.to_owned()));
        record_attrs.each(i, &mut push);
        resource.each(i, &mut push);
        out.push(row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_terms_are_bytes_for_hex_and_never_collide_with_other_text() {
        assert_eq!(id_term("0aff"), vec![0, 0x0a, 0xff]);
        assert_eq!(id_term(""), vec![0]);
        // Not lowercase hex: kept as text, under another tag, so it cannot
        // equal the bytes of some hex id (an exact-match scan would not).
        assert_eq!(id_term("0AFF"), vec![1, b'0', b'A', b'F', b'F']);
        assert_eq!(id_term("abc"), vec![1, b'a', b'b', b'c']);
        assert_ne!(id_term("6162"), id_term("ab"));
        assert_ne!(id_term("zz"), id_term("7a7a"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("err*", "error"));
        assert!(glob_match("*or", "error"));
        assert!(glob_match("e?ror", "error"));
        assert!(glob_match("*r*o*", "error"));
        assert!(!glob_match("err", "error"));
        assert!(!glob_match("e?", "err"));
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert_eq!(glob_regex("a.b*"), "a\\x{2e}b.*");
    }

    /// A segment indexed in several parts (as large rewrites are) becomes
    /// one tantivy segment whose document ids are still the rows.
    #[test]
    fn an_index_built_in_many_parts_merges_into_one_with_every_row() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let mut b = Builder::new(Signal::Logs, scratch.path()).expect("builder");
        let parts = 24usize;
        let per_part = 200usize;
        for p in 0..parts {
            let bodies: Vec<String> = (0..per_part)
                .map(|i| format!("part{p} line{i} common"))
                .collect();
            let rows: Vec<(&str, i64, &str)> = bodies
                .iter()
                .enumerate()
                .map(|(i, body)| ("svc", i as i64, body.as_str()))
                .collect();
            b.add(&crate::partition_tests::rows(&rows)).expect("add");
            b.cut_part().expect("cut");
        }
        assert_eq!(b.parts.len(), parts);
        let out = scratch.path().join("bundle.idx");
        let len = b.finish(&out).expect("finish merges every part");
        let bytes = std::fs::read(&out).expect("read bundle");
        assert_eq!(bytes.len() as u64, len);
        let index = SegmentIndex::open(Signal::Logs, &bytes).expect("open");
        assert_eq!(
            index.reader.searcher().segment_readers().len(),
            1,
            "one part left"
        );
        assert_eq!(index.num_rows() as usize, parts * per_part);
        let all = index.search(&Query::Text("common".into())).expect("search");
        assert_eq!(all, (0..(parts * per_part) as u32).collect::<Vec<_>>());
        // Row numbers survive the merge: part p's line i is row p * per_part + i.
        for p in [0, 7, parts - 1] {
            let rows = index
                .search(&Query::Text(format!("part{p} line3")))
                .expect("search");
            assert_eq!(rows, vec![(p * per_part + 3) as u32]);
        }
        // Parts are merged in row order, so documents are numbered by row and
        // the times come straight from the fast fields.
        let searcher = index.reader.searcher();
        let seg = &searcher.segment_readers()[0];
        let row_col = seg.fast_fields().u64("row").expect("row column");
        assert!((0..seg.max_doc()).all(|d| row_col.first(d) == Some(u64::from(d))));
        let mut timed = index
            .search_timed(&Query::Text("line5".into()))
            .expect("search")
            .expect("times kept");
        timed.sort_by_key(|t| t.row);
        assert_eq!(timed.len(), parts);
        for (p, t) in timed.iter().enumerate() {
            assert_eq!(t.row as usize, p * per_part + 5);
            assert_eq!(t.time, 5, "the test rows' timestamp is their line number");
        }
    }
}
