//! [`Moto`]: a `moto_server` child process playing the X-Ray API on 127.0.0.1.
//!
//! Facts that shape this (see shared/TESTING.md): moto routes by the SigV4 credential scope,
//! so requests must be signed for `…/REGION/xray/aws4_request` (the signature itself is not
//! checked); state is kept per region; BatchGetTraces returns the stored raw documents, so a
//! test can compare bytes; the same segment sent twice is stored twice.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_xray::config::{BehaviorVersion, Credentials, Region};

use super::http;
use super::paths::venv_bin;
use super::ports::free_addr;
use super::proc::{read_lossy, tail};
use super::wait::{self, Deadline};

/// The region tests use unless they test regions.
pub const TEST_REGION: &str = "us-east-1";

/// How long moto may take to answer after it is spawned (imports take a while on a busy CI
/// machine running tests in parallel).
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `moto_server -H 127.0.0.1 -p PORT`, killed (with its process group) on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers `POST /moto-api/reset`.
    /// Retries on new ports if moto exits while starting (a port taken meanwhile).
    pub async fn start() -> Moto {
        let mut failures = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("xray-it-moto-")
                .tempdir()
                .expect("temp dir for moto");
            let log = dir.path().join("moto.log");
            let addr = free_addr();
            let log_file = std::fs::File::create(&log).expect("moto log file");
            let mut command = Command::new(venv_bin("moto_server"));
            command
                .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("dup moto log"))
                .stderr(log_file)
                .process_group(0);
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("AWS_") {
                    command.env_remove(key);
                }
            }
            let child = command.spawn().expect("spawn moto_server");
            let mut moto = Moto {
                child,
                addr,
                log,
                _dir: dir,
            };
            match moto.wait_ready().await {
                Ok(()) => return moto,
                Err(why) => {
                    failures.push_str(&format!(
                        "\n--- port {}: {why}\n{}",
                        addr.port(),
                        moto.log()
                    ));
                    drop(moto);
                }
            }
        }
        panic!("moto_server did not start:{failures}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Deadline::after(STARTUP_DEADLINE);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto_server exited while starting: {status}"));
            }
            if let Ok(response) = http::post(self.addr, "/moto-api/reset", "").await
                && response.status == 200
            {
                return Ok(());
            }
            if deadline.passed() {
                return Err(format!(
                    "moto_server did not answer within {STARTUP_DEADLINE:?}"
                ));
            }
            deadline.tick(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, for `--endpoint` and SDK clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address moto listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// moto's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What moto printed so far (stdout and stderr; one line per request).
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Forgets every stored trace in every region (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        let response = http::post(self.addr, "/moto-api/reset", "")
            .await
            .expect("POST /moto-api/reset");
        assert_eq!(response.status, 200, "moto reset: {}", response.text());
    }

    /// An X-Ray client for this moto in `region`, with fixed test credentials and the SDK's
    /// standard retries.
    pub fn client(&self, region: &str) -> aws_sdk_xray::Client {
        let config = aws_sdk_xray::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_xray::Client::from_conf(config)
    }

    /// Stores `documents` in `region` with PutTraceSegments; panics if moto rejects any.
    pub async fn put_trace_segments(&self, region: &str, documents: &[impl AsRef<str>]) {
        let output = self
            .client(region)
            .put_trace_segments()
            .set_trace_segment_documents(Some(
                documents.iter().map(|d| d.as_ref().to_owned()).collect(),
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutTraceSegments to moto: {e:?}"));
        let unprocessed = output.unprocessed_trace_segments();
        assert!(
            unprocessed.is_empty(),
            "moto rejected segments: {unprocessed:?}"
        );
    }

    /// The raw segment documents moto stores for `trace_ids` in `region`, byte for byte as
    /// they were put (BatchGetTraces, 5 ids per call, following `NextToken`).
    pub async fn batch_get_traces(
        &self,
        region: &str,
        trace_ids: &[impl AsRef<str>],
    ) -> Vec<String> {
        let client = self.client(region);
        let mut documents = Vec::new();
        let ids: Vec<String> = trace_ids.iter().map(|t| t.as_ref().to_owned()).collect();
        for chunk in ids.chunks(5) {
            let mut next_token: Option<String> = None;
            loop {
                let output = client
                    .batch_get_traces()
                    .set_trace_ids(Some(chunk.to_vec()))
                    .set_next_token(next_token.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("BatchGetTraces from moto: {e:?}"));
                for trace in output.traces() {
                    for segment in trace.segments() {
                        if let Some(document) = segment.document() {
                            documents.push(document.to_owned());
                        }
                    }
                }
                match output.next_token() {
                    Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                    _ => break,
                }
            }
        }
        documents
    }

    /// Polls [`Self::batch_get_traces`] until at least `count` documents for `trace_ids` are
    /// stored in `region`, and returns them all; panics with what is stored after `within`.
    pub async fn wait_for_documents(
        &self,
        region: &str,
        trace_ids: &[impl AsRef<str>],
        count: usize,
        within: Duration,
    ) -> Vec<String> {
        let found = wait::until(within, Duration::from_millis(100), async || {
            let documents = self.batch_get_traces(region, trace_ids).await;
            (documents.len() >= count).then_some(documents)
        })
        .await;
        match found {
            Some(documents) => documents,
            None => {
                let stored = self.batch_get_traces(region, trace_ids).await;
                panic!(
                    "moto holds {} of {count} expected documents after {within:?}:\n{}\n--- moto log tail:\n{}",
                    stored.len(),
                    stored.join("\n"),
                    tail(&self.log(), 20)
                );
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- moto_server log tail ({}):\n{}",
                self.endpoint(),
                tail(&self.log(), 40)
            );
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
