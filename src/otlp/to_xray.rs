//! One span in, one X-Ray segment document out, for `PutTraceSegments`.
//!
//! Data comes from the buffer as a [`SpanRecord`] (see [`super::span`]); the documents go to
//! the X-Ray sink as [`Document`]s, each a JSON object the daemon's own [`crate::document`]
//! check accepts, within the document cap. A pure function of the span and the
//! [`ConversionSettings`]: it runs on the blocking pool, never on the UDP path.
//!
//! The rules follow the OpenTelemetry collector's X-Ray exporter, which users already rely on:
//! - **ids**: the trace id's 32 hex digits become `1-` + the first 8 + `-` + the last 24 (no
//!   epoch check: X-Ray has taken random W3C ids since 2023); the span id is the `id`;
//! - **segment or subsegment**: a SERVER span and a local root (no parent, or the attribute
//!   `aws.span.kind = LOCAL_ROOT`, or `Span.flags` saying the parent is remote: newer SDKs set
//!   those bits, the surest sign) are segments (with `parent_id` when the caller is known);
//!   other spans are subsegments sent as documents of their own (`type: subsegment`,
//!   `parent_id`, `trace_id`). A local root that is a CLIENT or PRODUCER span becomes, as the
//!   collector makes it, a segment for the service (a new id, derived from the span's so the
//!   same span always gives the same document) and beneath it a dependency subsegment for the
//!   call (the span's own id, so its children still find it); the subsegment is embedded in
//!   the segment's `subsegments`, so one span is always one document (one buffer item, one
//!   entry of a `PutTraceSegments` call of at most 50);
//! - **names**: segments take `aws.local.service`, else the resource's `service.name`, else the
//!   span name; subsegments take `aws.remote.service` (CLIENT, PRODUCER and CONSUMER spans;
//!   `AWS.SDK.`/`AWS::` prefixes dropped for AWS SDK spans), `peer.service`, `aws.service`,
//!   `db.name`/`db.namespace` with `@host`, `rpc.service`, `http.host`/`server.address`,
//!   `net.peer.name`, the host of `http.url`/`url.full`, else the span name. Names are cleaned
//!   to X-Ray's characters (letters, digits, space, `_ . : / % & # = + \ - @`) and cut to 200
//!   characters; an empty one becomes `span`;
//! - **namespace** (subsegments): `aws` for AWS SDK calls (`rpc.system = aws-api`, or an
//!   `aws.service` attribute), `remote` for other CLIENT spans and for PRODUCER and CONSUMER
//!   spans naming `aws.remote.service`;
//! - **blocks**: `http` from the old (`http.method`, `http.url`, `http.status_code`, …) and new
//!   (`http.request.method`, `url.full`, `http.response.status_code`, …) attribute names; `aws`
//!   (operation, region, request id, queue URL, table names from the span; account, EC2, ECS,
//!   EKS, Beanstalk and SDK data from the resource on segments); `sql` for SQL databases
//!   (`db.system`/`db.system.name`); `origin` and `service.version` on segments. Attributes
//!   that went into a block are not repeated in metadata;
//! - **error, throttle, fault**: an HTTP status 4xx is `error`, 429 also `throttle`, 5xx
//!   `fault`; without a 4xx/5xx status, span status ERROR is `fault` (as the collector: a CLIENT
//!   span's 404 is an error, not a fault, though its status is ERROR);
//! - **cause**: each `exception` event is an exception (type, message, stack frames parsed for
//!   the resource's `telemetry.sdk.language`: see [`stack`]); `remote` for CLIENT and PRODUCER
//!   spans; without exception events, an ERROR status with a message is one exception;
//! - **annotations and metadata**: an attribute named in [`ConversionSettings`] (or every one
//!   with `index_all`, but for those that went into a block), or listed in the span's
//!   `aws.xray.annotations`, is an annotation when
//!   its value is a string, number or boolean, its key cleaned to ASCII letters, digits and `_`
//!   (`.` and anything else → `_`); the rest is metadata in namespace `default`; a string
//!   attribute `aws.xray.metadata.NS` holding a JSON object is metadata namespace `NS`;
//!   `enduser.id` is the segment's `user`; on segments, the resource's attributes are
//!   `otel.resource.KEY` metadata (annotations when indexed by that name);
//! - **size**: a document over the cap is trimmed: metadata first (largest values first), then
//!   stack frames, then annotations, then long strings cut to 1 KiB; what was removed is
//!   counted in [`Trimmed`]. A document that still does not fit is an error.
//!
//! Left out: span links, and the AWS SDK's `HTTP request failure` events.

pub mod stack;

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value as Json;

use super::proto::{AnyValue, KeyValue, SpanKind, StatusCode, any_value::Value, attribute};
use super::span::SpanRecord;
use crate::document::{DEFAULT_MAX_DOCUMENT_BYTES, Document};

/// How attributes become annotations (`--indexed-attributes`, `--index-all-attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversionSettings {
    /// Attribute keys (before cleaning) that become annotations, span attributes by their own
    /// key and resource attributes as `otel.resource.KEY`. Default: none.
    pub indexed_attributes: Vec<String>,
    /// Every attribute with a string, number or boolean value becomes an annotation. Default:
    /// off.
    pub index_all: bool,
}

