//! OTLP protobuf bodies through decoding, the attribute limits and the
//! conversion to rows, for each signal: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumen_store::Signal;

fuzz_target!(|data: &[u8]| {
    for signal in Signal::ALL {
        let _ = lumen_collector::decode_and_convert(signal, false, data);
    }
});
