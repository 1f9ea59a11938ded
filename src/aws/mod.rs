//! The one AWS configuration the daemon shares: region (with where it came from), credentials,
//! the X-Ray endpoint, the outbound proxy, and what instance metadata says about this host.
//!
//! In: [`AwsSettings`] (from the resolved [`crate::config::Config`]) and the process
//! environment (read by `aws-config`'s providers and here). Out: an [`AwsContext`] that the
//! X-Ray sink, the sampling proxy and telemetry build their clients from.
//!
//! Called after the sockets are bound: region and credential lookups may reach the network
//! (instance or task metadata), and documents arriving meanwhile wait in the buffer.
//!
//! Region, in the original daemon's order (first found wins):
//! 1. `-n/--region` or the config file's `Region`;
//! 2. `AWS_REGION`;
//! 3. unless `-o/--local-mode`: the ECS task metadata file (only when
//!    `ECS_ENABLE_CONTAINER_METADATA=true`, file `ECS_CONTAINER_METADATA_FILE`, region taken
//!    from `TaskARN`), then the ECS task metadata endpoint v4 (`ECS_CONTAINER_METADATA_URI_V4`,
//!    ours), then EC2 instance metadata (IMDSv2, [`IMDS_TIMEOUT`] in all, quiet when absent);
//! 4. with `-o`: the SDK's own region (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile).
//!
//! Credentials: the same providers, in the same order, as `aws-config`'s default chain
//! (environment, shared profiles with SSO and `credential_process`, web identity, ECS/EKS
//! container credentials, IMDSv2). The chain is assembled here rather than taken whole so that
//! the metadata providers get an HTTP client that never uses the outbound proxy (the original
//! sent instance metadata through it, its issue #255); providers that call AWS (STS, SSO) use
//! the proxy like every other AWS call. `-r ROLE` assumes that role through STS (session name
//! `xray-daemon`, as the original) with those credentials.
//!
//! Outbound proxy: `-p/--proxy-address` for every call to AWS (X-Ray, STS), else
//! `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`; `NO_PROXY` is honoured either way. Instance and task
//! metadata always go direct.
//!
//! `NoVerifySSL` (`--no-verify-ssl`): calls to AWS skip TLS certificate checks, through a small
//! client of ours (module `insecure_tls`), with a loud warning at startup.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::ProvideRegion;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_xray::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as ClientBuilder, Connector, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

pub mod failure;
mod insecure_tls;

pub use failure::{describe_error, error_kind};

/// Connect timeout for calls to AWS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one attempt of an API call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the startup credential check may take before it is reported as slow.
pub const CREDENTIAL_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one instance or task metadata lookup may take in all (connection, token, answer):
/// short, so that a host without metadata (a laptop, Fargate) never holds startup up.
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// The role session name used with `-r`, as the original daemon's.
pub const ROLE_SESSION_NAME: &str = "xray-daemon";

/// What the AWS configuration is built from.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// `-n/--region` or the config file's `Region`.
    pub region: Option<String>,
    /// `--endpoint` or the config file's `Endpoint`.
    pub endpoint: Option<String>,
    /// `-o/--local-mode`: no instance or task metadata lookups.
    pub local_mode: bool,
    /// `-r/--role-arn`: a role assumed through STS for every call (session `xray-daemon`).
    pub role_arn: Option<String>,
    /// `-p/--proxy-address`: outbound HTTP(S) proxy URL for calls to AWS.
    pub proxy_address: Option<String>,
    /// `NoVerifySSL`: do not verify TLS certificates of AWS endpoints (a loud warning at
    /// startup). Instance and task metadata are plain HTTP and unaffected.
    pub no_verify_ssl: bool,
}

/// How calls to AWS leave the host: directly or through a proxy, verifying TLS or not.
#[derive(Clone, Debug)]
pub struct Outbound {
    proxy: ProxyConfig,
    /// The same proxy rules for our own client (`NoVerifySSL`).
    matcher: ProxySource,
    /// Set with `NoVerifySSL`: the client that skips certificate checks.
    insecure: Option<insecure_tls::InsecureClient>,
    /// The banner's words, e.g. `direct` or `through proxy http://p:3128 (from -p)`.
    pub description: String,
}

