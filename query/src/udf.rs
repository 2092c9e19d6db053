//! `matches(text, 'query')`: full-text search in SQL, with the search
//! language's text part (terms, "phrases", wildcards, AND/OR/NOT). On
//! `logs.body` the table provider answers it from each segment's index
//! (segments without a match are not read at all, the others only at the
//! matching rows); everywhere else, and on the fresh buffer, this function
//! evaluates it row by row with the same semantics.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;
use lumen_store::Signal;
use lumen_store::index::Query;
use lumen_store::scan::Matcher;

use crate::lang;

pub const NAME: &str = "matches";

/// Parses the query of `matches()`, which may only search text.
pub fn text_query(q: &str) -> std::result::Result<Query, String> {
    let parsed = lang::parse(q, lang::Target::Logs).map_err(|e| format!("matches(): {e}"))?;
    fn text_only(q: &Query) -> bool {
        match q {
            Query::All | Query::Text(_) | Query::TextWildcard(_) => true,
            Query::And(qs) | Query::Or(qs) => qs.iter().all(text_only),
            Query::Not(q) => text_only(q),
            _ => false,
        }
    }
    if !text_only(&parsed) {
        return Err(
            "matches() searches text (terms, \"phrases\", wildcards, AND/OR/NOT); \
             filter fields with SQL, e.g. service_name = 'checkout'"
                .into(),
        );
    }
    Ok(parsed)
}

/// The query text of a `matches(body, '...')` call on column `column`.
pub fn pushed_query<'a>(e: &'a Expr, column: &str) -> Option<&'a str> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.name() != NAME || f.args.len() != 2 {
        return None;
    }
    match (&f.args[0], &f.args[1]) {
        (
            Expr::Column(c),
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
                _,
            ),
        ) if c.name == column => Some(s.as_str()),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Matches {
    signature: Signature,
}

impl Matches {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(Matches {
            signature: Signature::string(2, Volatility::Immutable),
        })
    }
}

#[cfg(test)]
fn matches_text(q: &Query, text: &str) -> bool {
    Matcher::new(Signal::Logs, q).matches_body(text, &mut String::new())
}

impl ScalarUDFImpl for Matches {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, query] = args.args.as_slice() else {
            return exec_err!("matches() takes two arguments: a text column and a query");
        };
        let q = match query {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => s,
            _ => return exec_err!("the query of matches() must be a string literal"),
        };
        let q = match text_query(q) {
            Ok(q) => q,
            Err(e) => return exec_err!("{e}"),
        };
        let array: ArrayRef = match text {
            ColumnarValue::Array(a) => Arc::clone(a),
            ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
        };
        let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
        let strings = array.as_string::<i32>();
        let matcher = Matcher::new(Signal::Logs, &q);
        let mut scratch = String::new();
        let out: BooleanArray = (0..strings.len())
            .map(|i| {
                strings
                    .is_valid(i)
                    .then(|| matcher.matches_body(strings.value(i), &mut scratch))
            })
            .collect();
        Ok(match text {
            ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(out)),
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_queries_are_accepted() {
        assert!(text_query("timeout OR \"connection refused\" -debug").is_ok());
        assert!(text_query("time*").is_ok());
        assert!(text_query("service:checkout").is_err());
        assert!(text_query("(").is_err());
    }

    #[test]
    fn rows_match_as_the_index_does() {
        let q = text_query("\"connection refused\"").expect("parses");
        assert!(matches_text(&q, "upstream: Connection refused (111)"));
        assert!(!matches_text(&q, "refused connection"));
    }
}
