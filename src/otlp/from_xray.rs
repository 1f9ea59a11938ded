//! One X-Ray segment document in, OpenTelemetry spans out: the segment and each of its
//! subsegments (embedded at any depth) become one [`SpanRecord`] each, sharing one resource.
//!
//! Data comes from an X-Ray SDK's document as received (the bytes after the datagram's header,
//! [`crate::document::Document::body`]); the spans go to an OTLP destination. A pure function of
//! the bytes and the [`Settings`]: no clock, no I/O, no state, so a sink can convert a document
//! again (for example when it stops holding it back). Nothing here panics on any input, and
//! nothing recurses on the input's nesting (a work list walks the subsegments), so a deeply
//! nested document cannot exhaust the stack.
//!
//! The attribute keys are the OpenTelemetry collector's X-Ray receiver's where users already
//! query them, and what [`super::to_xray`] (after the collector's exporter) reads back, so a
//! document converted here and then by [`super::to_xray`] keeps its ids, parents, names,
//! namespaces, `http`/`aws`/`sql`, `error`/`fault`/`throttle`, `cause`, annotations and metadata
//! (the round trip is a property test; where [`super::to_xray`] loses something by design, its
//! tests say what):
//! - **ids**: the trace id is the 32 hex digits of X-Ray's `1-XXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXX`;
//!   the span id is `id`; the parent is the enclosing node for an embedded subsegment, else
//!   `parent_id` (a segment called by a traced service, or a subsegment document);
//! - **kind**: a segment is SERVER (as the collector's receiver makes it); a subsegment in
//!   namespace `aws` or `remote` is CLIENT (with `aws.service`, resp. `peer.service`, set to its
//!   name: the called service), any other subsegment INTERNAL;
//! - **times**: `start_time` and `end_time` read from the document's decimal text, exact to the
//!   nanosecond (digits beyond it are dropped), never through an `f64` (which at today's epoch
//!   holds only about a quarter of a microsecond); `Span.flags` says sampled, and that the
//!   parent is in another process for a segment with a caller (in the same one otherwise);
//! - **resource** (one per document): `service.name` is the segment's name, or for a subsegment
//!   document (whose segment is not in it) [`Settings::service_name`]; on a segment also
//!   `cloud.provider` = `aws` (with an `aws` block or an `AWS::` origin), `cloud.platform` from
//!   `origin` (and the origin itself as `aws.xray.origin`), `cloud.account.id`, and the `ec2`,
//!   `ecs`, `eks`, `elastic_beanstalk` and `xray` blocks as the semantic conventions' `host.*`,
//!   `container.*`, `aws.ecs.*`, `k8s.*`, `service.*` and `telemetry.sdk.*`; `service.version`;
//!   `resource_arn` as `aws.xray.resource_arn`. The scope is the X-Ray SDK (`aws.xray.sdk` and
//!   `sdk_version`) when the segment names it;
//! - **http**: `http.method`, `http.url`, `http.user_agent`, `http.status_code`,
//!   `http.response_content_length`; the client's address is `http.client_ip` when it came from
//!   `X-Forwarded-For` (or on a subsegment), else `net.peer.ip` (the socket's peer); `traced` is
//!   `aws.xray.traced`;
//! - **aws** (the call): `aws.operation`, `aws.account_id`, `aws.region`, `aws.request_id`,
//!   `aws.queue_url`, `aws.table_name`, `table_names` as `aws.dynamodb.table_names`, `retries` as
//!   `aws.xray.retries`, any other key `K` as `aws.K` (a list or an object as its JSON text);
//! - **sql**: `url` split as the collector does into `db.connection_string` and `db.name` (a URL
//!   that does not split is kept whole as `db.connection_string`, never a reason to drop the
//!   document; a query string the split leaves out is kept in `aws.xray.sql.url`),
//!   `connection_string` (`db.connection_string` without a `url`), `database_type` as
//!   `db.system` in lower case (the conventions' values: `PostgreSQL` is `postgresql`), `user`
//!   as `db.user`, `sanitized_query` as `db.statement`, the rest as `aws.xray.sql.*`;
//! - **error, fault, throttle**: each `true` one is an attribute `aws.xray.error`,
//!   `aws.xray.fault`, `aws.xray.throttle`; a fault is span status ERROR (with no message: a
//!   client error is the caller's, so its status stays unset);
//! - **cause**: each exception is an `exception` event at the node's end (`exception.type`,
//!   `exception.message`, `exception.stacktrace` printed as the segment's SDK language prints
//!   it, Python's traceback or else Java's, which is what [`super::to_xray`] parses back) with
//!   the collector's `aws.xray.exception.id`, `.remote`, `.truncated`, `.skipped`, `.cause`; a
//!   cause that is an exception id is `aws.xray.cause.id`, `working_directory` and `paths` are
//!   `aws.xray.cause.*`;
//! - **annotations**: each is an attribute of its own key and type (integers stay integers,
//!   unlike the collector's), and `aws.xray.annotations` lists their keys (what the collector's
//!   exporter and [`super::to_xray`] read to make them annotations again); a value that is not
//!   a string, number or boolean is left out;
//! - **metadata**: each namespace `NS` is a string attribute `aws.xray.metadata.NS` holding the
//!   namespace's JSON object as the document wrote it (numbers keep every digit);
//! - **others**: `user` is `enduser.id`, `links` are span links (with their attributes),
//!   `precursor_ids` is `aws.xray.precursor_ids`.
//!
//! **In progress**: a document whose segment (or subsegment) is `in_progress` has no end yet;
//! the complete document with the same id follows. With [`InProgress::Hold`] (the default) its
//! conversion gives no spans, only its [`Head`] saying so, for the sink to hold it back; with
//! [`InProgress::Mark`] an in-progress node becomes a span marked `aws.xray.inprogress` that
//! ends when it starts (a zero-length span: an end time of 0 reads as a negative duration in
//! backends). An in-progress subsegment embedded in a complete document is always converted
//! marked: no later document completes it.
//!
//! **Bad fields**: a field of the wrong type or form is left out, counted in
//! [`Converted::left_out`] by name, and the rest of the document converted; only a document that
//! is not a JSON object, or whose own trace id or id is unusable, gives an [`Error`]. An
//! embedded subsegment with an unusable id is left out (counted as `id`) and its children are
//! attached to the nearest node above it. A node without a usable start starts at its end, and
//! one without a usable end (not in progress) ends at its start.
//!
//! **Cost**: each node's fields are read from the text once per level above it (a field is
//! parsed only when used, and a subsegment's text is skipped over by its ancestors): linear for
//! the flat documents SDKs send, quadratic in the nesting depth (a 64 KiB document nests at most
//! about 900 deep). Numbers are read exactly (`serde_json`'s `float_roundtrip`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;
use serde_json::value::RawValue;

