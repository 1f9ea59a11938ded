//! One datagram in, one segment document (or the reason it was refused) out.
//!
//! Data comes from the UDP receiver as the raw bytes of one datagram; what comes out goes to the
//! [`crate::buffer`]. A datagram is a header line, `\n`, then the document:
//! `{"format":"json","version":1}\n{...segment...}`.
//!
//! The rules, after the original daemon's (see the README):
//! - the header is everything before the first `\n`; it must be a JSON object whose `format` is
//!   `"json"` (any letter case) and whose `version` is the integer 1; other keys are ignored and
//!   key names match in any letter case;
//! - the document is everything after that `\n`, kept **byte for byte** as [`Bytes`]: it is never
//!   parsed into a tree nor written out again;
//! - the document must be one well-formed JSON object (a syntax check only, with no nesting limit:
//!   X-Ray has none we know of), and no longer than the configured cap;
//! - `trace_id` and `id` are read again from the document only when a log or a refusal needs
//!   them ([`Document::ids`]), which is rare: the hot path keeps nothing but the bytes.
//!
//! Cost: a UTF-8 check and one pass of `serde_json` over the document; one allocation, the
//! document itself.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Default cap on a document's size in bytes (the original's 64 KiB receive buffer).
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A segment (or subsegment) document accepted for relaying.
#[derive(Clone, Debug)]
pub struct Document {
    /// The document exactly as received: the bytes after the header line.
    pub body: Bytes,
}

impl Document {
    /// A segment of `body` as it is, unchecked (for tests and tools; the receiver uses
    /// [`parse`]).
    pub fn unchecked(body: impl Into<Bytes>) -> Self {
        Document { body: body.into() }
    }

    /// Bytes this document costs against the memory budget: its allocation (the body rounded
    /// up to the allocator's size class) plus a fixed overhead for the bookkeeping that travels
    /// with it.
    pub fn cost(&self) -> usize {
        allocation_size(self.body.len()) + PER_DOCUMENT_OVERHEAD
    }

    /// The document's top-level `trace_id` and `id`, where they are strings. Reads the
    /// document again: for logs and refusals, not for the hot path.
    pub fn ids(&self) -> Ids {
        walk_document(&self.body, true).unwrap_or_default()
    }
}

/// Bytes charged per document on top of its allocation: its slot in the buffer's queue (72
/// bytes: the [`Bytes`], a sequence number and its delivery state) twice over, since a growing
/// queue holds the old and the new copy of its slots while it moves them.
pub const PER_DOCUMENT_OVERHEAD: usize = 144;

/// The size of the allocation holding `n` bytes: the global allocator's (mimalloc's) size
/// class, multiples of 8 up to 64 bytes, then four classes per power of two (so at most 25%
/// over `n`).
pub fn allocation_size(n: usize) -> usize {
    if n <= 64 {
        return n.div_ceil(8) * 8;
    }
    let top = usize::BITS - 1 - (n - 1).leading_zeros();
    let step = 1usize << (top - 2);
    n.div_ceil(step) * step
}

/// Why a datagram was refused. Each is counted under [`BadInput::reason`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadInput {
    /// No `\n` in the datagram, so no header line and no document.
    #[error("no newline: a datagram must be a header line, a newline, then the segment JSON")]
    MissingNewline,
    /// The header line is not a JSON object.
    #[error("header is not a JSON object (expected {{\"format\":\"json\",\"version\":1}})")]
    HeaderNotJson,
    /// The header is JSON but its format is not `json` or its version not 1.
    #[error("unsupported header (expected format \"json\" and version 1)")]
    UnsupportedHeader,
    /// Nothing after the header line.
    #[error("empty document after the header line")]
    EmptyBody,
    /// The document is not a well-formed JSON object.
    #[error("document is not a well-formed JSON object: {0}")]
    InvalidBody(String),
    /// The document is longer than the cap.
    #[error("document of {size} bytes is over the {cap}-byte limit")]
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The cap in force.
        cap: usize,
    },
}

impl BadInput {
    /// The counter name for this rejection (stable: used in stats and tests).
    pub fn reason(&self) -> crate::outcome::DropReason {
        use crate::outcome::DropReason as R;
        match self {
            BadInput::MissingNewline => R::MissingNewline,
            BadInput::HeaderNotJson => R::HeaderNotJson,
            BadInput::UnsupportedHeader => R::UnsupportedHeader,
            BadInput::EmptyBody => R::EmptyBody,
            BadInput::InvalidBody(_) => R::InvalidBody,
            BadInput::TooLarge { .. } => R::TooLarge,
        }
    }
}

