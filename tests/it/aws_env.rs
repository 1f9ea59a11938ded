//! The AWS environment: region from ECS and EC2 metadata (fakes on loopback) in the original's
//! order, local mode, metadata that hangs, `-r` through moto's STS, and outbound proxies that
//! carry calls to AWS but never metadata calls. Every daemon runs under the harness's pinned
//! environment (fake keys, empty profile files, no proxies, IMDS disabled unless a test points
//! it at a fake).

use std::time::{Duration, Instant};

use crate::support::daemon::FAKE_ACCESS_KEY_ID;
use crate::support::fault::{FaultInjector, Recorded};
use crate::support::metadata::{FAKE_INSTANCE_ID, FakeMetadata};
use crate::support::sampling::{authorization, health_excluded_rules, health_excluded_targets};
use crate::support::{
    Daemon, DaemonBuilder, DropReason, Fault, Moto, OutboundProxy, Step, TEST_REGION, http,
    new_segment_id, new_trace_id, sampling_injector, segment_json, wait,
};

const NOWHERE: &str = "http://127.0.0.1:9";

/// A daemon whose X-Ray endpoint is `injector`, with instance metadata at `imds` (if any).
fn daemon_for(injector: &FaultInjector, imds: Option<&FakeMetadata>) -> DaemonBuilder {
    let builder = Daemon::builder().endpoint(&injector.endpoint());
    match imds {
        Some(imds) => builder
            .env("AWS_EC2_METADATA_DISABLED", "false")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()),
        None => builder,
    }
}