/// The document made from one span.
#[derive(Clone, Debug)]
pub struct Converted {
    /// The segment or subsegment document (for a local-root CLIENT or PRODUCER span, the
    /// service segment with the dependency subsegment embedded).
    pub document: Document,
    /// What was removed to keep the documents within the cap.
    pub trimmed: Trimmed,
}

/// What was removed from documents over the cap, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Metadata entries removed.
    pub metadata: usize,
    /// Stack frames removed from `cause`.
    pub stack_frames: usize,
    /// Annotations removed.
    pub annotations: usize,
    /// Long strings cut to 1 KiB.
    pub cut_strings: usize,
}

impl Trimmed {
    /// True when nothing was removed.
    pub fn is_empty(&self) -> bool {
        *self == Trimmed::default()
    }

    fn add(&mut self, other: Trimmed) {
        self.metadata += other.metadata;
        self.stack_frames += other.stack_frames;
        self.annotations += other.annotations;
        self.cut_strings += other.cut_strings;
    }
}

/// Why a span gave no document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// Even trimmed, a document is over the cap.
    #[error("the span's X-Ray document is {size} bytes even trimmed, over the {cap}-byte cap")]
    TooLarge {
        /// The trimmed document's size in bytes.
        size: usize,
        /// The cap.
        cap: usize,
    },
}

/// Converts one span with the default 64 KiB document cap.
pub fn to_documents(
    record: &SpanRecord,
    settings: &ConversionSettings,
) -> Result<Converted, ConvertError> {
    convert(record, settings, DEFAULT_MAX_DOCUMENT_BYTES)
}

/// Converts one span; each document is at most `cap` bytes.
pub fn convert(
    record: &SpanRecord,
    settings: &ConversionSettings,
    cap: usize,
) -> Result<Converted, ConvertError> {
    let ctx = Context::new(record);
    let mut trimmed = Trimmed::default();
    let mut doc = if ctx.local_root && matches!(ctx.kind, SpanKind::Client | SpanKind::Producer) {
        let service_id = derived_id(record, b"service-segment");
        let mut dependency = build(&ctx, settings, Role::Subsegment);
        dependency.namespace = dependency.namespace.or(Some("remote"));
        // Embedded: its segment gives its trace and parent.
        dependency.kind = None;
        dependency.parent_id = None;
        dependency.trace_id = String::new();
        // Half the cap for the call, the rest for the service segment around it.
        let (bytes, t) = fit(&mut dependency, cap / 2)?;
        trimmed.add(t);
        let mut service = build(&ctx, settings, Role::ServiceSegment);
        service.id = service_id;
        service.subsegments = vec![serde_json::from_slice(&bytes).unwrap_or(Json::Null)];
        service
    } else if ctx.local_root || ctx.kind == SpanKind::Server {
        build(&ctx, settings, Role::Segment)
    } else {
        build(&ctx, settings, Role::Subsegment)
    };
    let (bytes, t) = fit(&mut doc, cap)?;
    trimmed.add(t);
    Ok(Converted {
        document: Document::unchecked(Bytes::from(bytes)),
        trimmed,
    })
}

/// The X-Ray form of a 16-byte trace id: `1-` + 8 hex digits + `-` + 24 hex digits.
pub fn xray_trace_id(trace_id: &[u8]) -> String {
    let hex = hex::encode(trace_id);
    match (hex.get(..8), hex.get(8..)) {
        (Some(epoch), Some(rest)) if hex.len() == 32 => format!("1-{epoch}-{rest}"),
        _ => format!("1-{hex}"),
    }
}

/// What a document stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A segment for the span itself.
    Segment,
    /// The segment made for the service of a local-root CLIENT or PRODUCER span.
    ServiceSegment,
    /// A subsegment for the span (also the dependency subsegment of a local-root client).
    Subsegment,
}

/// `Span.flags`: whether the parent's remoteness is known (bit 8) …
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// … and whether the parent is in another process (bit 9).
const FLAG_IS_REMOTE: u32 = 0x200;

/// What every document of one span reads: the span, its attributes and its resource.
struct Context<'a> {
    record: &'a SpanRecord,
    kind: SpanKind,
    local_root: bool,
    aws_sdk: bool,
    attrs: &'a [KeyValue],
    resource: &'a [KeyValue],
}

impl<'a> Context<'a> {
    fn new(record: &'a SpanRecord) -> Self {
        let attrs = record.span.attributes.as_slice();
        let flags = record.span.flags;
        let local_root = record.span.parent_span_id.is_empty()
            || attribute(attrs, "aws.span.kind").and_then(AnyValue::as_str) == Some("LOCAL_ROOT")
            || (flags & FLAG_HAS_IS_REMOTE != 0 && flags & FLAG_IS_REMOTE != 0);
        Context {
            record,
            kind: record.kind(),
            local_root,
            aws_sdk: attribute(attrs, "rpc.system").and_then(AnyValue::as_str) == Some("aws-api"),
            attrs,
            resource: record.resource.resource.attributes.as_slice(),
        }
    }