/// Parses one datagram. `max_document` caps the document's size in bytes.
///
/// Only the document is copied (once, into the returned [`Document`]); the header is checked in
/// place.
pub fn parse(datagram: &[u8], max_document: usize) -> Result<Document, BadInput> {
    let newline = memchr::memchr(b'\n', datagram).ok_or(BadInput::MissingNewline)?;
    let (header, body) = (&datagram[..newline], &datagram[newline + 1..]);
    check_header(header)?;
    if body.is_empty() {
        return Err(BadInput::EmptyBody);
    }
    if body.len() > max_document {
        return Err(BadInput::TooLarge {
            size: body.len(),
            cap: max_document,
        });
    }
    check_document(body)?;
    Ok(Document {
        body: Bytes::copy_from_slice(body),
    })
}

/// Checks the header line: a JSON object with `format` "json" (any case) and `version` 1.
fn check_header(header: &[u8]) -> Result<(), BadInput> {
    // Fast path: the exact header every SDK sends.
    const CANONICAL: [&[u8]; 2] = [
        br#"{"format":"json","version":1}"#,
        br#"{"format": "json", "version": 1}"#,
    ];
    if CANONICAL.contains(&header) {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_slice(header);
    let parsed = de
        .deserialize_map(HeaderVisitor)
        .and_then(|h| de.end().map(|()| h))
        .map_err(|_| BadInput::HeaderNotJson)?;
    if parsed.format_is_json && parsed.version_is_one {
        Ok(())
    } else {
        Err(BadInput::UnsupportedHeader)
    }
}

#[derive(Debug, Default)]
struct Header {
    format_is_json: bool,
    version_is_one: bool,
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut header = Header::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            // Key names match in any case, and the last occurrence wins, as in Go's decoder.
            if key.eq_ignore_ascii_case("format") {
                let value: serde_json::Value = map.next_value()?;
                header.format_is_json = value
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("json"));
            } else if key.eq_ignore_ascii_case("version") {
                let value: serde_json::Value = map.next_value()?;
                header.version_is_one = value.as_i64() == Some(1);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(header)
    }
}

/// The two identifiers of a document ([`Document::ids`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ids {
    /// The top-level `trace_id`, if it is a string.
    pub trace_id: Option<Box<str>>,
    /// The top-level `id`, if it is a string.
    pub id: Option<Box<str>>,
}

/// Checks that `body` is one well-formed JSON object (surrounding whitespace allowed).
fn check_document(body: &[u8]) -> Result<(), BadInput> {
    // serde_json does not check the UTF-8 of strings it skips; X-Ray takes text, and the
    // original daemon would replace bad bytes silently. We refuse them with a reason instead.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(BadInput::InvalidBody(format!(
            "not valid UTF-8 (first bad byte at offset {})",
            e.valid_up_to()
        )));
    }
    walk_document(body, false)
        .map(drop)
        .map_err(|e| BadInput::InvalidBody(e.to_string()))
}

/// Walks `body` as one JSON object (surrounding whitespace allowed), keeping its top-level ids
/// when `keep_ids`.
fn walk_document(body: &[u8], keep_ids: bool) -> Result<Ids, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    // X-Ray sets no nesting limit that we know of, so neither do we. Values are skipped with
    // `IgnoredAny`, which serde_json walks without recursing, so deep nesting costs no stack
    // (the test below parses 32,000 levels on a 256 KiB stack).
    de.disable_recursion_limit();
    let ids = de.deserialize_map(DocumentVisitor { keep_ids })?;
    de.end()?;
    Ok(ids)
}

/// Walks a JSON object; keeps its top-level `trace_id` and `id` when `keep_ids`.
struct DocumentVisitor {
    keep_ids: bool,
}

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Ids;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ids, A::Error> {
        let mut ids = Ids::default();
        if !self.keep_ids {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(ids);
        }
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "trace_id" => &mut ids.trace_id,
                "id" => &mut ids.id,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<MaybeString>()?.0;
        }
        Ok(ids)
    }
}

/// A value that is kept when it is a string and skipped (but still syntax-checked) otherwise.
struct MaybeString(Option<Box<str>>);

