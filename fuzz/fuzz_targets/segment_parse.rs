//! Fuzzes `document::parse`, the datagram parser every UDP datagram goes through.
//!
//! Besides "never panics, never hangs": an accepted document is exactly the bytes after the
//! first newline (kept byte for byte), within the cap, and costs at least its length; a
//! refusal is one of the bad-input drop reasons. A document that starts with one of the AWS
//! distros' prefixes (`T1S`, `T1U`, `T1`, `M1`) has that kind, no ids, and is accepted whenever
//! the header is valid and it is within the cap and UTF-8 (the JSON check is not applied to
//! it); any other accepted document is JSON and has that kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_daemon::document::{self, DistroPrefix, DocumentKind, PER_DOCUMENT_OVERHEAD};

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
            assert_eq!(
                Some(&seg.body[..]),
                body,
                "the document is kept byte for byte"
            );
            assert!(!seg.body.is_empty() && seg.body.len() <= cap);
            assert!(seg.cost() >= seg.body.len() + PER_DOCUMENT_OVERHEAD);
            match seg.kind() {
                DocumentKind::Distro(prefix) => {
                    assert!(seg.body.starts_with(prefix.as_str().as_bytes()));
                    // Longest first: a `T1` document does not start `T1S` or `T1U`.
                    assert_eq!(DistroPrefix::of(&seg.body), Some(prefix));
                    assert!(std::str::from_utf8(&seg.body).is_ok());
                    assert_eq!(seg.ids(), document::Ids::default());
                }
                DocumentKind::Json => {
                    assert_eq!(DistroPrefix::of(&seg.body), None);
                    assert_eq!(seg.body.trim_ascii_start().first(), Some(&b'{'));
                }
            }
        }
        Err(why) => {
            assert!(why.reason().is_bad_input(), "{why:?}");
            // A prefixed document is refused only for the header, the cap or its UTF-8.
            if let Some(i) = datagram.iter().position(|b| *b == b'\n') {
                let body = &datagram[i + 1..];
                if DistroPrefix::of(body).is_some() {
                    assert!(
                        !matches!(why, document::BadInput::InvalidBody(_))
                            || std::str::from_utf8(body).is_err(),
                        "{why:?}"
                    );
                }
            }
        }
    }
});
