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
//! instance metadata through it, aws/aws-xray-daemon#255); providers that call AWS (STS, SSO) use the
//! proxy like every other AWS call. `-r ROLE` assumes that role through STS (session name
//! `xray-daemon`, as the original) with those credentials.
//!
//! Each provider is wrapped in [`Named`], which marks the credentials it gives with a
//! [`CredentialSource`] property: that is how the startup line names the source.
//!
//! Kept: the provider handed out is wrapped in [`Cached`], the SDK's own expiring cache
//! (`aws-smithy-runtime`'s `ExpiringCache`, the piece its lazy identity cache is built on):
//! credentials are fetched once and again [`REFRESH_BEFORE`] their expiry (those without one
//! after [`DEFAULT_EXPIRATION`], as the SDK's lazy cache does), one fetch at a time, failures
//! not kept. One cache for every user: the sampling proxy signs outside any SDK client and so
//! never goes through an SDK client's identity cache, which is therefore switched off
//! (`IdentityCache::no_cache` in `load`) rather than kept as a second layer.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime::expiring_cache::ExpiringCache;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::{
    AwsContext, CREDENTIAL_CHECK_TIMEOUT, ROLE_SESSION_NAME, credentials_failure, describe_error,
};

/// Credentials are fetched again when they expire within this long.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// Credentials without an expiry are fetched again after this long (as the SDK's lazy
/// identity cache does).
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(15 * 60);

/// Which provider gave a set of credentials, in words for the log (e.g. `EC2 instance
/// metadata`). Set by [`Named`] as a property of the [`Credentials`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSource(pub Cow<'static, str>);

/// Where `credentials` came from, as [`Named`] marked them.
pub fn source_of(credentials: &Credentials) -> &str {
    credentials
        .get_property::<CredentialSource>()
        .map_or("the default credential chain", |s| &s.0)
}

/// A provider that marks what it gives with its name ([`CredentialSource`]).
#[derive(Debug)]
pub struct Named<P> {
    name: Cow<'static, str>,
    inner: P,
}

impl<P: ProvideCredentials> Named<P> {
    /// `inner`, whose credentials will say they came from `name`.
    pub fn new(name: impl Into<Cow<'static, str>>, inner: P) -> Self {
        Named {
            name: name.into(),
            inner,
        }
    }

    fn mark(&self, mut credentials: Credentials) -> Credentials {
        credentials.set_property(CredentialSource(self.name.clone()));
        credentials
    }
}

impl<P: ProvideCredentials> ProvideCredentials for Named<P> {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.inner.provide_credentials().await.map(|c| self.mark(c))
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.inner.fallback_on_interrupt().map(|c| self.mark(c))
    }
}

/// A provider whose answers are kept until shortly before they expire (see the module docs).
#[derive(Debug)]
pub struct Cached {
    provider: SharedCredentialsProvider,
    cache: ExpiringCache<Credentials, CredentialsError>,
}

impl Cached {
    /// Keeps what `provider` gives.
    pub fn new(provider: impl ProvideCredentials + 'static) -> Self {
        Cached {
            provider: SharedCredentialsProvider::new(provider),
            cache: ExpiringCache::new(REFRESH_BEFORE),
        }
    }

    async fn get(&self) -> provider::Result {
        let now = SystemTime::now();
        if let Some(kept) = self.cache.yield_or_clear_if_expired(now).await {
            return Ok(kept);
        }
        self.cache
            .get_or_load(|| async {
                let fetched = self.provider.provide_credentials().await?;
                let expiry = fetched.expiry().unwrap_or(now + DEFAULT_EXPIRATION);
                Ok((fetched, expiry))
            })
            .await
    }
}

impl ProvideCredentials for Cached {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.get())
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.provider.fallback_on_interrupt()
    }
}

/// The default credential chain's providers, in its order, each named; metadata providers go
/// direct (`metadata_client`), the others through `aws_client`. Cached.
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
    /// Names a provider once, for the chain and for the credentials it gives.
    fn link<P: ProvideCredentials>(name: &'static str, provider: P) -> (&'static str, Named<P>) {
        (name, Named::new(name, provider))
    }
    let (name, environment) = link(
        "the environment (AWS_ACCESS_KEY_ID)",
        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
    );
    let chain = CredentialsProviderChain::first_try(name, environment);
    let (name, profile) = link(
        "the AWS profile (shared config and credentials files)",
        aws_config::profile::ProfileFileCredentialsProvider::builder()
            .configure(&through_proxy)
            .build(),
    );
    let chain = chain.or_else(name, profile);
    let (name, web_identity) = link(
        "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
            .configure(&through_proxy)
            .build(),
    );
    let chain = chain.or_else(name, web_identity);
    let (name, container) = link(
        "the ECS/EKS container credentials endpoint",
        aws_config::ecs::EcsCredentialsProvider::builder()
            .configure(&direct)
            .build(),
    );
    let chain = chain.or_else(name, container);
    let (name, instance) = link(
        "EC2 instance metadata",
        aws_config::imds::credentials::ImdsCredentialsProvider::builder()
            .configure(&direct)
            .build(),
    );
    let chain = chain.or_else(name, instance);
    SharedCredentialsProvider::new(Cached::new(chain))
}

