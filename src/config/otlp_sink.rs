//! The OTLP sinks' settings (`--sink otlp[:URL]`): their URL, headers, compression and timeout,
//! from the command line and, for a bare `--sink otlp`, the OpenTelemetry environment
//! variables.
//!
//! In: the `--sink` values in order with the `--otlp-header`s that followed each
//! ([`super::cli::Cli::otlp_header_owners`]), the captured environment ([`Env`]) and the
//! daemon's own listen addresses. Out: each `SinkSpec::Otlp` filled in with its
//! [`OtlpSettings`], or a [`ConfigError`] naming the flag or variable and the fix. Header values
//! are secrets: no message shows them.
//!
//! The rules:
//! - **URL**: `/v1/traces` is appended only when the URL's path is empty or `/` (the Python
//!   exporter's rule), so `https://api.honeycomb.io` and `http://host:4318/custom/path` both do
//!   what their writer meant. `http://` or `https://`, with a host, no `user:password@`.
//! - **A bare `--sink otlp`** takes `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended; and the `…_HEADERS` (`k=v,k2=v2`,
//!   percent-decoded), `…_COMPRESSION` (`gzip`, `none`) and `…_TIMEOUT` (milliseconds) variables,
//!   the `TRACES_` one first. `…_PROTOCOL=grpc` is an error (this sink speaks OTLP/HTTP). The
//!   variables never make a sink on their own: hosts set them to point applications at this
//!   daemon.
//! - **No loops**: a URL on this host at one of the daemon's own ports (the OTLP receivers', the
//!   TCP proxy's) is refused.

use std::time::Duration;

use super::{ConfigError, ListenAddr, Source};
use crate::aws::Env;
use crate::otlp::from_xray::DEFAULT_SERVICE_NAME;
use crate::sink::SinkSpec;
use crate::sink::otlp::{Compression, OtlpSettings, OtlpTarget};

/// The OTLP path appended to a URL whose path is empty or `/`.
pub const TRACES_PATH: &str = "/v1/traces";
/// A call's timeout when nothing says otherwise (the OTLP exporters' default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const HEADER_FLAG: &str = "--otlp-header";

/// A variable of the OTLP exporter specification: the traces one first, then the general one.
fn variable<'a>(env: &'a Env, name: &str) -> Option<(&'static str, &'a str)> {
    let traces = format!("OTEL_EXPORTER_OTLP_TRACES_{name}");
    let general = format!("OTEL_EXPORTER_OTLP_{name}");
    [traces, general].into_iter().find_map(|n| {
        let known = Env::VARIABLES.iter().find(|v| **v == n)?;
        env.get(known).map(|value| (*known, value))
    })
}

/// Fills in every `SinkSpec::Otlp` of `sinks`. `headers` are the `--otlp-header` values, each
/// with the position in `sinks` of the `--sink` it followed (`None`: before any).
pub fn resolve(
    sinks: &mut [SinkSpec],
    headers: &[(Option<usize>, String)],
    env: &Env,
    service_name: Option<&str>,
    own: &[&ListenAddr],
) -> Result<Vec<String>, ConfigError> {
    let mut notes = Vec::new();
    let header_error = |why: String| ConfigError::Value {
        setting: Source::Flag(HEADER_FLAG),
        value: "(not shown)".into(),
        why,
    };
    let service_name = match service_name.map(str::trim) {
        Some("") => {
            return Err(ConfigError::Value {
                setting: Source::Flag("--otlp-service-name"),
                value: String::new(),
                why: "give a name, for example checkout (the default is unknown_service:xray)"
                    .into(),
            });
        }
        Some(name) => name.to_owned(),
        None => DEFAULT_SERVICE_NAME.to_owned(),
    };
    let mut given: Vec<Vec<(String, String)>> = sinks
        .iter()
        .map(|s| match s {
            SinkSpec::Otlp(target) => target.headers.clone(),
            _ => Vec::new(),
        })
        .collect();
    for (owner, header) in headers {
        let (name, value) = split_header(header).map_err(header_error)?;
        match owner.filter(|&k| matches!(sinks.get(k), Some(SinkSpec::Otlp(_)))) {
            Some(k) => given[k].push((name, value)),
            None => {
                return Err(header_error(format!(
                    "the header {name:?} follows no --sink otlp: a --otlp-header belongs to the \
                     --sink otlp before it, e.g. --sink otlp:https://api.honeycomb.io \
                     --otlp-header x-honeycomb-team=KEY"
                )));
            }
        }
    }
    for (spec, headers) in sinks.iter_mut().zip(given) {
        let SinkSpec::Otlp(target) = spec else {
            continue;
        };
        let mut settings = match &target.given {
            Some(url) => OtlpSettings {
                url: check_url(url, target.source.clone(), true, own)?,
                headers,
                compression: Compression::Gzip,
                timeout: DEFAULT_TIMEOUT,
                service_name: service_name.clone(),
            },
            None => from_environment(env, headers, &service_name, own, &mut notes)?,
        };
        if let Some(compression) = target.compression {
            settings.compression = compression;
        }
        target.settings = Some(settings);
    }
    Ok(notes)
}

