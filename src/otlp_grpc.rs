//! The OTLP/gRPC receiver: `TraceService/Export` calls from OpenTelemetry SDKs in, spans into
//! the buffer.
//!
//! In: HTTP/2 connections on the `--otlp-grpc` listener (bound by [`crate::app::bind`]), served
//! by tonic's server. Out: each call's message handed, as its raw bytes, to the same core as
//! OTLP/HTTP ([`OtlpReceiver::take`]: decoded and converted on a blocking thread, booked under
//! [`Input::OtlpGrpc`]), and the answer the OTLP gRPC exporters expect:
//! - `OK` with an `ExportTraceServiceResponse` (with `partial_success` when some spans were
//!   refused);
//! - `INVALID_ARGUMENT` for a message that is not an `ExportTraceServiceRequest`, for one over
//!   `--otlp-max-request-bytes` (before or after gzip), and for one whose spans could never fit
//!   the buffer's admission share: exporters retry `RESOURCE_EXHAUSTED` and `OUT_OF_RANGE` (the
//!   Python one also `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `UNAVAILABLE`, `DATA_LOSS`),
//!   so a request that can never be taken gets a code they give up on;
//! - `UNAVAILABLE` while the buffer is at its OTLP high-water mark or the bytes being read are
//!   at their cap, with a `google.rpc.RetryInfo` of [`RETRY_AFTER_SECONDS`] (the gRPC form of
//!   `Retry-After`, which the Python exporter honours): the exporter tries again and its spans
//!   arrive once there is room;
//! - `DEADLINE_EXCEEDED` when the message does not arrive within the client timeout;
//! - `UNIMPLEMENTED` for a `grpc-encoding` other than gzip (tonic's answer), and for the
//!   metrics and logs services (and any other method), with a message naming
//!   `OTEL_METRICS_EXPORTER=none` / `OTEL_LOGS_EXPORTER=none`;
//! - `INTERNAL` for a gzip message that does not inflate, or a decode that failed unexpectedly.
//!
//! Every call's outcome is counted under `inputs.otlp_grpc.requests` (the refusals tonic makes
//! before the message reaches us too), its spans per input as for OTLP/HTTP.
//!
//! How: there is no generated `TraceServiceServer`: one small [`tower_service::Service`]
//! ([`GrpcService`]) looks at the path and runs `TraceService/Export` through tonic's
//! [`Grpc::unary`] with a codec ([`PassThrough`]) whose decoder hands the message's bytes
//! through untouched and whose encoder writes the prost `ExportTraceServiceResponse` of
//! [`crate::otlp::proto`]. So protobuf decoding happens in [`OtlpReceiver::take`], off the
//! runtime thread, one request at a time. tonic frames, inflates gzip and caps the message at
//! `--otlp-max-request-bytes` (after inflating too); the inflating runs on the runtime thread,
//! in tonic: at most the cap of output per message (a gzip bomb stops there). Measured with a
//! release build: during back-to-back gzip'd calls of 19 MiB (about 1 s each, end to end),
//! `/daemon/health` answered within 0.2 s.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections (more are closed at once, never left in the
//! kernel's backlog), [`MAX_STREAMS_PER_CONNECTION`] calls at once on each; the bytes of
//! messages being read, or read and waiting to be decoded, share the receiver's budget with
//! OTLP/HTTP's bodies ([`OtlpReceiver::body_room`], twice the cap: past it, `UNAVAILABLE`); a
//! message has the client timeout (`--proxy-client-timeout`, as OTLP/HTTP's body) to arrive.
//! Memory: at most that budget of messages, plus tonic's inflated copy of the one being read.
//!
//! Shutdown: on the one cancellation token the listener closes, open connections get HTTP/2's
//! `GOAWAY`, and calls under way get [`SHUTDOWN_GRACE`] to finish (their spans are booked
//! before the buffer closes); then the stage ends.
//!
//! Imports: [`crate::otlp_http`] for the receiver core it shares with OTLP/HTTP (a handler it
//! is given, as [`crate::proxy`] is for [`crate::admin`]), and leaves.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{Grpc, UnaryService};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Status};

