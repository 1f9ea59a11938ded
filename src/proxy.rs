//! The sampling proxy: the forward route of the `-t` address, signed and sent to X-Ray.
//!
//! In: a request that [`crate::admin::route`] sent to the forward route, already checked
//! there (origin-form target; with `--proxy-sampling-only` only `POST /GetSamplingRules` and
//! `POST /SamplingTargets`; a declared `Content-Length` within [`ProxySettings::max_body`]).
//! Out: X-Ray's answer, or a plain-text error saying why there is none.
//!
//! Requests go to the X-Ray endpoint of the [`AwsContext`] and never anywhere else, whatever
//! `Host` the client names. The forwarded request carries only what the call needs: method,
//! path and query, `Content-Type` and `Content-Encoding` (OTLP's `POST /v1/traces`, forwarded
//! while the OTLP receiver is off, is often gzip'd), the body, and a SigV4 signature (service
//! `xray`, the daemon's region and credentials) over a minimal header set: `host`, those two
//! when sent, `x-amz-date`, `x-amz-content-sha256` and, for temporary credentials,
//! `x-amz-security-token`.
//! Headers a service mesh adds or rewrites therefore never break the signature (the original
//! signs every header the client sent, aws/aws-xray-daemon#199). X-Ray's answer — status, body,
//! `Content-Type` and its error headers — goes back unchanged.
//!
//! Bounds (the original has none): a body over [`ProxySettings::max_body`] gets `413` (also
//! while reading, for bodies without a declared length); a client has
//! [`ProxySettings::client_timeout`] to send its body (else `408`); the upstream call has
//! [`ProxySettings::upstream_timeout`] (else `504`); answers over [`MAX_RESPONSE_BODY`] get
//! `502`.
//!
//! The AWS context is built after the sockets are bound (region lookups may take a moment), so
//! the [`Forwarder`] gets it through a [`watch`] channel: a request arriving while it is
//! [`UpstreamState::Starting`] waits up to [`STARTUP_WAIT`] for it, then gets `503`.
//!
//! Holds no socket: [`crate::admin`] owns the listener and calls [`Forwarder::forward`]. Imports
//! only leaves ([`crate::aws`], [`crate::ratelimit`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue,
};
use hyper::{Method, Request, Response, StatusCode, Uri};
use tokio::sync::{Semaphore, watch};

use crate::aws::AwsContext;

/// The paths the SDKs' centralized sampling uses (`POST`).
pub const SAMPLING_PATHS: [&str; 2] = ["/GetSamplingRules", "/SamplingTargets"];

pub use crate::config::defaults::{
    PROXY_CLIENT_TIMEOUT as DEFAULT_CLIENT_TIMEOUT,
    PROXY_UPSTREAM_TIMEOUT as DEFAULT_UPSTREAM_TIMEOUT,
};
/// Default for [`ProxySettings::max_body`]: 1 MiB, far above the SDKs' sampling calls.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default for [`ProxySettings::bodies_in_flight`]: 16 MiB of request bodies read at once, over
/// all connections (sixteen bodies at the cap; an SDK's sampling call is under 10 KiB).
pub const DEFAULT_BODIES_IN_FLIGHT: usize = 16 * 1024 * 1024;
/// Largest upstream answer relayed, in bytes; larger ones get `502`.
pub const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;
/// How long a request waits for the AWS context while the daemon starts.
pub const STARTUP_WAIT: Duration = Duration::from_secs(5);
/// How long fetching credentials may take for one request.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);
/// The SigV4 service name of X-Ray.
const SERVICE: &str = "xray";

