//! The environment variables the daemon's own rules read (AWS's, and the OpenTelemetry
//! exporter's for a bare `--sink otlp`), captured once.
//!
//! In: the process environment, read once by [`Env::from_process`] at the binary's edge (the
//! only place outside tests that reads `std::env` for AWS), or made-up pairs in tests
//! ([`Env::from_pairs`]). Out: lookups for the region order, the outbound proxy and the
//! metadata switches, so those rules are unit-tested without touching the process.
//!
//! A variable set to an empty or blank value counts as unset. Only the variables in
//! [`Env::VARIABLES`] are captured; `Debug` shows their names, never their values (a proxy URL
//! may hold a password).
//!
//! Not covered: `aws-config`'s own providers (the credential chain, the profile region, the
//! IMDS client) read the process environment themselves, as the SDK documents: in aws-config
//! 1.13 the hook that would hand them this environment (`ProviderConfig::with_env`) is private
//! to the crate, and `ConfigLoader::env` exists only with its `test-util` feature.

use std::collections::BTreeMap;

/// The environment variables the daemon's own AWS rules read.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Every variable [`Env::from_process`] captures: the region (`AWS_REGION`, and
    /// `AWS_DEFAULT_REGION` in local mode), the ECS task metadata switches, the IMDS switch,
    /// this host's identity overrides, the outbound proxy variables in both cases, and the
    /// OpenTelemetry exporter variables a bare `--sink otlp` reads
    /// ([`crate::config::otlp_sink`]).
    pub const VARIABLES: &'static [&'static str] = &[
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_INSTANCE_ID",
        "AWS_HOSTNAME",
        "ECS_ENABLE_CONTAINER_METADATA",
        "ECS_CONTAINER_METADATA_FILE",
        "ECS_CONTAINER_METADATA_URI_V4",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ];

    /// The [`Env::VARIABLES`] of this process (values that are not UTF-8 count as unset).
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that reads the process environment (clippy.toml)"
    )]
    pub fn from_process() -> Self {
        Env {
            vars: Self::VARIABLES
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
                .collect(),
        }
    }

    /// An environment of exactly these variables (for tests, and for embedding the daemon).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The variable's value, if it is set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(
            Self::VARIABLES.contains(&name),
            "{name} is read but not captured by Env::from_process; add it to Env::VARIABLES"
        );
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The first of `names` that is set and not blank.
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| self.get(name))
    }

    /// Whether the variable says `true` (any case, surrounding blanks ignored).
    pub fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a proxy URL may carry a password.
        f.debug_tuple("Env")
            .field(&self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Env;

    #[test]
    fn blank_values_count_as_unset() {
        let env = Env::from_pairs([("AWS_REGION", " "), ("HTTPS_PROXY", ""), ("NO_PROXY", "x")]);
        assert_eq!(env.get("AWS_REGION"), None);
        assert_eq!(env.first(&["HTTPS_PROXY", "NO_PROXY"]), Some("x"));
        assert_eq!(env.get("AWS_DEFAULT_REGION"), None);
    }

    #[test]
    fn true_is_any_case() {
        let env = Env::from_pairs([
            ("ECS_ENABLE_CONTAINER_METADATA", " TRUE "),
            ("AWS_EC2_METADATA_DISABLED", "yes"),
        ]);
        assert!(env.is_true("ECS_ENABLE_CONTAINER_METADATA"));
        assert!(!env.is_true("AWS_EC2_METADATA_DISABLED"));
        assert!(!env.is_true("AWS_REGION"));
    }

    #[test]
    fn debug_never_shows_values() {
        let env = Env::from_pairs([("HTTPS_PROXY", "http://user:secret@proxy:3128")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("HTTPS_PROXY"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