use crate::item::Input;
use crate::otlp::decode::{self, DecodeError, Encoding, Format};
use crate::otlp::proto::ExportTraceServiceResponse;
use crate::otlp_http::{OtlpReceiver, RETRY_AFTER_SECONDS, Taken};
use crate::outcome::RequestOutcome;
use crate::ratelimit::{RateLimit, Suppressed};

/// The one method served: OTLP's trace export.
pub const TRACES_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// OTLP's metrics export: `UNIMPLEMENTED`, counted.
pub const METRICS_EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// OTLP's logs export: `UNIMPLEMENTED`, counted.
pub const LOGS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Connections held at once (as the HTTP listeners); more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 1024;
/// Calls under way at once on one connection (HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`); an
/// exporter makes one at a time.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// How long calls under way may take to finish once shutdown began.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the accept loop waits after an accept failed (out of file descriptors, say).
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(100);
/// The trailer that carries a `google.rpc.RetryInfo`, read by the exporters for their backoff.
const RETRY_INFO_KEY: &str = "google.rpc.retryinfo-bin";

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled (see the module docs).
pub async fn run(listener: TcpListener, receiver: Arc<OtlpReceiver>, shutdown: CancellationToken) {
    let local = listener.local_addr().ok();
    let incoming = accept(listener, Arc::new(Semaphore::new(MAX_CONNECTIONS)));
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .serve_with_incoming_shutdown(
            GrpcService::new(receiver),
            incoming,
            shutdown.clone().cancelled_owned(),
        );
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => {
            if let Err(e) = served {
                tracing::error!("The OTLP/gRPC listener on {} failed: {e}", Addr(local));
            }
        }
        () = grace => tracing::warn!(
            "OTLP/gRPC calls still under way {SHUTDOWN_GRACE:?} after shutdown began were cut off"
        ),
    }
}

/// The accepted connections, each holding one of `slots`; a connection over the cap is closed
/// at once, and a failed accept is retried after [`RETRY_AFTER_ERROR`], so the stream never
/// ends and never yields an error (tonic would retry an error at once, spinning).
fn accept(
    listener: TcpListener,
    slots: Arc<Semaphore>,
) -> impl futures_util::Stream<Item = Result<Connection, Infallible>> {
    let local = listener.local_addr().ok();
    let state = (listener, slots, Warnings::default());
    futures_util::stream::unfold(state, move |(listener, slots, warnings)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        drop(stream);
                        if let Some(suppressed) = warnings.full.once() {
                            tracing::warn!(
                                "OTLP/gRPC on {}: all {MAX_CONNECTIONS} connections are open, so a \
                                 new one was closed at once{}",
                                Addr(local),
                                Suppressed(suppressed, "connections closed this way")
                            );
                        }
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let connection = Connection {
                        stream,
                        _slot: slot,
                    };
                    return Some((Ok(connection), (listener, slots, warnings)));
                }
                Err(e) => {
                    if let Some(suppressed) = warnings.accept_failed.once() {
                        tracing::warn!(
                            "Accepting a TCP connection on {} (OTLP/gRPC) failed: {e}{}",
                            Addr(local),
                            Suppressed(suppressed, "failed accepts")
                        );
                    }
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                }
            }
        }
    })
}

/// What the accept loop has logged lately, so that a flood logs once per interval.
#[derive(Debug, Default)]
struct Warnings {
    full: RateLimit,
    accept_failed: RateLimit,
}

/// An accepted connection and its slot among [`MAX_CONNECTIONS`], freed when it closes.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The OTLP/gRPC service: `TraceService/Export` to the receiver, every other method
/// `UNIMPLEMENTED`. A [`tower_service::Service`] on the request's path, as tonic's server takes.
#[derive(Clone, Debug)]
pub struct GrpcService {
    receiver: Arc<OtlpReceiver>,
}

impl GrpcService {
    /// A service handing trace exports to `receiver`.
    pub fn new(receiver: Arc<OtlpReceiver>) -> Self {
        GrpcService { receiver }
    }
}

impl tower_service::Service<http::Request<Body>> for GrpcService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let receiver = Arc::clone(&self.receiver);
        Box::pin(async move { Ok(answer(receiver, req).await) })
    }
}

