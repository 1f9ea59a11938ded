//! An OTLP/HTTP trace request body in, an [`ExportTraceServiceRequest`] (or the reason it was
//! refused, with its HTTP status) out; and the reply bodies the listener sends back.
//!
//! Data comes from the OTLP/HTTP listener: the body of a `POST /v1/traces` as received, with
//! its `Content-Type` and `Content-Encoding` headers. What comes out goes to
//! [`super::span::split`]. The rules, after the OTLP specification (OTLP/HTTP):
//! - `Content-Type` `application/x-protobuf` (or `application/protobuf`) is binary protobuf,
//!   `application/json` is OTLP JSON ([`super::json`]); parameters such as `; charset=utf-8`
//!   and letter case are ignored; anything else (or none) is refused with 415;
//! - `Content-Encoding` `gzip` (`x-gzip`), `deflate` (zlib, or raw deflate when the zlib header
//!   is absent, as some clients send it), `identity` or none; anything else is 415;
//! - the body cap ([`DEFAULT_MAX_BODY_BYTES`] unless configured) is checked on the decoded
//!   bytes: the decompressor is read at most cap + 1 bytes, into a buffer that never grows past
//!   that, so a gzip bomb costs no more memory than an honest body at the cap; over it is 413;
//! - a body that does not decode is 400; the reply is a `google.rpc.Status` in the request's
//!   format ([`status_body`]).
//!
//! Replies are written in the request's format: protobuf for protobuf, JSON for JSON, and JSON
//! when the request's type was not understood (a person trying `curl` reads it). A JSON success
//! with nothing refused is `{}`.
//!
//! Cost: one pass of the decompressor and one of the decoder; the decoded request holds the
//! spans (prost copies strings and bytes out of the body).

use std::borrow::Cow;
use std::io::Read;

use prost::Message as _;

use super::proto::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Default cap on a request body after decompression, in bytes (20 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

/// The body's format, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Binary protobuf (`application/x-protobuf`).
    Protobuf,
    /// OTLP JSON (`application/json`).
    Json,
}

impl Format {
    /// The format a `Content-Type` header names; 415 for any other (or none).
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, DecodeError> {
        let Some(header) = content_type.filter(|h| !h.trim().is_empty()) else {
            return Err(DecodeError::MissingContentType);
        };
        let media = header.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Ok(Format::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(Format::Json)
        } else {
            Err(DecodeError::UnsupportedContentType(clip(header)))
        }
    }

    /// The format to answer a request in: the request's own, or JSON when its type was not
    /// understood.
    pub fn for_reply(content_type: Option<&str>) -> Format {
        Format::from_content_type(content_type).unwrap_or(Format::Json)
    }

    /// The `Content-Type` of a reply in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The body's compression, from its `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Not compressed (`identity`, empty or no header).
    Identity,
    /// `gzip` (or `x-gzip`); several members in a row are read as one stream.
    Gzip,
    /// `deflate`: zlib, or raw deflate when the zlib header is absent.
    Deflate,
}

impl Encoding {
    /// The encoding a `Content-Encoding` header names; 415 for any other.
    pub fn from_header(content_encoding: Option<&str>) -> Result<Encoding, DecodeError> {
        let value = content_encoding.unwrap_or_default().trim();
        if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Ok(Encoding::Identity)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Ok(Encoding::Gzip)
        } else if value.eq_ignore_ascii_case("deflate") {
            Ok(Encoding::Deflate)
        } else {
            Err(DecodeError::UnsupportedEncoding(clip(value)))
        }
    }
}