/// Where the proxy rules come from.
#[derive(Clone, Debug)]
enum ProxySource {
    None,
    Explicit {
        url: String,
        no_proxy: Option<String>,
    },
    Environment,
}

impl ProxySource {
    fn matcher(&self) -> Option<hyper_util::client::proxy::matcher::Matcher> {
        use hyper_util::client::proxy::matcher::Matcher;
        match self {
            ProxySource::None => None,
            ProxySource::Explicit { url, no_proxy } => Some(
                Matcher::builder()
                    .all(url.clone())
                    .no(no_proxy.clone().unwrap_or_default())
                    .build(),
            ),
            ProxySource::Environment => Some(Matcher::from_env()),
        }
    }
}

impl Outbound {
    /// From `-p` (if given) or the proxy environment variables; `NO_PROXY` applies either way.
    /// With `no_verify_ssl`, TLS certificates of AWS endpoints are not checked.
    pub fn from_settings(
        proxy_address: Option<&str>,
        no_verify_ssl: bool,
    ) -> Result<Self, AwsError> {
        let mut outbound = Self::proxy_only(proxy_address)?;
        if no_verify_ssl {
            let client =
                insecure_tls::InsecureClient::new(outbound.matcher.matcher(), CONNECT_TIMEOUT)
                    .map_err(|why| AwsError::Tls { why })?;
            outbound.insecure = Some(client);
            outbound
                .description
                .push_str(", TLS certificates NOT verified (NoVerifySSL)");
        }
        Ok(outbound)
    }

    fn proxy_only(proxy_address: Option<&str>) -> Result<Self, AwsError> {
        let no_proxy = env_any(&["NO_PROXY", "no_proxy"]);
        if let Some(url) = proxy_address.filter(|u| !u.is_empty()) {
            let mut proxy = ProxyConfig::all(url).map_err(|e| AwsError::ProxyAddress {
                value: url.to_owned(),
                why: e.to_string(),
            })?;
            if let Some(rules) = &no_proxy {
                proxy = proxy.no_proxy(rules);
            }
            return Ok(Outbound {
                proxy,
                matcher: ProxySource::Explicit {
                    url: url.to_owned(),
                    no_proxy: no_proxy.clone(),
                },
                insecure: None,
                description: describe_proxy(url, "-p/--proxy-address", no_proxy.as_deref()),
            });
        }
        let from_env = env_any(&[
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]);
        match from_env {
            Some(url) => Ok(Outbound {
                proxy: ProxyConfig::from_env(),
                matcher: ProxySource::Environment,
                insecure: None,
                description: describe_proxy(&url, "the environment", no_proxy.as_deref()),
            }),
            None => Ok(Outbound::direct()),
        }
    }

    /// No proxy at all.
    pub fn direct() -> Self {
        Outbound {
            proxy: ProxyConfig::disabled(),
            matcher: ProxySource::None,
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

fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// The shared SDK configuration and what the banner says about it.
#[derive(Clone, Debug)]
pub struct AwsContext {
    /// The SDK configuration every client is built from.
    pub sdk: SdkConfig,
    /// The region in use.
    pub region: Region,
    /// Where the region came from, in words.
    pub region_source: &'static str,
    /// The X-Ray endpoint URL (the configured one, else the region's, FIPS where asked).
    pub xray_endpoint: String,
    /// How calls to AWS leave the host.
    pub outbound: Outbound,
    /// This EC2 instance's id: `AWS_INSTANCE_ID`, else (unless `-o`) instance metadata; `None`
    /// when neither gives one. For telemetry's `EC2InstanceId`.
    pub instance_id: Option<String>,
    /// This host's name: `AWS_HOSTNAME`, else (unless `-o`) instance metadata. For telemetry.
    pub hostname: Option<String>,
}

/// Errors that stop the daemon from using AWS.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region anywhere.
    #[error(
        "no AWS region found (looked at -n/--region, the config file's Region, AWS_REGION{}). \
         Give one with -n REGION (for example -n us-east-1) or AWS_REGION{}, or run without AWS \
         using --sink stdout",
        if *.local_mode {
            ", AWS_DEFAULT_REGION and the AWS profile"
        } else {
            ", ECS task metadata and EC2 instance metadata"
        },
        if *.local_mode { "" } else { ", or use -o to take the AWS profile's region" }
    )]
    NoRegion {
        /// Whether metadata lookups were skipped.
        local_mode: bool,
    },
    /// `-p` is not a usable proxy URL.
    #[error(
        "invalid outbound proxy address {value:?} for -p/--proxy-address: {why}. Write a URL such \
         as http://proxy.example.com:3128"
    )]
    ProxyAddress {
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The TLS client for `NoVerifySSL` cannot be set up.
    #[error("cannot set up TLS for NoVerifySSL: {why}")]
    Tls {
        /// What went wrong.
        why: String,
    },
    /// The X-Ray endpoint cannot be worked out.
    #[error(
        "cannot work out the X-Ray endpoint for region {region}: {why}. Give one with --endpoint URL"
    )]
    Endpoint {
        /// The region.
        region: String,
        /// What went wrong.
        why: String,
    },
}

