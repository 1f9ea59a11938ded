//! Outcome types every stage shares: why an item was dropped ([`DropReason`]) and what kind of
//! failure a call to a destination was ([`ErrorKind`]).
//!
//! A leaf: it imports nothing of this crate, so any stage, sink or the stats can name an outcome
//! without importing another stage. The names these types print are public: they are
//! `/daemon/stats` keys and Prometheus label values, and keep their spelling.

/// Why an item did not reach its destination (or was refused at intake). Stable names: they are stats keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The datagram had no newline, so no header line.
    MissingNewline,
    /// The header line was not a JSON object.
    HeaderNotJson,
    /// The header's format was not `json` or its version not 1.
    UnsupportedHeader,
    /// Nothing followed the header line.
    EmptyBody,
    /// The document was neither a well-formed JSON object nor a distro (`T1S`…) document, or
    /// not UTF-8.
    InvalidBody,
    /// No longer counted (always 0; the key stays for scrapers): a datagram longer than the
    /// receive buffer is over the document cap, so it counts as [`DropReason::TooLarge`].
    Truncated,
    /// The document was over the size cap (for an OpenTelemetry span: its X-Ray document, even
    /// with its metadata trimmed; for X-Ray's OTLP endpoint, the span's protobuf over 200 KB).
    TooLarge,
    /// An OpenTelemetry span whose ids are unusable (a trace id not 16 bytes, a span id not 8,
    /// either all zero, a parent id neither empty nor 8 bytes).
    InvalidSpan,
    /// The memory budget was full; the oldest document was dropped to make room.
    Spillover,
    /// One sink's unsent backlog reached its share of the memory budget; that sink dropped its
    /// own oldest item (the other sinks still have it).
    SinkBacklog,
    /// The upload failed in a way another attempt would not fix (HTTP 4xx other than 429, no
    /// credentials).
    UploadFailed,
    /// Retries ran out (attempt count or age) while the upload kept failing.
    RetriesExhausted,
    /// Still held when the shutdown deadline passed.
    Shutdown,
    /// An OpenTelemetry span for X-Ray's OTLP endpoint that started more than 14 days ago or
    /// starts more than 2 hours ahead: the endpoint would refuse the whole request for it.
    OutsideTimeWindow,
}

impl DropReason {
    /// Every reason, in the order stats list them.
    pub const ALL: [DropReason; 14] = [
        DropReason::MissingNewline,
        DropReason::HeaderNotJson,
        DropReason::UnsupportedHeader,
        DropReason::EmptyBody,
        DropReason::InvalidBody,
        DropReason::Truncated,
        DropReason::TooLarge,
        DropReason::InvalidSpan,
        DropReason::Spillover,
        DropReason::SinkBacklog,
        DropReason::UploadFailed,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
        DropReason::OutsideTimeWindow,
    ];