use super::proto::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, Resource, Span, SpanKind,
    Status, StatusCode,
    any_value::Value,
    span::{Event, Link},
};
use super::span::{SpanRecord, SpanResource, SpanScope};

/// `service.name` of a subsegment document whose segment is not known, after the OpenTelemetry
/// SDKs' `unknown_service` (the default the OTLP sink's `--otlp-service-name` is to have).
pub const DEFAULT_SERVICE_NAME: &str = "unknown_service:xray";

/// What to do with a document still in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InProgress {
    /// No spans: [`Converted::head`] says it is in progress, so the sink can hold it back until
    /// the complete document replaces it. The default.
    #[default]
    Hold,
    /// Convert it: each in-progress node a span marked `aws.xray.inprogress = true` that ends
    /// when it starts.
    Mark,
}

/// How to convert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `service.name` of the resource of a subsegment document (the segment's name is not in
    /// it). Default: [`DEFAULT_SERVICE_NAME`]. A sink that has seen the segment passes its name.
    pub service_name: String,
    /// Documents in progress. Default: [`InProgress::Hold`].
    pub in_progress: InProgress,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            in_progress: InProgress::default(),
        }
    }
}

/// Whether a document is a segment or a subsegment sent on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A segment: a service's work on one request (its name is the service's).
    Segment,
    /// A subsegment document (`"type": "subsegment"`), sent before or apart from its segment;
    /// its parent may be a segment or another subsegment.
    Subsegment,
}

/// What a document is, read from its top-level fields: what a sink needs to hold documents
/// back and to map subsegments to their segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Segment or subsegment document.
    pub kind: NodeKind,
    /// The trace id (the 32 hex digits of X-Ray's form, as bytes).
    pub trace_id: [u8; 16],
    /// The document's `id`.
    pub id: [u8; 8],
    /// Its `parent_id`, when present and usable.
    pub parent_id: Option<[u8; 8]>,
    /// Its `name` (empty when absent or not a string).
    pub name: String,
    /// `in_progress` is true.
    pub in_progress: bool,
}

impl Head {
    /// The trace id in X-Ray's form, `1-XXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXX`.
    pub fn xray_trace_id(&self) -> String {
        super::to_xray::xray_trace_id(&self.trace_id)
    }

    /// The id as 16 hex digits.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// The parent id as 16 hex digits, when there is one.
    pub fn parent_id_hex(&self) -> Option<String> {
        self.parent_id.map(hex::encode)
    }
}

/// The spans of one document.
#[derive(Clone, Debug)]
pub struct Converted {
    /// What the document is.
    pub head: Head,
    /// One span per node, the document's own first, then its subsegments depth first in
    /// document order; empty for a document in progress under [`InProgress::Hold`].
    pub spans: Vec<SpanRecord>,
    /// Fields left out because they were unusable.
    pub left_out: LeftOut,
}

/// Fields left out of a conversion, counted by name (`start_time`, `http.response.status`,
/// `annotations`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    by_field: BTreeMap<&'static str, usize>,
}

impl LeftOut {
    /// Fields left out in all.
    pub fn total(&self) -> usize {
        self.by_field.values().sum()
    }

    /// True when nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.by_field.is_empty()
    }

    /// How many times `field` was left out.
    pub fn count(&self, field: &str) -> usize {
        self.by_field.get(field).copied().unwrap_or(0)
    }

    /// Each field left out with its count, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.by_field.iter().map(|(k, v)| (*k, *v))
    }

    fn add(&mut self, field: &'static str) {
        *self.by_field.entry(field).or_insert(0) += 1;
    }
}

impl fmt::Display for LeftOut {
    /// `name=N` for each field, comma separated (`annotations=2, start_time=1`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{field}={n}")?;
        }
        Ok(())
    }
}

/// Why a document gave no spans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not one JSON object.
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    /// No `trace_id` of X-Ray's form with a non-zero id.
    #[error("no usable trace_id (X-Ray's 1-XXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXX, not all zero)")]
    TraceId,
    /// No `id` of 16 hex digits, not all zero.
    #[error("no usable id (16 hex digits, not all zero)")]
    Id,
}

/// `Span.flags`: the W3C sampled flag (bit 0) …
const FLAG_SAMPLED: u32 = 0x01;
/// … whether the parent's remoteness is known (bit 8) …
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// … and whether the parent is in another process (bit 9).
const FLAG_IS_REMOTE: u32 = 0x200;

/// A JSON object's fields, each value as its text (read again only when used).
type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// Reads what the document is without converting it.
pub fn head(doc: &[u8]) -> Result<Head, Error> {
    let fields = top_fields(doc)?;
    read_head(&fields, &mut LeftOut::default())
}