impl<'de> de::Deserialize<'de> for MaybeString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MaybeString, E> {
                Ok(MaybeString(Some(s.into())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<MaybeString, E> {
                Ok(MaybeString(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeString, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeString(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeString, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeString(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = DEFAULT_MAX_DOCUMENT_BYTES;

    fn ok(d: &[u8]) -> Document {
        match parse(d, CAP) {
            Ok(s) => s,
            Err(e) => panic!("{:?} refused: {e}", String::from_utf8_lossy(d)),
        }
    }

    #[test]
    fn keeps_the_document_byte_for_byte() {
        let body = "{\"trace_id\": \"1-5f-abc\", \"id\":\"a1\",\n \"name\":\"caf\u{e9} \\u00e9\\n\\\"q\\\"\"\t}  ";
        let d = format!("{{\"format\":\"json\",\"version\":1}}\n{body}");
        let s = ok(d.as_bytes());
        assert_eq!(&s.body[..], body.as_bytes());
        assert_eq!(s.ids().trace_id.as_deref(), Some("1-5f-abc"));
        assert_eq!(s.ids().id.as_deref(), Some("a1"));
    }

    #[test]
    fn header_rules_follow_the_original() {
        ok(b"{\"FORMAT\":\"JSON\",\"Version\":1}\r\n{}");
        ok(b" { \"version\" : 1 , \"format\" : \"Json\", \"x\": [1] } \n{}");
        assert_eq!(
            parse(b"{\"format\":\"json\",\"version\":2}\n{}", CAP).err(),
            Some(BadInput::UnsupportedHeader)
        );
        assert_eq!(
            parse(b"{\"format\":\"json\",\"version\":1.0}\n{}", CAP).err(),
            Some(BadInput::UnsupportedHeader)
        );
        assert_eq!(
            parse(b"{\"format\":\"json\",\"version\":\"1\"}\n{}", CAP).err(),
            Some(BadInput::UnsupportedHeader)
        );
        assert_eq!(
            parse(b"{\"format\":\"xml\",\"version\":1}\n{}", CAP).err(),
            Some(BadInput::UnsupportedHeader)
        );
        assert_eq!(
            parse(b"{\"version\":1}\n{}", CAP).err(),
            Some(BadInput::UnsupportedHeader)
        );
        assert_eq!(
            parse(b"format=json\n{}", CAP).err(),
            Some(BadInput::HeaderNotJson)
        );
        assert_eq!(parse(b"[1]\n{}", CAP).err(), Some(BadInput::HeaderNotJson));
    }

    #[test]
    fn refuses_each_bad_class() {
        let h = "{\"format\":\"json\",\"version\":1}";
        assert_eq!(parse(b"{}", CAP).err(), Some(BadInput::MissingNewline));
        assert_eq!(
            parse(format!("{h}\n").as_bytes(), CAP).err(),
            Some(BadInput::EmptyBody)
        );
        for bad in [
            "[1,2]",
            "\"s\"",
            "{\"a\":1",
            "{\"a\":1}{}",
            "{\"a\":1} x",
            "{'a':1}",
            "{\"a\":\"\u{1}\"}",
        ] {
            let r = parse(format!("{h}\n{bad}").as_bytes(), CAP);
            assert!(
                matches!(r, Err(BadInput::InvalidBody(_))),
                "{bad:?} gave {r:?}"
            );
        }
        let big = format!("{h}\n{{\"a\":\"{}\"}}", "x".repeat(100));
        assert!(matches!(
            parse(big.as_bytes(), 50),
            Err(BadInput::TooLarge { cap: 50, .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let r = parse(
            b"{\"format\":\"json\",\"version\":1}\n{\"a\":\"\xff\"}",
            CAP,
        );
        assert!(matches!(r, Err(BadInput::InvalidBody(_))), "{r:?}");
    }

    #[test]
    fn allocation_sizes_are_the_allocators_classes() {
        let sizes: Vec<usize> = [1, 8, 9, 64, 65, 80, 81, 1024, 1025, 1280, 1281, 65_536]
            .into_iter()
            .map(allocation_size)
            .collect();
        assert_eq!(
            sizes,
            [8, 8, 16, 64, 80, 80, 96, 1024, 1280, 1280, 1536, 65_536]
        );
        for n in 1..100_000 {
            let a = allocation_size(n);
            assert!(a >= n && a <= n + n / 4 + 8, "{n} -> {a}");
        }
    }

    #[test]
    fn ids_that_are_not_strings_are_skipped() {
        let s = ok(b"{\"format\":\"json\",\"version\":1}\n{\"id\":{\"x\":[1,2]},\"trace_id\":7}");
        assert_eq!(s.ids().id, None);
        assert_eq!(s.ids().trace_id, None);
    }

    #[test]
    fn deep_nesting_is_accepted_on_a_small_stack() {
        for key in ["a", "id", "trace_id"] {
            let depth = CAP / 2 - 16;
            let body = format!("{{\"{key}\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            let d = format!("{{\"format\":\"json\",\"version\":1}}\n{body}");
            let h = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || parse(d.as_bytes(), CAP).map(|s| s.body.len()));
            let len = h.map(|h| h.join());
            assert!(
                matches!(len, Ok(Ok(Ok(n))) if n == body.len()),
                "deep under {key}"
            );
        }
    }
}
