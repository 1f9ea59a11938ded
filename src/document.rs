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
//! - except the AWS distros for OpenTelemetry's UDP form: a document that starts with `T1S`
//!   (sampled spans), `T1U` (unsampled spans), `T1` (spans, older releases) or `M1` (metrics),
//!   followed by the base64 of an OTLP protobuf. The original daemon forwards whatever follows
//!   a valid header, and X-Ray ingests these, so we take them byte for byte with only the
//!   prefix, the cap and UTF-8 checked (base64 is ASCII), never the JSON. The prefix alone,
//!   with nothing after it, is taken too: the original would forward it, and X-Ray's answer
//!   (an `UnprocessedTraceSegments` entry, counted as rejected) is the verdict, not ours. The
//!   longer prefixes are matched first, so `T1S…` is sampled spans, not `T1` with base64
//!   starting `S` (an OTLP request's base64 starts with `C`: its first byte is `0x0A`);
//! - `trace_id` and `id` are read again from the document only when a log or a refusal needs
//!   them ([`Document::ids`]), which is rare: the hot path keeps nothing but the bytes.
//!
//! Cost: a UTF-8 check and one pass of `serde_json` over the document; one allocation, the
//! document itself. A document's [`DocumentKind`] is not stored: it is read off its first three
//! bytes when asked ([`Document::kind`]), since no JSON object starts with `T` or `M`.

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
    /// document again: for logs and refusals, not for the hot path. None for the distro's
    /// UDP form ([`DocumentKind::Distro`]), whose ids are inside base64.
    pub fn ids(&self) -> Ids {
        match self.kind() {
            DocumentKind::Json => walk_document(&self.body, true).unwrap_or_default(),
            DocumentKind::Distro(_) => Ids::default(),
        }
    }

    /// What the document is, read off its first bytes (a few comparisons, no allocation).
    pub fn kind(&self) -> DocumentKind {
        DocumentKind::of(&self.body)
    }
}

/// What a document is: an X-Ray segment document (JSON) or the AWS distro's UDP form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// An X-Ray segment or subsegment document, one JSON object.
    Json,
    /// The AWS distros for OpenTelemetry's UDP form: this prefix, then base64 of OTLP.
    Distro(DistroPrefix),
}

impl DocumentKind {
    /// Every kind, in the order stats list them.
    pub const ALL: [DocumentKind; 5] = [
        DocumentKind::Json,
        DocumentKind::Distro(DistroPrefix::T1S),
        DocumentKind::Distro(DistroPrefix::T1U),
        DocumentKind::Distro(DistroPrefix::T1),
        DocumentKind::Distro(DistroPrefix::M1),
    ];

    /// The kind of a document with this body: [`Self::Distro`] when it starts with one of the
    /// prefixes (longest first), [`Self::Json`] otherwise.
    pub fn of(body: &[u8]) -> Self {
        DistroPrefix::of(body).map_or(DocumentKind::Json, DocumentKind::Distro)
    }

    /// The stable name used in stats output (`json`, `T1S`, `T1U`, `T1`, `M1`).
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Json => "json",
            DocumentKind::Distro(p) => p.as_str(),
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            DocumentKind::Json => 0,
            DocumentKind::Distro(p) => 1 + p as usize,
        }
    }
}

/// The prefixes of the AWS distros' UDP form, as their exporters write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DistroPrefix {
    /// Sampled spans.
    T1S,
    /// Unsampled spans.
    T1U,
    /// Spans, from older releases (no sampled flag).
    T1,
    /// Metrics.
    M1,
}

impl DistroPrefix {
    /// Every prefix, longest first (the order they are matched in).
    pub const ALL: [DistroPrefix; 4] = [
        DistroPrefix::T1S,
        DistroPrefix::T1U,
        DistroPrefix::T1,
        DistroPrefix::M1,
    ];

    /// The prefix as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DistroPrefix::T1S => "T1S",
            DistroPrefix::T1U => "T1U",
            DistroPrefix::T1 => "T1",
            DistroPrefix::M1 => "M1",
        }
    }

    /// The prefix `body` starts with, if any (longest first).
    pub fn of(body: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| body.starts_with(p.as_str().as_bytes()))
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
    /// The document is not a well-formed JSON object (nor one of the distros' prefixed
    /// forms), or is not UTF-8.
    #[error("document refused: {0}")]
    InvalidBody(String),
    /// The document is longer than the cap.
    #[error("document of {size} bytes is over the {cap}-byte document limit (--max-segment-size)")]
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
    match DistroPrefix::of(body) {
        Some(_) => check_text(body)?,
        None => check_document(body)?,
    }
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
    check_text(body)?;
    walk_document(body, false).map(drop).map_err(|e| {
        BadInput::InvalidBody(format!(
            "not a well-formed JSON object (nor a T1S, T1U, T1 or M1 document): {e}"
        ))
    })
}

