//! Where the daemon's AWS credentials come from, how they are kept, and the startup check that
//! says where they came from.
//!
//! In: the region, the HTTP client for calls to AWS (through the outbound proxy), the direct
//! client for metadata, and `-r/--role-arn`. Out: one [`SharedCredentialsProvider`] that every
//! user shares: the SDK clients (X-Ray sink, telemetry) and the sampling proxy's signer.
//!
//! The chain: the same providers, in the same order, as `aws-config`'s default chain
//! (environment, shared profiles with SSO and `credential_process`, web identity, ECS/EKS
//! container credentials, IMDSv2). It is assembled here rather than taken whole so that the
//! metadata providers get an HTTP client that never uses the outbound proxy (the original sent
//! instance metadata through it, its issue #255); providers that call AWS (STS, SSO) use the
//! proxy like every other AWS call. `-r ROLE` assumes that role through STS (session name
//! `xray-daemon`, as the original) with those credentials.

use std::time::Duration;

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::{AwsContext, CREDENTIAL_CHECK_TIMEOUT, ROLE_SESSION_NAME, describe_error};

/// The default credential chain's providers, in its order; metadata providers go direct
/// (`metadata_client`), the others through `aws_client`.
pub fn default_chain(
    region: &Region,
    aws_client: &SharedHttpClient,
    metadata_client: &SharedHttpClient,
) -> SharedCredentialsProvider {
    let through_proxy = ProviderConfig::default()
        .with_http_client(aws_client.clone())
        .with_region(Some(region.clone()));
    let direct = ProviderConfig::default()
        .with_http_client(metadata_client.clone())
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

/// `role` assumed through STS (session `xray-daemon`) with the credentials, region, endpoint and
/// HTTP client of `sts_config`.
pub async fn assume_role(role: &str, sts_config: &SdkConfig) -> SharedCredentialsProvider {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(ROLE_SESSION_NAME)
        .configure(sts_config)
        .build()
        .await;
    SharedCredentialsProvider::new(CachedCredentials::new(SharedCredentialsProvider::new(
        provider,
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
