//! The log search language (documented in the README), parsed into the
//! store's [`Query`]:
//!
//! ```text
//! query    := or
//! or       := and ("OR" and)*
//! and      := unary (["AND"] unary)*          adjacent terms are ANDed
//! unary    := ("NOT" | "-") unary | primary
//! primary  := "(" or ")" | field | phrase | word
//! field    := name (":" | "=" | ">=" | ">" | "<=" | "<") (phrase | word)
//! name     := service | severity | level | trace_id | span_id | operation
//!           | body | attr.<key>
//! ```
//!
//! Words match a token of the body (case-insensitively); a word with
//! punctuation (`timed-out`) is the phrase of its tokens. `*` and `?` are
//! wildcards within one token or value. Comparisons are for severity only.

use lumen_store::index::{Query, TermField};

/// A syntax error: where (byte offset into the query) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "syntax error at position {}: {}",
            self.position, self.message
        )
    }
}

/// Which signal a query is for: spans have no body or severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Logs,
    Spans,
}

/// Parses `text`; the empty query (or only whitespace) is [`Query::All`].
pub fn parse(text: &str, target: Target) -> Result<Query, SyntaxError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        at: 0,
        end: text.len(),
        target,
        depth: 0,
    };
    if p.tokens.is_empty() {
        return Ok(Query::All);
    }
    let q = p.or()?;
    match p.peek() {
        None => Ok(q),
        Some(t) if t.kind == Kind::Close => Err(SyntaxError {
            position: t.pos,
            message: "this ')' has no matching '('".into(),
        }),
        Some(t) => Err(p.error_at(t.pos, "an operator or the end of the query")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word(String),
    Phrase(String),
    Open,
    Close,
    /// `-` directly before a term.
    Minus,
    /// `name` followed by an operator: `service:`, `severity>=`.
    Field(String, Op),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    pos: usize,
}

/// The longest nesting of parentheses and NOTs accepted: deeper queries are
/// refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

fn lex(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token {
                    kind: Kind::Open,
                    pos,
                });
            }
            ')' => {
                chars.next();
                out.push(Token {
                    kind: Kind::Close,
                    pos,
                });
            }
            '"' => {
                chars.next();
                let s = quoted(&mut chars, pos)?;
                out.push(Token {
                    kind: Kind::Phrase(s),
                    pos,
                });
            }
            '-' if chars
                .clone()
                .nth(1)
                .is_some_and(|(_, n)| !n.is_whitespace() && n != ')') =>
            {
                chars.next();
                out.push(Token {
                    kind: Kind::Minus,
                    pos,
                });
            }
            _ => {
                let mut word = String::new();
                let mut field = None;
                while let Some(&(p, c)) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                        break;
                    }
                    if let Some(op) = field_op(&word, c, &mut chars) {
                        field = Some((op, p));
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                match field {
                    Some((op, _)) => out.push(Token {
                        kind: Kind::Field(word, op),
                        pos,
                    }),
                    None => out.push(Token {
                        kind: Kind::Word(word),
                        pos,
                    }),
                }
            }
        }
    }
    Ok(out)
}