/// How the proxy treats clients and the upstream.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Forward only `POST /GetSamplingRules` and `POST /SamplingTargets`; other paths get
    /// `404`. Default false (forward everything but the reserved paths, as the original).
    /// Enforced by the route table ([`crate::admin::ForwardRule`]).
    pub sampling_only: bool,
    /// How long a client may take to send a request's headers (the `-t` listener's header
    /// timeout), and again its body. Default [`DEFAULT_CLIENT_TIMEOUT`].
    pub client_timeout: Duration,
    /// How long the upstream call may take, connection included. Default
    /// [`DEFAULT_UPSTREAM_TIMEOUT`].
    pub upstream_timeout: Duration,
    /// Largest request body forwarded, in bytes: a larger declared `Content-Length` is refused
    /// by the route table, a longer body while it is read. Default [`DEFAULT_MAX_BODY`].
    pub max_body: usize,
    /// Bytes of request bodies being read at once, over all connections: a request whose
    /// declared length (else `max_body`) does not fit gets `503` at once. Default
    /// [`DEFAULT_BODIES_IN_FLIGHT`].
    pub bodies_in_flight: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            sampling_only: false,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            bodies_in_flight: DEFAULT_BODIES_IN_FLIGHT,
        }
    }
}

/// Where forwarded requests can go, as far as the proxy knows.
#[derive(Debug, Clone)]
pub enum UpstreamState {
    /// The AWS context is still being built.
    Starting,
    /// Forward to this upstream.
    Ready(Arc<Upstream>),
    /// Forwarding is off; the reason, for the client.
    Unavailable(String),
}

/// The X-Ray endpoint, with what signing needs.
#[derive(Debug)]
pub struct Upstream {
    /// Scheme and authority of the endpoint, e.g. `https://xray.us-east-1.amazonaws.com`.
    origin: String,
    /// A path prefix of the endpoint (usually empty), without the trailing `/`.
    base_path: String,
    /// The `Host` header value.
    host: String,
    region: String,
    credentials: CredentialCache,
    connector: SharedHttpConnector,
    /// Failures are logged at WARN at most once per [`WARN_EVERY`], else at DEBUG, so an outage
    /// does not flood the log.
    warn_limit: crate::ratelimit::RateLimit,
}

/// At most one WARN line per this long for failing forwarded calls.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

impl Upstream {
    fn warn(&self, message: &str) {
        if self.warn_limit.allow(1, WARN_EVERY).is_some() {
            tracing::warn!(
                "{message} (further failures within {WARN_EVERY:?} are logged at debug level)"
            );
        } else {
            tracing::debug!("{message}");
        }
    }
}

/// The upstream cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the X-Ray endpoint {endpoint:?} cannot be used by the sampling proxy: {why}")]
pub struct UpstreamError {
    endpoint: String,
    why: String,
}

impl Upstream {
    /// From the shared AWS context: its X-Ray endpoint, region, credentials and outbound
    /// proxy.
    pub fn new(aws: &AwsContext, settings: &ProxySettings) -> Result<Self, UpstreamError> {
        let err = |why: &str| UpstreamError {
            endpoint: aws.xray_endpoint.clone(),
            why: why.to_owned(),
        };
        let uri: Uri = aws
            .xray_endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| err(&e.to_string()))?;
        let scheme = uri.scheme_str().ok_or_else(|| err("no scheme"))?;
        let authority = uri.authority().ok_or_else(|| err("no host"))?;
        let provider = aws
            .sdk
            .credentials_provider()
            .ok_or_else(|| err("no credential provider"))?;
        Ok(Upstream {
            origin: format!("{scheme}://{authority}"),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            host: authority.as_str().to_owned(),
            region: aws.region.to_string(),
            credentials: CredentialCache::new(provider),
            connector: aws
                .outbound
                .connector(crate::aws::CONNECT_TIMEOUT, settings.upstream_timeout),
            warn_limit: crate::ratelimit::RateLimit::default(),
        })
    }
}

/// Credentials for signing, from the shared (caching) provider of the AWS context.
#[derive(Debug)]
struct CredentialCache {
    provider: SharedCredentialsProvider,
}

impl CredentialCache {
    fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialCache { provider }
    }

    async fn get(&self) -> Result<Credentials, String> {
        crate::aws::signing::current_credentials(&self.provider, CREDENTIALS_TIMEOUT).await
    }
}

/// The forward route's handler: the settings and the upstream as it becomes known. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Forwarder {
    settings: Arc<ProxySettings>,
    upstream: watch::Receiver<UpstreamState>,
    /// Room for request bodies being read, in bytes.
    bodies: Arc<Semaphore>,
}