/// A bare `--sink otlp`, filled in from the environment.
fn from_environment(
    env: &Env,
    mut headers: Vec<(String, String)>,
    service_name: &str,
    own: &[&ListenAddr],
    notes: &mut Vec<String>,
) -> Result<OtlpSettings, ConfigError> {
    let invalid = |name: &'static str, value: &str, why: String| ConfigError::Value {
        setting: Source::Variable(name),
        value: value.to_owned(),
        why,
    };
    if let Some((name, protocol)) = variable(env, "PROTOCOL") {
        match protocol.trim() {
            "http/protobuf" => {}
            "http/json" => notes.push(format!(
                "{name} is http/json: the otlp sink sends OTLP/HTTP protobuf, which every OTLP/HTTP \
                 endpoint takes"
            )),
            other => {
                return Err(invalid(
                    name,
                    other,
                    "the otlp sink speaks OTLP/HTTP: point it at the backend's OTLP/HTTP \
                     endpoint (port 4318 by convention) and set it to http/protobuf or unset it"
                        .into(),
                ));
            }
        }
    }
    let url = match (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => check_url(
            url,
            Source::Variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            false,
            own,
        )?,
        (None, Some(base)) => {
            let joined = format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/'));
            check_url(
                &joined,
                Source::Variable("OTEL_EXPORTER_OTLP_ENDPOINT"),
                false,
                own,
            )?
        }
        (None, None) => {
            return Err(ConfigError::Value {
                setting: Source::Flag("--sink"),
                value: "otlp".into(),
                why: "it has no URL: write --sink otlp:URL (for example \
                      --sink otlp:https://api.honeycomb.io), or set OTEL_EXPORTER_OTLP_ENDPOINT \
                      or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                    .into(),
            });
        }
    };
    if let Some((name, text)) = variable(env, "HEADERS") {
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = split_header(pair).map_err(|why| ConfigError::Value {
                setting: Source::Variable(name),
                value: "(not shown)".into(),
                why,
            })?;
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
            };
            let (Ok(key), Ok(value)) = (decode(&key), decode(&value)) else {
                return Err(ConfigError::Value {
                    setting: Source::Variable(name),
                    value: "(not shown)".into(),
                    why: "a percent-encoded name or value is not UTF-8".into(),
                });
            };
            headers.push((key, value));
        }
    }
    let compression = match variable(env, "COMPRESSION") {
        Some((name, value)) => value
            .parse::<Compression>()
            .map_err(|why| invalid(name, value, why))?,
        None => Compression::Gzip,
    };
    let timeout = match variable(env, "TIMEOUT") {
        Some((name, value)) => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=600_000).contains(ms))
            .map(Duration::from_millis)
            .ok_or_else(|| {
                invalid(
                    name,
                    value,
                    "milliseconds from 1 to 600000, as the OTLP exporter specification says".into(),
                )
            })?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(OtlpSettings {
        url,
        headers,
        compression,
        timeout,
        service_name: service_name.to_owned(),
    })
}

/// `NAME=VALUE` as its trimmed name and value; the error never shows the value.
fn split_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            let name = name.trim();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("{name:?} is not a header name"));
            }
            if http::HeaderValue::from_str(value.trim()).is_err() {
                return Err(format!(
                    "the value of {name:?} has characters a header cannot carry"
                ));
            }
            Ok((name.to_owned(), value.trim().to_owned()))
        }
        _ => Err("write NAME=VALUE, for example x-honeycomb-team=KEY".into()),
    }
}

/// The URL checked (http or https, a host, no user name) with the path rule applied when
/// `append_path` (URLs given on the command line), refused when it points back at the daemon.
fn check_url(
    text: &str,
    setting: Source,
    append_path: bool,
    own: &[&ListenAddr],
) -> Result<String, ConfigError> {
    let invalid = |why: String| ConfigError::Value {
        setting: setting.clone(),
        value: super::redact_userinfo(text),
        why,
    };
    let uri = super::check_url(text.trim()).map_err(&invalid)?;
    if super::has_userinfo(&uri) {
        return Err(invalid(
            "it takes no user name or password; give credentials as a header with \
             --otlp-header (or OTEL_EXPORTER_OTLP_HEADERS)"
                .into(),
        ));
    }
    let mut url = text.trim().to_owned();
    if append_path && matches!(uri.path(), "" | "/") && uri.query().is_none() {
        url = format!("{}{TRACES_PATH}", url.trim_end_matches('/'));
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    if let Some(addr) = own
        .iter()
        .find(|a| a.port() == port && is_this_host(host, a))
    {
        return Err(invalid(format!(
            "it is the daemon's own address {addr} (from {}): its spans would come back to it \
             in a loop. Give the backend's URL",
            addr.setting
        )));
    }
    Ok(url)
}

/// Whether `host` (from a sink URL) names the host a listen address of ours is on.
fn is_this_host(host: &str, listen: &ListenAddr) -> bool {
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    match listen.as_ip() {
        Some(addr) => {
            local
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip == addr.ip())
        }
        None => local || listen.to_string().starts_with(&format!("{host}:")),
    }
}

