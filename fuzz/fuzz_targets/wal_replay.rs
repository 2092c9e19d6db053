//! WAL replay over arbitrary files: raw bytes (torn, zeroed, garbage), and
//! well-formed frames around arbitrary payloads, so the checksum passes and
//! the Arrow IPC decoding behind it is reached. Replay must never panic,
//! and a second replay (after the first cut a torn tail) finds the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumen_store::wal::{fuzz_frame, fuzz_replay};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let files: Vec<Vec<u8>> = if mode & 1 == 0 {
        // Raw files, split at each 0xFE byte.
        rest.split(|b| *b == 0xFE).map(<[u8]>::to_vec).collect()
    } else {
        // Frames: [tag, len_lo, len_hi, payload...]*, then a cut of the last
        // `mode >> 1` bytes (a torn write).
        let mut file = Vec::new();
        let mut lsn = 1;
        let mut r = rest;
        while let [tag, lo, hi, tail @ ..] = r {
            let n = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
            file.extend(fuzz_frame(lsn, *tag % 4, &tail[..n]));
            lsn += 1;
            r = &tail[n..];
        }
        let cut = usize::from(mode >> 1).min(file.len());
        file.truncate(file.len() - cut);
        vec![file]
    };
    let _ = fuzz_replay(&files);
});
