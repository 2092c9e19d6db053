//! OTLP/JSON bodies (the spec's mapping: hex ids, 64-bit integers as
//! strings, nested AnyValues) through decoding and conversion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumen_store::Signal;

fuzz_target!(|data: &[u8]| {
    for signal in Signal::ALL {
        let _ = lumen_collector::decode_and_convert(signal, true, data);
    }
});
