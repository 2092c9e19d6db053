//! Attribute limits: past `--max-attributes` a record's extra attributes are
//! dropped and counted in its `dropped_attributes_count`, values longer than
//! `--max-attribute-length` are cut, and both are counted in `/metrics`;
//! the record itself is accepted.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use serde_json::json;

#[test]
fn extra_attributes_are_dropped_and_counted_long_values_cut() {
    let s = TestServer::start_with(&["--max-attributes", "5", "--max-attribute-length", "100"]);
    let attrs: Vec<_> = (0..8)
        .map(|i| json!({"key": format!("a{i}"), "value": {"stringValue": if i == 0 { "v".repeat(500) } else { format!("v{i}") }}}))
        .collect();
    let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "limits"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": "b".repeat(1000)},
            "attributes": attrs, "droppedAttributesCount": 1}]}]}]});
    let r = s
        .client()
        .post(s.otlp_http_url("/v1/logs"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let rows = s.sql_rows(
        "SELECT cardinality(map_keys(log_attributes)) AS n, dropped_attributes_count AS d, \
         length(log_attributes['a0']) AS a0, length(body) AS b FROM logs",
    );
    assert_eq!(rows, vec![json!({"n": 5, "d": 4, "a0": 100, "b": 100})]);
    assert_eq!(s.metric("lumen_attributes_dropped_total"), 3.0);
    assert_eq!(s.metric("lumen_attribute_values_truncated_total"), 2.0);
}