/// Checks that `body` is UTF-8. serde_json does not check the UTF-8 of strings it skips; X-Ray
/// takes text, and the original daemon would replace bad bytes silently. We refuse them with a
/// reason instead.
fn check_text(body: &[u8]) -> Result<(), BadInput> {
    std::str::from_utf8(body).map(drop).map_err(|e| {
        BadInput::InvalidBody(format!(
            "not valid UTF-8 (first bad byte at offset {})",
            e.valid_up_to()
        ))
    })
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

    const HEADER: &str = r#"{"format":"json","version":1}"#;

    #[test]
    fn distro_udp_forms_are_kept_byte_for_byte() {
        // What the distros' exporters send: a prefix, then base64 of an OTLP request.
        let b64 = "CiQKIgoMc2VydmljZS5uYW1lEhIKEG15LXNlcnZpY2UtbmFtZRIA+/=";
        for (prefix, kind) in [
            ("T1S", DistroPrefix::T1S),
            ("T1U", DistroPrefix::T1U),
            ("T1", DistroPrefix::T1),
            ("M1", DistroPrefix::M1),
        ] {
            let body = format!("{prefix}{b64}");
            let d = ok(format!("{HEADER}\n{body}").as_bytes());
            assert_eq!(&d.body[..], body.as_bytes(), "{prefix}");
            assert_eq!(d.kind(), DocumentKind::Distro(kind), "{prefix}");
            assert_eq!(d.kind().as_str(), prefix);
            assert_eq!(d.ids(), Ids::default(), "{prefix}");
        }
        assert_eq!(
            ok(b"{\"format\":\"json\",\"version\":1}\n{}").kind(),
            DocumentKind::Json
        );
    }

    #[test]
    fn t1_is_told_apart_from_t1s_and_t1u() {
        let kind = |body: &str| ok(format!("{HEADER}\n{body}").as_bytes()).kind();
        assert_eq!(kind("T1SCiQK"), DocumentKind::Distro(DistroPrefix::T1S));
        assert_eq!(kind("T1UCiQK"), DocumentKind::Distro(DistroPrefix::T1U));
        assert_eq!(kind("T1CiQK"), DocumentKind::Distro(DistroPrefix::T1));
        assert_eq!(kind("M1CiQK"), DocumentKind::Distro(DistroPrefix::M1));
        for (i, k) in DocumentKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
    }

    #[test]
    fn a_prefix_alone_is_forwarded_as_the_original_would() {
        for prefix in ["T1S", "T1U", "T1", "M1"] {
            let d = ok(format!("{HEADER}\n{prefix}").as_bytes());
            assert_eq!(&d.body[..], prefix.as_bytes());
        }
    }

    #[test]
    fn distro_forms_keep_the_cap_and_utf8_checks() {
        let big = format!("{HEADER}\nT1S{}", "A".repeat(100));
        assert!(matches!(
            parse(big.as_bytes(), 50),
            Err(BadInput::TooLarge { cap: 50, .. })
        ));
        let r = parse(format!("{HEADER}\nT1S\u{0}").as_bytes(), CAP);
        assert!(r.is_ok(), "only the prefix is checked: {r:?}");
        let mut bad = format!("{HEADER}\nT1S").into_bytes();
        bad.push(0xff);
        assert!(matches!(parse(&bad, CAP), Err(BadInput::InvalidBody(_))));
    }

    #[test]
    fn non_prefixed_non_json_bodies_are_still_refused() {
        for bad in ["t1sCiQK", "X1CiQK", "T", "M", "1T1S", " T1SCiQK", "S1T"] {
            let r = parse(format!("{HEADER}\n{bad}").as_bytes(), CAP);
            assert!(
                matches!(r, Err(BadInput::InvalidBody(_))),
                "{bad:?} gave {r:?}"
            );
            assert_eq!(r.err().map(|e| e.reason().as_str()), Some("invalid_body"));
        }
    }

    #[test]
    fn the_java_distros_spaced_header_is_accepted() {
        // The Java exporter writes its header with spaces after the colons and the comma.
        let d = ok(b"{\"format\": \"json\", \"version\": 1}\nT1SCiQK");
        assert_eq!(&d.body[..], b"T1SCiQK");
        assert_eq!(check_header(br#"{"format": "json", "version": 1}"#), Ok(()));
        // And spaced differently from the fast path, it still goes through the JSON check.
        assert_eq!(
            check_header(br#"{ "format" : "json" , "version" : 1 }"#),
            Ok(())
        );
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