    /// The first of `keys` present as a string.
    fn str(&self, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
        keys.iter().find_map(|k| {
            attribute(self.attrs, k)
                .and_then(AnyValue::as_str)
                .map(|v| (*k, v))
        })
    }

    /// The first of `keys` present as an integer (or a string of one).
    fn int(&self, keys: &[&'static str]) -> Option<(&'static str, i64)> {
        keys.iter().find_map(|k| {
            attribute(self.attrs, k)
                .and_then(AnyValue::as_i64)
                .map(|v| (*k, v))
        })
    }

    fn resource_str(&self, key: &str) -> Option<&'a str> {
        attribute(self.resource, key).and_then(AnyValue::as_str)
    }
}

/// A segment or subsegment document, in X-Ray's field names.
#[derive(Debug, Default, Serialize)]
struct Doc {
    name: String,
    id: String,
    /// Empty (not written) for an embedded subsegment, which takes its segment's.
    #[serde(skip_serializing_if = "String::is_empty")]
    trace_id: String,
    start_time: f64,
    end_time: f64,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    error: bool,
    #[serde(skip_serializing_if = "is_false")]
    throttle: bool,
    #[serde(skip_serializing_if = "is_false")]
    fault: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    aws: BTreeMap<&'static str, Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<Sql>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, Json>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, BTreeMap<String, Json>>,
    /// Embedded subsegments (already fitted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subsegments: Vec<Json>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Default, Serialize)]
struct Cause {
    exceptions: Vec<Exception>,
}

#[derive(Debug, Default, Serialize)]
struct Exception {
    id: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "is_false")]
    remote: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stack: Vec<StackFrame>,
}

#[derive(Debug, Default, Serialize)]
struct StackFrame {
    #[serde(skip_serializing_if = "String::is_empty")]
    path: String,
    #[serde(skip_serializing_if = "is_zero")]
    line: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    label: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Default, Serialize)]
struct Http {
    #[serde(skip_serializing_if = "HttpRequest::is_empty")]
    request: HttpRequest,
    #[serde(skip_serializing_if = "HttpResponse::is_empty")]
    response: HttpResponse,
}

#[derive(Debug, Default, Serialize)]
struct HttpRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    x_forwarded_for: bool,
}

impl HttpRequest {
    fn is_empty(&self) -> bool {
        self.method.is_none()
            && self.url.is_none()
            && self.user_agent.is_none()
            && self.client_ip.is_none()
    }
}

#[derive(Debug, Default, Serialize)]
struct HttpResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_length: Option<i64>,
}

impl HttpResponse {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.content_length.is_none()
    }
}

#[derive(Debug, Default, Serialize)]
struct Sql {
    url: String,
    connection_string: String,
    database_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sanitized_query: Option<String>,
}

#[derive(Debug, Serialize)]
struct Service {
    version: String,
}

/// Builds one document for `role`.
fn build(ctx: &Context, settings: &ConversionSettings, role: Role) -> Doc {
    let record = ctx.record;
    let span = &record.span;
    let segment = role != Role::Subsegment;
    // Attributes that went into a block, and are not repeated in metadata.
    let mut used: HashSet<&str> = HashSet::new();
    let start = seconds(span.start_time_unix_nano);
    let mut doc = Doc {
        name: clean_name(&name(ctx, role)),
        id: record.span_id_hex(),
        trace_id: xray_trace_id(&span.trace_id),
        start_time: start,
        end_time: seconds(span.end_time_unix_nano).max(start),
        parent_id: record.parent_id_hex(),
        ..Doc::default()
    };
    if segment {
        doc.origin = origin(ctx);
        doc.service = ctx.resource_str("service.version").map(|v| Service {
            version: v.to_owned(),
        });
        if let Some((key, user)) = ctx.str(&["enduser.id"]) {
            doc.user = Some(user.to_owned());
            used.insert(key);
        }
    } else {
        doc.kind = Some("subsegment");
        doc.namespace = namespace(ctx);
    }
    if role != Role::ServiceSegment {
        doc.http = http(ctx, &mut used);
        doc.sql = sql(ctx, &mut used);
    }
    doc.aws = aws(ctx, role, &mut used);
    let status = ctx.int(&["http.status_code", "http.response.status_code"]);
    match status.map(|(_, code)| code) {
        Some(code @ 400..=499) => {
            doc.error = true;
            doc.throttle = code == 429;
        }
        Some(500..=599) => doc.fault = true,
        _ => doc.fault = record.status_code() == StatusCode::Error,
    }
    doc.cause = cause(ctx);
    attributes(ctx, settings, role, &used, &mut doc);
    doc
}

/// Seconds since the epoch, to the microsecond, from nanoseconds.
fn seconds(nanos: u64) -> f64 {
    (nanos / 1_000) as f64 / 1e6
}