/// Converts one document (see the module docs).
pub fn convert(doc: &[u8], settings: &Settings) -> Result<Converted, Error> {
    let fields = top_fields(doc)?;
    let mut out = Reader::default();
    let head = read_head(&fields, &mut out.left_out)?;
    if head.in_progress && settings.in_progress == InProgress::Hold {
        return Ok(Converted {
            head,
            spans: Vec::new(),
            left_out: out.left_out,
        });
    }
    let (resource, scope, language) = out.resource(&fields, &head, settings);
    let resource = Arc::new(resource);
    let scope = Arc::new(scope);
    let mut spans = Vec::new();
    // Depth first, in document order: a work list, never recursion on the input's nesting.
    let mut work: Vec<(Fields, Option<[u8; 8]>, bool)> = vec![(fields, head.parent_id, true)];
    while let Some((node, parent, top)) = work.pop() {
        let id = if top {
            Some(head.id)
        } else {
            let id = node.get("id").and_then(|raw| span_id(raw));
            if id.is_none() {
                out.left_out.add("id");
            }
            id
        };
        if let Some(id) = id {
            let kind = if top { head.kind } else { NodeKind::Subsegment };
            let span = out.span(&node, kind, &head.trace_id, id, parent, language);
            spans.push(SpanRecord::new(
                Arc::clone(&resource),
                Arc::clone(&scope),
                span,
            ));
        }
        // The children's parent: this node, or when it was left out, the node above it.
        let children_parent = id.or(parent);
        let children = out.array(&node, "subsegments", "subsegments");
        for raw in children.into_iter().rev() {
            match serde_json::from_str::<Fields>(raw.get()) {
                Ok(child) => work.push((child, children_parent, false)),
                Err(_) => out.left_out.add("subsegments"),
            }
        }
    }
    Ok(Converted {
        head,
        spans,
        left_out: out.left_out,
    })
}

fn top_fields(doc: &[u8]) -> Result<Fields<'_>, Error> {
    serde_json::from_slice(doc).map_err(|e| Error::NotAnObject(e.to_string()))
}

fn read_head(fields: &Fields, left_out: &mut LeftOut) -> Result<Head, Error> {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    };
    let trace_id = text("trace_id")
        .as_deref()
        .and_then(xray_trace_id)
        .ok_or(Error::TraceId)?;
    let id = fields
        .get("id")
        .and_then(|raw| span_id(raw))
        .ok_or(Error::Id)?;
    let parent_id = match fields.get("parent_id") {
        Some(raw) if !is_null(raw) => {
            let parent = span_id(raw);
            if parent.is_none() {
                left_out.add("parent_id");
            }
            parent
        }
        _ => None,
    };
    let kind = match text("type") {
        Some(t) if t.eq_ignore_ascii_case("subsegment") => NodeKind::Subsegment,
        _ => NodeKind::Segment,
    };
    let in_progress = fields
        .get("in_progress")
        .and_then(|raw| serde_json::from_str::<bool>(raw.get()).ok())
        .unwrap_or(false);
    Ok(Head {
        kind,
        trace_id,
        id,
        parent_id,
        name: text("name").unwrap_or_default(),
        in_progress,
    })
}

/// X-Ray's `1-XXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXX` (any letter case) as 16 bytes, not all zero.
fn xray_trace_id(text: &str) -> Option<[u8; 16]> {
    let rest = text.strip_prefix("1-")?;
    let (epoch, random) = rest.split_once('-')?;
    if epoch.len() != 8 || random.len() != 24 {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(epoch, &mut id[..4]).ok()?;
    hex::decode_to_slice(random, &mut id[4..]).ok()?;
    (id != [0; 16]).then_some(id)
}

/// A span id: a JSON string of 16 hex digits, not all zero.
fn span_id(raw: &RawValue) -> Option<[u8; 8]> {
    let text: String = serde_json::from_str(raw.get()).ok()?;
    let mut id = [0u8; 8];
    hex::decode_to_slice(text, &mut id).ok()?;
    (id != [0; 8]).then_some(id)
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Nanoseconds since the epoch from a JSON number's text (`1700000000.123456789`,
/// `1.7e9`, …), exactly: the digits are read as a decimal, never as an `f64`; digits beyond the
/// nanosecond are dropped. `None` for anything but a non-negative number within `u64`.
pub fn parse_nanos(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut i = 0;
    // The significant digits (leading zeros skipped), the first 20 kept: a u64 has 20 digits.
    let mut kept = [0u8; 20];
    let mut significant: i64 = 0;
    let mut fraction_digits: i64 = 0;
    let mut push = |d: u8, significant: &mut i64| {
        if *significant == 0 && d == 0 {
            return;
        }
        if let Some(slot) = usize::try_from(*significant)
            .ok()
            .and_then(|n| kept.get_mut(n))
        {
            *slot = d;
        }
        *significant += 1;
    };
    let int_start = i;
    while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        push(d - b'0', &mut significant);
        i += 1;
    }
    if i == int_start {
        return None;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let fraction_start = i;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            push(d - b'0', &mut significant);
            fraction_digits += 1;
            i += 1;
        }
        if i == fraction_start {
            return None;
        }
    }
    let mut exponent: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exponent_start = i;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            // Far beyond any time: the cap only keeps the arithmetic in range.
            exponent = (exponent * 10 + i64::from(d - b'0')).min(1_000_000_000);
            i += 1;
        }
        if i == exponent_start {
            return None;
        }
        if negative {
            exponent = -exponent;
        }
    }
    if i != bytes.len() {
        return None;
    }
    // value = digits × 10^(exponent − fraction_digits); in nanoseconds, 9 more.
    let shift = exponent - fraction_digits + 9;
    // How many digits the whole nanoseconds have.
    let whole_digits = significant + shift;
    if significant == 0 || whole_digits <= 0 {
        return Some(0);
    }
    if whole_digits > 20 {
        return None;
    }
    let mut nanos: u128 = 0;
    for n in 0..whole_digits {
        let digit = if n < significant {
            usize::try_from(n)
                .ok()
                .and_then(|n| kept.get(n))
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        nanos = nanos * 10 + u128::from(digit);
    }
    u64::try_from(nanos).ok()
}

