//! [`FakeMetadata`]: EC2 instance metadata (IMDSv2) and the ECS task metadata endpoint v4, on
//! loopback, recording every request.
//!
//! Serves `PUT /latest/api/token` (a fixed token), then, for requests carrying that token,
//! `GET /latest/meta-data/placement/region`, `/latest/meta-data/instance-id` and
//! `/latest/meta-data/hostname`; and `GET /v4/task` with a `TaskARN` in the region. Point the
//! daemon at it with `AWS_EC2_METADATA_SERVICE_ENDPOINT` / `ECS_CONTAINER_METADATA_URI_V4`.
//! [`FakeMetadata::silent`] accepts connections and never answers: metadata that hangs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The token the fake hands out.
pub const FAKE_IMDS_TOKEN: &str = "fake-imds-token";
/// The instance id it reports.
pub const FAKE_INSTANCE_ID: &str = "i-0fake1234567890ab";

/// One request received: method and request target exactly as sent (an absolute URL if it
/// came through a forward proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    /// e.g. `GET`.
    pub method: String,
    /// e.g. `/latest/meta-data/instance-id`.
    pub target: String,
}

/// The fake; it listens on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct FakeMetadata {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<MetadataRequest>>>,
    accept: JoinHandle<()>,
}

impl FakeMetadata {
    /// Serves metadata saying this host is in `region`.
    pub async fn start(region: &str) -> Self {
        Self::spawn(Some(region.to_owned())).await
    }

    /// Accepts connections, records nothing, never answers.
    pub async fn silent() -> Self {
        Self::spawn(None).await
    }

    async fn spawn(region: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake metadata");
        let addr = listener.local_addr().expect("fake metadata address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let Some(region) = region.clone() else {
                    // Silent: keep the connection open, say nothing.
                    held.push(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        let region = region.clone();
                        async move {
                            recorded.lock().unwrap().push(MetadataRequest {
                                method: req.method().to_string(),
                                target: req.uri().to_string(),
                            });
                            Ok::<_, std::convert::Infallible>(answer(&req, &region))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v4`, for `ECS_CONTAINER_METADATA_URI_V4`.
    pub fn ecs_v4_uri(&self) -> String {
        format!("http://{}/v4", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<MetadataRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeMetadata {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn answer(
    req: &hyper::Request<hyper::body::Incoming>,
    region: &str,
) -> hyper::Response<Full<Bytes>> {
    let text = |status: u16, body: String| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let path = req.uri().path();
    if req.method() == hyper::Method::PUT && path == "/latest/api/token" {
        return if let Some(ttl) = req.headers().get("x-aws-ec2-metadata-token-ttl-seconds") {
            hyper::Response::builder()
                .status(200)
                .header("x-aws-ec2-metadata-token-ttl-seconds", ttl)
                .body(Full::new(Bytes::from_static(FAKE_IMDS_TOKEN.as_bytes())))
                .unwrap()
        } else {
            text(
                400,
                "missing x-aws-ec2-metadata-token-ttl-seconds".to_owned(),
            )
        };
    }
    if path == "/v4/task" {
        return text(
            200,
            serde_json::json!({
                "Cluster": "fake",
                "TaskARN": format!("arn:aws:ecs:{region}:123456789012:task/fake/0123456789abcdef")
            })
            .to_string(),
        );
    }
    let token = req
        .headers()
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(FAKE_IMDS_TOKEN) {
        return text(401, String::new());
    }
    match path {
        "/latest/meta-data/placement/region" => text(200, region.to_owned()),
        "/latest/meta-data/instance-id" => text(200, FAKE_INSTANCE_ID.to_owned()),
        "/latest/meta-data/hostname" => text(200, "ip-10-0-0-1.ec2.internal".to_owned()),
        _ => text(404, String::new()),
    }
}