/// The name before cleaning.
fn name(ctx: &Context, role: Role) -> String {
    let span = &ctx.record.span;
    if role != Role::Subsegment {
        return ctx
            .str(&["aws.local.service"])
            .map(|(_, v)| v)
            .or_else(|| ctx.resource_str("service.name"))
            .unwrap_or(span.name.as_str())
            .to_owned();
    }
    if matches!(
        ctx.kind,
        SpanKind::Client | SpanKind::Producer | SpanKind::Consumer
    ) && let Some((_, remote)) = ctx.str(&["aws.remote.service"])
    {
        let trimmed = if ctx.aws_sdk {
            remote
                .strip_prefix("AWS.SDK.")
                .or_else(|| remote.strip_prefix("AWS::"))
                .unwrap_or(remote)
        } else {
            remote
        };
        return trimmed.to_owned();
    }
    if let Some((_, v)) = ctx.str(&["peer.service", "aws.service"]) {
        return v.to_owned();
    }
    if ctx.aws_sdk
        && let Some((_, v)) = ctx.str(&["rpc.service"])
    {
        return v.to_owned();
    }
    if let Some((_, db)) = ctx.str(&["db.name", "db.namespace"]) {
        let host = ctx
            .str(&["db.connection_string"])
            .and_then(|(_, url)| url_host(url.strip_prefix("jdbc:").unwrap_or(url)))
            .or_else(|| {
                ctx.str(&["server.address", "net.peer.name"])
                    .map(|(_, h)| h)
            });
        return match host {
            Some(h) => format!("{db}@{h}"),
            None => db.to_owned(),
        };
    }
    if let Some((_, v)) = ctx.str(&[
        "rpc.service",
        "http.host",
        "server.address",
        "net.peer.name",
    ]) {
        return v.to_owned();
    }
    if let Some(host) = ctx
        .str(&["http.url", "url.full"])
        .and_then(|(_, u)| url_host(u))
    {
        return host.to_owned();
    }
    span.name.clone()
}

/// The host of a `scheme://[user@]host[:port]/…` URL.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h)?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// Keeps X-Ray's characters for names (letters, digits, space, `_ . : / % & # = + \ - @`),
/// at most 200 of them; `span` when none is left.
pub fn clean_name(name: &str) -> String {
    const SYMBOLS: &str = " _.:/%&#=+\\-@";
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || SYMBOLS.contains(*c))
        .take(200)
        .collect();
    if cleaned.is_empty() {
        "span".to_owned()
    } else {
        cleaned
    }
}

/// Keeps ASCII letters and digits of an annotation key; everything else becomes `_`.
pub fn clean_annotation_key(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn namespace(ctx: &Context) -> Option<&'static str> {
    if ctx.aws_sdk || attribute(ctx.attrs, "aws.service").is_some() {
        return Some("aws");
    }
    match ctx.kind {
        SpanKind::Client => Some("remote"),
        SpanKind::Producer | SpanKind::Consumer
            if attribute(ctx.attrs, "aws.remote.service").is_some() =>
        {
            Some("remote")
        }
        _ => None,
    }
}

/// The `origin` of a segment, from the resource's `cloud.platform`.
fn origin(ctx: &Context) -> Option<&'static str> {
    if ctx
        .resource_str("cloud.provider")
        .is_some_and(|p| p != "aws")
    {
        return None;
    }
    Some(match ctx.resource_str("cloud.platform")? {
        "aws_ec2" => "AWS::EC2::Instance",
        "aws_eks" => "AWS::EKS::Container",
        "aws_elastic_beanstalk" => "AWS::ElasticBeanstalk::Environment",
        "aws_app_runner" => "AWS::AppRunner::Service",
        "aws_ecs" => match ctx.resource_str("aws.ecs.launchtype") {
            Some("ec2") => "AWS::ECS::EC2",
            Some("fargate") => "AWS::ECS::Fargate",
            _ => "AWS::ECS::Container",
        },
        _ => return None,
    })
}

/// The first of `keys` present as a string; every one of `keys` present is noted as used (an
/// SDK in the semantic conventions' transition mode sends the old and the new name).
fn take<'a>(
    ctx: &Context<'a>,
    used: &mut HashSet<&'a str>,
    keys: &[&'static str],
) -> Option<&'a str> {
    let value = ctx.str(keys).map(|(_, v)| v);
    mark_present(ctx, used, keys);
    value
}

/// The first of `keys` present as an integer; every one present is noted as used.
fn take_int<'a>(
    ctx: &Context<'a>,
    used: &mut HashSet<&'a str>,
    keys: &[&'static str],
) -> Option<i64> {
    let value = ctx.int(keys).map(|(_, v)| v);
    mark_present(ctx, used, keys);
    value
}

fn mark_present<'a>(ctx: &Context<'a>, used: &mut HashSet<&'a str>, keys: &[&'static str]) {
    used.extend(keys.iter().filter(|k| attribute(ctx.attrs, k).is_some()));
}