/// The language an X-Ray SDK name (`X-Ray for Python`) is for, as the semantic conventions
/// name it (`python`).
fn sdk_language(sdk: &str) -> Option<&'static str> {
    let (_, language) = sdk.rsplit_once(" for ")?;
    let language = language.trim().to_ascii_lowercase();
    Some(match language.as_str() {
        "python" => "python",
        "java" => "java",
        "go" => "go",
        "node.js" | "nodejs" | "node" | "javascript" => "nodejs",
        ".net" | "dotnet" | ".net core" => "dotnet",
        "ruby" => "ruby",
        "php" => "php",
        _ => return None,
    })
}

/// `cloud.platform` for an X-Ray origin, and `aws.ecs.launchtype` where the origin says it.
fn platform(origin: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match origin {
        "AWS::EC2::Instance" => ("aws_ec2", None),
        "AWS::ECS::Container" => ("aws_ecs", None),
        "AWS::ECS::EC2" => ("aws_ecs", Some("ec2")),
        "AWS::ECS::Fargate" => ("aws_ecs", Some("fargate")),
        "AWS::EKS::Container" => ("aws_eks", None),
        "AWS::ElasticBeanstalk::Environment" => ("aws_elastic_beanstalk", None),
        "AWS::Lambda::Function" => ("aws_lambda", None),
        "AWS::AppRunner::Service" => ("aws_app_runner", None),
        _ => return None,
    })
}

/// Reads fields, counting those left out.
#[derive(Default)]
struct Reader {
    left_out: LeftOut,
}

/// How stack traces are printed in `exception.stacktrace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printed {
    Python,
    Java,
}

impl Reader {
    /// The field `key` as a `T`; absent or null is `None`, another type is `None` counted as
    /// `name`.
    fn typed<'a, T: serde::Deserialize<'a>>(
        &mut self,
        fields: &Fields<'a>,
        key: &str,
        name: &'static str,
    ) -> Option<T> {
        let raw: &'a RawValue = fields.get(key).copied().filter(|raw| !is_null(raw))?;
        let value = serde_json::from_str(raw.get()).ok();
        if value.is_none() {
            self.left_out.add(name);
        }
        value
    }

    fn string(&mut self, fields: &Fields, key: &str, name: &'static str) -> Option<String> {
        self.typed(fields, key, name)
    }

    fn bool(&mut self, fields: &Fields, key: &str, name: &'static str) -> Option<bool> {
        self.typed(fields, key, name)
    }

    fn int(&mut self, fields: &Fields, key: &str, name: &'static str) -> Option<i64> {
        self.typed(fields, key, name)
    }

