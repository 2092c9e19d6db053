//! PromQL as the query API handles it: parsed (with Lumen's nesting
//! limit), then evaluated as an instant and a range query over float,
//! classic-histogram and native-histogram series.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumen_query::promql::{Engine, promqltest};

const LOAD: &str = r#"
load 1m
  http_requests_total{job="api",instance="a"} 0+10x30
  http_requests_total{job="api",instance="b"} 5+3x10 0+3x19
  temperature{city="x"} 20 21 _ 19 stale 22
  latency_bucket{le="0.1"} 0+1x30
  latency_bucket{le="1"} 0+3x30
  latency_bucket{le="+Inf"} 0+4x30
  native {{schema:0 sum:5 count:4 buckets:[1 2 1]}}+{{schema:0 sum:1 count:2 buckets:[1 1]}}x30
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    // One line of the test script; the script's own syntax is not the target.
    if q.contains(['\n', '\r']) || lumen_query::promql::parse(q).is_err() {
        return;
    }
    let engine = Engine {
        max_samples: 1_000_000,
        timeout: Some(std::time::Duration::from_secs(5)),
        ..Engine::default()
    };
    let script =
        format!("{LOAD}\neval instant at 10m {q}\n\neval range from 0 to 30m step 1m {q}\n");
    let _ = promqltest::run(&script, &engine);
});
