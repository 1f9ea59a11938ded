//! How calls to AWS leave the host: directly or through an HTTP(S) proxy, verifying TLS
//! certificates or not.
//!
//! In: `-p/--proxy-address`, `NoVerifySSL` and the proxy variables of the [`Env`]. Out: an
//! [`Outbound`] that hands out the SDK HTTP client (X-Ray, STS, SSO) and a connector for the
//! sampling proxy's one-off calls, and says in words what it does (for the startup banner).
//!
//! The proxy, first that applies:
//! 1. `-p` (or the config file's `ProxyAddress`): every call to AWS goes through it, except to
//!    hosts `NO_PROXY`/`no_proxy` names;
//! 2. the environment: `HTTPS_PROXY`/`https_proxy` for `https://` targets,
//!    `HTTP_PROXY`/`http_proxy` for `http://` targets, `ALL_PROXY`/`all_proxy` for either when
//!    the specific one is unset, `NO_PROXY`/`no_proxy` honoured;
//! 3. none.
//!
//! In case 2 the SDK's own client is given `ProxyConfig::from_env()`, which reads the same
//! variables from the process (the `Env` was captured from it, and nothing changes them):
//! the SDK's public `ProxyConfig` cannot say "one proxy for http, another for https", nor take
//! a proxy URL without a scheme, both of which its environment mode understands. Our own
//! client for `NoVerifySSL` (module `insecure_tls`) is given the rules from the [`Env`].
//!
//! Instance and task metadata never use this (see `metadata`).

use std::time::Duration;

use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as ClientBuilder, Connector, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use hyper_util::client::proxy::matcher::Matcher;

use super::env::Env;
use super::insecure_tls::InsecureClient;
use super::{AwsError, CONNECT_TIMEOUT};

/// The proxy variables, most specific first, as the banner names their source.
const PROXY_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];
const NO_PROXY_VARIABLES: &[&str] = &["NO_PROXY", "no_proxy"];

/// How calls to AWS leave the host: directly or through a proxy, verifying TLS or not.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The proxy rules for the SDK's client.
    proxy: ProxyConfig,
    /// The same rules, for our own client (`NoVerifySSL`).
    rules: ProxyRules,
    /// Set with `NoVerifySSL`: the client that skips certificate checks.
    insecure: Option<InsecureClient>,
    /// The banner's words, e.g. `direct` or `through proxy http://p:3128 (from -p)`.
    pub description: String,
}

/// Which proxy applies, from the flag and the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ProxyRules {
    /// No proxy.
    None,
    /// `-p`: every call through `url`, except to the `no_proxy` hosts.
    Explicit {
        url: String,
        no_proxy: Option<String>,
    },
    /// The environment's proxy variables.
    Environment {
        all: Option<String>,
        http: Option<String>,
        https: Option<String>,
        no_proxy: Option<String>,
    },
}

impl ProxyRules {
    /// The flag if given, else the environment's variables, else none.
    fn select(proxy_address: Option<&str>, env: &Env) -> Self {
        let no_proxy = env.first(NO_PROXY_VARIABLES).map(str::to_owned);
        if let Some(url) = proxy_address.filter(|u| !u.is_empty()) {
            return ProxyRules::Explicit {
                url: url.to_owned(),
                no_proxy,
            };
        }
        if env.first(PROXY_VARIABLES).is_none() {
            return ProxyRules::None;
        }
        let owned = |names: &[&str]| env.first(names).map(str::to_owned);
        ProxyRules::Environment {
            all: owned(&["ALL_PROXY", "all_proxy"]),
            http: owned(&["HTTP_PROXY", "http_proxy"]),
            https: owned(&["HTTPS_PROXY", "https_proxy"]),
            no_proxy,
        }
    }

    /// The rules as hyper's matcher (for our own client); `None` for no proxy.
    fn matcher(&self) -> Option<Matcher> {
        match self {
            ProxyRules::None => None,
            ProxyRules::Explicit { url, no_proxy } => Some(
                Matcher::builder()
                    .all(url.as_str())
                    .no(no_proxy.as_deref().unwrap_or_default())
                    .build(),
            ),
            ProxyRules::Environment {
                all,
                http,
                https,
                no_proxy,
            } => Some(
                Matcher::builder()
                    .all(all.as_deref().unwrap_or_default())
                    .http(http.as_deref().unwrap_or_default())
                    .https(https.as_deref().unwrap_or_default())
                    .no(no_proxy.as_deref().unwrap_or_default())
                    .build(),
            ),
        }
    }