impl Forwarder {
    /// Forwards with `settings` to the upstream `upstream` holds (or will hold).
    pub fn new(settings: ProxySettings, upstream: watch::Receiver<UpstreamState>) -> Self {
        let room = settings.bodies_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Forwarder {
            settings: Arc::new(settings),
            upstream,
            bodies: Arc::new(Semaphore::new(room)),
        }
    }

    /// The settings it forwards with.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Reads the body, signs the request and sends it to X-Ray; the answer is X-Ray's, or a
    /// plain-text error (`413`, `408`, `400`, `503`, `500`, `502`, `504`) saying why there is
    /// none. The request must have passed [`crate::admin::route`].
    pub async fn forward(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        // Room for the body among the bodies being read (its declared length, else the cap),
        // so a flood of large bodies on many connections stays within a stated bound.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let want = declared
            .unwrap_or(self.settings.max_body)
            .clamp(1, self.settings.max_body.max(1));
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        let Ok(_room) = Arc::clone(&self.bodies).try_acquire_many_owned(want) else {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!(
                    "the sampling proxy is reading {} bytes of request bodies already, its limit; \
                     retry shortly\n",
                    self.settings.bodies_in_flight
                ),
            );
        };
        forward(req, &self.settings, self.upstream.clone()).await
    }
}

/// The `413` message for a body over `max_body` bytes (also used by the route table's check
/// of the declared length).
pub fn over_limit_message(max_body: usize) -> String {
    format!("the request body is over the sampling proxy's limit of {max_body} bytes\n")
}

async fn forward(
    req: Request<Incoming>,
    settings: &ProxySettings,
    mut upstream: watch::Receiver<UpstreamState>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    tracing::debug!("Sampling proxy received {} {}", parts.method, parts.uri);
    let body = match tokio::time::timeout(
        settings.client_timeout,
        Limited::new(body, settings.max_body).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                over_limit_message(settings.max_body),
            );
        }
        Ok(Err(e)) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("cannot read the request body: {e}\n"),
            );
        }
        Err(_) => {
            return reply(
                StatusCode::REQUEST_TIMEOUT,
                "text/plain",
                format!(
                    "the request body did not arrive within {:?}\n",
                    settings.client_timeout
                ),
            );
        }
    };

    let state = match tokio::time::timeout(
        STARTUP_WAIT,
        upstream.wait_for(|s| !matches!(s, UpstreamState::Starting)),
    )
    .await
    {
        Ok(Ok(state)) => state.clone(),
        Ok(Err(_)) => UpstreamState::Unavailable("the daemon is stopping\n".into()),
        Err(_) => UpstreamState::Starting,
    };
    let target = match state {
        UpstreamState::Ready(u) => u,
        UpstreamState::Starting => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the daemon is starting (looking up its AWS region and credentials); retry shortly\n"
                    .into(),
            );
        }
        UpstreamState::Unavailable(why) => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("the sampling proxy is not available: {why}\n"),
            );
        }
    };

    let credentials = match target.credentials.get().await {
        Ok(c) => c,
        Err(e) => {
            target.warn(&format!(
                "The sampling proxy has no AWS credentials to sign with: {e}"
            ));
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("the daemon has no AWS credentials to sign with: {e}\n"),
            );
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // What describes the body goes along: its type, and its encoding (OTLP's POST /v1/traces,
    // forwarded to X-Ray's OTLP endpoint while the receiver is off, is often gzip'd).
    let described: Vec<(HeaderName, HeaderValue)> = [CONTENT_TYPE, CONTENT_ENCODING]
        .into_iter()
        .filter_map(|name| Some((name.clone(), parts.headers.get(&name)?.clone())))
        .collect();
    let request = match signed_request(
        &target,
        &credentials,
        &parts.method,
        &path_and_query,
        &described,
        body,
        SystemTime::now(),
    ) {
        Ok(r) => r,
        Err(e) => {
            target.warn(&format!("The sampling proxy cannot sign a request: {e}"));
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("cannot sign the request: {e}\n"),
            );
        }
    };
    let outcome = tokio::time::timeout(settings.upstream_timeout, call(&target, request)).await;
    match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(CallError::Failed(e))) => {
            target.warn(&format!(
                "The sampling proxy's call to {} failed: {e}",
                target.origin
            ));
            reply(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                format!("the call to X-Ray ({}) failed: {e}\n", target.origin),
            )
        }
        Ok(Err(CallError::TimedOut)) | Err(_) => {
            target.warn(&format!(
                "The sampling proxy's call to {} took over {:?}",
                target.origin, settings.upstream_timeout
            ));
            reply(
                StatusCode::GATEWAY_TIMEOUT,
                "text/plain",
                format!(
                    "X-Ray ({}) did not answer within {:?}\n",
                    target.origin, settings.upstream_timeout
                ),
            )
        }
    }
}