    fn object<'a>(
        &mut self,
        fields: &Fields<'a>,
        key: &str,
        name: &'static str,
    ) -> Option<Fields<'a>> {
        self.typed(fields, key, name)
    }

    fn array<'a>(
        &mut self,
        fields: &Fields<'a>,
        key: &str,
        name: &'static str,
    ) -> Vec<&'a RawValue> {
        self.typed(fields, key, name).unwrap_or_default()
    }

    /// The shared resource and scope, and how stack traces are printed.
    fn resource(
        &mut self,
        fields: &Fields,
        head: &Head,
        settings: &Settings,
    ) -> (SpanResource, SpanScope, Printed) {
        let mut attrs = Vec::new();
        let mut scope = SpanScope::default();
        let mut printed = Printed::Java;
        if head.kind == NodeKind::Subsegment {
            attrs.push(KeyValue::string(
                "service.name",
                settings.service_name.as_str(),
            ));
            return (resource_of(attrs), scope, printed);
        }
        attrs.push(KeyValue::string("service.name", head.name.as_str()));
        let origin = self.string(fields, "origin", "origin");
        // The `aws` block is read again (quietly) for the span's own attributes.
        let aws = fields
            .get("aws")
            .and_then(|raw| serde_json::from_str::<Fields>(raw.get()).ok());
        let on_aws = aws.is_some() || origin.as_deref().is_some_and(|o| o.starts_with("AWS::"));
        if on_aws {
            attrs.push(KeyValue::string("cloud.provider", "aws"));
        }
        if let Some(origin) = origin {
            if let Some((platform, launch_type)) = platform(&origin) {
                attrs.push(KeyValue::string("cloud.platform", platform));
                if let Some(launch_type) = launch_type {
                    attrs.push(KeyValue::string("aws.ecs.launchtype", launch_type));
                }
            }
            attrs.push(KeyValue::string("aws.xray.origin", origin));
        }
        if let Some(aws) = aws {
            // Counted when the span reads it, not twice.
            let account = match aws
                .get("account_id")
                .map(|raw| serde_json::from_str(raw.get()))
            {
                Some(Ok(Json::String(s))) => Some(s),
                Some(Ok(Json::Number(n))) => Some(n.to_string()),
                _ => None,
            };
            if let Some(account) = account {
                attrs.push(KeyValue::string("cloud.account.id", account));
            }
            if let Some(ec2) = self.object(&aws, "ec2", "aws.ec2") {
                self.block(
                    &ec2,
                    "aws.ec2",
                    &[
                        ("instance_id", "host.id"),
                        ("availability_zone", "cloud.availability_zone"),
                        ("instance_size", "host.type"),
                        ("ami_id", "host.image.id"),
                    ],
                    &mut attrs,
                );
            }
            if let Some(ecs) = self.object(&aws, "ecs", "aws.ecs") {
                self.block(
                    &ecs,
                    "aws.ecs",
                    &[
                        ("container", "container.name"),
                        ("container_id", "container.id"),
                        ("task_arn", "aws.ecs.task.arn"),
                        ("task_family", "aws.ecs.task.family"),
                        ("cluster_arn", "aws.ecs.cluster.arn"),
                        ("container_arn", "aws.ecs.container.arn"),
                        ("availability_zone", "cloud.availability_zone"),
                        ("launch_type", "aws.ecs.launchtype"),
                    ],
                    &mut attrs,
                );
            }
            if let Some(eks) = self.object(&aws, "eks", "aws.eks") {
                self.block(
                    &eks,
                    "aws.eks",
                    &[
                        ("cluster_name", "k8s.cluster.name"),
                        ("pod", "k8s.pod.name"),
                        ("container_id", "container.id"),
                    ],
                    &mut attrs,
                );
            }
            if let Some(eb) = self.object(&aws, "elastic_beanstalk", "aws.elastic_beanstalk") {
                self.block(
                    &eb,
                    "aws.elastic_beanstalk",
                    &[
                        ("environment_name", "service.namespace"),
                        ("version_label", "service.version"),
                        ("deployment_id", "service.instance.id"),
                    ],
                    &mut attrs,
                );
            }
            if let Some(xray) = self.object(&aws, "xray", "aws.xray") {
                let sdk = self.string(&xray, "sdk", "aws.xray.sdk");
                let version = self.string(&xray, "sdk_version", "aws.xray.sdk_version");
                if let Some(sdk) = &sdk {
                    attrs.push(KeyValue::string("telemetry.sdk.name", sdk.as_str()));
                    if let Some(language) = sdk_language(sdk) {
                        attrs.push(KeyValue::string("telemetry.sdk.language", language));
                        if language == "python" {
                            printed = Printed::Python;
                        }
                    }
                    scope.scope = Some(InstrumentationScope {
                        name: sdk.clone(),
                        version: version.clone().unwrap_or_default(),
                        ..InstrumentationScope::default()
                    });
                }
                if let Some(version) = version {
                    attrs.push(KeyValue::string("telemetry.sdk.version", version));
                }
                if let Some(auto) = self.bool(&xray, "auto_instrumentation", "aws.xray") {
                    attrs.push(kv_bool("aws.xray.auto_instrumentation", auto));
                }
                for (key, raw) in &xray {
                    if !matches!(key.as_str(), "sdk" | "sdk_version" | "auto_instrumentation") {
                        self.other(&format!("aws.xray.{key}"), raw, "aws.xray", &mut attrs);
                    }
                }
            }
        }
        if let Some(service) = self.object(fields, "service", "service")
            && let Some(version) = self.string(&service, "version", "service.version")
        {
            // The service's own version wins over Beanstalk's version label.
            attrs.retain(|kv| kv.key != "service.version");
            attrs.push(KeyValue::string("service.version", version));
        }
        if let Some(arn) = self.string(fields, "resource_arn", "resource_arn") {
            attrs.push(KeyValue::string("aws.xray.resource_arn", arn));
        }
        (resource_of(attrs), scope, printed)
    }

    /// A compute platform's block: each known key under its conventions' name (a string,
    /// or an integer written as one), any other as `PREFIX.KEY`; a key already set (the
    /// availability zone of EC2 and ECS alike) is not repeated.
    fn block(
        &mut self,
        block: &Fields,
        prefix: &'static str,
        names: &[(&str, &'static str)],
        attrs: &mut Vec<KeyValue>,
    ) {
        for (key, raw) in block {
            match names.iter().find(|(k, _)| k == key) {
                Some((_, name)) => {
                    let value = match serde_json::from_str::<Json>(raw.get()) {
                        Ok(Json::String(s)) => Some(s),
                        Ok(Json::Number(n)) => Some(n.to_string()),
                        Ok(Json::Null) => continue,
                        _ => None,
                    };
                    match value {
                        Some(v) if !attrs.iter().any(|kv| kv.key == *name) => {
                            attrs.push(KeyValue::string(*name, v));
                        }
                        Some(_) => {}
                        None => self.left_out.add(prefix),
                    }
                }
                None => self.other(&format!("{prefix}.{key}"), raw, prefix, attrs),
            }
        }
    }

    /// A value the conversion has no name for, as attribute `key`: a string, number or
    /// boolean as it is, a list or an object as its JSON text.
    fn other(&mut self, key: &str, raw: &RawValue, name: &'static str, attrs: &mut Vec<KeyValue>) {
        match serde_json::from_str::<Json>(raw.get()) {
            Ok(Json::Null) => {}
            Ok(json) => {
                let value = scalar(&json).unwrap_or_else(|| AnyValue::string(raw.get()));
                attrs.push(KeyValue {
                    key: key.to_owned(),
                    value: Some(value),
                });
            }
            Err(_) => self.left_out.add(name),
        }
    }

    /// One node's span.
    fn span(
        &mut self,
        node: &Fields,
        kind: NodeKind,
        trace_id: &[u8; 16],
        id: [u8; 8],
        parent: Option<[u8; 8]>,
        printed: Printed,
    ) -> Span {
        let name = self.string(node, "name", "name").unwrap_or_default();
        let mut attrs: Vec<KeyValue> = Vec::new();
        let span_kind = match kind {
            NodeKind::Segment => SpanKind::Server,
            NodeKind::Subsegment => match self.string(node, "namespace", "namespace").as_deref() {
                Some("aws") => {
                    attrs.push(KeyValue::string("aws.service", name.as_str()));
                    SpanKind::Client
                }
                Some("remote") => {
                    attrs.push(KeyValue::string("peer.service", name.as_str()));
                    SpanKind::Client
                }
                None => SpanKind::Internal,
                Some(_) => {
                    self.left_out.add("namespace");
                    SpanKind::Internal
                }
            },
        };
        let start = self.time(node, "start_time");
        let in_progress = self.bool(node, "in_progress", "in_progress") == Some(true);
        let end = if in_progress {
            attrs.push(kv_bool("aws.xray.inprogress", true));
            None
        } else {
            self.time(node, "end_time")
        };
        let start = start.or(end).unwrap_or(0);
        let end = end.unwrap_or(start);
        let mut status = None;
        for (flag, key) in [
            ("error", "aws.xray.error"),
            ("fault", "aws.xray.fault"),
            ("throttle", "aws.xray.throttle"),
        ] {
            if self.bool(node, flag, flag) == Some(true) {
                attrs.push(kv_bool(key, true));
                if flag == "fault" {
                    status = Some(Status {
                        message: String::new(),
                        code: StatusCode::Error as i32,
                    });
                }
            }
        }
        if let Some(user) = self.string(node, "user", "user") {
            attrs.push(KeyValue::string("enduser.id", user));
        }
        if let Some(http) = self.object(node, "http", "http") {
            self.http(&http, kind, &mut attrs);
        }
        if let Some(aws) = self.object(node, "aws", "aws") {
            self.aws(&aws, kind, &mut attrs);
        }
        if let Some(sql) = self.object(node, "sql", "sql") {
            self.sql(&sql, &mut attrs);
        }
        let precursors: Vec<&RawValue> = self.array(node, "precursor_ids", "precursor_ids");
        let precursors: Vec<AnyValue> = precursors
            .iter()
            .filter_map(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .map(AnyValue::string)
            .collect();
        if !precursors.is_empty() {
            attrs.push(kv_array("aws.xray.precursor_ids", precursors));
        }
        let events = match node.get("cause").filter(|raw| !is_null(raw)) {
            Some(raw) => self.cause(raw, end, printed, &mut attrs),
            None => Vec::new(),
        };
        let links = self.links(node);
        self.annotations(node, &mut attrs);
        self.metadata(node, &mut attrs);
        // Sampled (X-Ray SDKs send sampled documents only), and whether the parent is in another
        // process: a segment's caller is, a subsegment's parent never.
        let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
        if kind == NodeKind::Segment && parent.is_some() {
            flags |= FLAG_IS_REMOTE;
        }
        Span {
            trace_id: trace_id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags,
            name,
            kind: span_kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: attrs,
            events,
            links,
            status,
            ..Span::default()
        }
    }

    /// A time field in nanoseconds; absent or unusable is `None`, counted (X-Ray requires
    /// both times of a node not in progress).
    fn time(&mut self, node: &Fields, key: &'static str) -> Option<u64> {
        let nanos = node.get(key).and_then(|raw| parse_nanos(raw.get()));
        if nanos.is_none() {
            self.left_out.add(key);
        }
        nanos
    }

    fn http(&mut self, http: &Fields, kind: NodeKind, attrs: &mut Vec<KeyValue>) {
        if let Some(request) = self.object(http, "request", "http.request") {
            if let Some(method) = self.string(&request, "method", "http.request.method") {
                attrs.push(KeyValue::string("http.method", method));
            }
            if let Some(url) = self.string(&request, "url", "http.request.url") {
                attrs.push(KeyValue::string("http.url", url));
            }
            if let Some(agent) = self.string(&request, "user_agent", "http.request.user_agent") {
                attrs.push(KeyValue::string("http.user_agent", agent));
            }
            let forwarded = self.bool(&request, "x_forwarded_for", "http.request.x_forwarded_for");
            if let Some(ip) = self.string(&request, "client_ip", "http.request.client_ip") {
                let key = if forwarded == Some(true) || kind == NodeKind::Subsegment {
                    "http.client_ip"
                } else {
                    "net.peer.ip"
                };
                attrs.push(KeyValue::string(key, ip));
            }
            if let Some(traced) = self.bool(&request, "traced", "http.request.traced") {
                attrs.push(kv_bool("aws.xray.traced", traced));
            }
        }
        if let Some(response) = self.object(http, "response", "http.response") {
            if let Some(status) = self.int(&response, "status", "http.response.status") {
                attrs.push(KeyValue::int("http.status_code", status));
            }
            if let Some(length) =
                self.int(&response, "content_length", "http.response.content_length")
            {
                attrs.push(KeyValue::int("http.response_content_length", length));
            }
        }
    }

    fn aws(&mut self, aws: &Fields, kind: NodeKind, attrs: &mut Vec<KeyValue>) {
        for (key, raw) in aws {
            let known = match key.as_str() {
                "account_id" => Some("aws.account_id"),
                "operation" => Some("aws.operation"),
                "region" => Some("aws.region"),
                "request_id" => Some("aws.request_id"),
                "queue_url" => Some("aws.queue_url"),
                "table_name" => Some("aws.table_name"),
                _ => None,
            };
            if let Some(name) = known {
                // A string; a number (an account id written as one) as its digits.
                match serde_json::from_str::<Json>(raw.get()) {
                    Ok(Json::String(v)) => attrs.push(KeyValue::string(name, v)),
                    Ok(Json::Number(n)) => attrs.push(KeyValue::string(name, n.to_string())),
                    Ok(Json::Null) => {}
                    _ => self.left_out.add("aws"),
                }
                continue;
            }
            match key.as_str() {
                "table_names" => match serde_json::from_str::<Option<Vec<String>>>(raw.get()) {
                    Ok(Some(names)) => attrs.push(kv_array(
                        "aws.dynamodb.table_names",
                        names.into_iter().map(AnyValue::string).collect(),
                    )),
                    Ok(None) => {}
                    Err(_) => self.left_out.add("aws"),
                },
                "retries" => match serde_json::from_str::<Option<i64>>(raw.get()) {
                    Ok(Some(n)) => attrs.push(KeyValue::int("aws.xray.retries", n)),
                    Ok(None) => {}
                    Err(_) => self.left_out.add("aws"),
                },
                // On a segment these describe the service's platform: in the resource.
                "ec2" | "ecs" | "eks" | "elastic_beanstalk" | "xray"
                    if kind == NodeKind::Segment => {}
                // A key that would change what the span is (`aws.service` makes a call to AWS).
                "service" => self.left_out.add("aws"),
                _ if key.contains('.') => self.left_out.add("aws"),
                _ => self.other(&format!("aws.{key}"), raw, "aws", attrs),
            }
        }
    }

    fn sql(&mut self, sql: &Fields, attrs: &mut Vec<KeyValue>) {
        let url = self.string(sql, "url", "sql.url");
        let connection = self.string(sql, "connection_string", "sql.connection_string");
        if let Some(url) = &url {
            match split_sql_url(url) {
                Some((connection, database, query)) => {
                    attrs.push(KeyValue::string("db.connection_string", connection));
                    attrs.push(KeyValue::string("db.name", database));
                    if query {
                        attrs.push(KeyValue::string("aws.xray.sql.url", url.as_str()));
                    }
                }
                None => attrs.push(KeyValue::string("db.connection_string", url.as_str())),
            }
        }
        if let Some(connection) = connection {
            let key = if url.is_some() {
                "aws.xray.sql.connection_string"
            } else {
                "db.connection_string"
            };
            attrs.push(KeyValue::string(key, connection));
        }
        if let Some(system) = self.string(sql, "database_type", "sql.database_type") {
            attrs.push(KeyValue::string("db.system", system.to_lowercase()));
        }
        if let Some(user) = self.string(sql, "user", "sql.user") {
            attrs.push(KeyValue::string("db.user", user));
        }
        if let Some(query) = self.string(sql, "sanitized_query", "sql.sanitized_query") {
            attrs.push(KeyValue::string("db.statement", query));
        }
        for (key, name) in [
            ("database_version", "sql.database_version"),
            ("driver_version", "sql.driver_version"),
            ("preparation", "sql.preparation"),
        ] {
            if let Some(v) = self.string(sql, key, name) {
                attrs.push(KeyValue::string(format!("aws.xray.sql.{key}"), v));
            }
        }
    }

    /// The `cause`: exception events, and attributes for what is not an exception.
    fn cause(
        &mut self,
        raw: &RawValue,
        at: u64,
        printed: Printed,
        attrs: &mut Vec<KeyValue>,
    ) -> Vec<Event> {
        if let Ok(id) = serde_json::from_str::<String>(raw.get()) {
            // The id of an exception recorded in another subsegment.
            attrs.push(KeyValue::string("aws.xray.cause.id", id));
            return Vec::new();
        }
        let Ok(cause) = serde_json::from_str::<Fields>(raw.get()) else {
            self.left_out.add("cause");
            return Vec::new();
        };
        if let Some(dir) = self.string(&cause, "working_directory", "cause") {
            attrs.push(KeyValue::string("aws.xray.cause.working_directory", dir));
        }
        let paths: Vec<&RawValue> = self.array(&cause, "paths", "cause");
        let paths: Vec<AnyValue> = paths
            .iter()
            .filter_map(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .map(AnyValue::string)
            .collect();
        if !paths.is_empty() {
            attrs.push(kv_array("aws.xray.cause.paths", paths));
        }
        let mut events = Vec::new();
        for raw in self.array(&cause, "exceptions", "cause") {
            let Ok(exception) = serde_json::from_str::<Fields>(raw.get()) else {
                self.left_out.add("cause");
                continue;
            };
            events.push(self.exception(&exception, at, printed));
        }
        events
    }

    fn exception(&mut self, exception: &Fields, at: u64, printed: Printed) -> Event {
        let mut attrs = Vec::new();
        let kind = self.string(exception, "type", "cause.exception");
        let message = self.string(exception, "message", "cause.exception");
        let mut frames = Vec::new();
        for raw in self.array(exception, "stack", "cause.exception") {
            let Ok(frame) = serde_json::from_str::<Fields>(raw.get()) else {
                self.left_out.add("cause.exception");
                continue;
            };
            frames.push(Frame {
                path: self
                    .string(&frame, "path", "cause.exception")
                    .unwrap_or_default(),
                line: self.int(&frame, "line", "cause.exception").unwrap_or(0),
                label: self
                    .string(&frame, "label", "cause.exception")
                    .unwrap_or_default(),
            });
        }
        let stacktrace = (!frames.is_empty()).then(|| {
            print_stack(
                kind.as_deref().unwrap_or_default(),
                message.as_deref().unwrap_or_default(),
                &frames,
                printed,
            )
        });
        if let Some(kind) = kind {
            attrs.push(KeyValue::string("exception.type", kind));
        }
        if let Some(message) = message {
            attrs.push(KeyValue::string("exception.message", message));
        }
        if let Some(stacktrace) = stacktrace {
            attrs.push(KeyValue::string("exception.stacktrace", stacktrace));
        }
        if let Some(id) = self.string(exception, "id", "cause.exception") {
            attrs.push(KeyValue::string("aws.xray.exception.id", id));
        }
        if let Some(remote) = self.bool(exception, "remote", "cause.exception") {
            attrs.push(kv_bool("aws.xray.exception.remote", remote));
        }
        for key in ["truncated", "skipped"] {
            if let Some(n) = self.int(exception, key, "cause.exception") {
                attrs.push(KeyValue::int(format!("aws.xray.exception.{key}"), n));
            }
        }
        if let Some(cause) = self.string(exception, "cause", "cause.exception") {
            attrs.push(KeyValue::string("aws.xray.exception.cause", cause));
        }
        Event {
            time_unix_nano: at,
            name: "exception".to_owned(),
            attributes: attrs,
            dropped_attributes_count: 0,
        }
    }

    fn links(&mut self, node: &Fields) -> Vec<Link> {
        let mut links = Vec::new();
        for raw in self.array(node, "links", "links") {
            let Ok(link) = serde_json::from_str::<Fields>(raw.get()) else {
                self.left_out.add("links");
                continue;
            };
            let trace_id = link
                .get("trace_id")
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
                .and_then(|t| xray_trace_id(&t));
            let span_id = link.get("id").and_then(|raw| span_id(raw));
            let (Some(trace_id), Some(span_id)) = (trace_id, span_id) else {
                self.left_out.add("links");
                continue;
            };
            let mut attributes = Vec::new();
            if let Some(attrs) = self.object(&link, "attributes", "links") {
                for (key, raw) in &attrs {
                    match serde_json::from_str::<Json>(raw.get()) {
                        Ok(json) => {
                            if let Some(value) = any_value(&json) {
                                attributes.push(KeyValue {
                                    key: key.clone(),
                                    value: Some(value),
                                });
                            }
                        }
                        Err(_) => self.left_out.add("links"),
                    }
                }
            }
            links.push(Link {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                attributes,
                ..Link::default()
            });
        }
        links
    }

    /// Annotations as attributes of their own keys, and `aws.xray.annotations` listing them.
    fn annotations(&mut self, node: &Fields, attrs: &mut Vec<KeyValue>) {
        let Some(annotations) = self.object(node, "annotations", "annotations") else {
            return;
        };
        let mut keys = Vec::new();
        for (key, raw) in &annotations {
            let value = serde_json::from_str::<Json>(raw.get())
                .ok()
                .as_ref()
                .and_then(scalar);
            // A key the conversion already used (X-Ray's own keys have no dots, ours all do).
            let taken = key == "aws.xray.annotations" || attrs.iter().any(|kv| kv.key == *key);
            match value {
                Some(value) if !taken => {
                    attrs.push(KeyValue {
                        key: key.clone(),
                        value: Some(value),
                    });
                    keys.push(AnyValue::string(key.as_str()));
                }
                _ => self.left_out.add("annotations"),
            }
        }
        if !keys.is_empty() {
            attrs.push(kv_array("aws.xray.annotations", keys));
        }
    }

    /// Each metadata namespace's object, as the document wrote it.
    fn metadata(&mut self, node: &Fields, attrs: &mut Vec<KeyValue>) {
        let Some(metadata) = self.object(node, "metadata", "metadata") else {
            return;
        };
        for (namespace, raw) in &metadata {
            if raw.get().starts_with('{') {
                attrs.push(KeyValue::string(
                    format!("aws.xray.metadata.{namespace}"),
                    raw.get(),
                ));
            } else if !is_null(raw) {
                self.left_out.add("metadata");
            }
        }
    }
}

fn resource_of(attributes: Vec<KeyValue>) -> SpanResource {
    SpanResource {
        resource: Resource {
            attributes,
            dropped_attributes_count: 0,
        },
        schema_url: String::new(),
    }
}

/// `protocol://host[:port]/database[?query]` → (`protocol://host[:port]`, `database`, whether
/// there was a query), the collector's reading of `sql.url`.
fn split_sql_url(url: &str) -> Option<(&str, &str, bool)> {
    let authority_start = url.find("//")? + 2;
    let path_start = authority_start + url.get(authority_start..)?.rfind('/')?;
    if path_start == authority_start {
        return None;
    }
    let rest = url.get(path_start + 1..)?;
    let (database, query) = match rest.split_once('?') {
        Some((d, _)) => (d, true),
        None => (rest, false),
    };
    if database.is_empty() {
        return None;
    }
    Some((url.get(..path_start)?, database, query))
}

/// One stack frame of an X-Ray exception.
struct Frame {
    path: String,
    line: i64,
    label: String,
}

/// An exception's frames as its language prints them (innermost first in X-Ray).
fn print_stack(kind: &str, message: &str, frames: &[Frame], printed: Printed) -> String {
    let headline = if message.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {message}")
    };
    let mut out = String::new();
    match printed {
        Printed::Python => {
            // Outermost call first, then the exception.
            out.push_str("Traceback (most recent call last):\n");
            for f in frames.iter().rev() {
                out.push_str(&format!(
                    "  File \"{}\", line {}, in {}\n",
                    f.path, f.line, f.label
                ));
            }
            out.push_str(&headline);
            out.push('\n');
        }
        Printed::Java => {
            out.push_str(&headline);
            out.push('\n');
            for f in frames {
                let location = if f.line > 0 {
                    format!("{}:{}", f.path, f.line)
                } else if f.path.contains(':') {
                    // A colon in the path would be read as the line's.
                    format!("{}:0", f.path)
                } else {
                    f.path.clone()
                };
                out.push_str(&format!("\tat {}({location})\n", f.label));
            }
        }
    }
    out
}

/// A string, number or boolean as an attribute value (an integer within `i64` stays one, any
/// other number is a double).
fn scalar(json: &Json) -> Option<AnyValue> {
    let value = match json {
        Json::String(s) => Value::StringValue(s.clone()),
        Json::Bool(b) => Value::BoolValue(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64()?),
        },
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

/// Any JSON value as an attribute value (lists and objects nested); `None` for null.
fn any_value(json: &Json) -> Option<AnyValue> {
    if let Some(v) = scalar(json) {
        return Some(v);
    }
    let value = match json {
        Json::Array(items) => Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|v| any_value(v).unwrap_or(AnyValue { value: None }))
                .collect(),
        }),
        Json::Object(map) => Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .filter_map(|(k, v)| {
                    Some(KeyValue {
                        key: k.clone(),
                        value: Some(any_value(v)?),
                    })
                })
                .collect(),
        }),
        _ => return None,
    };
    Some(AnyValue { value: Some(value) })
}

fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::BoolValue(value)),
        }),
    }
}

fn kv_array(key: &str, values: Vec<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values })),
        }),
    }
}

#[cfg(test)]
mod tests;
