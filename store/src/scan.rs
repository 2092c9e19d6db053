//! Queries evaluated by scan, straight over a batch's columns: how records
//! not indexed yet (the buffer, fresh segments, the live tail) are searched.
//!
//! [`index::matches_row`] is the reference semantics, but it needs a
//! [`index::RowView`] per row, which copies every string of the row. A
//! [`Matcher`] compiles the query once (tokens, lowercased patterns, which
//! columns it reads) and then looks at the borrowed column values of a row,
//! only those its query names, with `And`/`Or` short-circuiting. A text term
//! is first looked for as a substring of the (ASCII-lowercased) body, which
//! rejects most rows without tokenizing them. The property test checks it
//! against `matches_row`.

use datafusion::arrow::array::{Array, AsArray, Int32Array, MapArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Int32Type;

use crate::index::{self, MAX_TOKEN_BYTES, Query, TermField};
use crate::schema::Signal;
use crate::{Error, Result};

/// A query compiled for one signal's rows.
#[derive(Debug, Clone)]
pub struct Matcher {
    signal: Signal,
    node: Node,
    columns: Vec<&'static str>,
}

#[derive(Debug, Clone)]
enum Node {
    All,
    Nothing,
    /// Lowercased tokens, consecutive in the body.
    Text(Vec<String>),
    Term(TermField, String),
    /// `severity_text`, compared case-insensitively: the value lowercased.
    TermNoCase(String),
    Attr(String, String),
    /// A lowercased glob over the body's tokens.
    TextWildcard(String),
    TermWildcard(TermField, String),
    /// `severity_text` glob, case-insensitive: the pattern lowercased.
    TermWildcardNoCase(String),
    AttrWildcard(String, String),
    Severity(i32, i32),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

impl Matcher {
    pub fn new(signal: Signal, q: &Query) -> Matcher {
        let mut columns = Vec::new();
        let node = compile(signal, q, &mut columns);
        columns.sort_unstable();
        columns.dedup();
        Matcher {
            signal,
            node,
            columns,
        }
    }

    /// Whether every row matches (no column need be read).
    pub fn is_all(&self) -> bool {
        matches!(self.node, Node::All)
    }

    /// The columns the query looks at: all a scan has to read.
    pub fn columns(&self) -> &[&'static str] {
        &self.columns
    }

    /// Whether row `i` of `batch` matches.
    pub fn matches(&self, cols: &Columns<'_>, i: usize, scratch: &mut String) -> bool {
        eval(&self.node, &BatchRow { cols, i }, scratch)
    }

    /// The rows of `batch` (holding at least [`Matcher::columns`]) that match.
    pub fn matching_rows(&self, batch: &RecordBatch) -> Result<Vec<u32>> {
        let n = batch.num_rows() as u32;
        if self.is_all() {
            return Ok((0..n).collect());
        }
        let cols = self.bind(batch)?;
        let mut scratch = String::new();
        Ok((0..n)
            .filter(|&i| self.matches(&cols, i as usize, &mut scratch))
            .collect())
    }

    /// The columns of `batch` the query reads.
    pub fn bind<'a>(&self, batch: &'a RecordBatch) -> Result<Columns<'a>> {
        let str_col = |name: &str| -> Result<Option<&'a StringArray>> {
            if !self.columns.contains(&name) {
                return Ok(None);
            }
            match batch.column_by_name(name) {
                None => Ok(None),
                Some(c) => c.as_string_opt::<i32>().map(Some).ok_or_else(|| {
                    Error::Corrupt(format!("column {name} is not text but {}", c.data_type()))
                }),
            }
        };
        let map_col = |name: &str| -> Result<Option<&'a MapArray>> {
            if !self.columns.contains(&name) {
                return Ok(None);
            }
            match batch.column_by_name(name) {
                None => Ok(None),
                Some(c) => c.as_map_opt().map(Some).ok_or_else(|| {
                    Error::Corrupt(format!("column {name} is not a map but {}", c.data_type()))
                }),
            }
        };
        let mut terms = [None; TERM_FIELDS];
        for &f in index::term_fields(self.signal) {
            terms[f as usize] = str_col(f.column())?;
        }
        Ok(Columns {
            body: str_col("body")?,
            severity: batch
                .column_by_name("severity_number")
                .filter(|_| self.columns.contains(&"severity_number"))
                .and_then(|c| c.as_primitive_opt::<Int32Type>()),
            terms,
            attrs: [
                map_col(index::record_attrs_column(self.signal))?,
                map_col("resource_attributes")?,
            ],
        })
    }

    /// Whether a text matches as if it were a log body (the SQL function
    /// `matches()`): fields other than the body are absent.
    pub fn matches_body(&self, text: &str, scratch: &mut String) -> bool {
        eval(&self.node, &TextRow(text), scratch)
    }
}