/// Makes one proxied sampling call and returns the region its signature names.
async fn signed_region(daemon: &Daemon, injector: &FaultInjector) -> String {
    let before = injector.requests().len();
    let r = http::post(daemon.tcp_addr(), "/GetSamplingRules", "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let recorded = injector.requests();
    let call = recorded.get(before).expect("the call reached the injector");
    let scope = authorization(call).expect("signed").scope;
    scope.split('/').nth(1).unwrap().to_owned()
}

async fn wait_for_banner(daemon: &Daemon, within: Duration) -> String {
    wait::until(within, wait::POLL_INTERVAL, async || {
        let out = daemon.stdout();
        out.lines()
            .find(|l| l.contains("sinks:"))
            .map(str::to_owned)
    })
    .await
    .unwrap_or_else(|| panic!("no startup banner within {within:?}:\n{}", daemon.stdout()))
}

/// Sends one segment named `name` through `daemon` and waits (up to 15 s) until moto stores
/// it: uploads work.
async fn assert_upload_arrives(daemon: &Daemon, moto: &Moto, name: &str) {
    let trace = new_trace_id();
    daemon.send_segment(&segment_json(&trace, &new_segment_id(), name));
    moto.wait_for_documents(TEST_REGION, &[&trace], 1, Duration::from_secs(15))
        .await;
}

/// with no flag, file or AWS_REGION, the region and the instance id come from
/// IMDSv2 (a fake on loopback), and metadata calls carry the IMDSv2 token.
#[tokio::test]
async fn region_and_instance_id_come_from_instance_metadata() {
    let imds = FakeMetadata::start("eu-west-2").await;
    let injector = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let daemon = daemon_for(&injector, Some(&imds)).start().await;
    assert_eq!(signed_region(&daemon, &injector).await, "eu-west-2");
    let banner = wait_for_banner(&daemon, Duration::from_secs(5)).await;
    assert!(banner.contains("EC2 instance metadata"), "{banner}");
    assert!(banner.contains(FAKE_INSTANCE_ID), "{banner}");
    let seen = imds.requests();
    assert!(
        seen.iter()
            .any(|r| r.method == "PUT" && r.target == "/latest/api/token"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.target == "/latest/meta-data/instance-id"),
        "{seen:?}"
    );
}

/// with `-o`, instance metadata is never contacted; the SDK's own region
/// (here AWS_DEFAULT_REGION) is used.
#[tokio::test]
async fn local_mode_never_contacts_instance_metadata() {
    let imds = FakeMetadata::start("eu-west-2").await;
    let injector = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let daemon = daemon_for(&injector, Some(&imds))
        .arg("-o")
        .env("AWS_DEFAULT_REGION", "ap-south-1")
        .start()
        .await;
    assert_eq!(signed_region(&daemon, &injector).await, "ap-south-1");
    let banner = wait_for_banner(&daemon, Duration::from_secs(5)).await;
    assert!(banner.contains("EC2 instance id none"), "{banner}");
    assert!(imds.requests().is_empty(), "{:?}", imds.requests());
}

/// Without `-o`, neither `AWS_DEFAULT_REGION` nor the AWS profile's region is read: instance
/// metadata's region is used, as the original does and as the README's `-n` row now says (it
/// listed both before instance metadata).
#[tokio::test]
async fn without_local_mode_aws_default_region_and_the_profile_are_not_read() {
    let imds = FakeMetadata::start("eu-west-2").await;
    let injector = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let daemon = daemon_for(&injector, Some(&imds))
        .env("AWS_DEFAULT_REGION", "ap-south-1")
        .aws_config_file("[default]\nregion = sa-east-1\n")
        .start()
        .await;
    assert_eq!(signed_region(&daemon, &injector).await, "eu-west-2");
    let banner = wait_for_banner(&daemon, Duration::from_secs(5)).await;
    assert!(banner.contains("(from EC2 instance metadata)"), "{banner}");
}

/// instance metadata that accepts connections and never answers holds up
/// neither listening nor startup beyond the short metadata timeout; without any other region
/// the daemon then exits 1 saying how to give one.
#[tokio::test]
async fn hanging_instance_metadata_does_not_hold_startup() {
    let imds = FakeMetadata::silent().await;
    let injector = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let started = Instant::now();
    let daemon = daemon_for(&injector, Some(&imds))
        .args(["-n", TEST_REGION])
        .ready_within(Duration::from_secs(3))
        .start()
        .await;
    // Sent while the instance id lookup may still be waiting on metadata: the proxied call
    // waits for the AWS context, then goes through.
    assert_eq!(signed_region(&daemon, &injector).await, TEST_REGION);
    let banner = wait_for_banner(&daemon, Duration::from_secs(6)).await;
    assert!(banner.contains("EC2 instance id none"), "{banner}");
    assert!(started.elapsed() < Duration::from_secs(8));

    let finished = daemon_for(&injector, Some(&imds))
        .run_to_exit(Duration::from_secs(8))
        .await;
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    let said = format!("{}{}", finished.stdout, finished.stderr);
    assert!(
        said.contains("-n REGION") && said.contains("AWS_REGION"),
        "{said}"
    );
}

/// the ECS metadata file (the original's source) and the task metadata
/// endpoint v4 give the region, before instance metadata.
#[tokio::test]
async fn ecs_task_metadata_gives_the_region() {
    let imds = FakeMetadata::start("eu-west-2").await;
    let injector = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let builder = daemon_for(&injector, Some(&imds));
    let file = builder.write_file(
        "ecs-metadata.json",
        r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:ap-northeast-1:123456789012:task/c/0123"}"#,
    );
    let daemon = builder
        .env("ECS_ENABLE_CONTAINER_METADATA", "true")
        .env("ECS_CONTAINER_METADATA_FILE", &file)
        .start()
        .await;
    assert_eq!(signed_region(&daemon, &injector).await, "ap-northeast-1");
    drop(daemon);

    let ecs = FakeMetadata::start("sa-east-1").await;
    let daemon = daemon_for(&injector, Some(&imds))
        .env("ECS_CONTAINER_METADATA_URI_V4", ecs.ecs_v4_uri())
        .start()
        .await;
    assert_eq!(signed_region(&daemon, &injector).await, "sa-east-1");
    assert!(
        ecs.requests().iter().any(|r| r.target == "/v4/task"),
        "{:?}",
        ecs.requests()
    );
}

/// with `-r`, the daemon assumes the role through STS (moto, reached through a
/// recording injector) with session name `xray-daemon`, and both the uploads and the proxied
/// calls are signed with the assumed role's temporary key.
#[tokio::test]
async fn role_arn_signs_uploads_and_proxied_calls_with_the_assumed_role() {
    let moto = Moto::start().await;
    let sts = FaultInjector::start(&moto.endpoint()).await;
    let xray = sampling_injector(
        &moto.endpoint(),
        &health_excluded_rules(),
        &health_excluded_targets(),
    )
    .await;
    let role = "arn:aws:iam::123456789012:role/xray-writer";
    let daemon = Daemon::builder()
        .upload_to(&xray.endpoint())
        .args(["-r", role])
        .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
        .start()
        .await;
    let r = http::post(daemon.tcp_addr(), "/GetSamplingRules", "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_upload_arrives(&daemon, &moto, "assumed").await;

    let calls = xray.requests();
    let key_of = |r: &Recorded| authorization(r).expect("signed").key_id;
    let upload = calls
        .iter()
        .find(|r| r.path == "/TraceSegments")
        .expect("an upload");
    let proxied = calls
        .iter()
        .find(|r| r.path == "/GetSamplingRules")
        .expect("a proxied call");
    let key = key_of(upload);
    assert_ne!(key, FAKE_ACCESS_KEY_ID, "the upload used the base keys");
    assert_eq!(key_of(proxied), key, "the proxied call used other keys");
    assert!(upload.header("x-amz-security-token").is_some());
    assert!(proxied.header("x-amz-security-token").is_some());

    let assume = sts.requests();
    let assume = assume.first().expect("an STS call");
    let body = String::from_utf8_lossy(&assume.body);
    assert!(body.contains("Action=AssumeRole"), "{body}");
    assert!(body.contains("RoleSessionName=xray-daemon"), "{body}");
    assert_eq!(key_of(assume), FAKE_ACCESS_KEY_ID);
}

/// With `-r`, an AssumeRole that STS throttles or answers 5xx is retried like any transient
/// failure and the segment gets through, under a warning that names STS and the role. It used
/// to drop the batch at once (`upload_failed`) under a message that blamed X-Ray.
#[tokio::test]
async fn a_throttled_or_failing_assume_role_is_retried_and_names_sts_and_the_role() {
    let moto = Moto::start().await;
    let throttling = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
        <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>\
        </Error><RequestId>1</RequestId></ErrorResponse>";
    let refuse = |status: u16, body: &str| {
        Step::any(Fault::Respond {
            status,
            body: body.to_owned(),
        })
    };
    // The first four calls to STS fail (the startup credential check may take one); the
    // upload gets through on a later attempt.
    let sts = FaultInjector::with_script(
        &moto.endpoint(),
        vec![
            refuse(400, throttling),
            refuse(503, ""),
            refuse(400, throttling),
            refuse(503, ""),
        ],
    )
    .await;
    let role = "arn:aws:iam::123456789012:role/xray-writer";
    let daemon = Daemon::builder()
        .upload_to(&moto.endpoint())
        .args(["-r", role])
        .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
        .start()
        .await;
    assert_upload_arrives(&daemon, &moto, "after-sts-failed").await;
    let stats = daemon.stats().await;
    assert_eq!(stats.dropped(DropReason::UploadFailed), 0, "{stats:?}");
    assert!(
        stats.retried >= 1 && stats.batches_failed >= 1,
        "the first attempt failed and was retried: {stats:?}"
    );
    assert!(
        sts.remaining_script().is_empty(),
        "every scripted failure was met"
    );
    let out = daemon.stdout();
    let warning = out
        .lines()
        .find(|l| l.contains("Sending a batch of"))
        .unwrap_or_else(|| panic!("no upload failure logged:\n{out}"));
    assert!(
        warning.contains("[Warn]")
            && warning.contains("retried in")
            && warning.contains(&format!("STS AssumeRole for the role {role}")),
        "{warning}"
    );
}

/// an outbound proxy from the environment carries the calls to X-Ray (uploads
/// and proxied sampling calls) but never the instance metadata calls.
#[tokio::test]
async fn outbound_proxy_carries_aws_calls_but_never_metadata() {
    let moto = Moto::start().await;
    let imds = FakeMetadata::start(TEST_REGION).await;
    let xray = sampling_injector(&moto.endpoint(), &health_excluded_rules(), "{}").await;
    let proxy = OutboundProxy::start().await;
    let daemon = daemon_for(&xray, Some(&imds))
        .env("HTTP_PROXY", proxy.url())
        .env("HTTPS_PROXY", proxy.url())
        .start()
        .await;
    assert_eq!(signed_region(&daemon, &xray).await, TEST_REGION);
    assert_upload_arrives(&daemon, &moto, "proxied").await;

    let seen = proxy.seen();
    let xray_origin = xray.endpoint();
    assert!(
        seen.contains(&format!("POST {xray_origin}/GetSamplingRules")),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("POST {xray_origin}/TraceSegments")),
        "{seen:?}"
    );
    let imds_port = format!(":{}", imds.port());
    assert!(
        !seen.iter().any(|s| s.contains(&imds_port)),
        "metadata went through the proxy: {seen:?}"
    );
    assert!(!imds.requests().is_empty(), "the region came from metadata");
    assert!(imds.requests().iter().all(|r| r.target.starts_with('/')));
}

/// `-p` sends calls through the proxy unless `NO_PROXY` covers the endpoint.
#[tokio::test]
async fn proxy_address_flag_honours_no_proxy() {
    let xray = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let proxy = OutboundProxy::start().await;

    let daemon = daemon_for(&xray, None)
        .args(["-n", TEST_REGION, "-p", &proxy.url()])
        .start()
        .await;
    signed_region(&daemon, &xray).await;
    assert_eq!(
        proxy.seen(),
        vec![format!("POST {}/GetSamplingRules", xray.endpoint())]
    );
    drop(daemon);

    let daemon = daemon_for(&xray, None)
        .args(["-n", TEST_REGION, "-p", &proxy.url()])
        .env("NO_PROXY", "127.0.0.1")
        .start()
        .await;
    signed_region(&daemon, &xray).await;
    assert_eq!(
        proxy.seen().len(),
        1,
        "NO_PROXY was ignored: {:?}",
        proxy.seen()
    );
    assert_eq!(xray.requests().len(), 2);
}

/// NoVerifySSL (`--no-verify-ssl`, the config file's key): an X-Ray endpoint with a
/// certificate nobody trusts is refused by default, and reached (uploads and proxied calls)
/// with the option, which the daemon announces loudly.
#[tokio::test]
async fn no_verify_ssl_reaches_an_endpoint_with_an_untrusted_certificate() {
    let moto = Moto::start().await;
    let xray = sampling_injector(&moto.endpoint(), &health_excluded_rules(), "{}").await;
    let front = crate::support::tls_front::TlsFront::start(xray.addr()).await;

    let verifying = Daemon::builder().upload_to(&front.endpoint()).start().await;
    let r = http::post(verifying.tcp_addr(), "/GetSamplingRules", "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(xray.requests().is_empty());
    drop(verifying);

    let daemon = Daemon::builder()
        .upload_to(&front.endpoint())
        .args(["--no-verify-ssl"])
        .start()
        .await;
    assert_eq!(signed_region(&daemon, &xray).await, TEST_REGION);
    assert_upload_arrives(&daemon, &moto, "insecure").await;
    assert!(
        daemon.stdout().contains("NOT verified"),
        "{}",
        daemon.stdout()
    );
}