/// Answers one call.
async fn answer(receiver: Arc<OtlpReceiver>, req: http::Request<Body>) -> http::Response<Body> {
    if req.uri().path() == TRACES_EXPORT_PATH {
        return export(receiver, req).await;
    }
    receiver.count(Input::OtlpGrpc, RequestOutcome::NotTraces);
    Status::unimplemented(not_served(req.uri().path())).into_http()
}

/// The message for a method other than `TraceService/Export`.
fn not_served(path: &str) -> String {
    let signal = if path == METRICS_EXPORT_PATH {
        Some(("metrics", "OTEL_METRICS_EXPORTER=none"))
    } else if path == LOGS_EXPORT_PATH {
        Some(("logs", "OTEL_LOGS_EXPORTER=none"))
    } else {
        None
    };
    match signal {
        Some((signal, variable)) => format!(
            "this daemon receives OpenTelemetry traces only, not {signal}: set {variable} in the \
             application, or send {signal} to a collector"
        ),
        None => format!(
            "{path} is not served here: this is the X-Ray daemon's OTLP/gRPC address \
             (--otlp-grpc), which serves {TRACES_EXPORT_PATH} only"
        ),
    }
}

/// Runs one `TraceService/Export` call through tonic, then counts (and, where exporters would
/// retry forever, replaces) a refusal tonic made before the message reached the receiver.
async fn export(receiver: Arc<OtlpReceiver>, req: http::Request<Body>) -> http::Response<Body> {
    if let Some(why) = receiver.refuse_if_busy(Input::OtlpGrpc) {
        return busy(why).into_http();
    }
    let settings = receiver.settings();
    let (max, timeout) = (settings.max_request_bytes, settings.client_timeout);
    let call = Arc::new(Call::default());
    let req = req.map(|body| Metered {
        inner: body,
        room: Arc::clone(receiver.body_room()),
        call: Arc::clone(&call),
        deadline: Box::pin(tokio::time::sleep(timeout)),
        timeout,
    });
    let take = Take {
        receiver: Arc::clone(&receiver),
        call: Arc::clone(&call),
    };
    let response = Grpc::new(PassThrough)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max)
        .unary(take, req)
        .await;
    let state = call.state();
    if state.entered {
        return response;
    }
    // tonic answers a refusal with the Status in the response's extensions.
    let tonics = response.extensions().get::<Status>();
    let (outcome, instead) = refusal(
        state.refused,
        tonics.map(Status::code),
        tonics.map_or("", Status::message),
        max,
    );
    drop(state);
    receiver.count(Input::OtlpGrpc, outcome);
    match instead {
        Some(status) => status.into_http(),
        None => response,
    }
}

/// How a call that never reached the receiver is counted, and the answer to give instead of
/// tonic's where tonic's would be retried although no retry can succeed. `refused` is what
/// [`Metered`] refused the body for, `code` and `message` are tonic's answer, `max` the cap.
fn refusal(
    refused: Option<RequestOutcome>,
    code: Option<Code>,
    message: &str,
    max: usize,
) -> (RequestOutcome, Option<Status>) {
    if let Some(outcome) = refused {
        return (outcome, None);
    }
    match code {
        // tonic: the length prefix over the cap (OUT_OF_RANGE), or the cap passed while
        // inflating (RESOURCE_EXHAUSTED). Both are retried by exporters; this never succeeds.
        Some(Code::OutOfRange | Code::ResourceExhausted) => (
            RequestOutcome::TooLarge,
            Some(Status::invalid_argument(
                DecodeError::TooLarge { cap: max }.to_string(),
            )),
        ),
        // tonic: a grpc-encoding it does not take.
        Some(Code::Unimplemented) => (RequestOutcome::UnsupportedEncoding, None),
        Some(Code::Internal) if message.contains("decompressing") => {
            (RequestOutcome::BadCompression, None)
        }
        // No message, a message cut short, the client gone.
        _ => (RequestOutcome::Unreadable, None),
    }
}

/// `UNAVAILABLE`, with a `google.rpc.RetryInfo` asking for [`RETRY_AFTER_SECONDS`].
fn busy(why: &str) -> Status {
    let mut metadata = MetadataMap::new();
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: RETRY_AFTER_SECONDS as i64,
            nanos: 0,
        }),
    };
    metadata.insert_bin(
        RETRY_INFO_KEY,
        MetadataValue::from_bytes(&retry.encode_to_vec()),
    );
    Status::with_metadata(
        Code::Unavailable,
        format!("{why}; retry after {RETRY_AFTER_SECONDS} s"),
        metadata,
    )
}