impl OtlpTarget {
    /// A sink as given: `otlp` (no URL) or `otlp:URL`.
    pub fn given(url: Option<String>) -> Self {
        OtlpTarget {
            given: url,
            headers: Vec::new(),
            compression: None,
            source: Source::Flag("--sink"),
            settings: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn own() -> Vec<ListenAddr> {
        let at = |s: &str| {
            ListenAddr::ip(
                s.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}")),
                Source::Flag("--otlp-http"),
            )
        };
        vec![at("127.0.0.1:4318"), at("0.0.0.0:2000")]
    }

    fn run(
        sinks: &[&str],
        headers: &[(Option<usize>, &str)],
        env: &[(&str, &str)],
    ) -> Result<Vec<OtlpSettings>, String> {
        let mut specs: Vec<SinkSpec> = sinks
            .iter()
            .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let headers: Vec<(Option<usize>, String)> =
            headers.iter().map(|(k, h)| (*k, (*h).to_owned())).collect();
        let own = own();
        let own: Vec<&ListenAddr> = own.iter().collect();
        resolve(
            &mut specs,
            &headers,
            &Env::from_pairs(env.iter().copied()),
            None,
            &own,
        )
        .map_err(|e| e.to_string())?;
        Ok(specs
            .into_iter()
            .filter_map(|s| match s {
                SinkSpec::Otlp(t) => t.settings,
                _ => None,
            })
            .collect())
    }

    fn urls(r: Result<Vec<OtlpSettings>, String>) -> Vec<String> {
        r.unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|s| s.url)
            .collect()
    }

    #[test]
    fn the_path_is_appended_only_to_an_empty_path_or_slash() {
        assert_eq!(
            urls(run(
                &[
                    "otlp:https://api.honeycomb.io",
                    "otlp:http://127.0.0.1:5000/",
                    "otlp:http://127.0.0.1:5001/custom/path",
                ],
                &[],
                &[]
            )),
            [
                "https://api.honeycomb.io/v1/traces",
                "http://127.0.0.1:5000/v1/traces",
                "http://127.0.0.1:5001/custom/path"
            ]
        );
    }

    #[test]
    fn headers_belong_to_the_sink_before_them_and_are_never_shown() {
        let r = run(
            &["otlp:http://a:1", "stdout", "otlp:http://b:2"],
            &[(Some(0), "x-one=1"), (Some(2), "x-two = s3cret ")],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r[0].headers, [("x-one".to_owned(), "1".to_owned())]);
        assert_eq!(r[1].headers, [("x-two".to_owned(), "s3cret".to_owned())]);
        for bad in [
            (None, "x-key=s3cret"),
            (Some(1), "x-key=s3cret"),
            (Some(0), "novalue"),
            (Some(0), "x-key=s3cret\u{7}"),
        ] {
            let e = run(&["otlp:http://a:1", "stdout"], &[bad], &[]).err();
            let e = e.unwrap_or_else(|| panic!("{bad:?} is refused"));
            assert!(e.contains("--otlp-header") && !e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn a_bare_sink_takes_the_standard_variables() {
        let r = run(
            &["otlp"],
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-honeycomb-team=a%2Cb,x-other=%20c",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r[0].url, "https://api.honeycomb.io/v1/traces");
        assert_eq!(
            r[0].headers,
            [
                ("x-honeycomb-team".to_owned(), "a,b".to_owned()),
                ("x-other".to_owned(), " c".to_owned())
            ]
        );
        assert_eq!(r[0].compression, Compression::None);
        assert_eq!(r[0].timeout, Duration::from_millis(2500));
        // The traces endpoint is taken as it is.
        assert_eq!(
            urls(run(
                &["otlp"],
                &[],
                &[
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "http://collector:4318/custom"
                    ),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
                ]
            )),
            ["http://collector:4318/custom"]
        );
        // A sink with its own URL ignores them.
        assert_eq!(
            urls(run(
                &["otlp:http://a:1"],
                &[],
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2")]
            )),
            ["http://a:1/v1/traces"]
        );
        let e = run(&["otlp"], &[], &[]).err().unwrap_or_default();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && e.contains("--sink otlp:"),
            "{e}"
        );
        let e = run(
            &["otlp"],
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .err()
        .unwrap_or_default();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("OTLP/HTTP"),
            "{e}"
        );
        let e = run(
            &["otlp"],
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ],
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("milliseconds"), "{e}");
    }

    #[test]
    fn the_daemons_own_addresses_are_refused() {
        for url in [
            "otlp:http://127.0.0.1:4318",
            "otlp:http://localhost:4318/v1/traces",
            "otlp:http://[::1]:2000",
            "otlp:http://127.0.0.1:2000",
        ] {
            let e = run(&[url], &[], &[]).err().unwrap_or_default();
            assert!(e.contains("loop"), "{url}: {e}");
        }
        assert_eq!(
            urls(run(&["otlp:http://127.0.0.1:4319"], &[], &[])).len(),
            1
        );
        let e = run(&["otlp:http://u:p@host:1"], &[], &[])
            .err()
            .unwrap_or_default();
        assert!(e.contains("no user name") && !e.contains(":p@"), "{e}");
    }
}