/// The `http` block, from the old and new attribute names; the attributes it read are noted in
/// `used` only when there is a block.
fn http<'a>(ctx: &Context<'a>, used: &mut HashSet<&'a str>) -> Option<Http> {
    let mut mine = HashSet::new();
    let server = ctx.kind == SpanKind::Server;
    let mut request = HttpRequest {
        method: take(ctx, &mut mine, &["http.method", "http.request.method"]).map(str::to_owned),
        user_agent: take(ctx, &mut mine, &["http.user_agent", "user_agent.original"])
            .map(str::to_owned),
        ..HttpRequest::default()
    };
    if let Some(ip) = take(ctx, &mut mine, &["http.client_ip", "client.address"]) {
        request.client_ip = Some(ip.to_owned());
        request.x_forwarded_for = true;
    }
    if server && let Some(ip) = take(ctx, &mut mine, &["net.peer.ip", "network.peer.address"]) {
        request.client_ip.get_or_insert_with(|| ip.to_owned());
    }
    request.url = match take(ctx, &mut mine, &["http.url", "url.full"]) {
        Some(url) => Some(url.to_owned()),
        None => {
            let (host_keys, port_keys): (&[&'static str], &[&'static str]) = if server {
                (
                    &[
                        "http.host",
                        "http.server_name",
                        "server.address",
                        "net.host.name",
                        "host.name",
                    ],
                    &["net.host.port", "server.port"],
                )
            } else {
                (
                    &[
                        "http.host",
                        "server.address",
                        "net.peer.name",
                        "net.peer.ip",
                    ],
                    &["net.peer.port", "server.port"],
                )
            };
            let scheme = take(ctx, &mut mine, &["http.scheme", "url.scheme"]).unwrap_or("http");
            let target = take(ctx, &mut mine, &["http.target"]);
            let path = take(ctx, &mut mine, &["url.path"]);
            let query = take(ctx, &mut mine, &["url.query"]);
            match take(ctx, &mut mine, host_keys) {
                None => None,
                Some(host) => {
                    let port = take_int(ctx, &mut mine, port_keys);
                    let mut url = format!("{scheme}://{host}");
                    // `http.host` may carry its port already; default ports are left out.
                    if let Some(port) = port.filter(|p| {
                        !host.contains(':')
                            && !matches!((scheme, *p), ("http", 80) | ("https", 443))
                    }) {
                        url.push_str(&format!(":{port}"));
                    }
                    url.push_str(target.or(path).unwrap_or("/"));
                    if let (None, Some(q)) = (target, query) {
                        url.push('?');
                        url.push_str(q.trim_start_matches('?'));
                    }
                    Some(url)
                }
            }
        }
    };
    let response = HttpResponse {
        status: take_int(
            ctx,
            &mut mine,
            &["http.status_code", "http.response.status_code"],
        ),
        content_length: take_int(
            ctx,
            &mut mine,
            &["http.response_content_length", "http.response.body.size"],
        ),
    };
    let has_http = request.method.is_some()
        || response.status.is_some()
        || mine.iter().any(|k| {
            k.starts_with("http.") || k.starts_with("url.") || k.starts_with("user_agent.")
        });
    if !has_http {
        return None;
    }
    used.extend(mine);
    Some(Http { request, response })
}

/// Values of `db.system` (`db.system.name`) that are SQL databases.
const SQL_SYSTEMS: [&str; 16] = [
    "db2",
    "derby",
    "hive",
    "mariadb",
    "mssql",
    "mysql",
    "oracle",
    "postgresql",
    "sqlite",
    "teradata",
    "other_sql",
    "ibm.db2",
    "microsoft.sql_server",
    "oracle.db",
    "h2",
    "hsqldb",
];

/// The `sql` block, for SQL databases.
fn sql<'a>(ctx: &Context<'a>, used: &mut HashSet<&'a str>) -> Option<Sql> {
    let (system_key, system) = ctx.str(&["db.system", "db.system.name"])?;
    if !SQL_SYSTEMS.contains(&system) {
        return None;
    }
    used.insert(system_key);
    let connection = take(ctx, used, &["db.connection_string"]).unwrap_or("localhost");
    let database = take(ctx, used, &["db.name", "db.namespace"]).unwrap_or_default();
    Some(Sql {
        url: ctx.record.span.name.clone(),
        connection_string: format!("{connection}/{database}"),
        database_type: system.to_owned(),
        user: take(ctx, used, &["db.user"]).map(str::to_owned),
        sanitized_query: take(ctx, used, &["db.statement", "db.query.text"]).map(str::to_owned),
    })
}

