//! The AWS distros for OpenTelemetry's UDP form, read as spans: `T1S` (sampled) or `T1` (older
//! releases, taken as sampled), then the base64 of an OTLP `ExportTraceServiceRequest`.
//!
//! Data comes from an X-Ray document the UDP receiver accepted by its prefix alone (see
//! [`crate::document`]); the spans go to the sinks that want spans (`--sink stdout`, `--sink
//! file`). The X-Ray copy is never made from them: the X-Ray sink sends the datagram's body as
//! it came. `T1U` (unsampled, sent only for Application Signals' metrics) and `M1` (metrics)
//! are not spans for anyone but X-Ray: [`spans_of`] gives `None` for them. Decoding runs in the
//! sinks, never on the receive thread.

use base64::Engine as _;

use super::decode::{self, DecodeError, Format};
use super::span::{self, SpanRecord};
use crate::document::{DistroPrefix, Document, DocumentKind};

/// The spans of `doc` when it is the distro's sampled form (`T1S`, `T1`); `None` for any other
/// document. Spans with unusable ids are left out, as the OTLP receivers refuse them.
pub fn spans_of(doc: &Document) -> Option<Result<Vec<SpanRecord>, DecodeError>> {
    let prefix = match doc.kind() {
        DocumentKind::Distro(p @ (DistroPrefix::T1S | DistroPrefix::T1)) => p,
        _ => return None,
    };
    let encoded = doc.body.get(prefix.as_str().len()..).unwrap_or_default();
    Some(decode_spans(encoded))
}

fn decode_spans(encoded: &[u8]) -> Result<Vec<SpanRecord>, DecodeError> {
    // The distros write the standard alphabet with padding; be lenient about padding only.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(encoded.trim_ascii())
        .map_err(|e| DecodeError::Protobuf(format!("its base64 does not decode: {e}")))?;
    let request = decode::parse(&bytes, Format::Protobuf)?;
    Ok(span::split(request).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::{
        ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    };
    use prost::Message as _;

    fn request() -> Vec<u8> {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "op".into(),
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue::string("service.name", "svc")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    fn doc(prefix: &str, payload: &[u8]) -> Document {
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        Document::unchecked(format!("{prefix}{b64}"))
    }

    #[test]
    fn sampled_forms_give_their_spans_and_the_others_none() {
        for prefix in ["T1S", "T1"] {
            let spans = match spans_of(&doc(prefix, &request())) {
                Some(Ok(s)) => s,
                other => panic!("{prefix}: {other:?}"),
            };
            assert_eq!(spans.len(), 1);
            assert_eq!(spans[0].span.name, "op");
        }
        for prefix in ["T1U", "M1"] {
            assert!(spans_of(&doc(prefix, &request())).is_none(), "{prefix}");
        }
        let json = Document::unchecked(r#"{"id":"a"}"#.to_owned());
        assert!(spans_of(&json).is_none());
    }

    #[test]
    fn bad_base64_or_protobuf_is_an_error_not_a_panic() {
        let bad = Document::unchecked("T1S!!!not base64".to_owned());
        assert!(matches!(spans_of(&bad), Some(Err(_))));
        assert!(matches!(spans_of(&doc("T1S", &[0xff; 9])), Some(Err(_))));
    }
}