    /// The stable name used in stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::MissingNewline => "missing_newline",
            DropReason::HeaderNotJson => "header_not_json",
            DropReason::UnsupportedHeader => "unsupported_header",
            DropReason::EmptyBody => "empty_body",
            DropReason::InvalidBody => "invalid_body",
            DropReason::Truncated => "truncated",
            DropReason::TooLarge => "too_large",
            DropReason::InvalidSpan => "invalid_span",
            DropReason::Spillover => "spillover",
            DropReason::SinkBacklog => "sink_backlog",
            DropReason::UploadFailed => "upload_failed",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::OutsideTimeWindow => "outside_time_window",
        }
    }

    /// True for reasons that describe bad input refused on the way in (as opposed to capacity
    /// or delivery; [`DropReason::OutsideTimeWindow`] is decided when a span is sent).
    pub fn is_bad_input(self) -> bool {
        self.index() < DropReason::Spillover.index()
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How one request to a receiver that takes requests (OTLP/HTTP, OTLP/gRPC) ended. Stable
/// names: they are stats keys (`inputs.NAME.requests`) and a Prometheus label. The answers
/// named are OTLP/HTTP's status, then OTLP/gRPC's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// Decoded and its spans booked (some may have been refused: see the span counts).
    Accepted,
    /// A content type the receiver does not take (`415`; gRPC: never).
    UnsupportedContentType,
    /// A content encoding it does not take (`415`; `UNIMPLEMENTED`).
    UnsupportedEncoding,
    /// Over the body cap, or more spans than the buffer ever admits at once (`413`;
    /// `INVALID_ARGUMENT`, which exporters do not retry).
    TooLarge,
    /// A compressed body that does not decompress (`400`; `INTERNAL`).
    BadCompression,
    /// Not an OTLP message (`400`; `INVALID_ARGUMENT`).
    Undecodable,
    /// The body could not be read (the connection broke) (`400`; gRPC: `INTERNAL` or the
    /// client's own cancellation).
    Unreadable,
    /// The body did not arrive in time (`408`; `DEADLINE_EXCEEDED`).
    Timeout,
    /// The buffer was full, or too many large bodies were being read (`503`; `UNAVAILABLE`:
    /// both retried).
    Busy,
    /// Metrics or logs, which the daemon does not take (`404`; `UNIMPLEMENTED`).
    NotTraces,
}

impl RequestOutcome {
    /// Every outcome, in the order stats list them.
    pub const ALL: [RequestOutcome; 10] = [
        RequestOutcome::Accepted,
        RequestOutcome::UnsupportedContentType,
        RequestOutcome::UnsupportedEncoding,
        RequestOutcome::TooLarge,
        RequestOutcome::BadCompression,
        RequestOutcome::Undecodable,
        RequestOutcome::Unreadable,
        RequestOutcome::Timeout,
        RequestOutcome::Busy,
        RequestOutcome::NotTraces,
    ];

    /// The stable name used in stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Accepted => "accepted",
            RequestOutcome::UnsupportedContentType => "unsupported_content_type",
            RequestOutcome::UnsupportedEncoding => "unsupported_encoding",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::BadCompression => "bad_compression",
            RequestOutcome::Undecodable => "undecodable",
            RequestOutcome::Unreadable => "unreadable",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Busy => "busy",
            RequestOutcome::NotTraces => "not_traces",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What kind of failure a call to a destination was. Stable names: they are stats keys, and
/// telemetry maps them onto the original daemon's `BackendConnectionErrors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The service said to slow down (HTTP 429 or a `Throttling…` error code).
    Throttled,
    /// Another HTTP 4xx answer (bad request, credentials refused, …).
    Http4xx,
    /// An HTTP 5xx answer.
    Http5xx,
    /// No answer in time (connect or attempt timeout).
    Timeout,
    /// The endpoint refused the TCP connection.
    ConnectionRefused,
    /// The endpoint's host name did not resolve.
    UnknownHost,
    /// The connection failed otherwise (reset, closed early, TLS).
    Connection,
    /// Anything else (no credentials, a request that could not be built, a local write).
    Other,
}

impl ErrorKind {
    /// Every kind, in the order stats list them.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Throttled,
        ErrorKind::Http4xx,
        ErrorKind::Http5xx,
        ErrorKind::Timeout,
        ErrorKind::ConnectionRefused,
        ErrorKind::UnknownHost,
        ErrorKind::Connection,
        ErrorKind::Other,
    ];

    /// The stable name used in stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Http4xx => "http_4xx",
            ErrorKind::Http5xx => "http_5xx",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ConnectionRefused => "connection_refused",
            ErrorKind::UnknownHost => "unknown_host",
            ErrorKind::Connection => "connection",
            ErrorKind::Other => "other",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind for an HTTP status (429 is throttling).
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            429 => ErrorKind::Throttled,
            400..=499 => ErrorKind::Http4xx,
            500..=599 => ErrorKind::Http5xx,
            _ => ErrorKind::Other,
        }
    }
}
