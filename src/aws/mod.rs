//! The one AWS configuration the daemon shares: region (with where it came from), credentials,
//! the X-Ray endpoint, the outbound proxy, and what instance metadata says about this host.
//!
//! In: [`AwsSettings`]: values from the resolved [`crate::config::Config`] and the [`Env`]
//! captured once at the binary's edge. Out: an [`AwsContext`] that the X-Ray sink, the sampling
//! proxy and telemetry build their clients from.
//!
//! Called after the sockets are bound: region and credential lookups may reach the network
//! (instance or task metadata), and documents arriving meanwhile wait in the buffer.
//!
//! How [`load`] puts the pieces together:
//! 1. [`outbound`]: the proxy and TLS rules for calls to AWS (`-p`, the proxy variables,
//!    `NoVerifySSL` through `insecure_tls`);
//! 2. [`region`]: the region in the original daemon's order, asking `metadata` (ECS task
//!    metadata, EC2 IMDSv2: direct, short timeouts) unless in local mode;
//! 3. [`credentials`]: the credential chain (metadata providers direct, the others through the
//!    proxy), cached once for every user, and `-r` role assumption through STS;
//! 4. the SDK configuration every client is built from (the SDK's own retries off: one retry
//!    layer, `crate::upload::retry`);
//! 5. [`endpoint`]: the X-Ray endpoint URL, then the instance id and hostname for telemetry.
//!
//! [`failure`] classes and describes failed calls to AWS for every caller; [`signing`] signs the
//! calls made outside an SDK client (the sampling proxy, X-Ray's OTLP endpoint).

use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

pub mod credentials;
pub mod endpoint;
mod env;
pub mod failure;
mod insecure_tls;
mod metadata;
pub mod outbound;
pub mod region;
pub mod signing;

pub use credentials::check_credentials;
pub use env::Env;
pub use failure::{
    connector_error_kind, credentials_failure, describe_error, error_kind, unreadable_success,
};
pub use outbound::Outbound;

/// Connect timeout for calls to AWS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
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
    /// How long one attempt of an API call may take (`--upload-timeout`); zero means
    /// [`crate::config::defaults::DEFAULT_UPLOAD_TIMEOUT`].
    pub upload_timeout: Duration,
    /// The environment variables the region, proxy and metadata rules read
    /// ([`Env::from_process`] in the daemon; empty by default).
    pub env: Env,
}

/// The shared SDK configuration and what the banner says about it.
#[derive(Clone, Debug)]
pub struct AwsContext {
    /// The SDK configuration every client is built from. Its credentials provider is cached
    /// (see [`credentials`]) and may be used directly, as the sampling proxy does.
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
    /// The role assumed through STS for every call (`-r`), if any: named when its credentials
    /// cannot be had ([`failure::credentials_failure`]).
    pub role_arn: Option<String>,
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
    /// A region that cannot be part of a host name (from the environment or metadata; the
    /// flag and the config file's are checked with the config).
    #[error(
        "invalid AWS region {region:?} from {from}: a region is one word of letters, digits \
         and '-', for example us-east-1. Give one with -n REGION"
    )]
    InvalidRegion {
        /// The region found.
        region: String,
        /// Where it was found, in words.
        from: &'static str,
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
    let env = &settings.env;
    let outbound = Outbound::from_settings(
        settings.proxy_address.as_deref(),
        settings.no_verify_ssl,
        env,
    )?;
    if settings.no_verify_ssl {
        tracing::warn!(
            "!!! NoVerifySSL is on: the TLS certificates of AWS endpoints (X-Ray, STS) are NOT \
             verified. Anyone on the network path can impersonate AWS, read every segment and \
             replay the daemon's signed calls. Use it only to debug, or add the endpoint's CA \
             to the system trust store and turn NoVerifySSL off !!!"
        );
    }
    let metadata = metadata::Metadata::new(settings.local_mode, env);
    let lookups = region::HostLookups {
        env,
        metadata: &metadata,
    };
    let (region, region_source) = region::resolve(
        settings.region.as_deref(),
        settings.local_mode,
        env,
        &lookups,
    )
    .await?;
    let aws_client = outbound.http_client();
    let attempt_timeout = if settings.upload_timeout.is_zero() {
        crate::config::defaults::DEFAULT_UPLOAD_TIMEOUT
    } else {
        settings.upload_timeout
    };
    let credentials = credentials::default_chain(&region, &aws_client, &metadata.http_client());

    let base = || {
        aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .http_client(aws_client.clone())
            .credentials_provider(credentials.clone())
            // The provider is cached already, for the sampling proxy too (see `credentials`).
            .identity_cache(IdentityCache::no_cache())
            .retry_config(RetryConfig::disabled()) // one retry layer: crate::upload::retry
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(attempt_timeout)
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
        let assumed = credentials::assume_role(role, &sts_config).await;
        sdk = sdk.into_builder().credentials_provider(assumed).build();
    }
    let xray_endpoint = endpoint::resolve(&sdk, &region, settings.endpoint.as_deref()).await?;
    let (instance_id, hostname) = tokio::join!(metadata.instance_id(), metadata.hostname());
    Ok(AwsContext {
        role_arn: settings.role_arn.clone().filter(|r| !r.is_empty()),
        sdk,
        region,
        region_source,
        xray_endpoint,
        outbound,
        instance_id,
        hostname,
    })
}
