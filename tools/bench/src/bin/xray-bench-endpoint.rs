//! `xray-bench-endpoint`: a fast stand-in for the X-Ray API that only counts documents, so a
//! benchmark measures the daemon and not its upstream.
//!
//! A benchmark tool (package `tools/bench`, never built with the daemon nor packaged). It is
//! not a test peer: tests use moto. It answers:
//! - `POST /TraceSegments` (PutTraceSegments): counts the strings of `TraceSegmentDocuments`
//!   by scanning for the array's string boundaries (no JSON tree, no unescaping) and answers
//!   `{"UnprocessedTraceSegments":[]}`. The SigV4 signature is not checked;
//! - `GET /counts`: `{"requests":N,"documents":N,"body_bytes":N,"other_requests":N}`;
//! - anything else (e.g. `POST /TelemetryRecords`): `200 {}`, counted as `other_requests`.
//!
//! Every accepted connection gets `TCP_NODELAY`, and each response goes out in one write, so no
//! delayed-ACK stall slows the daemon down. One thread (a current-thread runtime).
//!
//! ```text
//! xray-bench-endpoint [--listen 127.0.0.1:0] [--max-seconds 3600]
//! ```
//! Prints `{"listening":"ADDR"}` on stdout once it accepts connections. Stops by itself when
//! its standard input closes (the driver died or is done) or after `--max-seconds`.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    documents: AtomicU64,
    body_bytes: AtomicU64,
    other_requests: AtomicU64,
    malformed: AtomicU64,
}

/// Counts the strings in the `TraceSegmentDocuments` array of a PutTraceSegments body, or
/// `None` when the body does not have that shape.
fn count_documents(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"TraceSegmentDocuments\"";
    let at = memchr::memmem::find(body, KEY)? + KEY.len();
    let mut i = at + memchr::memchr(b'[', &body[at..])? + 1;
    let skip_ws = |mut i: usize| {
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut n = 0;
    loop {
        i = skip_ws(i);
        match body.get(i)? {
            b']' => return Some(n),
            b'"' => {}
            _ => return None,
        }
        // Find the closing quote: one preceded by an even number of backslashes.
        let mut j = i + 1;
        loop {
            j += memchr::memchr(b'"', &body[j..])?;
            let backslashes = body[i + 1..j]
                .iter()
                .rev()
                .take_while(|b| **b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                break;
            }
            j += 1;
        }
        n += 1;
        i = skip_ws(j + 1);
        match body.get(i)? {
            b',' => i += 1,
            b']' => return Some(n),
            _ => return None,
        }
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(
    req: Request<Incoming>,
    counts: Arc<Counts>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let put = req.method() == Method::POST && req.uri().path() == "/TraceSegments";
    let counts_path = req.method() == Method::GET && req.uri().path() == "/counts";
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, "{}")),
    };
    if put {
        counts.requests.fetch_add(1, Ordering::Relaxed);
        counts
            .body_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        match count_documents(&body) {
            Some(n) => {
                counts.documents.fetch_add(n, Ordering::Relaxed);
                Ok(json(StatusCode::OK, r#"{"UnprocessedTraceSegments":[]}"#))
            }
            None => {
                counts.malformed.fetch_add(1, Ordering::Relaxed);
                Ok(json(
                    StatusCode::BAD_REQUEST,
                    r#"{"__type":"InvalidRequestException","message":"no TraceSegmentDocuments array"}"#,
                ))
            }
        }
    } else if counts_path {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(json(
            StatusCode::OK,
            format!(
                "{{\"requests\":{},\"documents\":{},\"body_bytes\":{},\"other_requests\":{},\"malformed\":{}}}",
                c(&counts.requests),
                c(&counts.documents),
                c(&counts.body_bytes),
                c(&counts.other_requests),
                c(&counts.malformed)
            ),
        ))
    } else {
        counts.other_requests.fetch_add(1, Ordering::Relaxed);
        Ok(json(StatusCode::OK, "{}"))
    }
}

async fn serve(listener: tokio::net::TcpListener, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&counts)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A stand-in for the X-Ray API that only counts the documents it receives: answers
/// POST /TraceSegments, reports at GET /counts. Prints {"listening":"ADDR"} once it accepts
/// connections; stops when its standard input closes or after --max-seconds.
#[derive(Debug, Parser)]
#[command(name = "xray-bench-endpoint", args_override_self = true)]
struct Args {
    /// Address to listen on (port 0: any free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Stop after this many seconds
    #[arg(long, value_name = "N", default_value_t = 3600)]
    max_seconds: u64,
}

fn main() -> ExitCode {
    let Args {
        listen,
        max_seconds,
    } = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xray-bench-endpoint: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Stop when the driver closes our stdin (or dies).
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("xray-bench-endpoint: cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        let local = listener.local_addr().map_or(listen, |a| a);
        println!("{{\"listening\":\"{local}\"}}");
        let counts = Arc::new(Counts::default());
        let _ =
            tokio::time::timeout(Duration::from_secs(max_seconds), serve(listener, counts)).await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::{Args, count_documents};
    use clap::{CommandFactory, Parser};
    use std::net::SocketAddr;

    #[test]
    fn the_command_line() {
        Args::command().debug_assert();
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("xray-bench-endpoint").chain(args.iter().copied()))
                .map(|a| (a.listen, a.max_seconds))
        };
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        assert!(parse(&[]).is_ok_and(|a| a == (any, 3600)));
        // What xray-bench passes.
        assert!(
            parse(&["--listen", "127.0.0.1:0", "--max-seconds", "60"])
                .is_ok_and(|a| a == (any, 60))
        );
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--max-seconds"]).is_err());
    }

    #[test]
    fn counts_documents_with_escaped_quotes() {
        let body = br#"{"TraceSegmentDocuments": ["{\"a\":\"x\\\\\"}", "{\"b\\\"\":1}" ,"{}"]}"#;
        assert_eq!(count_documents(body), Some(3));
        assert_eq!(count_documents(br#"{"TraceSegmentDocuments":[]}"#), Some(0));
        assert_eq!(count_documents(br#"{"TraceSegmentDocuments":[1]}"#), None);
        assert_eq!(count_documents(b"{}"), None);
    }
}