/// Why a call to X-Ray got no answer.
#[derive(Debug)]
enum CallError {
    /// The connection or the answer took too long.
    TimedOut,
    /// Anything else, in words.
    Failed(String),
}

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError::Failed(s)
    }
}

/// Builds the upstream request with only the headers it needs, signed.
fn signed_request(
    target: &Upstream,
    credentials: &Credentials,
    method: &Method,
    path_and_query: &str,
    described: &[(HeaderName, HeaderValue)],
    body: Bytes,
    now: SystemTime,
) -> Result<http::Request<SdkBody>, String> {
    let url = format!("{}{}{}", target.origin, target.base_path, path_and_query);
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(&url)
        .header(HOST, &target.host);
    for (name, value) in described {
        builder = builder.header(name, value);
    }
    let mut request = builder
        .body(SdkBody::from(body.clone()))
        .map_err(|e| e.to_string())?;
    crate::aws::signing::sign_request(
        &mut request,
        &body,
        credentials,
        &target.region,
        SERVICE,
        now,
    )?;
    // Unsigned (SigV4 excludes User-Agent), so a mesh may rewrite it freely.
    request.headers_mut().insert(
        hyper::header::USER_AGENT,
        HeaderValue::from_static(concat!("xray-daemon-rs/", env!("CARGO_PKG_VERSION"))),
    );
    request
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(request)
}

/// Sends the request and relays the answer: status, body, `Content-Type` and X-Ray's error
/// headers.
async fn call(
    target: &Upstream,
    request: http::Request<SdkBody>,
) -> Result<Response<Full<Bytes>>, CallError> {
    let request =
        aws_smithy_runtime_api::http::Request::try_from(request).map_err(|e| e.to_string())?;
    let response = target.connector.call(request).await.map_err(|e| {
        if e.is_timeout() {
            CallError::TimedOut
        } else {
            CallError::Failed(crate::aws::describe_error(&e))
        }
    })?;
    let status = StatusCode::from_u16(response.status().as_u16())
        .map_err(|e| format!("X-Ray answered an invalid status: {e}"))?;
    let mut relayed = Vec::new();
    for name in ["content-type", "x-amzn-errortype", "x-amzn-requestid"] {
        if let Some(v) = response.headers().get(name) {
            relayed.push((name, v.to_owned()));
        }
    }
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading X-Ray's answer: {e}"))?
        .to_bytes();
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = status;
    for (name, value) in relayed {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.headers_mut().insert(name, value);
        }
    }
    Ok(out)
}

/// A response with this status, content type and body (also the admin routes' answers).
pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_only_the_minimal_headers() {
        let target = Upstream {
            origin: "https://xray.eu-west-1.amazonaws.com".into(),
            base_path: String::new(),
            host: "xray.eu-west-1.amazonaws.com".into(),
            region: "eu-west-1".into(),
            credentials: CredentialCache::new(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "SECRET", None, None, "test",
            ))),
            connector: crate::aws::Outbound::direct()
                .connector(Duration::from_secs(1), Duration::from_secs(1)),
            warn_limit: crate::ratelimit::RateLimit::default(),
        };
        let creds = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "test");
        let r = signed_request(
            &target,
            &creds,
            &Method::POST,
            "/GetSamplingRules",
            &[(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            Bytes::from_static(b"{}"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let auth = r
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(auth.contains("/eu-west-1/xray/aws4_request"), "{auth}");
        assert!(
            auth.contains(
                "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            ),
            "{auth}"
        );
        assert_eq!(
            r.uri().to_string(),
            "https://xray.eu-west-1.amazonaws.com/GetSamplingRules"
        );
        assert!(r.headers().get("x-amz-security-token").is_some());
    }
}
