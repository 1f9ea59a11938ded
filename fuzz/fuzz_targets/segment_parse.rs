//! Fuzzes `document::parse`, the datagram parser every UDP datagram goes through.
//!
//! Besides "never panics, never hangs": an accepted document is exactly the bytes after the
//! first newline (kept byte for byte), within the cap, and costs at least its length; a
//! refusal is one of the bad-input drop reasons.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_daemon::document::{self, PER_DOCUMENT_OVERHEAD};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a small or the default cap, so both paths are explored.
    let (cap, datagram) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (64 + usize::from(*b) * 8, rest),
        Some((_, rest)) => (document::DEFAULT_MAX_DOCUMENT_BYTES, rest),
        None => (document::DEFAULT_MAX_DOCUMENT_BYTES, data),
    };
    match document::parse(datagram, cap) {
        Ok(seg) => {
            let newline = datagram.iter().position(|b| *b == b'\n');
            let body = newline.map(|i| &datagram[i + 1..]);
            assert_eq!(Some(&seg.body[..]), body, "the document is kept byte for byte");
            assert!(!seg.body.is_empty() && seg.body.len() <= cap);
            assert!(seg.cost() >= seg.body.len() + PER_DOCUMENT_OVERHEAD);
        }
        Err(why) => assert!(why.reason().is_bad_input(), "{why:?}"),
    }
});