/// The `aws` block: call details from the span, and on segments the resource's account,
/// compute platform and SDK.
fn aws<'a>(
    ctx: &Context<'a>,
    role: Role,
    used: &mut HashSet<&'a str>,
) -> BTreeMap<&'static str, Json> {
    let mut aws = BTreeMap::new();
    if ctx
        .resource_str("cloud.provider")
        .is_some_and(|p| p != "aws")
    {
        return aws;
    }
    if role != Role::ServiceSegment {
        let mut put = |field: &'static str, keys: &[&'static str]| {
            if let Some((k, v)) = ctx.str(keys) {
                used.insert(k);
                aws.insert(field, Json::from(v));
            }
        };
        put("operation", &["aws.operation"]);
        put("account_id", &["aws.account_id"]);
        put("region", &["aws.region"]);
        put("request_id", &["aws.request_id", "aws.requestId"]);
        put(
            "queue_url",
            &[
                "aws.queue_url",
                "aws.queue.url",
                "aws.sqs.queue.url",
                "messaging.url",
            ],
        );
        put("table_name", &["aws.table_name", "aws.table.name"]);
        if ctx.aws_sdk
            && !aws.contains_key("operation")
            && let Some((k, v)) = ctx.str(&["rpc.method"])
        {
            used.insert(k);
            aws.insert("operation", Json::from(v));
        }
        if let Some(tables) = attribute(ctx.attrs, "aws.dynamodb.table_names") {
            let names: Vec<&str> = match &tables.value {
                Some(Value::ArrayValue(a)) => {
                    a.values.iter().filter_map(AnyValue::as_str).collect()
                }
                Some(Value::StringValue(s)) => vec![s.as_str()],
                _ => Vec::new(),
            };
            used.insert("aws.dynamodb.table_names");
            match names.as_slice() {
                [] => {}
                [one] => {
                    aws.insert("table_name", Json::from(*one));
                }
                many => {
                    aws.insert("table_names", Json::from(many.to_vec()));
                }
            }
        }
    }
    if role == Role::Subsegment {
        return aws;
    }
    let r = |k: &str| ctx.resource_str(k);
    if let Some(account) = r("cloud.account.id") {
        aws.entry("account_id")
            .or_insert_with(|| Json::from(account));
    }
    let platform = r("cloud.platform");
    let object = |pairs: &[(&str, Option<&str>)]| -> Json {
        Json::Object(
            pairs
                .iter()
                .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), Json::from(v))))
                .collect(),
        )
    };
    if platform == Some("aws_ec2") || r("host.id").is_some() {
        aws.insert(
            "ec2",
            object(&[
                ("instance_id", r("host.id")),
                ("availability_zone", r("cloud.availability_zone")),
                ("instance_size", r("host.type")),
                ("ami_id", r("host.image.id")),
            ]),
        );
    }
    if platform == Some("aws_ecs") {
        aws.insert(
            "ecs",
            object(&[
                ("container", r("container.name")),
                ("container_id", r("container.id")),
                ("task_arn", r("aws.ecs.task.arn")),
                ("task_family", r("aws.ecs.task.family")),
                ("cluster_arn", r("aws.ecs.cluster.arn")),
                ("container_arn", r("aws.ecs.container.arn")),
                ("availability_zone", r("cloud.availability_zone")),
                ("launch_type", r("aws.ecs.launchtype")),
            ]),
        );
    }
    if platform == Some("aws_eks") || r("k8s.cluster.name").is_some() {
        aws.insert(
            "eks",
            object(&[
                ("cluster_name", r("k8s.cluster.name")),
                ("pod", r("k8s.pod.name")),
                ("container_id", r("container.id")),
            ]),
        );
    }
    if platform == Some("aws_elastic_beanstalk")
        && let Some(deployment) = r("service.instance.id")
    {
        let mut eb = object(&[
            ("environment_name", r("service.namespace")),
            ("version_label", r("service.version")),
        ]);
        if let Json::Object(map) = &mut eb {
            map.insert(
                "deployment_id".to_owned(),
                Json::from(deployment.parse::<i64>().unwrap_or(0)),
            );
        }
        aws.insert("elastic_beanstalk", eb);
    }
    if let Some(name) = r("telemetry.sdk.name") {
        let sdk = match r("telemetry.sdk.language") {
            Some(lang)
                if !lang.is_empty()
                    && !name
                        .to_ascii_lowercase()
                        .ends_with(&format!(" for {}", lang.to_ascii_lowercase())) =>
            {
                format!("{name} for {lang}")
            }
            _ => name.to_owned(),
        };
        let mut xray = serde_json::Map::new();
        xray.insert("sdk".into(), Json::from(sdk));
        if let Some(version) = r("telemetry.sdk.version") {
            xray.insert("sdk_version".into(), Json::from(version));
        }
        xray.insert(
            "auto_instrumentation".into(),
            Json::from(r("telemetry.auto.version").is_some()),
        );
        aws.insert("xray", Json::Object(xray));
    }
    aws
}