const TERM_FIELDS: usize = 5;

/// The borrowed columns of one batch a [`Matcher`] reads.
pub struct Columns<'a> {
    body: Option<&'a StringArray>,
    severity: Option<&'a Int32Array>,
    terms: [Option<&'a StringArray>; TERM_FIELDS],
    /// Record, then resource attributes.
    attrs: [Option<&'a MapArray>; 2],
}

fn compile(signal: Signal, q: &Query, columns: &mut Vec<&'static str>) -> Node {
    let has_body = signal == Signal::Logs;
    let has_term = |f: TermField| index::term_fields(signal).contains(&f);
    let attrs = |columns: &mut Vec<&'static str>| {
        columns.push(index::record_attrs_column(signal));
        columns.push("resource_attributes");
    };
    match q {
        Query::All => Node::All,
        Query::Text(text) => {
            let want: Vec<String> = index::tokens(text).into_iter().flatten().collect();
            if want.is_empty() || !has_body {
                return Node::Nothing;
            }
            columns.push("body");
            Node::Text(want)
        }
        Query::Term(field, value) => {
            if !has_term(*field) {
                return Node::Nothing;
            }
            columns.push(field.column());
            if *field == TermField::SeverityText {
                Node::TermNoCase(value.to_lowercase())
            } else {
                Node::Term(*field, value.clone())
            }
        }
        Query::Attr { key, value } => {
            if !index::attr_term_fits(key, value) {
                return Node::Nothing;
            }
            attrs(columns);
            Node::Attr(key.clone(), value.clone())
        }
        Query::TextWildcard(pattern) => {
            if !has_body {
                return Node::Nothing;
            }
            columns.push("body");
            Node::TextWildcard(pattern.to_lowercase())
        }
        Query::TermWildcard(field, pattern) => {
            if field.is_id() || !has_term(*field) {
                return Node::Nothing;
            }
            columns.push(field.column());
            if *field == TermField::SeverityText {
                Node::TermWildcardNoCase(pattern.to_lowercase())
            } else {
                Node::TermWildcard(*field, pattern.clone())
            }
        }
        Query::AttrWildcard { key, pattern } => {
            attrs(columns);
            Node::AttrWildcard(key.clone(), pattern.clone())
        }
        Query::Severity { min, max } => {
            if signal == Signal::Logs {
                columns.push("severity_number");
            }
            Node::Severity(*min, *max)
        }
        Query::And(qs) => Node::And(qs.iter().map(|q| compile(signal, q, columns)).collect()),
        Query::Or(qs) => Node::Or(qs.iter().map(|q| compile(signal, q, columns)).collect()),
        Query::Not(q) => Node::Not(Box::new(compile(signal, q, columns))),
    }
}

/// The values of one row, as a [`Node`] reads them.
trait Row {
    fn body(&self) -> Option<&str>;
    fn term(&self, field: TermField) -> Option<&str>;
    fn severity(&self) -> i32;
    /// Whether any attribute (record or resource) satisfies `f`.
    fn any_attr(&self, f: &mut dyn FnMut(&str, &str) -> bool) -> bool;
}

struct BatchRow<'a, 'b> {
    cols: &'b Columns<'a>,
    i: usize,
}

fn value(col: Option<&StringArray>, i: usize) -> Option<&str> {
    col.filter(|c| c.is_valid(i)).map(|c| c.value(i))
}

impl Row for BatchRow<'_, '_> {
    fn body(&self) -> Option<&str> {
        value(self.cols.body, self.i)
    }

    fn term(&self, field: TermField) -> Option<&str> {
        value(self.cols.terms[field as usize], self.i)
    }

    fn severity(&self) -> i32 {
        self.cols.severity.map_or(0, |s| s.value(self.i))
    }

    fn any_attr(&self, f: &mut dyn FnMut(&str, &str) -> bool) -> bool {
        self.cols.attrs.iter().flatten().any(|map| {
            if map.is_null(self.i) {
                return false;
            }
            let (Some(keys), Some(values)) = (
                map.keys().as_string_opt::<i32>(),
                map.values().as_string_opt::<i32>(),
            ) else {
                return false;
            };
            let offsets = map.value_offsets();
            let (lo, hi) = (offsets[self.i] as usize, offsets[self.i + 1] as usize);
            (lo..hi).any(|j| values.is_valid(j) && f(keys.value(j), values.value(j)))
        })
    }
}

/// A text standing in for a log body, nothing else.
struct TextRow<'a>(&'a str);