/// The answer to a call whose message reached the receiver.
fn answer_taken(taken: Taken) -> Result<ExportTraceServiceResponse, Status> {
    match taken {
        Taken::Accepted { rejected, message } => Ok(decode::success_response(rejected, &message)),
        Taken::Refused(DecodeError::Protobuf(detail)) => Err(Status::invalid_argument(format!(
            "the message is not an OTLP ExportTraceServiceRequest ({detail}); call \
             {TRACES_EXPORT_PATH} with one"
        ))),
        Taken::Refused(e) => Err(Status::invalid_argument(e.to_string())),
        Taken::NeverFits(why) => Err(Status::invalid_argument(why)),
        Taken::Busy(why) => Err(busy(why)),
        Taken::Failed => Err(Status::internal("the request could not be decoded")),
    }
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// One call's shared state: what its body holds of the byte budget, why it was refused, and
/// whether its message reached the receiver.
#[derive(Debug, Default)]
struct Call {
    state: Mutex<CallState>,
}

#[derive(Debug, Default)]
struct CallState {
    /// Permits for the bytes this call holds (read, or waiting to be decoded).
    room: Option<OwnedSemaphorePermit>,
    /// Set when [`Metered`] refused the body.
    refused: Option<RequestOutcome>,
    /// Set once the message reached [`Take`].
    entered: bool,
}

impl Call {
    fn state(&self) -> MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `bytes` more permits from `room`, or refuses the call as busy.
    fn hold(&self, room: &Arc<Semaphore>, bytes: usize) -> Result<(), Status> {
        let want = u32::try_from(bytes).unwrap_or(u32::MAX);
        let mut state = self.state();
        match Arc::clone(room).try_acquire_many_owned(want) {
            Ok(permit) => {
                match &mut state.room {
                    Some(held) => held.merge(permit),
                    None => state.room = Some(permit),
                }
                Ok(())
            }
            Err(_) => {
                state.refused = Some(RequestOutcome::Busy);
                Err(busy("too many large OTLP requests are being read at once"))
            }
        }
    }
}

/// The call's body, metered: each chunk takes its size from the shared byte budget (none left:
/// `UNAVAILABLE`), and the whole must arrive before the deadline (`DEADLINE_EXCEEDED`).
struct Metered {
    inner: Body,
    room: Arc<Semaphore>,
    call: Arc<Call>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.call.hold(&this.room, data.remaining())
                {
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.call.state().refused = Some(RequestOutcome::Timeout);
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "the request message did not arrive within {:?}",
                        this.timeout
                    )))));
                }
                Poll::Pending
            }
            ended => ended,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The unary handler tonic calls with the message's bytes: hands them to the receiver.
struct Take {
    receiver: Arc<OtlpReceiver>,
    call: Arc<Call>,
}

impl UnaryService<Bytes> for Take {
    type Response = ExportTraceServiceResponse;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let receiver = Arc::clone(&self.receiver);
        let call = Arc::clone(&self.call);
        Box::pin(async move {
            let message = request.into_inner();
            // What the call holds now is the message (inflated, if it came gzip'd): its
            // permits replace those of the bytes read.
            let read = {
                let mut state = call.state();
                state.entered = true;
                state.room.take()
            };
            drop(read);
            let want = u32::try_from(message.len().max(1)).unwrap_or(u32::MAX);
            let Ok(room) = Arc::clone(receiver.body_room()).try_acquire_many_owned(want) else {
                receiver.count(Input::OtlpGrpc, RequestOutcome::Busy);
                return Err(busy("too many large OTLP requests are being read at once"));
            };
            // A task of its own: once the message is here, its spans are booked and counted
            // even if the client stops waiting (its deadline passed) or the connection drops.
            let taken = tokio::spawn(async move {
                let _room = room;
                receiver
                    .take(
                        Input::OtlpGrpc,
                        message,
                        Format::Protobuf,
                        Encoding::Identity,
                    )
                    .await
            })
            .await
            .unwrap_or(Taken::Failed);
            answer_taken(taken).map(tonic::Response::new)
        })
    }
}