/// The `cause`: exception events, or an ERROR status's message.
fn cause(ctx: &Context) -> Option<Cause> {
    let span = &ctx.record.span;
    let remote = matches!(ctx.kind, SpanKind::Client | SpanKind::Producer);
    let language = ctx
        .resource_str("telemetry.sdk.language")
        .unwrap_or_default();
    let mut exceptions: Vec<Exception> = Vec::new();
    for (event_index, event) in span.events.iter().enumerate() {
        if event.name != "exception" {
            continue;
        }
        let text = |k: &str| attribute(&event.attributes, k).and_then(AnyValue::as_str);
        let chain = stack::parse(text("exception.stacktrace").unwrap_or_default(), language);
        let first = exceptions.len();
        for (i, parsed) in chain.into_iter().enumerate() {
            let salt = format!("exception-{event_index}-{i}");
            let (kind, message) = if i == 0 {
                (
                    text("exception.type").unwrap_or_default().to_owned(),
                    text("exception.message").unwrap_or_default().to_owned(),
                )
            } else {
                (parsed.kind, parsed.message)
            };
            exceptions.push(Exception {
                id: derived_id(ctx.record, salt.as_bytes()),
                kind,
                message,
                remote,
                cause: None,
                stack: parsed
                    .frames
                    .into_iter()
                    .map(|f| StackFrame {
                        path: f.path,
                        line: f.line,
                        label: f.label,
                    })
                    .collect(),
            });
        }
        // Each exception of a chain names the next as its cause.
        for i in first + 1..exceptions.len() {
            let id = exceptions[i].id.clone();
            exceptions[i - 1].cause = Some(id);
        }
    }
    if exceptions.is_empty() && ctx.record.status_code() == StatusCode::Error {
        let message = span
            .status
            .as_ref()
            .map(|s| s.message.as_str())
            .filter(|m| !m.is_empty())
            .or_else(|| ctx.str(&["http.status_text"]).map(|(_, v)| v))?;
        exceptions.push(Exception {
            id: derived_id(ctx.record, b"status"),
            message: message.to_owned(),
            remote,
            ..Exception::default()
        });
    }
    (!exceptions.is_empty()).then_some(Cause { exceptions })
}

/// Attributes about the remote side, left off the service segment of a local-root client.
const REMOTE_ONLY: [&str; 4] = [
    "aws.remote.service",
    "aws.remote.operation",
    "remoteTarget",
    "K8s.RemoteNamespace",
];

/// Annotations and metadata from the span's attributes (those not used by a block) and, on
/// segments, the resource's.
fn attributes(
    ctx: &Context,
    settings: &ConversionSettings,
    role: Role,
    used: &HashSet<&str>,
    doc: &mut Doc,
) {
    let mut indexed: HashSet<&str> = settings
        .indexed_attributes
        .iter()
        .map(String::as_str)
        .collect();
    if let Some(Value::ArrayValue(list)) =
        attribute(ctx.attrs, "aws.xray.annotations").and_then(|v| v.value.as_ref())
    {
        indexed.extend(list.values.iter().filter_map(AnyValue::as_str));
    }
    // With `index_all`, attributes that went into a block are not annotated again (as the
    // collector does: they would spend X-Ray's 50 annotations a trace on `http.method`); named
    // ones always are.
    let is_indexed =
        |key: &str| indexed.contains(key) || (settings.index_all && !used.contains(key));
    let mut default: BTreeMap<String, Json> = BTreeMap::new();
    if role != Role::Subsegment {
        for kv in ctx.resource {
            let key = format!("otel.resource.{}", kv.key);
            let Some(value) = kv.value.as_ref() else {
                continue;
            };
            match annotation_value(value).filter(|_| is_indexed(&key)) {
                Some(a) => {
                    doc.annotations.insert(clean_annotation_key(&key), a);
                }
                None => {
                    if let Some(m) = metadata_value(value) {
                        default.insert(key, m);
                    }
                }
            }
        }
    }
    for kv in ctx.attrs {
        let key = kv.key.as_str();
        let Some(value) = kv.value.as_ref() else {
            continue;
        };
        if key == "aws.xray.annotations" || (role == Role::ServiceSegment && !is_indexed(key)) {
            continue;
        }
        if role == Role::ServiceSegment && REMOTE_ONLY.contains(&key) {
            continue;
        }
        if let Some(a) = annotation_value(value).filter(|_| is_indexed(key)) {
            doc.annotations.insert(clean_annotation_key(key), a);
            continue;
        }
        if role == Role::ServiceSegment {
            continue;
        }
        if used.contains(key) || (role != Role::Subsegment && key == "enduser.id") {
            continue;
        }
        if let Some(namespace) = key.strip_prefix("aws.xray.metadata.") {
            let parsed = value
                .as_str()
                .and_then(|s| serde_json::from_str::<serde_json::Map<String, Json>>(s).ok());
            match parsed {
                Some(map) if namespace.eq_ignore_ascii_case("default") => default.extend(map),
                Some(map) => {
                    doc.metadata
                        .entry(namespace.to_owned())
                        .or_default()
                        .extend(map);
                }
                None => {
                    if let Some(m) = metadata_value(value) {
                        default.insert(key.to_owned(), m);
                    }
                }
            }
            continue;
        }
        if let Some(m) = metadata_value(value) {
            default.insert(key.to_owned(), m);
        }
    }
    if !default.is_empty() {
        doc.metadata
            .entry("default".to_owned())
            .or_default()
            .extend(default);
    }
}

/// An annotation's value: a string, an integer, a finite double or a boolean.
fn annotation_value(value: &AnyValue) -> Option<Json> {
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(Json::from(s.as_str())),
        Value::BoolValue(b) => Some(Json::from(*b)),
        Value::IntValue(i) => Some(Json::from(*i)),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map(Json::Number),
        _ => None,
    }
}

