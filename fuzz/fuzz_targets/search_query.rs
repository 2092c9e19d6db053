//! The log and span search language parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumen_query::lang::{Target, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for target in [Target::Logs, Target::Spans] {
            let _ = parse(text, target);
        }
    }
});
