//! SigV4 for the calls the daemon makes outside an SDK client: the sampling proxy's forwarded
//! calls and the spans sent to X-Ray's OTLP endpoint.
//!
//! In: a built request (method, URL, the headers to sign), the exact body bytes it will carry,
//! credentials, region and service name. Out: the same request with `x-amz-date`,
//! `x-amz-content-sha256` (the SHA-256 of those bytes), `x-amz-security-token` for temporary
//! credentials, and `authorization`. The signature is `aws-sigv4`'s, never written here; it
//! covers the headers the request has when signed, so a caller adds the ones a proxy or mesh
//! may rewrite (`user-agent`, `content-length`) afterwards. Sign the body as it is sent:
//! compressed, if it is compressed.
//!
//! [`current_credentials`] takes credentials from the shared (caching) provider of the
//! [`super::AwsContext`], bounded in time.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::body::SdkBody;

/// Signs `request`, whose body is `body`, for `service` in `region` at `now` (see the module
/// docs for what it adds). The error says why it cannot be signed, in words.
pub fn sign_request(
    request: &mut http::Request<SdkBody>,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), String> {
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let url = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// Credentials from `provider` (the context's caching provider), or why there are none within
/// `within`.
pub async fn current_credentials(
    provider: &SharedCredentialsProvider,
    within: Duration,
) -> Result<Credentials, String> {
    tokio::time::timeout(within, provider.provide_credentials())
        .await
        .map_err(|_| format!("no credentials within {within:?}"))?
        .map_err(|e| super::describe_error(&e))
}