/// Why a request body was refused. [`DecodeError::http_status`] is the answer's status,
/// [`DecodeError::reason`] the counter's name, and the `Display` text the message for the
/// sender (it names the problem and the fix).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `Content-Type` (or an empty one).
    #[error(
        "no Content-Type: send OTLP as application/x-protobuf or application/json \
         (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or http/json)"
    )]
    MissingContentType,
    /// `Content-Type` not one of the OTLP types (the header's value).
    #[error(
        "unsupported Content-Type {0:?}: send OTLP as application/x-protobuf or application/json \
         (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or http/json)"
    )]
    UnsupportedContentType(String),
    /// `Content-Encoding` other than gzip, deflate or identity (the header's value).
    #[error(
        "unsupported Content-Encoding {0:?}: use gzip, deflate or none \
         (OTEL_EXPORTER_OTLP_COMPRESSION=gzip or none)"
    )]
    UnsupportedEncoding(String),
    /// The body, once decompressed, is over the cap.
    #[error(
        "request body over the {cap}-byte limit once decompressed: export fewer spans per \
         request (a smaller OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise the daemon's OTLP body limit"
    )]
    TooLarge {
        /// The cap in force, in bytes.
        cap: usize,
    },
    /// The compressed stream is corrupt or cut short.
    #[error("body does not decompress as {encoding}: {detail}; check the Content-Encoding header")]
    Decompress {
        /// The encoding named by the request.
        encoding: &'static str,
        /// What the decompressor said.
        detail: String,
    },
    /// Not a protobuf `ExportTraceServiceRequest`.
    #[error(
        "body is not a protobuf ExportTraceServiceRequest ({0}); check that the exporter sends \
         traces to /v1/traces with Content-Type application/x-protobuf"
    )]
    Protobuf(String),
    /// Not an OTLP JSON `ExportTraceServiceRequest`.
    #[error(
        "body is not OTLP JSON ({0}); see the OTLP specification's JSON encoding: \
         lowerCamelCase keys, hex ids, integer enums"
    )]
    Json(String),
}

impl DecodeError {
    /// The HTTP status to answer with: 415, 413 or 400.
    pub fn http_status(&self) -> u16 {
        match self {
            DecodeError::MissingContentType
            | DecodeError::UnsupportedContentType(_)
            | DecodeError::UnsupportedEncoding(_) => 415,
            DecodeError::TooLarge { .. } => 413,
            DecodeError::Decompress { .. } | DecodeError::Protobuf(_) | DecodeError::Json(_) => 400,
        }
    }

    /// The `google.rpc.Code` for the reply's `Status`: `INVALID_ARGUMENT` (3), or
    /// `RESOURCE_EXHAUSTED` (8) for a body over the cap.
    pub fn rpc_code(&self) -> i32 {
        match self {
            DecodeError::TooLarge { .. } => RPC_RESOURCE_EXHAUSTED,
            _ => RPC_INVALID_ARGUMENT,
        }
    }

    /// A stable name for counting refusals of this kind.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::MissingContentType | DecodeError::UnsupportedContentType(_) => {
                "unsupported_content_type"
            }
            DecodeError::UnsupportedEncoding(_) => "unsupported_encoding",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Decompress { .. } => "bad_compression",
            DecodeError::Protobuf(_) | DecodeError::Json(_) => "undecodable",
        }
    }

    /// The reply body for this error: a `google.rpc.Status` in `format`.
    pub fn reply_body(&self, format: Format) -> Vec<u8> {
        status_body(format, self.rpc_code(), &self.to_string())
    }
}

/// `google.rpc.Code` `INVALID_ARGUMENT`.
pub const RPC_INVALID_ARGUMENT: i32 = 3;
/// `google.rpc.Code` `NOT_FOUND`.
pub const RPC_NOT_FOUND: i32 = 5;
/// `google.rpc.Code` `RESOURCE_EXHAUSTED`.
pub const RPC_RESOURCE_EXHAUSTED: i32 = 8;
/// `google.rpc.Code` `UNAVAILABLE`.
pub const RPC_UNAVAILABLE: i32 = 14;

/// Decodes a request body: checks its type and encoding, decompresses it under `max_body`
/// bytes, and parses it.
pub fn decode_request(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    max_body: usize,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    let format = Format::from_content_type(content_type)?;
    let encoding = Encoding::from_header(content_encoding)?;
    let bytes = decompress(body, encoding, max_body)?;
    parse(&bytes, format)
}

/// The body decompressed, at most `max` bytes of it (413 past that).
pub fn decompress(
    body: &[u8],
    encoding: Encoding,
    max: usize,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    match encoding {
        Encoding::Identity if body.len() > max => Err(DecodeError::TooLarge { cap: max }),
        Encoding::Identity => Ok(Cow::Borrowed(body)),
        Encoding::Gzip => {
            read_capped(flate2::read::MultiGzDecoder::new(body), max, "gzip").map(Cow::Owned)
        }
        Encoding::Deflate if looks_like_zlib(body) => {
            read_capped(flate2::read::ZlibDecoder::new(body), max, "deflate").map(Cow::Owned)
        }
        Encoding::Deflate => {
            read_capped(flate2::read::DeflateDecoder::new(body), max, "deflate").map(Cow::Owned)
        }
    }
}

