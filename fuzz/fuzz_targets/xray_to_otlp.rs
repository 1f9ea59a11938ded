//! Fuzzes the X-Ray → OTLP conversion (`otlp::from_xray`) with any bytes as a segment document
//! (the first byte picks holding or marking documents in progress), and what follows it: each
//! span converted back to an X-Ray document and rendered as an OTLP JSON line.
//!
//! Besides "never panics, never hangs" (no recursion on the input's nesting): `head` and
//! `convert` agree on whether a document is usable and on what it is; every span has the
//! document's trace id and ids of the right length, not all zero, the first one the document's
//! own id; a held document gives no spans and a marked one always some; every span's X-Ray
//! document passes the daemon's own datagram check; the OTLP JSON line of a span decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_daemon::document::{self, DEFAULT_MAX_DOCUMENT_BYTES};
use xray_daemon::otlp::decode::{self, Format};
use xray_daemon::otlp::from_xray::{self, InProgress, Settings};
use xray_daemon::otlp::render;
use xray_daemon::otlp::to_xray::{self, ConversionSettings};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, doc)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        service_name: "fuzz".to_owned(),
        in_progress: if mode & 1 == 0 {
            InProgress::Hold
        } else {
            InProgress::Mark
        },
    };
    let head = from_xray::head(doc);
    let converted = from_xray::convert(doc, &settings);
    let converted = match (head, converted) {
        (Ok(head), Ok(converted)) => {
            assert_eq!(head, converted.head, "head and convert disagree");
            converted
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "head and convert refuse differently");
            return;
        }
        (head, converted) => panic!("head {head:?} but convert {converted:?}"),
    };
    let held = converted.head.in_progress && settings.in_progress == InProgress::Hold;
    assert_eq!(converted.spans.is_empty(), held, "held iff no spans");
    if let Some(first) = converted.spans.first() {
        assert_eq!(first.span.span_id, converted.head.id);
    }
    for record in &converted.spans {
        assert_eq!(record.span.trace_id, converted.head.trace_id);
        assert_eq!(record.span.span_id.len(), 8);
        assert!(record.span.span_id.iter().any(|b| *b != 0));
        assert!(record.span.parent_span_id.is_empty() || record.span.parent_span_id.len() == 8);
        if let Ok(out) = to_xray::convert(
            record,
            &ConversionSettings::default(),
            DEFAULT_MAX_DOCUMENT_BYTES,
        ) {
            let mut datagram = b"{\"format\":\"json\",\"version\":1}\n".to_vec();
            datagram.extend_from_slice(&out.document.body);
            assert!(
                document::parse(&datagram, DEFAULT_MAX_DOCUMENT_BYTES).is_ok(),
                "a converted document the daemon itself would refuse: {}",
                String::from_utf8_lossy(&out.document.body)
            );
        }
        let line = render::otlp_json_line(record);
        assert!(
            decode::parse(line.as_bytes(), Format::Json).is_ok(),
            "an OTLP JSON line that does not decode: {line}"
        );
    }
});