impl Row for TextRow<'_> {
    fn body(&self) -> Option<&str> {
        Some(self.0)
    }

    fn term(&self, _field: TermField) -> Option<&str> {
        None
    }

    fn severity(&self) -> i32 {
        0
    }

    fn any_attr(&self, _f: &mut dyn FnMut(&str, &str) -> bool) -> bool {
        false
    }
}

fn eval(node: &Node, row: &dyn Row, scratch: &mut String) -> bool {
    match node {
        Node::All => true,
        Node::Nothing => false,
        Node::Text(want) => row.body().is_some_and(|b| text_matches(want, b, scratch)),
        Node::Term(f, value) => row.term(*f) == Some(value.as_str()),
        Node::TermNoCase(lower) => row
            .term(TermField::SeverityText)
            .is_some_and(|v| lower_eq(v, lower)),
        Node::Attr(key, value) => row.any_attr(&mut |k, v| k == key && v == value),
        Node::TextWildcard(pattern) => row.body().is_some_and(|b| {
            body_tokens(b).any(|t| {
                t.len() <= MAX_TOKEN_BYTES
                    && index::glob_match(
                        pattern,
                        &t.chars().flat_map(char::to_lowercase).collect::<String>(),
                    )
            })
        }),
        Node::TermWildcard(f, pattern) => {
            row.term(*f).is_some_and(|v| index::glob_match(pattern, v))
        }
        Node::TermWildcardNoCase(pattern) => row
            .term(TermField::SeverityText)
            .is_some_and(|v| index::glob_match(pattern, &v.to_lowercase())),
        Node::AttrWildcard(key, pattern) => row.any_attr(&mut |k, v| {
            k == key && index::attr_term_fits(k, v) && index::glob_match(pattern, v)
        }),
        Node::Severity(min, max) => (*min..=*max).contains(&row.severity()),
        Node::And(nodes) => nodes.iter().all(|n| eval(n, row, scratch)),
        Node::Or(nodes) => nodes.iter().any(|n| eval(n, row, scratch)),
        Node::Not(n) => !eval(n, row, scratch),
    }
}

/// `v.to_lowercase() == lower`, without allocating for ASCII.
fn lower_eq(v: &str, lower: &str) -> bool {
    if v.is_ascii() && lower.is_ascii() {
        v.eq_ignore_ascii_case(lower)
    } else {
        v.to_lowercase() == lower
    }
}

fn body_tokens(body: &str) -> impl Iterator<Item = &str> {
    body.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// Whether a body token is, as indexed, the (lowercased) query token `want`.
fn token_eq(token: &str, want: &str) -> bool {
    token.len() <= MAX_TOKEN_BYTES && token.chars().flat_map(char::to_lowercase).eq(want.chars())
}

/// Whether the body's tokens contain `want` consecutively.
fn text_matches(want: &[String], body: &str, scratch: &mut String) -> bool {
    // An ASCII body's lowercased tokens are substrings of its lowercased
    // text: a missing one rules the row out without tokenizing it.
    if body.is_ascii() {
        scratch.clear();
        scratch.push_str(body);
        scratch.make_ascii_lowercase();
        if !want
            .iter()
            .all(|w| w.is_ascii() && scratch.contains(w.as_str()))
        {
            return false;
        }
    }
    if let [one] = want {
        return body_tokens(body).any(|t| token_eq(t, one));
    }
    let have: Vec<&str> = body_tokens(body).collect();
    have.windows(want.len())
        .any(|w| w.iter().zip(want).all(|(t, q)| token_eq(t, q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(q: Query, body: &str) -> bool {
        Matcher::new(Signal::Logs, &q).matches_body(body, &mut String::new())
    }

    #[test]
    fn text_matches_tokens_and_phrases_case_insensitively() {
        let t = |s: &str| Query::Text(s.into());
        assert!(text(t("refused"), "Connection REFUSED (111)"));
        assert!(text(
            t("connection refused"),
            "upstream: Connection refused"
        ));
        assert!(!text(t("connection refused"), "refused connection"));
        // A substring that is not a whole token.
        assert!(!text(t("fuse"), "connection refused"));
        assert!(!text(t("..."), "anything"));
        // Non-ASCII bodies skip the prefilter and lowercase per character.
        assert!(text(t("café"), "Le CAFÉ est fermé"));
        assert!(text(t("k"), "\u{212a} kelvin"));
        // Too-long tokens are not indexed, so never match.
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(!text(t(&long), &long));
    }

    #[test]
    fn wildcards_and_negation() {
        assert!(text(Query::TextWildcard("Conn*".into()), "a CONNECTION b"));
        assert!(!text(Query::TextWildcard("conn".into()), "a connection b"));
        assert!(text(
            Query::Not(Box::new(Query::Text("error".into()))),
            "all good"
        ));
        assert!(!text(Query::Term(TermField::Service, "x".into()), "x"));
    }
}