/// Parses decoded bytes as an `ExportTraceServiceRequest` in `format`.
pub fn parse(bytes: &[u8], format: Format) -> Result<ExportTraceServiceRequest, DecodeError> {
    match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(bytes)
            .map_err(|e| DecodeError::Protobuf(e.to_string())),
        Format::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string())),
    }
}

/// True when `body` starts with a zlib header (RFC 1950: method 8, header checksum).
fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads `reader` to its end, but never more than `cap + 1` bytes, into a buffer whose
/// capacity never passes `cap + 1` (it doubles from 16 KiB, then stops at the limit).
fn read_capped(
    mut reader: impl Read,
    cap: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    const FIRST: usize = 16 * 1024;
    let limit = cap.saturating_add(1);
    let mut out: Vec<u8> = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= limit {
                return Err(DecodeError::TooLarge { cap });
            }
            let grow = out.len().max(FIRST).min(limit - out.len());
            out.reserve_exact(grow);
            out.resize(out.len() + grow, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(DecodeError::Decompress {
                    encoding,
                    detail: e.to_string(),
                });
            }
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// At most 100 characters of a header value, for messages.
fn clip(value: &str) -> String {
    match value.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// `google.rpc.Status` as protobuf: `code` (1) and `message` (2). Its `details` (3, repeated
/// `Any`) are never set by us, so the field is not declared.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A `google.rpc.Status` reply body in `format` (JSON: `{"code":3,"message":"…"}`).
pub fn status_body(format: Format, code: i32, message: &str) -> Vec<u8> {
    match format {
        Format::Protobuf => RpcStatus {
            code,
            message: message.to_owned(),
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    }
}

/// The success reply as a message, for every transport: `partial_success` is set when
/// `rejected_spans` is above 0 or `error_message` is not empty.
pub fn success_response(rejected_spans: u64, error_message: &str) -> ExportTraceServiceResponse {
    let partial_success =
        (rejected_spans > 0 || !error_message.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected_spans).unwrap_or(i64::MAX),
            error_message: error_message.to_owned(),
        });
    ExportTraceServiceResponse { partial_success }
}

/// The success reply: an `ExportTraceServiceResponse` in `format`, with `partial_success` set
/// when `rejected_spans` is above 0 or `error_message` is not empty (JSON with neither: `{}`).
pub fn success_body(format: Format, rejected_spans: u64, error_message: &str) -> Vec<u8> {
    let response = success_response(rejected_spans, error_message);
    match format {
        Format::Protobuf => response.encode_to_vec(),
        Format::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::otlp::proto::{ResourceSpans, ScopeSpans, Span};

    fn request() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "x".into(),
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(bytes);
        e.finish().unwrap_or_default()
    }

    fn ok(r: Result<ExportTraceServiceRequest, DecodeError>) -> ExportTraceServiceRequest {
        match r {
            Ok(r) => r,
            Err(e) => panic!("refused: {e}"),
        }
    }

    #[test]
    fn content_types() {
        let cases: [(Option<&str>, Result<Format, u16>); 8] = [
            (Some("application/x-protobuf"), Ok(Format::Protobuf)),
            (Some("application/protobuf"), Ok(Format::Protobuf)),
            (Some("Application/JSON; charset=utf-8"), Ok(Format::Json)),
            (Some(" application/json "), Ok(Format::Json)),
            (Some("text/plain"), Err(415)),
            (Some("application/grpc"), Err(415)),
            (Some(""), Err(415)),
            (None, Err(415)),
        ];
        for (header, want) in cases {
            let got = Format::from_content_type(header).map_err(|e| e.http_status());
            assert_eq!(got, want, "{header:?}");
        }
        assert_eq!(Format::for_reply(Some("text/plain")), Format::Json);
        assert_eq!(
            Format::for_reply(Some("application/x-protobuf")),
            Format::Protobuf
        );
    }

    #[test]
    fn content_encodings() {
        let cases: [(Option<&str>, Result<Encoding, u16>); 7] = [
            (None, Ok(Encoding::Identity)),
            (Some(""), Ok(Encoding::Identity)),
            (Some("identity"), Ok(Encoding::Identity)),
            (Some("GZIP"), Ok(Encoding::Gzip)),
            (Some("x-gzip"), Ok(Encoding::Gzip)),
            (Some("deflate"), Ok(Encoding::Deflate)),
            (Some("br"), Err(415)),
        ];
        for (header, want) in cases {
            let got = Encoding::from_header(header).map_err(|e| e.http_status());
            assert_eq!(got, want, "{header:?}");
        }
        let e = Encoding::from_header(Some("zstd"))
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("\"zstd\"") && m.contains("gzip")));
    }

    #[test]
    fn protobuf_plain_gzip_and_deflate() {
        let bytes = request().encode_to_vec();
        let pb = Some("application/x-protobuf");
        assert_eq!(ok(decode_request(&bytes, pb, None, 1 << 20)), request());
        assert_eq!(
            ok(decode_request(&gzip(&bytes), pb, Some("gzip"), 1 << 20)),
            request()
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = z.write_all(&bytes);
        let zlib = z.finish().unwrap_or_default();
        assert_eq!(
            ok(decode_request(&zlib, pb, Some("deflate"), 1 << 20)),
            request()
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = d.write_all(&bytes);
        let raw = d.finish().unwrap_or_default();
        assert_eq!(
            ok(decode_request(&raw, pb, Some("deflate"), 1 << 20)),
            request()
        );
        // Two gzip members in a row are one body.
        let half = bytes.len() / 2;
        let two = [gzip(&bytes[..half]), gzip(&bytes[half..])].concat();
        assert_eq!(
            ok(decode_request(&two, pb, Some("gzip"), 1 << 20)),
            request()
        );
    }

    #[test]
    fn json_with_string_int64_and_hex_ids() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"I'm a server span",
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"kind":2,
            "attributes":[{"key":"my.span.attr","value":{"intValue":"42"}}]}]}]}]}"#;
        let r = ok(decode_request(
            body,
            Some("application/json"),
            None,
            1 << 20,
        ));
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(
            span.attributes[0].value.as_ref().and_then(|v| v.as_i64()),
            Some(42)
        );
    }

    #[test]
    fn undecodable_bodies_are_400_with_a_status() {
        let cases: [(&[u8], &str, Option<&str>); 5] = [
            (b"\xff\xff\xff\xff", "application/x-protobuf", None),
            (b"{\"resourceSpans\":[", "application/json", None),
            (b"[1,2]", "application/json", None),
            (b"not gzip at all", "application/x-protobuf", Some("gzip")),
            (
                b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"spanId\":\"xyz\"}]}]}]}",
                "application/json",
                None,
            ),
        ];
        for (body, ct, ce) in cases {
            let e = decode_request(body, Some(ct), ce, 1 << 20).err();
            assert_eq!(e.as_ref().map(DecodeError::http_status), Some(400), "{e:?}");
        }
        // The Status reply decodes, in both formats.
        let e = DecodeError::Protobuf("bad".into());
        let pb = e.reply_body(Format::Protobuf);
        let status = RpcStatus::decode(pb.as_slice()).unwrap_or_default();
        assert_eq!(status.code, RPC_INVALID_ARGUMENT);
        assert!(status.message.contains("application/x-protobuf"));
        let json: serde_json::Value =
            serde_json::from_slice(&e.reply_body(Format::Json)).unwrap_or_default();
        assert_eq!(json["code"], 3);
        assert!(json["message"].as_str().is_some_and(|m| m.contains("bad")));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let depth = 5_000;
        let json = format!(
            "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"k\",\"value\":{}{}}}]}}}}]}}",
            "{\"arrayValue\":{\"values\":[".repeat(depth),
            "]}}".repeat(depth)
        );
        let e = decode_request(json.as_bytes(), Some("application/json"), None, 1 << 20).err();
        assert_eq!(e.map(|e| e.http_status()), Some(400));
        // Protobuf: an AnyValue nested past prost's recursion limit.
        let mut inner = Vec::new();
        for _ in 0..200 {
            // AnyValue{array_value (5): ArrayValue{values (1): inner}}
            let mut array = vec![0x0a];
            prost::encoding::encode_varint(inner.len() as u64, &mut array);
            array.extend_from_slice(&inner);
            let mut any = vec![0x2a];
            prost::encoding::encode_varint(array.len() as u64, &mut any);
            any.extend_from_slice(&array);
            inner = any;
        }
        let e = parse_any_value(&inner);
        assert!(e, "nesting past the limit is an error");
    }

    fn parse_any_value(bytes: &[u8]) -> bool {
        crate::otlp::proto::AnyValue::decode(bytes).is_err()
    }

    #[test]
    fn body_cap_is_checked_after_decompression() {
        let bytes = request().encode_to_vec();
        let pb = Some("application/x-protobuf");
        let cap = bytes.len() - 1;
        let e = decode_request(&bytes, pb, None, cap).err();
        assert_eq!(e.map(|e| e.http_status()), Some(413));
        // Compressed it is small, but decompressed it is over the cap.
        let e = decode_request(&gzip(&bytes), pb, Some("gzip"), cap).err();
        assert_eq!(e.as_ref().map(DecodeError::http_status), Some(413));
        assert_eq!(e.map(|e| e.reason()), Some("too_large"));
        // Exactly at the cap is fine.
        assert!(decode_request(&gzip(&bytes), pb, Some("gzip"), bytes.len()).is_ok());
    }

    /// Counts the bytes a reader hands out.
    struct Counting<R> {
        inner: R,
        out: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.out += n;
            Ok(n)
        }
    }

    #[test]
    fn gzip_bomb_is_capped() {
        // 256 MiB of zeros gzip to about 250 KiB.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            let _ = e.write_all(&zeros);
        }
        let bomb = e.finish().unwrap_or_default();
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let cap = 4 << 20;
        let mut reader = Counting {
            inner: flate2::read::MultiGzDecoder::new(bomb.as_slice()),
            out: 0,
        };
        let r = read_capped(&mut reader, cap, "gzip");
        assert!(matches!(r, Err(DecodeError::TooLarge { .. })), "{r:?}");
        assert!(
            reader.out <= cap + 1,
            "read {} bytes past the cap",
            reader.out
        );
        let r = decode_request(&bomb, Some("application/x-protobuf"), Some("gzip"), cap);
        assert_eq!(r.err().map(|e| e.http_status()), Some(413));
    }

    #[test]
    fn capped_reads_never_allocate_past_the_cap() {
        for (len, cap) in [(0, 10), (10, 10), (100_000, 100_000), (70_000, 1 << 20)] {
            let data = vec![7u8; len];
            let out = read_capped(data.as_slice(), cap, "identity").unwrap_or_default();
            assert_eq!(out.len(), len);
            assert!(
                out.capacity() <= (cap + 1).max(16 * 1024),
                "{len}/{cap}: {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn wrong_id_lengths_are_refused_with_a_partial_success_count() {
        // Valid hex of the wrong length decodes; the span alone is refused.
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok"},
            {"traceId":"5b8efff798038103d269b633813fc6","spanId":"eee19b7ec3c1b174","name":"short trace"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b1","name":"short span"},
            {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b174","name":"zero"}]}]}]}"#;
        let request = ok(decode_request(
            body,
            Some("application/json"),
            None,
            1 << 20,
        ));
        let (records, refusals) = crate::otlp::span::split(request);
        assert_eq!(records.len(), 1);
        assert_eq!(refusals.total(), 3);
        let reply = success_body(Format::Json, refusals.total(), &refusals.message());
        let json: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
        assert_eq!(json["partialSuccess"]["rejectedSpans"], "3");
        assert!(
            json["partialSuccess"]["errorMessage"]
                .as_str()
                .is_some_and(|m| m.starts_with("3 spans refused")),
            "{json}"
        );
    }

    #[test]
    fn success_replies() {
        assert_eq!(success_body(Format::Json, 0, ""), b"{}");
        assert!(success_body(Format::Protobuf, 0, "").is_empty());
        let json: serde_json::Value =
            serde_json::from_slice(&success_body(Format::Json, 2, "2 spans refused"))
                .unwrap_or_default();
        assert_eq!(json["partialSuccess"]["rejectedSpans"], "2");
        assert_eq!(json["partialSuccess"]["errorMessage"], "2 spans refused");
        let pb = success_body(Format::Protobuf, 2, "why");
        let back = ExportTraceServiceResponse::decode(pb.as_slice()).unwrap_or_default();
        assert_eq!(
            back.partial_success
                .map(|p| (p.rejected_spans, p.error_message)),
            Some((2, "why".to_owned()))
        );
    }
}