/// `role` assumed through STS (session `xray-daemon`) with the credentials, region, endpoint and
/// HTTP client of `sts_config`. Cached.
pub async fn assume_role(role: &str, sts_config: &SdkConfig) -> SharedCredentialsProvider {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(ROLE_SESSION_NAME)
        .configure(sts_config)
        .build()
        .await;
    SharedCredentialsProvider::new(Cached::new(Named::new(
        format!("the assumed role {role}"),
        provider,
    )))
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
            tracing::info!("Using AWS credentials from {}", source_of(&creds));
        }
        // With -r the base credentials were found, and STS is what failed: say so.
        Ok(Err(e)) if ctx.role_arn.is_some() => tracing::warn!(
            "{}; each upload asks STS again",
            credentials_failure(&e, ctx.role_arn.as_deref()).unwrap_or_else(|| describe_error(&e))
        ),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Gives fresh keys (expiring `lifetime` from now, if given) and counts the calls; fails
    /// while `failing`.
    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
        lifetime: Option<Duration>,
        failing: bool,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let result = if self.failing {
                Err(CredentialsError::not_loaded("nothing here"))
            } else {
                let expiry = self.lifetime.map(|l| SystemTime::now() + l);
                Ok(Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    None,
                    expiry,
                    "counting",
                ))
            };
            provider::future::ProvideCredentials::ready(result)
        }
    }

    async fn key_of(p: &impl ProvideCredentials) -> String {
        p.provide_credentials()
            .await
            .map(|c| c.access_key_id().to_owned())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[tokio::test]
    async fn the_chain_names_the_provider_that_answered() {
        let chain = CredentialsProviderChain::first_try(
            "first",
            Named::new(
                "the first",
                Counting {
                    failing: true,
                    ..Counting::default()
                },
            ),
        )
        .or_else("second", Named::new("the second", Counting::default()));
        let creds = chain.provide_credentials().await;
        assert_eq!(creds.as_ref().map(source_of).ok(), Some("the second"));
    }

    #[tokio::test]
    async fn credentials_from_elsewhere_have_a_generic_source() {
        let creds = Credentials::new("AKID", "secret", None, None, "static");
        assert_eq!(source_of(&creds), "the default credential chain");
        let named = Named::new("a role", creds);
        let marked = named.provide_credentials().await;
        assert_eq!(marked.as_ref().map(source_of).ok(), Some("a role"));
    }

    #[tokio::test]
    async fn kept_credentials_are_fetched_once() {
        let cached = Cached::new(Counting {
            lifetime: Some(Duration::from_secs(3600)),
            ..Counting::default()
        });
        assert_eq!(key_of(&cached).await, "AKID0");
        assert_eq!(key_of(&cached).await, "AKID0");
        // Those without an expiry too (until DEFAULT_EXPIRATION).
        let cached = Cached::new(Counting::default());
        assert_eq!(key_of(&cached).await, "AKID0");
        assert_eq!(key_of(&cached).await, "AKID0");
    }

    #[tokio::test]
    async fn credentials_about_to_expire_and_failures_are_not_kept() {
        let cached = Cached::new(Counting {
            lifetime: Some(REFRESH_BEFORE / 2),
            ..Counting::default()
        });
        assert_eq!(key_of(&cached).await, "AKID0");
        assert_eq!(key_of(&cached).await, "AKID1");
        let failing = Counting {
            failing: true,
            ..Counting::default()
        };
        let cached = Cached::new(failing);
        assert!(key_of(&cached).await.starts_with("error"));
        assert!(key_of(&cached).await.starts_with("error"));
    }

    #[tokio::test]
    async fn the_source_survives_the_cache() {
        let cached = Cached::new(Named::new("EC2 instance metadata", Counting::default()));
        for _ in 0..2 {
            let creds = cached.provide_credentials().await;
            assert_eq!(
                creds.as_ref().map(source_of).ok(),
                Some("EC2 instance metadata")
            );
        }
    }
}
