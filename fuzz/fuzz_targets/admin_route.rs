//! Fuzzes `admin::route`, which decides what a TCP listener of the daemon does with every
//! request before anything is read, answered or forwarded.
//!
//! The input is read as a request head: `METHOD TARGET` on the first line, then `name: value`
//! header lines. It is routed through each listener's table: the `-t` address with and without
//! `--proxy-sampling-only`, and the `--stats-address` one. Besides "never panics": a CONNECT or
//! an absolute-form target is never forwarded (requests only ever go to the X-Ray endpoint);
//! with sampling-only, only the two sampling calls are; nothing is forwarded from the stats
//! address, where every path but the admin ones gets 404; a declared body over the cap is never
//! forwarded; a local route is always one of the table's entries; a refusal always says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_daemon::admin::{Fallback, ForwardRule, Route, RouteTable, route};

/// A small cap, so that declared lengths around it are reachable.
const MAX_BODY: usize = 1000;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(first) = lines.next() else { return };
    let mut parts = first.splitn(2, |b| *b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let tables = [
        RouteTable::daemon(
            ForwardRule {
                sampling_only: false,
                max_body: MAX_BODY,
            },
            false,
            false,
        ),
        RouteTable::daemon(
            ForwardRule {
                sampling_only: true,
                max_body: MAX_BODY,
            },
            true,
            true,
        ),
        RouteTable::stats_address(),
        RouteTable::otlp_http(),
    ];
    let absolute = uri.scheme().is_some() || uri.authority().is_some();
    for table in &tables {
        let named = table.entries().iter().find(|e| e.path.matches(uri.path()));
        match route(&method, &uri, &headers, table) {
            Ok(Route::Forward) => {
                assert!(method != http::Method::CONNECT, "CONNECT forwarded");
                assert!(!absolute, "absolute target forwarded: {uri}");
                assert!(named.is_none(), "an entry's path forwarded: {uri}");
                let Fallback::Forward(rule) = table.fallback() else {
                    panic!("forwarded by a table without a forward route: {uri}");
                };
                if rule.sampling_only {
                    assert!(
                        method == http::Method::POST
                            && matches!(uri.path(), "/GetSamplingRules" | "/SamplingTargets"),
                        "sampling-only forwarded {method} {uri}"
                    );
                }
                for length in headers.get_all(http::header::CONTENT_LENGTH) {
                    let declared = length
                        .to_str()
                        .ok()
                        .and_then(|l| l.trim().parse::<u64>().ok());
                    assert!(
                        declared.is_none_or(|l| l <= rule.max_body as u64),
                        "declared length {length:?} over the cap forwarded"
                    );
                }
            }
            Ok(local) => {
                assert!(!absolute, "absolute target answered locally: {uri}");
                let entry = named.unwrap_or_else(|| panic!("{local:?} for {uri}, no entry"));
                assert_eq!(entry.route, local, "{uri}");
                assert!(entry.methods.allows(&method), "{method} {uri}");
            }
            Err(refusal) => {
                assert!(!refusal.message.trim().is_empty());
                assert!(refusal.message.ends_with('\n'), "{refusal:?}");
                if let (Fallback::NotFound(_), None, false) = (table.fallback(), named, absolute) {
                    if method != http::Method::CONNECT {
                        assert_eq!(refusal.status, http::StatusCode::NOT_FOUND, "{uri}");
                    }
                }
            }
        }
    }
});