/// Finds the region and builds the shared SDK configuration.
pub async fn load(settings: &AwsSettings) -> Result<AwsContext, AwsError> {
    let outbound =
        Outbound::from_settings(settings.proxy_address.as_deref(), settings.no_verify_ssl)?;
    if settings.no_verify_ssl {
        tracing::warn!(
            "!!! NoVerifySSL is on: the TLS certificates of AWS endpoints (X-Ray, STS) are NOT \
             verified. Anyone on the network path can impersonate AWS, read every segment and \
             replay the daemon's signed calls. Use it only to debug, or add the endpoint's CA \
             to the system trust store and turn NoVerifySSL off !!!"
        );
    }
    let metadata = Metadata::new(settings.local_mode);
    let (region, region_source) = resolve_region(settings, &metadata).await?;
    let aws_client = outbound.http_client();
    let credentials = credential_chain(&region, &aws_client, &metadata);

    let base = || {
        aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(aws_client.clone())
            .credentials_provider(credentials.clone())
            .retry_config(RetryConfig::disabled()) // one retry layer: crate::upload::retry
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
    };
    let mut loader = base();
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let mut sdk = loader.load().await;
    if settings.endpoint.is_some() && sdk.use_fips() == Some(true) {
        // The SDK refuses FIPS with a custom endpoint on every call; the endpoint given wins.
        tracing::warn!(
            "The FIPS endpoint setting (AWS_USE_FIPS_ENDPOINT or the profile) is ignored: \
             --endpoint / Endpoint names the X-Ray endpoint to use"
        );
        sdk = sdk.into_builder().use_fips(false).build();
    }
    if let Some(role) = settings.role_arn.as_deref().filter(|r| !r.is_empty()) {
        // STS is called with the base credentials at the STS endpoint (regional, or
        // AWS_ENDPOINT_URL_STS), never at the X-Ray endpoint override.
        let sts_config = base().load().await;
        let provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name(ROLE_SESSION_NAME)
            .configure(&sts_config)
            .build()
            .await;
        sdk = sdk
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(CachedCredentials::new(
                SharedCredentialsProvider::new(provider),
            )))
            .build();
    }
    let xray_endpoint = resolve_endpoint(&sdk, &region, settings.endpoint.as_deref()).await?;
    let (instance_id, hostname) = tokio::join!(
        metadata.lookup("AWS_INSTANCE_ID", "/latest/meta-data/instance-id"),
        metadata.lookup("AWS_HOSTNAME", "/latest/meta-data/hostname"),
    );
    Ok(AwsContext {
        sdk,
        region,
        region_source,
        xray_endpoint,
        outbound,
        instance_id,
        hostname,
    })
}