    /// The rules for the SDK's client.
    fn proxy_config(&self) -> Result<ProxyConfig, AwsError> {
        match self {
            ProxyRules::None => Ok(ProxyConfig::disabled()),
            ProxyRules::Explicit { url, no_proxy } => {
                let proxy = ProxyConfig::all(url.as_str()).map_err(|e| AwsError::ProxyAddress {
                    value: url.clone(),
                    why: e.to_string(),
                })?;
                Ok(match no_proxy {
                    Some(rules) => proxy.no_proxy(rules),
                    None => proxy,
                })
            }
            // See the module docs: the SDK reads the same variables.
            ProxyRules::Environment { .. } => Ok(ProxyConfig::from_env()),
        }
    }

    /// The banner's words.
    fn describe(&self, env: &Env) -> String {
        match self {
            ProxyRules::None => "direct".to_owned(),
            ProxyRules::Explicit { url, no_proxy } => {
                describe_proxy(url, "-p/--proxy-address", no_proxy.as_deref())
            }
            ProxyRules::Environment { no_proxy, .. } => describe_proxy(
                env.first(PROXY_VARIABLES).unwrap_or_default(),
                "the environment",
                no_proxy.as_deref(),
            ),
        }
    }
}

impl Outbound {
    /// From `-p` (if given) or the proxy variables of `env`; `NO_PROXY` applies either way.
    /// With `no_verify_ssl`, TLS certificates of AWS endpoints are not checked.
    pub fn from_settings(
        proxy_address: Option<&str>,
        no_verify_ssl: bool,
        env: &Env,
    ) -> Result<Self, AwsError> {
        let rules = ProxyRules::select(proxy_address, env);
        let mut outbound = Outbound {
            proxy: rules.proxy_config()?,
            description: rules.describe(env),
            rules,
            insecure: None,
        };
        if no_verify_ssl {
            let client = InsecureClient::new(outbound.rules.matcher(), CONNECT_TIMEOUT)
                .map_err(|why| AwsError::Tls { why })?;
            outbound.insecure = Some(client);
            outbound
                .description
                .push_str(", TLS certificates NOT verified (NoVerifySSL)");
        }
        Ok(outbound)
    }

    /// No proxy at all.
    pub fn direct() -> Self {
        Outbound {
            proxy: ProxyConfig::disabled(),
            rules: ProxyRules::None,
            insecure: None,
            description: "direct".to_owned(),
        }
    }

    /// The SDK HTTP client for calls to AWS (the SDK's own default client, with this proxy).
    pub fn http_client(&self) -> SharedHttpClient {
        if let Some(insecure) = &self.insecure {
            return SharedHttpClient::new(insecure.clone());
        }
        let proxy = self.proxy.clone();
        // The same construction as the SDK's default HTTPS client, with the proxy chosen here
        // instead of always the environment's.
        ClientBuilder::new().build_with_connector_fn(move |settings, components| {
            let mut builder =
                ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder.set_proxy_config(Some(proxy.clone()));
            builder.build()
        })
    }

