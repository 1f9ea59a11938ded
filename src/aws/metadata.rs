//! Instance and task metadata: what EC2 (IMDSv2) and ECS say about the host the daemon runs on.
//!
//! In: local mode and the [`Env`] (`AWS_EC2_METADATA_DISABLED`, and the overrides
//! `AWS_INSTANCE_ID` and `AWS_HOSTNAME`). Out: single lookups (a metadata path, a plain GET of
//! the ECS task endpoint) that answer `None` when there is no metadata, and the direct HTTP
//! client the metadata credential providers use.
//!
//! Every lookup goes direct, never through the outbound proxy (the original sent instance
//! metadata through it, aws/aws-xray-daemon#255), within [`IMDS_TIMEOUT`], and is quiet when absent
//! (a laptop, Fargate): after one failed instance metadata lookup the later ones are skipped.
//! In local mode nothing here is contacted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::provider_config::ProviderConfig;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as ClientBuilder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpClient,
};
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

use super::env::Env;
use super::{IMDS_TIMEOUT, describe_error};

/// Instance and task metadata lookups: direct, short timeouts, quiet when there is none.
/// Skipped entirely in local mode.
#[derive(Debug)]
pub(crate) struct Metadata {
    local_mode: bool,
    env: Env,
    /// The direct (never proxied) HTTP client for metadata.
    http: SharedHttpClient,
    imds: aws_config::imds::Client,
    /// Set once an instance metadata lookup failed (or `AWS_EC2_METADATA_DISABLED=true`):
    /// later ones are skipped.
    imds_absent: AtomicBool,
}

impl Metadata {
    pub(crate) fn new(local_mode: bool, env: &Env) -> Self {
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
        Metadata {
            local_mode,
            env: env.clone(),
            http,
            imds,
            imds_absent: env.is_true("AWS_EC2_METADATA_DISABLED").into(),
        }
    }

    /// Whether metadata may be contacted at all (not in local mode).
    pub(crate) fn enabled(&self) -> bool {
        !self.local_mode
    }

    /// The direct HTTP client, for the ECS and EC2 credential providers.
    pub(crate) fn http_client(&self) -> SharedHttpClient {
        self.http.clone()
    }

    fn imds_usable(&self) -> bool {
        self.enabled() && !self.imds_absent.load(Ordering::Relaxed)
    }

    /// GET an instance metadata path (IMDSv2); `None` when there is no instance metadata.
    pub(crate) async fn imds_get(&self, path: &str) -> Option<String> {
        if !self.imds_usable() {
            return None;
        }
        let got = tokio::time::timeout(IMDS_TIMEOUT * 2, self.imds.get(path)).await;
        match got {
            Ok(Ok(value)) => Some(String::from(value)).filter(|v| !v.trim().is_empty()),
            Ok(Err(e)) => {
                tracing::debug!("No EC2 instance metadata ({path}): {}", describe_error(&e));
                self.imds_absent.store(true, Ordering::Relaxed);
                None
            }
            Err(_) => {
                tracing::debug!(
                    "No EC2 instance metadata ({path}): no answer within {IMDS_TIMEOUT:?}"
                );
                self.imds_absent.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// An environment variable, else (unless local mode) an instance metadata path.
    pub(crate) async fn lookup(&self, variable: &str, path: &str) -> Option<String> {
        if let Some(v) = self.env.get(variable) {
            return Some(v.to_owned());
        }
        self.imds_get(path).await
    }

    /// This EC2 instance's id: `AWS_INSTANCE_ID`, else instance metadata.
    pub(crate) async fn instance_id(&self) -> Option<String> {
        self.lookup("AWS_INSTANCE_ID", "/latest/meta-data/instance-id")
            .await
    }

    /// This host's name: `AWS_HOSTNAME`, else instance metadata.
    pub(crate) async fn hostname(&self) -> Option<String> {
        self.lookup("AWS_HOSTNAME", "/latest/meta-data/hostname")
            .await
    }
}

/// A plain HTTP GET that never uses a proxy; status and body.
pub(crate) async fn direct_get(url: &str, within: Duration) -> Result<(u16, bytes::Bytes), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_environment_names_the_instance_without_asking_metadata() {
        // Local mode: metadata is never contacted, the variables still apply.
        let env = Env::from_pairs([("AWS_INSTANCE_ID", "i-0abc"), ("AWS_HOSTNAME", " ")]);
        let metadata = Metadata::new(true, &env);
        assert_eq!(metadata.instance_id().await.as_deref(), Some("i-0abc"));
        assert_eq!(metadata.hostname().await, None);
    }

    #[test]
    fn metadata_disabled_by_the_environment_is_never_asked() {
        let env = Env::from_pairs([("AWS_EC2_METADATA_DISABLED", "TRUE")]);
        assert!(!Metadata::new(false, &env).imds_usable());
        assert!(Metadata::new(false, &Env::default()).imds_usable());
        assert!(!Metadata::new(true, &Env::default()).imds_usable());
    }
}