/// A metadata value: any attribute value as JSON (bytes as base64, a non-finite double as its
/// name); `None` for the empty value.
fn metadata_value(value: &AnyValue) -> Option<Json> {
    use base64::Engine as _;
    Some(match value.value.as_ref()? {
        Value::StringValue(s) => Json::from(s.as_str()),
        Value::BoolValue(b) => Json::from(*b),
        Value::IntValue(i) => Json::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or_else(|| Json::from(d.to_string())),
        Value::ArrayValue(a) => Json::Array(
            a.values
                .iter()
                .map(|v| metadata_value(v).unwrap_or(Json::Null))
                .collect(),
        ),
        Value::KvlistValue(l) => Json::Object(
            l.values
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), metadata_value(kv.value.as_ref()?)?)))
                .collect(),
        ),
        Value::BytesValue(b) => Json::from(base64::engine::general_purpose::STANDARD.encode(b)),
    })
}

/// An id derived from the span's ids and `salt` (FNV-1a, 64 bits, never zero), as 16 hex
/// digits: the same span always gives the same ids, so a span sent twice gives the same
/// documents.
fn derived_id(record: &SpanRecord, salt: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in record
        .span
        .trace_id
        .iter()
        .chain(&record.span.span_id)
        .chain(salt)
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:016x}", h.max(1))
}

/// Longest a string may stay in the last round of trimming, in bytes.
const CUT_TO: usize = 1024;

/// Serializes `doc` within `cap` bytes, trimming it if needed (see the module docs).
fn fit(doc: &mut Doc, cap: usize) -> Result<(Vec<u8>, Trimmed), ConvertError> {
    let mut trimmed = Trimmed::default();
    let mut bytes = to_json(doc);
    if bytes.len() <= cap {
        return Ok((bytes, trimmed));
    }
    // 1. Metadata, largest values first.
    let mut entries: Vec<(usize, String, String)> = doc
        .metadata
        .iter()
        .flat_map(|(ns, map)| {
            map.iter()
                .map(move |(k, v)| (json_len(v) + k.len() + 4, ns.clone(), k.clone()))
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut excess = bytes.len() - cap;
    for (size, ns, key) in entries {
        if let Some(map) = doc.metadata.get_mut(&ns) {
            map.remove(&key);
            if map.is_empty() {
                doc.metadata.remove(&ns);
            }
        }
        trimmed.metadata += 1;
        excess = excess.saturating_sub(size);
        if excess == 0 {
            bytes = to_json(doc);
            if bytes.len() <= cap {
                return Ok((bytes, trimmed));
            }
            excess = bytes.len() - cap;
        }
    }
    // 2. Stack frames.
    if let Some(cause) = &mut doc.cause {
        for e in &mut cause.exceptions {
            trimmed.stack_frames += e.stack.len();
            e.stack = Vec::new();
        }
    }
    bytes = to_json(doc);
    if bytes.len() <= cap {
        return Ok((bytes, trimmed));
    }
    // 3. Annotations, largest first.
    let mut annotations: Vec<(usize, String)> = doc
        .annotations
        .iter()
        .map(|(k, v)| (json_len(v) + k.len() + 4, k.clone()))
        .collect();
    annotations.sort_by_key(|e| std::cmp::Reverse(e.0));
    excess = bytes.len() - cap;
    for (size, key) in annotations {
        doc.annotations.remove(&key);
        trimmed.annotations += 1;
        excess = excess.saturating_sub(size);
        if excess == 0 {
            bytes = to_json(doc);
            if bytes.len() <= cap {
                return Ok((bytes, trimmed));
            }
            excess = bytes.len() - cap;
        }
    }
    // 4. Long strings.
    let mut cut = |s: &mut String| {
        if s.len() > CUT_TO {
            let mut end = CUT_TO;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            trimmed.cut_strings += 1;
        }
    };
    if let Some(sql) = &mut doc.sql {
        for s in [&mut sql.url, &mut sql.connection_string] {
            cut(s);
        }
        if let Some(q) = &mut sql.sanitized_query {
            cut(q);
        }
    }
    if let Some(http) = &mut doc.http {
        for s in [
            &mut http.request.url,
            &mut http.request.user_agent,
            &mut http.request.method,
        ]
        .into_iter()
        .flatten()
        {
            cut(s);
        }
    }
    if let Some(cause) = &mut doc.cause {
        for e in &mut cause.exceptions {
            cut(&mut e.message);
            cut(&mut e.kind);
        }
    }
    if let Some(user) = &mut doc.user {
        cut(user);
    }
    bytes = to_json(doc);
    if bytes.len() <= cap {
        return Ok((bytes, trimmed));
    }
    Err(ConvertError::TooLarge {
        size: bytes.len(),
        cap,
    })
}

fn to_json(doc: &Doc) -> Vec<u8> {
    // A Doc holds strings, numbers, maps and finite floats only: serializing cannot fail.
    serde_json::to_vec(doc).unwrap_or_default()
}

fn json_len(v: &Json) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

#[cfg(test)]
mod tests;