    /// A connector for one-off calls to AWS outside an SDK client (the sampling proxy).
    pub fn connector(
        &self,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> SharedHttpConnector {
        if let Some(insecure) = &self.insecure {
            // Its connect timeout is CONNECT_TIMEOUT; the caller bounds the whole call.
            return SharedHttpConnector::new(insecure.clone());
        }
        let connector: Connector = ConnectorBuilder::default()
            .connector_settings(
                HttpConnectorSettings::builder()
                    .connect_timeout(connect_timeout)
                    .read_timeout(read_timeout)
                    .build(),
            )
            .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
            .proxy_config(self.proxy.clone())
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .build();
        SharedHttpConnector::new(connector)
    }
}

fn describe_proxy(url: &str, from: &str, no_proxy: Option<&str>) -> String {
    // Never print credentials in a proxy URL.
    let shown = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    match no_proxy {
        Some(rules) => format!("through proxy {shown} (from {from}; NO_PROXY {rules})"),
        None => format!("through proxy {shown} (from {from})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy our own client would use for `target`, as `host:port`.
    fn proxy_for(rules: &ProxyRules, target: &str) -> Option<String> {
        let matcher = rules.matcher()?;
        let uri: http::Uri = target.parse().ok()?;
        let intercept = matcher.intercept(&uri)?;
        intercept.uri().authority().map(ToString::to_string)
    }

    const XRAY: &str = "https://xray.us-east-1.amazonaws.com/TraceSegments";

    #[test]
    fn a_bad_proxy_address_is_refused_with_the_flag_named() {
        let env = Env::default();
        let err = Outbound::from_settings(Some("not a url"), false, &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("-p/--proxy-address"), "{err}");
        assert!(
            Outbound::from_settings(Some("http://127.0.0.1:3128"), false, &env)
                .is_ok_and(|o| o.description.contains("127.0.0.1:3128"))
        );
    }

    #[test]
    fn proxy_credentials_are_never_shown() {
        let d = describe_proxy("http://user:secret@proxy:3128", "-p", None);
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("proxy:3128"), "{d}");
    }

    #[test]
    fn the_flag_beats_the_environment_and_no_proxy_applies_to_it() {
        let env = Env::from_pairs([
            ("HTTPS_PROXY", "http://env-proxy:3128"),
            ("NO_PROXY", "127.0.0.1,.internal"),
        ]);
        let rules = ProxyRules::select(Some("http://flag-proxy:8080"), &env);
        assert_eq!(proxy_for(&rules, XRAY).as_deref(), Some("flag-proxy:8080"));
        assert_eq!(
            proxy_for(&rules, "http://xray.eu-west-1.amazonaws.com/").as_deref(),
            Some("flag-proxy:8080")
        );
        assert_eq!(proxy_for(&rules, "http://127.0.0.1:4000/"), None);
        assert_eq!(proxy_for(&rules, "https://xray.corp.internal/"), None);
        assert_eq!(
            rules.describe(&env),
            "through proxy http://flag-proxy:8080 (from -p/--proxy-address; NO_PROXY \
             127.0.0.1,.internal)"
        );
    }

    #[test]
    fn the_environment_proxies_each_scheme_with_its_variable() {
        let env = Env::from_pairs([
            ("https_proxy", "http://secure:3128"),
            ("HTTP_PROXY", "http://plain:3128"),
            ("no_proxy", "localhost"),
        ]);
        let rules = ProxyRules::select(None, &env);
        assert_eq!(proxy_for(&rules, XRAY).as_deref(), Some("secure:3128"));
        assert_eq!(
            proxy_for(&rules, "http://xray.example.com/").as_deref(),
            Some("plain:3128")
        );
        assert_eq!(proxy_for(&rules, "https://localhost:4000/"), None);
        assert_eq!(
            rules.describe(&env),
            "through proxy http://secure:3128 (from the environment; NO_PROXY localhost)"
        );
        // ALL_PROXY stands in for the one not set.
        let env = Env::from_pairs([
            ("HTTPS_PROXY", "http://secure:3128"),
            ("ALL_PROXY", "http://any:3128"),
        ]);
        let rules = ProxyRules::select(None, &env);
        assert_eq!(proxy_for(&rules, XRAY).as_deref(), Some("secure:3128"));
        assert_eq!(
            proxy_for(&rules, "http://xray.example.com/").as_deref(),
            Some("any:3128")
        );
    }

    #[test]
    fn without_flag_or_variables_calls_go_direct() {
        let env = Env::from_pairs([("NO_PROXY", "localhost"), ("HTTPS_PROXY", " ")]);
        let rules = ProxyRules::select(Some(""), &env);
        assert_eq!(rules, ProxyRules::None);
        assert_eq!(proxy_for(&rules, XRAY), None);
        assert_eq!(rules.describe(&env), "direct");
    }
}
