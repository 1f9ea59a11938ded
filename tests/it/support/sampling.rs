//! The sampling fault injector: a [`FaultInjector`] that plays X-Ray's sampling APIs.
//!
//! moto has no sampling APIs (it answers them 404), so this injector answers
//! `POST /GetSamplingRules` and `POST /SamplingTargets` itself with the documents given, and
//! records every request (headers and body as the daemon sent them). Other paths pass through
//! to its upstream (moto, for the uploads). [`verify_sigv4`] checks a recorded request's
//! signature by signing it again with `aws-sigv4`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;

use super::fault::{Fault, FaultInjector, Recorded, Step};

/// How many answers of each kind the injector holds (each request uses one).
const ANSWERS: usize = 200;

/// A rule that samples nothing under `/health` and a default rule that samples everything
/// else, as `GetSamplingRules` returns them.
pub fn health_excluded_rules() -> String {
    let rule = |name: &str, priority: u32, rate: f64, path: &str| {
        serde_json::json!({
            "SamplingRule": {
                "RuleName": name,
                "RuleARN": format!("arn:aws:xray:us-east-1:123456789012:sampling-rule/{name}"),
                "ResourceARN": "*",
                "Priority": priority,
                "FixedRate": rate,
                "ReservoirSize": 0,
                "ServiceName": "*",
                "ServiceType": "*",
                "Host": "*",
                "HTTPMethod": "*",
                "URLPath": path,
                "Version": 1,
                "Attributes": {}
            },
            "CreatedAt": 1_600_000_000.0,
            "ModifiedAt": 1_600_000_000.0
        })
    };
    serde_json::json!({
        "SamplingRuleRecords": [
            rule("health-checks", 1, 0.0, "/health*"),
            rule("Default", 10000, 1.0, "*")
        ]
    })
    .to_string()
}

/// A `SamplingTargets` answer for the rules of [`health_excluded_rules`].
pub fn health_excluded_targets() -> String {
    let target = |name: &str, rate: f64| {
        serde_json::json!({
            "RuleName": name,
            "FixedRate": rate,
            "ReservoirQuota": 0,
            "ReservoirQuotaTTL": 4_102_444_800.0,
            "Interval": 10
        })
    };
    serde_json::json!({
        "SamplingTargetDocuments": [target("Default", 1.0), target("health-checks", 0.0)],
        "LastRuleModification": 1_600_000_000.0,
        "UnprocessedStatistics": []
    })
    .to_string()
}

/// Starts an injector in front of `upstream` that answers the sampling calls with `rules` and
/// `targets` (status 200, `application/json`).
pub async fn sampling_injector(upstream: &str, rules: &str, targets: &str) -> FaultInjector {
    let injector = FaultInjector::start(upstream).await;
    for _ in 0..ANSWERS {
        injector.push([
            Step::on(
                "/GetSamplingRules",
                Fault::Respond {
                    status: 200,
                    body: rules.to_owned(),
                },
            ),
            Step::on(
                "/SamplingTargets",
                Fault::Respond {
                    status: 200,
                    body: targets.to_owned(),
                },
            ),
        ]);
    }
    injector
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub key_id: String,
    /// `DATE/REGION/SERVICE/aws4_request`.
    pub scope: String,
    /// `a;b;c`.
    pub signed_headers: String,
    /// Hex signature.
    pub signature: String,
}

/// Parses a recorded request's `Authorization` header; `None` if absent or not SigV4.
pub fn authorization(request: &Recorded) -> Option<Authorization> {
    let value = request.header("authorization")?;
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v.to_owned()),
            "SignedHeaders" => signed_headers = Some(v.to_owned()),
            "Signature" => signature = Some(v.to_owned()),
            _ => {}
        }
    }
    let credential = credential?;
    let (key_id, scope) = credential.split_once('/')?;
    Some(Authorization {
        key_id: key_id.to_owned(),
        scope: scope.to_owned(),
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// Signs the recorded request again (its signed headers, body and `x-amz-date`) with these
/// credentials and region, and says whether the signature is the one it carries.
pub fn verify_sigv4(
    request: &Recorded,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
) -> Result<(), String> {
    let auth = authorization(request).ok_or("no SigV4 Authorization header")?;
    let date = request.header("x-amz-date").ok_or("no x-amz-date")?;
    let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map_err(|e| format!("x-amz-date {date:?}: {e}"))?
        .and_utc()
        .timestamp();
    let time = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(time).map_err(|e| e.to_string())?);
    let token = request.header("x-amz-security-token").map(str::to_owned);
    let identity: Identity =
        Credentials::new(access_key_id, secret_access_key, token, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("xray")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    // The signer adds x-amz-date, x-amz-content-sha256 and the token itself.
    let added = ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"];
    let headers: Vec<(&str, &str)> = auth
        .signed_headers
        .split(';')
        .filter(|h| !added.contains(h))
        .map(|h| {
            request
                .header(h)
                .map(|v| (h, v))
                .ok_or_else(|| format!("signed header {h} was not sent"))
        })
        .collect::<Result<_, _>>()?;
    let host = request.header("host").ok_or("no host header")?;
    let url = format!("http://{host}{}", request.path);
    let signable = SignableRequest::new(
        &request.method,
        url,
        headers.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .map_err(|e| e.to_string())?;
    let (_, signature) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    if signature == auth.signature {
        Ok(())
    } else {
        Err(format!(
            "signature {} does not verify (expected {signature}) for {} {}",
            auth.signature, request.method, request.path
        ))
    }
}

/// Runs `tests/peers/flask_sampling.py` (the Python X-Ray SDK with centralized sampling)
/// against the daemon at `daemon_address` (`tcp:H:P udp:H:P`): `n` requests each to `/health`
/// and `/work` once rules are in; with `wait_for_targets`, until one `SamplingTargets` round
/// trip is done. Returns its JSON report (see the script). Panics with its stderr on failure.
pub async fn run_flask_sampling_peer(
    daemon_address: &str,
    n: usize,
    wait_for_targets: bool,
) -> serde_json::Value {
    let line = super::flask::run_python_peer(
        "the Flask sampling peer",
        "flask_sampling.py",
        &[
            n.to_string(),
            if wait_for_targets { "1" } else { "0" }.to_owned(),
        ],
        daemon_address,
    )
    .await;
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the peer's line is not JSON ({e}): {line}"))
}