/// At `c` after `word`: if `word` names a field and `c` starts an operator,
/// consumes the operator and returns it.
fn field_op(
    word: &str,
    c: char,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Option<Op> {
    if !(is_field_name(word) && matches!(c, ':' | '=' | '>' | '<')) {
        return None;
    }
    chars.next();
    Some(match c {
        '>' | '<' => {
            let eq = chars.peek().is_some_and(|&(_, n)| n == '=');
            if eq {
                chars.next();
            }
            match (c, eq) {
                ('>', true) => Op::Ge,
                ('>', false) => Op::Gt,
                ('<', true) => Op::Le,
                _ => Op::Lt,
            }
        }
        _ => Op::Eq,
    })
}

fn is_field_name(word: &str) -> bool {
    matches!(
        word,
        "service" | "severity" | "level" | "trace_id" | "span_id" | "operation" | "body"
    ) || word.strip_prefix("attr.").is_some_and(|k| !k.is_empty())
}

/// The rest of a `"..."` string (the opening quote consumed), with `\"` and
/// `\\` escapes.
fn quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    start: usize,
) -> Result<String, SyntaxError> {
    let mut s = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return Ok(s),
            '\\' => match chars.next() {
                Some((_, e)) => s.push(e),
                None => break,
            },
            c => s.push(c),
        }
    }
    Err(SyntaxError {
        position: start,
        message: "this quote is never closed: expected a closing '\"'".into(),
    })
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: usize,
    target: Target,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn error_at(&self, position: usize, expected: &str) -> SyntaxError {
        SyntaxError {
            position,
            message: format!("expected {expected}"),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: Kind::Word(w), .. }) if w == kw)
    }

    fn or(&mut self) -> Result<Query, SyntaxError> {
        let mut parts = vec![self.and()?];
        while self.is_keyword("OR") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Query, SyntaxError> {
        let mut parts = vec![self.unary()?];
        loop {
            if self.is_keyword("AND") {
                self.at += 1;
                parts.push(self.unary()?);
                continue;
            }
            match self.peek() {
                None => break,
                Some(t) if t.kind == Kind::Close => break,
                Some(Token {
                    kind: Kind::Word(w),
                    ..
                }) if w == "OR" => break,
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Query, SyntaxError> {
        let negated = match self.peek() {
            Some(Token {
                kind: Kind::Minus, ..
            }) => true,
            Some(Token {
                kind: Kind::Word(w),
                ..
            }) if w == "NOT" => true,
            _ => false,
        };
        if negated {
            let pos = self.peek().map_or(self.end, |t| t.pos);
            self.descend(pos)?;
            self.at += 1;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Query::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn descend(&mut self, pos: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                position: pos,
                message: format!("the query nests deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn primary(&mut self) -> Result<Query, SyntaxError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_at(self.end, "a term, a \"phrase\", a field:value or '('"));
        };
        self.at += 1;
        match tok.kind {
            Kind::Open => {
                self.descend(tok.pos)?;
                if matches!(
                    self.peek(),
                    Some(Token {
                        kind: Kind::Close,
                        ..
                    })
                ) {
                    return Err(self.error_at(tok.pos + 1, "a query inside the parentheses"));
                }
                let q = self.or()?;
                self.depth -= 1;
                match self.peek() {
                    Some(Token {
                        kind: Kind::Close, ..
                    }) => {
                        self.at += 1;
                        Ok(q)
                    }
                    Some(t) => Err(self.error_at(t.pos, "')'")),
                    None => Err(SyntaxError {
                        position: tok.pos,
                        message: "this '(' is never closed: expected ')'".into(),
                    }),
                }
            }
            Kind::Close => {
                Err(self.error_at(tok.pos, "a term, a \"phrase\", a field:value or '('"))
            }
            Kind::Minus => Err(self.error_at(tok.pos, "a term after '-'")),
            Kind::Word(w) if matches!(w.as_str(), "AND" | "OR") => Err(self.error_at(
                tok.pos,
                &format!(
                    "a term before {w} (to search for the word, write it in lowercase or quote it)"
                ),
            )),
            Kind::Word(w) => self.text(&w, tok.pos, true),
            Kind::Phrase(p) => self.text(&p, tok.pos, false),
            Kind::Field(name, op) => {
                let (value, vpos, quoted) = match self.peek().cloned() {
                    Some(Token {
                        kind: Kind::Word(w),
                        pos,
                    }) => (w, pos, false),
                    Some(Token {
                        kind: Kind::Phrase(p),
                        pos,
                    }) => (p, pos, true),
                    Some(t) => {
                        return Err(self.error_at(t.pos, &format!("a value after '{name}'")));
                    }
                    None => return Err(self.error_at(self.end, &format!("a value after '{name}'"))),
                };
                self.at += 1;
                self.field(&name, op, &value, tok.pos, vpos, quoted)
            }
        }
    }

    /// Free text: a word (wildcards allowed) or a quoted phrase.
    fn text(&self, text: &str, pos: usize, wildcards: bool) -> Result<Query, SyntaxError> {
        if self.target != Target::Logs {
            return Err(SyntaxError {
                position: pos,
                message: "spans have no body to search: use service:, operation:, trace_id:, span_id: or attr.<key>:".into(),
            });
        }
        if wildcards && text == "*" {
            return Ok(Query::All);
        }
        if wildcards && has_wildcard(text) {
            if !text
                .chars()
                .all(|c| c.is_alphanumeric() || c == '*' || c == '?')
            {
                return Err(SyntaxError {
                    position: pos,
                    message: "a wildcard matches within one word: expected only letters, digits, '*' and '?' (quote the text to search for it literally)".into(),
                });
            }
            return Ok(Query::TextWildcard(text.to_lowercase()));
        }
        if lumen_store::index::tokens(text).iter().all(Option::is_none) {
            return Err(SyntaxError {
                position: pos,
                message: format!("expected a word with letters or digits, found {text:?}"),
            });
        }
        Ok(Query::Text(text.to_owned()))
    }

    fn field(
        &self,
        name: &str,
        op: Op,
        value: &str,
        pos: usize,
        vpos: usize,
        quoted: bool,
    ) -> Result<Query, SyntaxError> {
        let wild = !quoted && has_wildcard(value);
        let logs_only = |what: &str| SyntaxError {
            position: pos,
            message: format!("spans have no {what}"),
        };
        if op != Op::Eq && !matches!(name, "severity" | "level") {
            return Err(SyntaxError {
                position: pos,
                message: format!("expected ':' after '{name}' (comparisons work on severity only)"),
            });
        }
        Ok(match name {
            "body" => {
                if self.target != Target::Logs {
                    return Err(logs_only("body"));
                }
                self.text(value, vpos, !quoted)?
            }
            "severity" | "level" => {
                if self.target != Target::Logs {
                    return Err(logs_only("severity"));
                }
                severity(op, value, vpos)?
            }
            "service" => term(TermField::Service, value, wild),
            "operation" => {
                if self.target != Target::Spans {
                    return Err(SyntaxError {
                        position: pos,
                        message: "logs have no operation: it is a span field".into(),
                    });
                }
                term(TermField::Operation, value, wild)
            }
            "trace_id" | "span_id" => {
                if wild {
                    return Err(SyntaxError {
                        position: vpos,
                        message: format!("expected a whole {name} (wildcards do not work on ids)"),
                    });
                }
                let field = if name == "trace_id" {
                    TermField::TraceId
                } else {
                    TermField::SpanId
                };
                // Ids are lowercase hex, however they were typed.
                Query::Term(field, value.to_ascii_lowercase())
            }
            _ => {
                let key = name.strip_prefix("attr.").unwrap_or(name).to_owned();
                if wild {
                    Query::AttrWildcard {
                        key,
                        pattern: value.to_owned(),
                    }
                } else {
                    Query::Attr {
                        key,
                        value: value.to_owned(),
                    }
                }
            }
        })
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

fn term(field: TermField, value: &str, wild: bool) -> Query {
    if wild {
        Query::TermWildcard(field, value.to_owned())
    } else {
        Query::Term(field, value.to_owned())
    }
}

/// OTLP severity numbers: each level spans four (TRACE 1–4 … FATAL 21–24).
fn level(name: &str) -> Option<i32> {
    Some(match name.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" | "warning" => 13,
        "error" => 17,
        "fatal" | "critical" => 21,
        _ => return None,
    })
}

/// `severity:error` is the ERROR range of numbers or that severity text;
/// `severity>=warn` compares numbers (records without a number are 0).
fn severity(op: Op, value: &str, pos: usize) -> Result<Query, SyntaxError> {
    let (lo, hi, named) = if let Some(lo) = level(value) {
        (lo, lo + 3, true)
    } else if let Ok(n) = value.parse::<i32>() {
        if !(0..=24).contains(&n) {
            return Err(SyntaxError {
                position: pos,
                message: format!("expected a severity number from 0 to 24, found {n}"),
            });
        }
        (n, n, false)
    } else {
        return Err(SyntaxError {
            position: pos,
            message: format!(
                "expected a severity (trace, debug, info, warn, error, fatal or a number 0–24), found {value:?}"
            ),
        });
    };
    Ok(match op {
        Op::Eq if named => Query::Or(vec![
            Query::Severity { min: lo, max: hi },
            Query::Term(TermField::SeverityText, value.to_owned()),
        ]),
        Op::Eq => Query::Severity { min: lo, max: hi },
        Op::Ge => Query::Severity { min: lo, max: 24 },
        Op::Gt => Query::Severity {
            min: hi + 1,
            max: 24,
        },
        Op::Le => Query::Severity { min: 0, max: hi },
        Op::Lt => Query::Severity {
            min: 0,
            max: lo - 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(s: &str) -> Query {
        parse(s, Target::Logs).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> SyntaxError {
        parse(s, Target::Logs).expect_err(s)
    }

    fn text(s: &str) -> Query {
        Query::Text(s.into())
    }

    #[test]
    fn words_phrases_and_implicit_and() {
        assert_eq!(logs(""), Query::All);
        assert_eq!(logs("  "), Query::All);
        assert_eq!(logs("timeout"), text("timeout"));
        assert_eq!(logs("\"connection reset\""), text("connection reset"));
        assert_eq!(logs("a b"), Query::And(vec![text("a"), text("b")]));
        assert_eq!(logs("a AND b"), Query::And(vec![text("a"), text("b")]));
        assert_eq!(logs(r#""say \"hi\"""#), text("say \"hi\""));
        // Lowercase keywords are words.
        assert_eq!(
            logs("a or b"),
            Query::And(vec![text("a"), text("or"), text("b")])
        );
    }

    #[test]
    fn precedence_not_then_and_then_or() {
        assert_eq!(
            logs("a b OR c"),
            Query::Or(vec![Query::And(vec![text("a"), text("b")]), text("c")])
        );
        assert_eq!(
            logs("a (b OR c)"),
            Query::And(vec![text("a"), Query::Or(vec![text("b"), text("c")])])
        );
        assert_eq!(
            logs("NOT a b"),
            Query::And(vec![Query::Not(Box::new(text("a"))), text("b")])
        );
        assert_eq!(logs("-a"), Query::Not(Box::new(text("a"))));
        assert_eq!(
            logs("x -service:web"),
            Query::And(vec![
                text("x"),
                Query::Not(Box::new(Query::Term(TermField::Service, "web".into())))
            ])
        );
        // A lone '-' is a word, not an operator, and a word needs letters or digits.
        assert_eq!(err("a - b").position, 2);
    }

    #[test]
    fn fields() {
        assert_eq!(
            logs("service:api"),
            Query::Term(TermField::Service, "api".into())
        );
        assert_eq!(
            logs("service:\"my api\""),
            Query::Term(TermField::Service, "my api".into())
        );
        assert_eq!(
            logs("trace_id:0AF7"),
            Query::Term(TermField::TraceId, "0af7".into())
        );
        assert_eq!(
            logs("attr.http.method:GET"),
            Query::Attr {
                key: "http.method".into(),
                value: "GET".into()
            }
        );
        assert_eq!(
            logs("attr.url.path:/api/*"),
            Query::AttrWildcard {
                key: "url.path".into(),
                pattern: "/api/*".into()
            }
        );
        assert_eq!(logs("body:\"a b\""), text("a b"));
        // An unknown name before ':' is part of the word.
        assert_eq!(logs("http://x"), text("http://x"));
    }

    #[test]
    fn severities() {
        assert_eq!(
            logs("severity:error"),
            Query::Or(vec![
                Query::Severity { min: 17, max: 20 },
                Query::Term(TermField::SeverityText, "error".into())
            ])
        );
        assert_eq!(logs("severity>=warn"), Query::Severity { min: 13, max: 24 });
        assert_eq!(logs("level>warn"), Query::Severity { min: 17, max: 24 });
        assert_eq!(logs("severity<info"), Query::Severity { min: 0, max: 8 });
        assert_eq!(logs("severity<=9"), Query::Severity { min: 0, max: 9 });
        assert_eq!(logs("severity:9"), Query::Severity { min: 9, max: 9 });
    }

    #[test]
    fn wildcards() {
        assert_eq!(logs("time*"), Query::TextWildcard("time*".into()));
        assert_eq!(logs("*"), Query::All);
        assert_eq!(
            logs("service:api-*"),
            Query::TermWildcard(TermField::Service, "api-*".into())
        );
        // Quoted: literal.
        assert_eq!(
            logs("service:\"a*\""),
            Query::Term(TermField::Service, "a*".into())
        );
    }

    #[test]
    fn errors_say_where_and_what_was_expected() {
        // (query, position if checked, what the message says)
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("a (b", Some(2), "never closed"),
            ("a b)", Some(3), "no matching '('"),
            ("\"abc", Some(0), "closing"),
            ("a OR", Some(4), "expected a term"),
            ("service:", Some(8), "value after 'service'"),
            ("severity:loud", Some(9), "expected a severity"),
            ("service>=a", None, "severity only"),
            ("trace_id:ab*", None, "wildcards"),
            ("()", Some(1), ""),
            ("AND x", Some(0), ""),
            ("foo-* x", None, "one word"),
            ("!!!", None, "letters or digits"),
        ];
        for (q, pos, msg) in cases {
            let e = err(q);
            if let Some(pos) = pos {
                assert_eq!(e.position, *pos, "{q:?}: {e}");
            }
            assert!(e.message.contains(msg), "{q:?}: {e}");
        }
        let deep = "(".repeat(100) + "a" + &")".repeat(100);
        assert!(err(&deep).message.contains("nests deeper"));
        let nots = "NOT ".repeat(100) + "a";
        assert!(err(&nots).message.contains("nests deeper"));
    }

    #[test]
    fn spans_have_no_body_or_severity() {
        let spans = |s| parse(s, Target::Spans);
        assert!(spans("timeout").is_err());
        assert!(spans("severity:error").is_err());
        assert_eq!(
            spans("operation:GET*"),
            Ok(Query::TermWildcard(TermField::Operation, "GET*".into()))
        );
        assert!(parse("operation:x", Target::Logs).is_err());
    }
}
