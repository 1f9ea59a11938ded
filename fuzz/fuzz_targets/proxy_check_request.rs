//! Fuzzes `proxy::check_request`, which decides what the TCP edge does with every request
//! before anything is forwarded.
//!
//! The input is read as a request head: `METHOD TARGET` on the first line, then `name: value`
//! header lines. Besides "never panics": with the sampling-only option, only the two sampling
//! calls and the daemon's own paths get through; an absolute-form target or CONNECT is never
//! forwarded (requests only ever go to the X-Ray endpoint); a refusal always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_daemon::proxy::{ProxySettings, Route, check_request};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(first) = lines.next() else { return };
    let mut parts = first.splitn(2, |b| *b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return };
    let Ok(method) = http::Method::from_bytes(method) else { return };
    let Ok(uri) = http::Uri::try_from(target) else { return };
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    for sampling_only in [false, true] {
        let settings = ProxySettings { sampling_only, ..ProxySettings::default() };
        match check_request(&method, &uri, &headers, &settings) {
            Ok(Route::Forward) => {
                assert!(method != http::Method::CONNECT, "CONNECT forwarded");
                assert!(uri.scheme().is_none() && uri.authority().is_none(), "absolute target forwarded: {uri}");
                if sampling_only {
                    assert!(
                        matches!(uri.path(), "/GetSamplingRules" | "/SamplingTargets"),
                        "sampling-only forwarded {uri}"
                    );
                }
            }
            Ok(_) => assert!(uri.path().starts_with("/daemon/"), "local route for {uri}"),
            Err(refusal) => assert!(!refusal.message.trim().is_empty()),
        }
    }
});