/// The codec of `TraceService/Export`: the request message's bytes through untouched (decoded
/// later, off the runtime thread), the response encoded from its prost struct.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl Codec for PassThrough {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = PassThrough;
    type Decoder = PassThrough;

    fn encoder(&mut self) -> PassThrough {
        PassThrough
    }

    fn decoder(&mut self) -> PassThrough {
        PassThrough
    }
}

impl Encoder for PassThrough {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
    }
}

impl Decoder for PassThrough {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

/// A listener's address in a log line.
#[derive(Debug)]
struct Addr(Option<SocketAddr>);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("(unknown address)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use http_body_util::{BodyExt as _, Full, StreamBody};

    use super::*;
    use crate::buffer::{Buffer, FullPolicy, LaneSettings};
    use crate::otlp::proto::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span};
    use crate::otlp::to_xray::ConversionSettings;
    use crate::otlp_http::OtlpSettings;
    use crate::stats::{Snapshot, Stats};

    /// A receiver over a buffer of `budget` bytes that nothing drains, taking messages up to
    /// `max` bytes with `bodies` bytes being read at once.
    fn receiver(budget: usize, max: usize, bodies: usize) -> (GrpcService, Arc<Stats>) {
        let stats = Arc::new(Stats::new());
        let buffer = Buffer::new(
            budget,
            vec![LaneSettings {
                name: "memory".into(),
                batch_size: 50,
                takes: crate::buffer::Takes::Everything,
            }],
            FullPolicy::DropOldest,
            Arc::clone(&stats),
        );
        let receiver = OtlpReceiver::new(
            buffer,
            Arc::clone(&stats),
            OtlpSettings {
                max_request_bytes: max,
                bodies_in_flight: bodies,
                client_timeout: Duration::from_secs(2),
                conversion: ConversionSettings::default(),
                max_document: 64 * 1024,
            },
        );
        (GrpcService::new(Arc::new(receiver)), stats)
    }

    fn roomy() -> (GrpcService, Arc<Stats>) {
        receiver(16 << 20, 1 << 20, 2 << 20)
    }

