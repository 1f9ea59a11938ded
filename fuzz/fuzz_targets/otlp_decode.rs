//! Fuzzes the OTLP decoders and what follows them: a request body as protobuf or OTLP JSON
//! (optionally gzip'd or deflated), and the AWS distros' UDP form (`T1S` + base64), taken apart
//! into spans, each converted to an X-Ray document and rendered for the local sinks.
//!
//! Besides "never panics, never hangs": decompression never yields more than the cap; every
//! span that comes out has ids of the right length; every converted document is within the
//! document cap and passes the daemon's own datagram check (`document::parse`); the OTLP JSON
//! line of a span decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_daemon::document::{self, DEFAULT_MAX_DOCUMENT_BYTES, Document};
use xray_daemon::otlp::decode::{self, Encoding, Format};
use xray_daemon::otlp::to_xray::{self, ConversionSettings};
use xray_daemon::otlp::{distro, render, span};

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let records = match mode % 6 {
        5 => {
            let doc = Document::unchecked(bytes::Bytes::copy_from_slice(body));
            match distro::spans_of(&doc) {
                Some(Ok(records)) => records,
                _ => return,
            }
        }
        m => {
            let format = if m % 2 == 0 {
                Format::Protobuf
            } else {
                Format::Json
            };
            let encoding = match m / 2 {
                0 => Encoding::Identity,
                1 => Encoding::Gzip,
                _ => Encoding::Deflate,
            };
            let Ok(bytes) = decode::decompress(body, encoding, CAP) else {
                return;
            };
            assert!(bytes.len() <= CAP, "decompressed past the cap");
            let Ok(request) = decode::parse(&bytes, format) else {
                return;
            };
            span::split(request).0
        }
    };
    let settings = ConversionSettings {
        indexed_attributes: vec!["app.key".to_owned()],
        index_all: mode & 0x80 != 0,
    };
    for record in &records {
        assert_eq!(record.span.trace_id.len(), 16);
        assert_eq!(record.span.span_id.len(), 8);
        if let Ok(converted) = to_xray::convert(record, &settings, DEFAULT_MAX_DOCUMENT_BYTES) {
            let body = &converted.document.body;
            assert!(body.len() <= DEFAULT_MAX_DOCUMENT_BYTES);
            let mut datagram = b"{\"format\":\"json\",\"version\":1}\n".to_vec();
            datagram.extend_from_slice(body);
            assert!(
                document::parse(&datagram, DEFAULT_MAX_DOCUMENT_BYTES).is_ok(),
                "a converted document the daemon itself would refuse: {}",
                String::from_utf8_lossy(body)
            );
        }
        let _ = render::stdout_line(record);
        let line = render::otlp_json_line(record);
        assert!(
            decode::parse(line.as_bytes(), Format::Json).is_ok(),
            "an OTLP JSON line that does not decode: {line}"
        );
    }
});