/// The X-Ray endpoint the SDK would call: the override, else the region's (FIPS or dual-stack
/// when `AWS_USE_FIPS_ENDPOINT` / `AWS_USE_DUALSTACK_ENDPOINT` or the profile ask for it).
async fn resolve_endpoint(
    sdk: &SdkConfig,
    region: &Region,
    endpoint: Option<&str>,
) -> Result<String, AwsError> {
    if let Some(endpoint) = endpoint {
        return Ok(endpoint.trim_end_matches('/').to_owned());
    }
    let err = |why: String| AwsError::Endpoint {
        region: region.to_string(),
        why,
    };
    let params = Params::builder()
        .region(region.to_string())
        .use_fips(sdk.use_fips().unwrap_or(false))
        .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
        .set_endpoint(
            endpoint
                .map(str::to_owned)
                .or_else(|| sdk.endpoint_url().map(str::to_owned)),
        )
        .build()
        .map_err(|e| err(e.to_string()))?;
    let resolved = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(resolved.url().trim_end_matches('/').to_owned())
}

/// The default credential chain's providers, in its order; metadata providers go direct.
fn credential_chain(
    region: &Region,
    aws_client: &SharedHttpClient,
    metadata: &Metadata,
) -> SharedCredentialsProvider {
    let through_proxy = ProviderConfig::default()
        .with_http_client(aws_client.clone())
        .with_region(Some(region.clone()));
    let direct = ProviderConfig::default()
        .with_http_client(metadata.http.clone())
        .with_region(Some(region.clone()));
    let chain = CredentialsProviderChain::first_try(
        "Environment",
        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "Profile",
        aws_config::profile::ProfileFileCredentialsProvider::builder()
            .configure(&through_proxy)
            .build(),
    )
    .or_else(
        "WebIdentityToken",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
            .configure(&through_proxy)
            .build(),
    )
    .or_else(
        "EcsContainer",
        aws_config::ecs::EcsCredentialsProvider::builder()
            .configure(&direct)
            .build(),
    )
    .or_else(
        "Ec2InstanceMetadata",
        aws_config::imds::credentials::ImdsCredentialsProvider::builder()
            .configure(&direct)
            .build(),
    );
    SharedCredentialsProvider::new(CachedCredentials::new(SharedCredentialsProvider::new(
        chain,
    )))
}

/// Credentials kept until shortly before they expire, one fetch at a time, shared by every
/// user of the [`AwsContext`] (SDK clients and the sampling proxy sign with the same keys, and
/// an assumed role is assumed once, not once per client).
#[derive(Debug)]
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

/// Cached credentials are refreshed when they expire within this long.
const CREDENTIALS_REFRESH_BEFORE: Duration = Duration::from_secs(300);

impl CachedCredentials {
    /// Caches what `provider` gives.
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CachedCredentials {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> aws_credential_types::provider::Result {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|e| e > std::time::SystemTime::now() + CREDENTIALS_REFRESH_BEFORE);
            if fresh {
                return Ok(c.clone());
            }
        }
        let fetched = self.provider.provide_credentials().await?;
        *cached = Some(fetched.clone());
        Ok(fetched)
    }
}

impl ProvideCredentials for CachedCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(self.get())
    }
}

/// Instance and task metadata lookups: direct (never through the outbound proxy), short
/// timeouts, quiet when there is none. Skipped entirely in local mode.
#[derive(Debug)]
struct Metadata {
    local_mode: bool,
    http: SharedHttpClient,
    imds: aws_config::imds::Client,
    /// Set once an instance metadata lookup failed: later ones are skipped.
    imds_absent: std::sync::atomic::AtomicBool,
}

impl Metadata {
    fn new(local_mode: bool) -> Self {
        let http = ClientBuilder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .build_https();
        let imds = aws_config::imds::Client::builder()
            .configure(&ProviderConfig::default().with_http_client(http.clone()))
            .max_attempts(1)
            .connect_timeout(IMDS_TIMEOUT)
            .read_timeout(IMDS_TIMEOUT)
            .operation_timeout(IMDS_TIMEOUT)
            .build();
        let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Metadata {
            local_mode,
            http,
            imds,
            imds_absent: disabled.into(),
        }
    }