    /// An `ExportTraceServiceRequest` with `n` spans, the first `bad` of them with an 8-byte
    /// trace id.
    fn spans(n: usize, bad: usize) -> Vec<u8> {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: if i < bad { vec![7; 8] } else { vec![7; 16] },
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: format!("op-{i}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_500_000_000,
                ..Span::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap_or_else(|e| panic!("gzip: {e}"));
        gz.finish().unwrap_or_else(|e| panic!("gzip: {e}"))
    }

    /// One gRPC message frame: the compressed flag, the length, the message.
    fn frame(message: &[u8], compressed: bool) -> Bytes {
        let mut out = vec![u8::from(compressed)];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        Bytes::from(out)
    }

    fn request(path: &str, body: Body, gzip: bool) -> http::Request<Body> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://daemon{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if gzip {
            builder = builder.header("grpc-encoding", "gzip");
        }
        builder
            .body(body)
            .unwrap_or_else(|e| panic!("a request: {e}"))
    }

    /// What a call got: its status (from the headers of a trailers-only answer, else the
    /// trailers), and the reply message on success.
    struct Answer {
        status: Status,
        reply: Option<ExportTraceServiceResponse>,
    }

    async fn call(service: &mut GrpcService, req: http::Request<Body>) -> Answer {
        use tower_service::Service as _;
        let Ok(response) = service.call(req).await;
        let headers = response.headers().clone();
        let collected = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("the answer's body: {e}"));
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let bytes = collected.to_bytes();
        let status = Status::from_header_map(&headers)
            .or_else(|| Status::from_header_map(&trailers))
            .unwrap_or_else(|| panic!("no grpc-status in {headers:?} or {trailers:?}"));
        let reply = (bytes.len() >= 5).then(|| {
            ExportTraceServiceResponse::decode(&bytes[5..])
                .unwrap_or_else(|e| panic!("a response message: {e}"))
        });
        Answer { status, reply }
    }

    async fn export(service: &mut GrpcService, message: &[u8]) -> Answer {
        let body = Body::new(Full::new(frame(message, false)));
        call(service, request(TRACES_EXPORT_PATH, body, false)).await
    }

    fn requests(stats: &Stats) -> std::collections::BTreeMap<String, u64> {
        let snapshot: Snapshot = stats.snapshot();
        snapshot.inputs["otlp_grpc"].requests.clone()
    }

    #[tokio::test]
    async fn trace_exports_plain_and_gzipped_are_taken_and_answered_ok() {
        let (mut service, stats) = roomy();
        let answer = export(&mut service, &spans(3, 0)).await;
        assert_eq!(answer.status.code(), Code::Ok, "{:?}", answer.status);
        let reply = answer.reply.unwrap_or_else(|| panic!("no reply"));
        assert_eq!(reply.partial_success, None);

        let body = Body::new(Full::new(frame(&gzip(&spans(2, 0)), true)));
        let answer = call(&mut service, request(TRACES_EXPORT_PATH, body, true)).await;
        assert_eq!(answer.status.code(), Code::Ok, "{:?}", answer.status);

        let snapshot = stats.snapshot();
        let input = &snapshot.inputs["otlp_grpc"];
        assert_eq!((input.received, input.accepted), (5, 5), "{snapshot:?}");
        assert_eq!(input.requests["accepted"], 2);
        assert_eq!(snapshot.inputs["otlp_http"].received, 0);
    }

    #[tokio::test]
    async fn spans_with_bad_ids_are_refused_in_partial_success() {
        let (mut service, stats) = roomy();
        let answer = export(&mut service, &spans(3, 1)).await;
        assert_eq!(answer.status.code(), Code::Ok, "{:?}", answer.status);
        let partial = answer
            .reply
            .and_then(|r| r.partial_success)
            .unwrap_or_else(|| panic!("no partial_success"));
        assert_eq!(partial.rejected_spans, 1);
        assert!(!partial.error_message.is_empty());
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.inputs["otlp_grpc"].refused["invalid_span"], 1);
        assert_eq!(snapshot.inputs["otlp_grpc"].accepted, 2);
    }

    #[tokio::test]
    async fn garbage_is_invalid_argument() {
        let (mut service, stats) = roomy();
        let answer = export(&mut service, &[0xff; 64]).await;
        assert_eq!(
            answer.status.code(),
            Code::InvalidArgument,
            "{:?}",
            answer.status
        );
        assert!(
            answer
                .status
                .message()
                .contains("not an OTLP ExportTraceServiceRequest"),
            "{:?}",
            answer.status
        );
        assert_eq!(requests(&stats)["undecodable"], 1);
    }

    #[tokio::test]
    async fn metrics_logs_and_other_methods_are_unimplemented_and_counted() {
        let (mut service, stats) = roomy();
        for (path, says) in [
            (METRICS_EXPORT_PATH, "OTEL_METRICS_EXPORTER=none"),
            (LOGS_EXPORT_PATH, "OTEL_LOGS_EXPORTER=none"),
            ("/grpc.health.v1.Health/Check", "--otlp-grpc"),
        ] {
            let body = Body::new(Full::new(frame(b"", false)));
            let answer = call(&mut service, request(path, body, false)).await;
            assert_eq!(answer.status.code(), Code::Unimplemented, "{path}");
            assert!(
                answer.status.message().contains(says),
                "{path}: {:?}",
                answer.status
            );
        }
        assert_eq!(requests(&stats)["not_traces"], 3);
    }

    #[tokio::test]
    async fn messages_over_the_cap_are_invalid_argument_plain_or_inflated() {
        let (mut service, stats) = receiver(16 << 20, 8192, 1 << 20);
        // Its length prefix is over the cap: tonic says OUT_OF_RANGE, which exporters retry.
        let answer = export(&mut service, &[0u8; 16384]).await;
        assert_eq!(
            answer.status.code(),
            Code::InvalidArgument,
            "{:?}",
            answer.status
        );
        assert!(
            answer.status.message().contains("8192-byte limit"),
            "{:?}",
            answer.status
        );
        // A gzip bomb: small on the wire, over the cap inflated (tonic: RESOURCE_EXHAUSTED).
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 8192, "{}", bomb.len());
        let body = Body::new(Full::new(frame(&bomb, true)));
        let answer = call(&mut service, request(TRACES_EXPORT_PATH, body, true)).await;
        assert_eq!(
            answer.status.code(),
            Code::InvalidArgument,
            "{:?}",
            answer.status
        );
        assert_eq!(requests(&stats)["too_large"], 2);
    }

    #[tokio::test]
    async fn corrupt_gzip_and_unknown_encodings_are_counted() {
        let (mut service, stats) = roomy();
        let body = Body::new(Full::new(frame(b"not gzip at all", true)));
        let answer = call(&mut service, request(TRACES_EXPORT_PATH, body, true)).await;
        assert_eq!(answer.status.code(), Code::Internal, "{:?}", answer.status);
        let mut req = request(
            TRACES_EXPORT_PATH,
            Body::new(Full::new(frame(b"x", true))),
            false,
        );
        req.headers_mut()
            .insert("grpc-encoding", http::HeaderValue::from_static("snappy"));
        let answer = call(&mut service, req).await;
        assert_eq!(
            answer.status.code(),
            Code::Unimplemented,
            "{:?}",
            answer.status
        );
        let counted = requests(&stats);
        assert_eq!(
            (counted["bad_compression"], counted["unsupported_encoding"]),
            (1, 1),
            "{counted:?}"
        );
    }

    #[tokio::test]
    async fn spans_that_could_never_fit_are_invalid_argument_not_retried() {
        let (mut service, stats) = receiver(16 * 1024, 1 << 20, 2 << 20);
        let answer = export(&mut service, &spans(200, 0)).await;
        assert_eq!(
            answer.status.code(),
            Code::InvalidArgument,
            "{:?}",
            answer.status
        );
        assert!(
            answer
                .status
                .message()
                .contains("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
            "{:?}",
            answer.status
        );
        assert_eq!(requests(&stats)["too_large"], 1);
    }

    /// The `RetryInfo` delay of a status, in seconds.
    fn retry_delay(status: &Status) -> Option<i64> {
        let value = status.metadata().get_bin(RETRY_INFO_KEY)?;
        let bytes = value.to_bytes().ok()?;
        RetryInfo::decode(bytes.as_ref())
            .ok()?
            .retry_delay
            .map(|d| d.seconds)
    }

    #[tokio::test]
    async fn a_full_buffer_is_unavailable_with_retry_info() {
        // Nothing drains this buffer: requests fill it to the high-water mark, then the next
        // one is refused before its body is read.
        let (mut service, stats) = receiver(64 * 1024, 1 << 20, 2 << 20);
        let mut busy = None;
        for _ in 0..50 {
            let answer = export(&mut service, &spans(20, 0)).await;
            if answer.status.code() != Code::Ok {
                busy = Some(answer.status);
                break;
            }
        }
        let status = busy.unwrap_or_else(|| panic!("UNAVAILABLE once the buffer is at its mark"));
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(retry_delay(&status), Some(RETRY_AFTER_SECONDS as i64));
        assert_eq!(requests(&stats)["busy"], 1);
    }

    #[tokio::test]
    async fn bytes_being_read_over_the_shared_budget_are_unavailable() {
        let (mut service, stats) = receiver(16 << 20, 1 << 20, 100);
        let answer = export(&mut service, &spans(20, 0)).await;
        assert_eq!(
            answer.status.code(),
            Code::Unavailable,
            "{:?}",
            answer.status
        );
        assert_eq!(
            retry_delay(&answer.status),
            Some(RETRY_AFTER_SECONDS as i64)
        );
        assert_eq!(requests(&stats)["busy"], 1);
        assert_eq!(
            stats.snapshot().inputs["otlp_grpc"].received,
            0,
            "never decoded"
        );
    }

    #[tokio::test]
    async fn bytes_a_call_is_still_reading_count_against_the_others() {
        let (mut service, stats) = receiver(16 << 20, 1 << 20, 100);
        // A call whose first 80 bytes arrived, the rest never does: it holds 80 of the 100.
        let mut slow = frame(&[0u8; 200], false).to_vec();
        slow.truncate(80);
        let first = futures_util::stream::iter([Ok::<_, Status>(Frame::data(Bytes::from(slow)))]);
        let body = Body::new(StreamBody::new(futures_util::StreamExt::chain(
            first,
            futures_util::stream::pending(),
        )));
        let mut other = service.clone();
        let reading = tokio::spawn(async move {
            call(&mut other, request(TRACES_EXPORT_PATH, body, false)).await
        });
        let room = Arc::clone(service.receiver.body_room());
        for _ in 0..1000 {
            if room.available_permits() == 20 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            room.available_permits(),
            20,
            "the slow call holds what it read"
        );
        // 40 bytes more do not fit beside it (alone they would).
        let answer = export(&mut service, &[0u8; 35]).await;
        assert_eq!(
            answer.status.code(),
            Code::Unavailable,
            "{:?}",
            answer.status
        );
        assert_eq!(requests(&stats)["busy"], 1);
        reading.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_never_arrives_is_deadline_exceeded() {
        let (mut service, stats) = roomy();
        let never = futures_util::stream::pending::<Result<Frame<Bytes>, Status>>();
        let body = Body::new(StreamBody::new(never));
        let answer = call(&mut service, request(TRACES_EXPORT_PATH, body, false)).await;
        assert_eq!(
            answer.status.code(),
            Code::DeadlineExceeded,
            "{:?}",
            answer.status
        );
        assert_eq!(requests(&stats)["timeout"], 1);
    }

    #[test]
    fn tonics_refusals_are_counted_and_the_retried_ones_replaced() {
        let (outcome, instead) = refusal(None, Some(Code::OutOfRange), "too large", 4096);
        assert_eq!(outcome, RequestOutcome::TooLarge);
        assert_eq!(instead.map(|s| s.code()), Some(Code::InvalidArgument));
        let (outcome, instead) = refusal(None, Some(Code::ResourceExhausted), "", 4096);
        assert_eq!(
            (outcome, instead.map(|s| s.code())),
            (RequestOutcome::TooLarge, Some(Code::InvalidArgument))
        );
        let (outcome, instead) = refusal(None, Some(Code::Unimplemented), "snappy", 4096);
        assert_eq!(
            (outcome, instead.is_none()),
            (RequestOutcome::UnsupportedEncoding, true)
        );
        let (outcome, _) = refusal(
            None,
            Some(Code::Internal),
            "Error decompressing: invalid gzip header",
            4096,
        );
        assert_eq!(outcome, RequestOutcome::BadCompression);
        let (outcome, _) = refusal(None, Some(Code::Internal), "Missing request message.", 1);
        assert_eq!(outcome, RequestOutcome::Unreadable);
        let (outcome, instead) = refusal(
            Some(RequestOutcome::Busy),
            Some(Code::Unavailable),
            "",
            4096,
        );
        assert_eq!((outcome, instead.is_none()), (RequestOutcome::Busy, true));
    }

    #[test]
    fn each_taken_maps_to_the_code_exporters_should_see() {
        let code = |taken| match answer_taken(taken) {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        assert_eq!(
            code(Taken::Accepted {
                rejected: 0,
                message: String::new()
            }),
            Code::Ok
        );
        assert_eq!(
            code(Taken::Refused(DecodeError::Protobuf("x".into()))),
            Code::InvalidArgument
        );
        // Never RESOURCE_EXHAUSTED: the exporters retry it, and this can never succeed.
        assert_eq!(code(Taken::NeverFits("big".into())), Code::InvalidArgument);
        assert_eq!(code(Taken::Busy("full")), Code::Unavailable);
        assert_eq!(code(Taken::Failed), Code::Internal);
        match answer_taken(Taken::Accepted {
            rejected: 2,
            message: "two bad ids".into(),
        }) {
            Ok(reply) => {
                let partial = reply
                    .partial_success
                    .unwrap_or_else(|| panic!("no partial_success"));
                assert_eq!(
                    (partial.rejected_spans, partial.error_message.as_str()),
                    (2, "two bad ids")
                );
            }
            Err(status) => panic!("{status:?}"),
        }
    }

    #[test]
    fn not_served_names_the_setting_that_stops_the_signal() {
        assert!(not_served(METRICS_EXPORT_PATH).contains("OTEL_METRICS_EXPORTER=none"));
        assert!(not_served(LOGS_EXPORT_PATH).contains("OTEL_LOGS_EXPORTER=none"));
        assert!(not_served("/x.Y/Z").contains(TRACES_EXPORT_PATH));
    }
}
