//! The one AWS SDK configuration the daemon shares: region (with where it came from),
//! credentials, endpoint and timeouts.
//!
//! In: the resolved [`crate::config::Config`] and the process environment (read by
//! `aws-config`'s providers). Out: an [`AwsContext`] that the X-Ray sink (and later the
//! sampling proxy and telemetry) build their clients from.
//!
//! Called after the sockets are bound: region and credential lookups may reach the network
//! (instance metadata), and documents arriving meanwhile wait in the buffer.

use std::time::Duration;

use aws_config::meta::region::ProvideRegion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

/// Connect timeout for calls to AWS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one attempt of an API call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the startup credential check may take before it is reported as slow.
pub const CREDENTIAL_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the AWS configuration is built from.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// `-n/--region` or the config file's `Region`.
    pub region: Option<String>,
    /// `--endpoint` or the config file's `Endpoint`.
    pub endpoint: Option<String>,
    /// `-o/--local-mode`: no instance metadata lookups.
    pub local_mode: bool,
    /// `-r/--role-arn`: a role assumed through STS for every call (session `xray-daemon`).
    pub role_arn: Option<String>,
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
}

/// Errors that stop the daemon from using AWS.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region anywhere.
    #[error(
        "no AWS region found (looked at -n/--region, the config file's Region, AWS_REGION, \
         AWS_DEFAULT_REGION, the AWS profile{}). Give one with -n REGION (for example \
         -n us-east-1), or run without AWS using --sink stdout",
        if *.local_mode { "" } else { " and EC2 instance metadata" }
    )]
    NoRegion {
        /// Whether metadata lookups were skipped.
        local_mode: bool,
    },
}

/// Finds the region and builds the shared SDK configuration.
pub async fn load(settings: &AwsSettings) -> Result<AwsContext, AwsError> {
    let (region, region_source) = resolve_region(settings).await?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region.clone())
        .retry_config(RetryConfig::disabled()) // one retry layer: crate::upload::retry
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let mut sdk = loader.load().await;
    if let Some(role) = &settings.role_arn {
        // STS is called with the base credentials at the regional STS endpoint, not the X-Ray
        // endpoint override.
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .load()
            .await;
        let provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name("xray-daemon")
            .configure(&base)
            .build()
            .await;
        sdk = sdk
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build();
    }
    Ok(AwsContext {
        sdk,
        region,
        region_source,
    })
}

async fn resolve_region(settings: &AwsSettings) -> Result<(Region, &'static str), AwsError> {
    if let Some(r) = settings.region.as_deref().filter(|r| !r.is_empty()) {
        return Ok((Region::new(r.to_owned()), "command line or config file"));
    }
    if let Some(r) = aws_config::environment::EnvironmentVariableRegionProvider::new()
        .region()
        .await
    {
        return Ok((r, "environment (AWS_REGION / AWS_DEFAULT_REGION)"));
    }
    if let Some(r) = aws_config::profile::ProfileFileRegionProvider::new()
        .region()
        .await
    {
        return Ok((r, "AWS profile"));
    }
    if !settings.local_mode {
        let imds = aws_config::imds::region::ImdsRegionProvider::builder().build();
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(3), imds.region()).await {
            return Ok((r, "EC2 instance metadata"));
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
            aws_smithy_types::error::display::DisplayErrorContext(&e)
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