    fn imds_usable(&self) -> bool {
        !self.local_mode && !self.imds_absent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// GET an instance metadata path (IMDSv2); `None` when there is no instance metadata.
    async fn imds_get(&self, path: &str) -> Option<String> {
        if !self.imds_usable() {
            return None;
        }
        let got = tokio::time::timeout(IMDS_TIMEOUT * 2, self.imds.get(path)).await;
        match got {
            Ok(Ok(value)) => Some(String::from(value)).filter(|v| !v.trim().is_empty()),
            Ok(Err(e)) => {
                tracing::debug!("No EC2 instance metadata ({path}): {}", describe_error(&e));
                self.imds_absent
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(_) => {
                tracing::debug!(
                    "No EC2 instance metadata ({path}): no answer within {IMDS_TIMEOUT:?}"
                );
                self.imds_absent
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                None
            }
        }
    }

    /// An environment variable, else (unless local mode) an instance metadata path.
    async fn lookup(&self, env: &str, path: &str) -> Option<String> {
        if let Some(v) = std::env::var(env).ok().filter(|v| !v.trim().is_empty()) {
            return Some(v);
        }
        self.imds_get(path).await
    }

    /// The region from the ECS metadata file, when ECS says it wrote one.
    fn ecs_file_region(&self) -> Option<String> {
        let enabled = std::env::var("ECS_ENABLE_CONTAINER_METADATA")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if self.local_mode || !enabled {
            return None;
        }
        let path = std::env::var("ECS_CONTAINER_METADATA_FILE").ok()?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let region = region_from_task_arn_json(&bytes);
                if region.is_none() {
                    tracing::warn!(
                        "The ECS metadata file {path} has no TaskARN with a region (yet); \
                         looking elsewhere"
                    );
                }
                region
            }
            Err(e) => {
                tracing::warn!("Cannot read the ECS metadata file {path}: {e}; looking elsewhere");
                None
            }
        }
    }

    /// The region from the ECS task metadata endpoint v4 (`GET $URI/task`).
    async fn ecs_v4_region(&self) -> Option<String> {
        if self.local_mode {
            return None;
        }
        let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4")
            .ok()
            .filter(|v| !v.trim().is_empty())?;
        let url = format!("{}/task", base.trim_end_matches('/'));
        match direct_get(&url, IMDS_TIMEOUT * 2).await {
            Ok((200, body)) => region_from_task_arn_json(&body),
            Ok((status, _)) => {
                tracing::warn!(
                    "The ECS task metadata endpoint {url} answered {status}; looking elsewhere"
                );
                None
            }
            Err(e) => {
                tracing::warn!(
                    "The ECS task metadata endpoint {url} failed: {e}; looking elsewhere"
                );
                None
            }
        }
    }
}

/// The region inside a task ARN (`arn:aws:ecs:REGION:ACCOUNT:task/...`) in a JSON document's
/// `TaskARN`.
pub fn region_from_task_arn_json(json: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(json).ok()?;
    let arn = doc.get("TaskARN")?.as_str()?;
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

/// A plain HTTP GET that never uses a proxy; status and body.
async fn direct_get(url: &str, within: Duration) -> Result<(u16, bytes::Bytes), String> {
    let connector = ConnectorBuilder::default()
        .connector_settings(
            HttpConnectorSettings::builder()
                .connect_timeout(within)
                .read_timeout(within)
                .build(),
        )
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .build_http();
    let request = http::Request::get(url)
        .body(SdkBody::empty())
        .map_err(|e| e.to_string())?;
    let request =
        aws_smithy_runtime_api::http::Request::try_from(request).map_err(|e| e.to_string())?;
    let call = async {
        let response = connector
            .call(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(within, call)
        .await
        .map_err(|_| format!("no answer within {within:?}"))?
}

async fn resolve_region(
    settings: &AwsSettings,
    metadata: &Metadata,
) -> Result<(Region, &'static str), AwsError> {
    if let Some(r) = settings.region.as_deref().filter(|r| !r.is_empty()) {
        return Ok((Region::new(r.to_owned()), "command line or config file"));
    }
    if let Some(r) = std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return Ok((Region::new(r), "AWS_REGION"));
    }
    if settings.local_mode {
        if let Some(r) = EnvironmentVariableRegionProvider::new().region().await {
            return Ok((r, "environment (AWS_DEFAULT_REGION)"));
        }
        if let Some(r) = aws_config::profile::ProfileFileRegionProvider::new()
            .region()
            .await
        {
            return Ok((r, "AWS profile"));
        }
    } else {
        if let Some(r) = metadata.ecs_file_region() {
            return Ok((Region::new(r), "ECS metadata file"));
        }
        if let Some(r) = metadata.ecs_v4_region().await {
            return Ok((Region::new(r), "ECS task metadata endpoint"));
        }
        if let Some(r) = metadata
            .imds_get("/latest/meta-data/placement/region")
            .await
        {
            return Ok((Region::new(r), "EC2 instance metadata"));
        }
    }
    Err(AwsError::NoRegion {
        local_mode: settings.local_mode,
    })
}

/// Checks once that credentials can be found, and says where they came from (never the secret).
/// Failure is a warning, not an error: credentials may appear later (a role being attached).
pub async fn check_credentials(ctx: &AwsContext) {
    let Some(provider) = ctx.sdk.credentials_provider() else {
        tracing::warn!("No AWS credential provider is configured; uploads to X-Ray will fail");
        return;
    };
    match tokio::time::timeout(CREDENTIAL_CHECK_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(creds)) => {
            tracing::info!("Using AWS credentials from {}", provider_name(&creds));
        }
        Ok(Err(e)) => tracing::warn!(
            "No AWS credentials found (looked at the environment, the shared config and \
             credentials files, web identity, the ECS container endpoint and EC2 instance \
             metadata): {}. Uploads to X-Ray will fail until credentials appear; to run \
             without AWS, use --sink stdout",
            describe_error(&e)
        ),
        Err(_) => tracing::warn!(
            "Looking up AWS credentials took over {} s; uploads will keep trying",
            CREDENTIAL_CHECK_TIMEOUT.as_secs()
        ),
    }
}

/// The credential provider's name, read from the credentials' debug form (the SDK has no getter
/// for it; the debug form never shows the secret).
fn provider_name(creds: &aws_credential_types::Credentials) -> String {
    let debug = format!("{creds:?}");
    debug
        .split("provider_name: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("the default credential chain")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_task_arn() {
        let doc = br#"{"Cluster":"c","TaskARN":"arn:aws:ecs:eu-west-3:123456789012:task/c/abc"}"#;
        assert_eq!(region_from_task_arn_json(doc), Some("eu-west-3".into()));
        assert_eq!(region_from_task_arn_json(br#"{"TaskARN":"x"}"#), None);
        assert_eq!(region_from_task_arn_json(b"{"), None);
        assert_eq!(region_from_task_arn_json(br#"{"Cluster":"c"}"#), None);
    }

    #[tokio::test]
    async fn endpoint_is_the_regions_fips_where_asked_or_the_override() {
        let resolve = |fips: bool, region: &str, endpoint: Option<&str>| {
            let sdk = SdkConfig::builder().use_fips(fips).build();
            let region = Region::new(region.to_owned());
            let endpoint = endpoint.map(str::to_owned);
            async move {
                resolve_endpoint(&sdk, &region, endpoint.as_deref())
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        assert_eq!(
            resolve(false, "eu-west-1", None).await,
            Ok("https://xray.eu-west-1.amazonaws.com".into())
        );
        assert_eq!(
            resolve(true, "us-east-1", None).await,
            Ok("https://xray-fips.us-east-1.amazonaws.com".into())
        );
        assert_eq!(
            resolve(false, "cn-north-1", None).await,
            Ok("https://xray.cn-north-1.amazonaws.com.cn".into())
        );
        assert_eq!(
            resolve(true, "us-east-1", Some("http://127.0.0.1:4000/")).await,
            Ok("http://127.0.0.1:4000".into())
        );
    }

    #[test]
    fn a_bad_proxy_address_is_refused_with_the_flag_named() {
        let err = Outbound::from_settings(Some("not a url"), false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("-p/--proxy-address"), "{err}");
        assert!(
            Outbound::from_settings(Some("http://127.0.0.1:3128"), false)
                .is_ok_and(|o| o.description.contains("127.0.0.1:3128"))
        );
    }

    #[test]
    fn proxy_credentials_are_never_shown() {
        let d = describe_proxy("http://user:secret@proxy:3128", "-p", None);
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("proxy:3128"), "{d}");
    }
}
