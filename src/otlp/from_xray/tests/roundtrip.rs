//! The round trip X-Ray → OTLP ([`super::convert`]) → X-Ray ([`to_xray::convert`], span by
//! span) as a property over generated documents: segment documents (with a caller or without)
//! and subsegment documents, subsegments nested three deep, `http`/`aws`/`sql` blocks,
//! `error`/`fault`/`throttle`, a `cause` with exceptions and stack frames, annotations of every
//! type and metadata in several namespaces, times written with 0 to 9 decimals, plain or with
//! an exponent.
//!
//! Both sides are brought to one normal form: nodes flattened and keyed by id, each with its
//! trace id, parent, whether it is a segment, times, name, namespace, origin, `http`, `aws`,
//! `sql`, the three flags, the exceptions, annotations (with their types) and metadata.
//!
//! Where [`to_xray`] (after the collector's exporter) loses something by design, the property
//! is narrowed, and said here:
//! - **times** are compared to the microsecond: [`to_xray`] writes seconds to the microsecond
//!   (its test `times_are_seconds_to_the_microsecond`; X-Ray documents microseconds). That
//!   [`super::convert`] keeps the nanoseconds is this module's sibling tests' business;
//! - **error and throttle** come back only from an HTTP status (4xx, 429), and a 4xx or 5xx
//!   status decides the flags: generated flags follow the status as the X-Ray SDKs set them
//!   (no `error` without a 4xx, no `fault` beside a 4xx);
//! - **names**: a subsegment outside the `aws` and `remote` namespaces takes its name from an
//!   `http` or `sql` block in [`to_xray`] (the called host, `db@host`), so generated local
//!   subsegments have neither block (the X-Ray SDKs put them on remote subsegments);
//! - **http**: a client address is kept on segments only (on a subsegment [`to_xray`] reads
//!   it as the forwarded one), and `x_forwarded_for: false` is the same as none; `traced` is
//!   not read back;
//! - **sql**: [`to_xray`] writes the span name as `url` and the connection as
//!   `connection_string`: the document's `url` (a URL with a database path and no query) is
//!   compared with the connection string that comes back, `database_type` must be a SQL
//!   system's name in lower case, and `preparation`, versions and a separate
//!   `connection_string` are not generated;
//! - **aws**: the platform blocks are generated as one platform at a time, consistent with the
//!   `origin` (ECS with the launch type its origin names; `ec2` with an instance id, Beanstalk
//!   with a deployment id: what [`to_xray`] needs to write them); the SDK is `X-Ray for
//!   Python` or `X-Ray for Java` (the names [`to_xray`] writes back unchanged), and its
//!   `auto_instrumentation: false`, which [`to_xray`] always adds, is the same as none;
//!   `retries` and keys without a name in the conventions are not read back;
//! - **cause**: an exception's type, message and frames come back, not its id, `remote`,
//!   `cause`, `truncated` or `skipped` ([`to_xray`] derives ids and `remote` from the span);
//!   frames only where the segment names a language whose traces [`to_xray`] parses (Python,
//!   Java), and messages are one line;
//! - **metadata**: [`to_xray`] adds every attribute it did not use (and, on segments, the
//!   resource's as `otel.resource.*`) to the `default` namespace: keys with a dot are dropped
//!   from it (generated keys have none), and an empty namespace is the same as none;
//! - `in_progress`, `user`, `links`, `precursor_ids`, `service` and `resource_arn` are not
//!   generated: [`to_xray`] writes no in-progress documents or links, and the others are
//!   outside the property.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::super::{Settings, convert};
use crate::otlp::to_xray;

/// An annotation's value with its type.
#[derive(Clone, Debug, PartialEq)]
enum Ann {
    Int(i64),
    /// The bits, so that -0.0 and 0.0 differ and NaN cannot occur unnoticed.
    Float(u64),
    Bool(bool),
    Str(String),
}

impl Ann {
    fn json(&self) -> Json {
        match self {
            Ann::Int(i) => json!(i),
            Ann::Float(bits) => {
                serde_json::Number::from_f64(f64::from_bits(*bits)).map_or(Json::Null, Json::Number)
            }
            Ann::Bool(b) => json!(b),
            Ann::Str(s) => json!(s),
        }
    }

    fn of(json: &Json) -> Option<Ann> {
        Some(match json {
            Json::Bool(b) => Ann::Bool(*b),
            Json::String(s) => Ann::Str(s.clone()),
            Json::Number(n) if n.is_f64() => Ann::Float(n.as_f64()?.to_bits()),
            Json::Number(n) => Ann::Int(n.as_i64()?),
            _ => return None,
        })
    }
}

/// One exception: type, message, frames (path, line, label).
type Exception = (String, String, Vec<(String, u64, String)>);

/// A node in the normal form.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    trace_id: String,
    parent: Option<String>,
    segment: bool,
    name: String,
    namespace: Option<String>,
    start_us: u64,
    end_us: u64,
    origin: Option<String>,
    http: Json,
    aws: Json,
    sql: Json,
    error: bool,
    fault: bool,
    throttle: bool,
    cause: Vec<Exception>,
    annotations: BTreeMap<String, Ann>,
    metadata: BTreeMap<String, Json>,
}

/// `http` without `x_forwarded_for: false` and without empty parts; null when empty.
fn norm_http(http: &Json) -> Json {
    let mut http = http.clone();
    if let Some(request) = http.get_mut("request").and_then(Json::as_object_mut)
        && request.get("x_forwarded_for") == Some(&json!(false))
    {
        request.remove("x_forwarded_for");
    }
    drop_empty(http)
}

/// `aws` without the `auto_instrumentation: false` [`to_xray`] always adds; null when empty.
fn norm_aws(aws: &Json) -> Json {
    let mut aws = aws.clone();
    if let Some(xray) = aws.get_mut("xray").and_then(Json::as_object_mut)
        && xray.get("auto_instrumentation") == Some(&json!(false))
    {
        xray.remove("auto_instrumentation");
    }
    drop_empty(aws)
}

fn drop_empty(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let map: serde_json::Map<String, Json> = map
                .into_iter()
                .map(|(k, v)| (k, drop_empty(v)))
                .filter(|(_, v)| !v.is_null())
                .collect();
            if map.is_empty() {
                Json::Null
            } else {
                Json::Object(map)
            }
        }
        other => other,
    }
}

/// Metadata without empty namespaces, and without the dotted keys of `default`.
fn norm_metadata(metadata: &Json) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for (namespace, map) in metadata.as_object().into_iter().flatten() {
        let Some(map) = map.as_object() else {
            continue;
        };
        let kept: serde_json::Map<String, Json> = map
            .iter()
            .filter(|(k, _)| namespace != "default" || !k.contains('.'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !kept.is_empty() {
            out.insert(namespace.clone(), Json::Object(kept));
        }
    }
    out
}

/// The exceptions of a `cause`, with their frames when `frames`.
fn norm_cause(cause: &Json, frames: bool) -> Vec<Exception> {
    let text = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).unwrap_or("").to_owned();
    cause
        .get("exceptions")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let stack = if frames {
                e.get("stack")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        (
                            text(f, "path"),
                            f.get("line").and_then(Json::as_u64).unwrap_or(0),
                            text(f, "label"),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (text(e, "type"), text(e, "message"), stack)
        })
        .collect()
}

/// Microseconds of a time [`to_xray`] wrote (seconds to the microsecond: the nearest
/// microsecond of the f64 is exact at any epoch before the year 2255).
fn micros(json: &Json) -> u64 {
    json.as_f64().map_or(0, |s| (s * 1e6).round() as u64)
}

/// The normal form of what [`to_xray`] made of one span.
fn actual(doc: &Json, frames: bool) -> (String, Node) {
    let text = |k: &str| doc.get(k).and_then(Json::as_str).map(str::to_owned);
    let flag = |k: &str| doc.get(k).and_then(Json::as_bool).unwrap_or(false);
    let sql = match doc.get("sql") {
        Some(sql) => {
            let mut sql = sql.clone();
            if let Some(map) = sql.as_object_mut() {
                // The span's name, by design (see the module docs).
                map.remove("url");
            }
            drop_empty(sql)
        }
        None => Json::Null,
    };
    let node = Node {
        trace_id: text("trace_id").unwrap_or_default(),
        parent: text("parent_id"),
        segment: text("type").as_deref() != Some("subsegment"),
        name: text("name").unwrap_or_default(),
        namespace: text("namespace"),
        start_us: doc.get("start_time").map_or(0, micros),
        end_us: doc.get("end_time").map_or(0, micros),
        origin: text("origin"),
        http: doc.get("http").map_or(Json::Null, norm_http),
        aws: doc.get("aws").map_or(Json::Null, norm_aws),
        sql,
        error: flag("error"),
        fault: flag("fault"),
        throttle: flag("throttle"),
        cause: doc
            .get("cause")
            .map_or_else(Vec::new, |c| norm_cause(c, frames)),
        annotations: doc
            .get("annotations")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), Ann::of(v)?)))
            .collect(),
        metadata: doc
            .get("metadata")
            .map_or_else(BTreeMap::new, norm_metadata),
    };
    (text("id").unwrap_or_default(), node)
}

// ---- The generator -------------------------------------------------------------------------

/// A time as generated: whole seconds, nanoseconds, how many decimals the text has, and
/// whether it is written with an exponent.
#[derive(Clone, Debug)]
struct TimeGen {
    secs: u64,
    nanos: u64,
    decimals: u32,
    exponent: bool,
}

impl TimeGen {
    /// The nanoseconds the text holds (what is beyond its decimals is not written).
    fn value(&self) -> u64 {
        let unit = 10u64.pow(9 - self.decimals);
        self.secs * 1_000_000_000 + self.nanos / unit * unit
    }

    fn text(&self) -> String {
        let unit = 10u64.pow(9 - self.decimals);
        let fraction = format!("{:09}", self.nanos / unit * unit);
        let fraction = &fraction[..self.decimals as usize];
        if self.exponent {
            // 1700000000.25 as 1.70000000025E9 (the seconds have 10 digits).
            let digits = self.secs.to_string();
            format!("{}.{}{}E9", &digits[..1], &digits[1..], fraction)
        } else if fraction.is_empty() {
            self.secs.to_string()
        } else {
            format!("{}.{}", self.secs, fraction)
        }
    }

    fn plus(&self, nanos: u64, decimals: u32, exponent: bool) -> TimeGen {
        let total = self.value() + nanos;
        let end = TimeGen {
            secs: total / 1_000_000_000,
            nanos: total % 1_000_000_000,
            decimals,
            exponent,
        };
        // Fewer decimals may cut the end before the start: then it is the start.
        if end.value() < self.value() {
            self.clone()
        } else {
            end
        }
    }
}

fn time() -> impl Strategy<Value = TimeGen> {
    (
        1_000_000_000u64..2_000_000_000,
        0u64..1_000_000_000,
        0u32..=9,
        any::<bool>(),
    )
        .prop_map(|(secs, nanos, decimals, exponent)| TimeGen {
            secs,
            nanos,
            decimals,
            exponent,
        })
}

#[derive(Clone, Debug)]
struct Http {
    method: String,
    url: Option<String>,
    user_agent: Option<String>,
    client_ip: Option<(String, Option<bool>)>,
    status: Option<i64>,
    content_length: Option<i64>,
}

fn http() -> impl Strategy<Value = Http> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        prop::option::of("https?://[a-z]{1,8}\\.example(:[0-9]{2,4})?/[a-z/]{0,10}"),
        prop::option::of("[a-zA-Z/0-9. ]{1,20}"),
        prop::option::of((
            "10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            prop::option::of(any::<bool>()),
        )),
        prop::sample::select(vec![
            None,
            Some(200),
            Some(302),
            Some(404),
            Some(429),
            Some(500),
            Some(503),
        ]),
        prop::option::of(0i64..1_000_000),
    )
        .prop_map(
            |(method, url, user_agent, client_ip, status, content_length)| Http {
                method: method.to_owned(),
                url,
                user_agent,
                client_ip,
                status,
                content_length,
            },
        )
}

impl Http {
    fn json(&self) -> Json {
        let mut request = json!({"method": self.method});
        if let Some(url) = &self.url {
            request["url"] = json!(url);
        }
        if let Some(agent) = &self.user_agent {
            request["user_agent"] = json!(agent);
        }
        if let Some((ip, forwarded)) = &self.client_ip {
            request["client_ip"] = json!(ip);
            if let Some(f) = forwarded {
                request["x_forwarded_for"] = json!(f);
            }
        }
        let mut response = json!({});
        if let Some(status) = self.status {
            response["status"] = json!(status);
        }
        if let Some(length) = self.content_length {
            response["content_length"] = json!(length);
        }
        json!({"request": request, "response": response})
    }
}

/// The call fields of an `aws` block (`table_names` has two or more names).
fn aws_call() -> impl Strategy<Value = BTreeMap<&'static str, Json>> {
    (
        prop::collection::btree_map(
            prop::sample::select(vec![
                "operation",
                "region",
                "request_id",
                "queue_url",
                "table_name",
                "account_id",
            ]),
            "[A-Za-z0-9:/._-]{1,16}",
            0..4,
        ),
        prop::option::of(prop::collection::vec("[a-z]{1,8}", 2..4)),
    )
        .prop_map(|(fields, tables)| {
            let mut out: BTreeMap<&'static str, Json> =
                fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
            if let Some(tables) = tables {
                out.insert("table_names", json!(tables));
            }
            out
        })
}

/// SQL systems [`to_xray`] writes a `sql` block for.
const SQL_SYSTEMS: [&str; 5] = ["postgresql", "mysql", "mariadb", "oracle", "mssql"];

#[derive(Clone, Debug)]
struct Sql {
    url: String,
    database_type: String,
    user: Option<String>,
    sanitized_query: Option<String>,
}

fn sql() -> impl Strategy<Value = Sql> {
    (
        "(postgresql|mysql|jdbc:oracle:thin)://[a-z]{1,8}(:[0-9]{4})?/[a-z]{1,8}",
        prop::sample::select(SQL_SYSTEMS.to_vec()),
        prop::option::of("[a-z]{1,8}"),
        prop::option::of("SELECT [a-z*, ]{1,20} FROM [a-z]{1,8}"),
    )
        .prop_map(|(url, database_type, user, sanitized_query)| Sql {
            url,
            database_type: database_type.to_owned(),
            user,
            sanitized_query,
        })
}

impl Sql {
    fn json(&self) -> Json {
        let mut sql = json!({"url": self.url, "database_type": self.database_type});
        if let Some(user) = &self.user {
            sql["user"] = json!(user);
        }
        if let Some(query) = &self.sanitized_query {
            sql["sanitized_query"] = json!(query);
        }
        sql
    }

    /// What [`to_xray`] writes back (without its `url`, the span's name).
    fn expected(&self) -> Json {
        let mut sql = self.json();
        if let Some(map) = sql.as_object_mut() {
            map.remove("url");
            map.insert("connection_string".into(), json!(self.url));
        }
        sql
    }
}

fn exception() -> impl Strategy<Value = Json> {
    (
        "[0-9a-f]{16}",
        prop::option::of("[A-Z][a-zA-Z]{0,10}(Error|Exception)"),
        prop::option::of("[^\n\r]{0,30}"),
        prop::option::of(any::<bool>()),
        prop::collection::vec(
            (
                "[a-z][a-z/._]{0,12}",
                0u64..2000,
                "[a-z_][a-zA-Z0-9_.]{0,10}",
            ),
            0..4,
        ),
    )
        .prop_map(|(id, kind, message, remote, stack)| {
            let mut e = json!({"id": id});
            if let Some(kind) = kind {
                e["type"] = json!(kind);
            }
            if let Some(message) = message {
                e["message"] = json!(message);
            }
            if let Some(remote) = remote {
                e["remote"] = json!(remote);
            }
            if !stack.is_empty() {
                e["stack"] = Json::Array(
                    stack
                        .into_iter()
                        .map(|(path, line, label)| {
                            json!({"path": path, "line": line, "label": label})
                        })
                        .collect(),
                );
            }
            e
        })
}

fn annotation() -> impl Strategy<Value = Ann> {
    prop_oneof![
        any::<i64>().prop_map(Ann::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Ann::Float(f.to_bits())),
        any::<bool>().prop_map(Ann::Bool),
        any::<String>().prop_map(Ann::Str),
    ]
}

/// A metadata value: any JSON of finite numbers, two levels deep.
fn metadata_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::from),
        "[^\"]{0,12}".prop_map(Json::from),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

fn metadata() -> impl Strategy<Value = BTreeMap<String, Json>> {
    prop::collection::btree_map(
        prop_oneof![Just("default".to_owned()), "[a-z]{1,6}"],
        prop::collection::btree_map("[a-z]{1,5}", metadata_value(), 0..3)
            .prop_map(|m| Json::Object(m.into_iter().collect())),
        0..3,
    )
}

/// Everything one node may have; which of it the node keeps depends on its role.
#[derive(Clone, Debug)]
struct NodeGen {
    name: String,
    /// 0: none, 1: `aws`, 2: `remote`.
    namespace: u8,
    start: TimeGen,
    end: (u64, u32, bool),
    http: Option<Http>,
    fault: bool,
    aws: BTreeMap<&'static str, Json>,
    sql: Option<Sql>,
    exceptions: Option<Vec<Json>>,
    annotations: BTreeMap<String, Ann>,
    metadata: BTreeMap<String, Json>,
}

fn node() -> impl Strategy<Value = NodeGen> {
    (
        (
            "[A-Za-z0-9][A-Za-z0-9 _.:/%&#=+@-]{0,30}",
            0u8..3,
            time(),
            (0u64..10_000_000_000, 0u32..=9, any::<bool>()),
        ),
        (prop::option::of(http()), any::<bool>()),
        aws_call(),
        prop::option::weighted(0.3, sql()),
        prop::option::weighted(0.3, prop::collection::vec(exception(), 0..3)),
        prop::collection::btree_map("[a-z][a-z0-9_]{0,8}", annotation(), 0..4),
        metadata(),
    )
        .prop_map(
            |(
                (name, namespace, start, end),
                (http, fault),
                aws,
                sql,
                exceptions,
                annotations,
                metadata,
            )| NodeGen {
                name,
                namespace,
                start,
                end,
                http,
                fault,
                aws,
                sql,
                exceptions,
                annotations,
                metadata,
            },
        )
}

#[derive(Clone, Debug)]
struct Tree {
    node: NodeGen,
    children: Vec<Tree>,
}

fn tree() -> impl Strategy<Value = Tree> {
    node()
        .prop_map(|node| Tree {
            node,
            children: Vec::new(),
        })
        .prop_recursive(3, 12, 3, |inner| {
            (node(), prop::collection::vec(inner, 1..4))
                .prop_map(|(node, children)| Tree { node, children })
        })
}

/// The platform a segment says it runs on: its `origin` and `aws` blocks.
fn platform() -> impl Strategy<Value = Option<(String, BTreeMap<String, Json>)>> {
    let opt = |re: &'static str| prop::option::of(re);
    prop_oneof![
        Just(None),
        (
            "i-[0-9a-f]{8}",
            opt("us-east-1[a-f]"),
            opt("[a-z][0-9]\\.[a-z]{4,6}"),
            opt("ami-[0-9a-f]{8}")
        )
            .prop_map(|(id, az, size, ami)| {
                let mut ec2 = json!({"instance_id": id});
                for (k, v) in [
                    ("availability_zone", az),
                    ("instance_size", size),
                    ("ami_id", ami),
                ] {
                    if let Some(v) = v {
                        ec2[k] = json!(v);
                    }
                }
                Some((
                    "AWS::EC2::Instance".to_owned(),
                    BTreeMap::from([("ec2".to_owned(), ec2)]),
                ))
            }),
        (
            prop::sample::select(vec![
                ("AWS::ECS::Container", None),
                ("AWS::ECS::EC2", Some("ec2")),
                ("AWS::ECS::Fargate", Some("fargate")),
            ]),
            "[a-z]{1,8}",
            opt("[0-9a-f]{12}"),
            opt("arn:aws:ecs:[a-z0-9:/-]{1,20}"),
            opt("[a-z]{1,8}"),
        )
            .prop_map(|((origin, launch), container, id, task_arn, family)| {
                let mut ecs = json!({"container": container});
                for (k, v) in [
                    ("container_id", id),
                    ("task_arn", task_arn),
                    ("task_family", family),
                ] {
                    if let Some(v) = v {
                        ecs[k] = json!(v);
                    }
                }
                if let Some(launch) = launch {
                    ecs["launch_type"] = json!(launch);
                }
                Some((origin.to_owned(), BTreeMap::from([("ecs".to_owned(), ecs)])))
            }),
        ("[a-z]{1,8}", opt("[a-z0-9-]{1,12}"), opt("[0-9a-f]{12}")).prop_map(
            |(cluster, pod, id)| {
                let mut eks = json!({"cluster_name": cluster});
                for (k, v) in [("pod", pod), ("container_id", id)] {
                    if let Some(v) = v {
                        eks[k] = json!(v);
                    }
                }
                Some((
                    "AWS::EKS::Container".to_owned(),
                    BTreeMap::from([("eks".to_owned(), eks)]),
                ))
            }
        ),
        (opt("[a-z]{1,8}"), opt("v[0-9]{1,3}"), 1i64..100_000).prop_map(
            |(env, version, deployment)| {
                let mut eb = json!({"deployment_id": deployment});
                for (k, v) in [("environment_name", env), ("version_label", version)] {
                    if let Some(v) = v {
                        eb[k] = json!(v);
                    }
                }
                Some((
                    "AWS::ElasticBeanstalk::Environment".to_owned(),
                    BTreeMap::from([("elastic_beanstalk".to_owned(), eb)]),
                ))
            }
        ),
    ]
}

#[derive(Clone, Debug)]
struct DocGen {
    trace: (u32, [u8; 12]),
    salt: u32,
    /// A subsegment document (`type: subsegment`) whose parent is this id.
    lone: Option<u64>,
    /// A segment's caller.
    caller: Option<u64>,
    platform: Option<(String, BTreeMap<String, Json>)>,
    /// 0: none, 1: Python, 2: Java.
    sdk: u8,
    tree: Tree,
}

fn document() -> impl Strategy<Value = DocGen> {
    (
        (1u32.., any::<[u8; 12]>()),
        1u32..,
        prop::option::weighted(0.2, 1u64..),
        prop::option::weighted(0.3, 1u64..),
        platform(),
        0u8..3,
        tree(),
    )
        .prop_map(|(trace, salt, lone, caller, platform, sdk, tree)| DocGen {
            trace,
            salt,
            lone,
            caller,
            platform,
            sdk,
            tree,
        })
}

/// Writes the document, and the normal form of what it says.
struct Writer {
    trace_id: String,
    salt: u32,
    next: u32,
    frames: bool,
    expected: BTreeMap<String, Node>,
}

impl Writer {
    fn write(&mut self, doc: &DocGen) -> String {
        let segment = doc.lone.is_none();
        let parent = match doc.lone {
            Some(p) => Some(format!("{p:016x}")),
            None => doc.caller.map(|c| format!("{c:016x}")),
        };
        self.node(&doc.tree, parent, true, segment, doc)
    }

    fn node(
        &mut self,
        tree: &Tree,
        parent: Option<String>,
        top: bool,
        segment: bool,
        doc: &DocGen,
    ) -> String {
        self.next += 1;
        let id = format!("{:08x}{:08x}", self.salt, self.next);
        let g = &tree.node;
        let namespace = match (segment, g.namespace) {
            (true, _) | (false, 0) => None,
            (false, 1) => Some("aws"),
            (false, _) => Some("remote"),
        };
        let end = g.start.plus(g.end.0, g.end.1, g.end.2);
        let mut fields = serde_json::Map::new();
        fields.insert("id".into(), json!(id));
        fields.insert("name".into(), json!(g.name));
        if top {
            fields.insert("trace_id".into(), json!(self.trace_id));
            if let Some(p) = &parent {
                fields.insert("parent_id".into(), json!(p));
            }
            if !segment {
                fields.insert("type".into(), json!("subsegment"));
            }
        }
        if let Some(ns) = namespace {
            fields.insert("namespace".into(), json!(ns));
        }
        // Blocks by role: a local subsegment has no http or sql; only segments a client address.
        let mut http = if segment || namespace.is_some() {
            g.http.clone()
        } else {
            None
        };
        if let Some(h) = &mut http
            && !segment
        {
            h.client_ip = None;
        }
        let status = http.as_ref().and_then(|h| h.status);
        let (error, throttle, fault) = match status {
            Some(s @ 400..=499) => (true, s == 429, false),
            Some(500..=599) => (false, false, true),
            _ => (false, false, g.fault),
        };
        for (k, v) in [("error", error), ("throttle", throttle), ("fault", fault)] {
            if v {
                fields.insert(k.into(), json!(true));
            }
        }
        let http_json = http.as_ref().map(Http::json);
        if let Some(h) = &http_json {
            fields.insert("http".into(), h.clone());
        }
        let mut aws: serde_json::Map<String, Json> = g
            .aws
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let mut origin = None;
        if top && segment {
            if let Some((o, blocks)) = &doc.platform {
                origin = Some(o.clone());
                fields.insert("origin".into(), json!(o));
                aws.extend(blocks.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            match doc.sdk {
                1 => {
                    aws.insert(
                        "xray".into(),
                        json!({"sdk": "X-Ray for Python", "sdk_version": "2.14.0"}),
                    );
                }
                2 => {
                    aws.insert("xray".into(), json!({"sdk": "X-Ray for Java"}));
                }
                _ => {}
            }
        }
        let aws = Json::Object(aws);
        if aws.as_object().is_some_and(|m| !m.is_empty()) {
            fields.insert("aws".into(), aws.clone());
        }
        let sql = if namespace == Some("remote") {
            g.sql.as_ref()
        } else {
            None
        };
        if let Some(sql) = sql {
            fields.insert("sql".into(), sql.json());
        }
        let cause = g.exceptions.as_ref().map(|e| json!({"exceptions": e}));
        if let Some(c) = &cause {
            fields.insert("cause".into(), c.clone());
        }
        if !g.annotations.is_empty() {
            fields.insert(
                "annotations".into(),
                Json::Object(
                    g.annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), v.json()))
                        .collect(),
                ),
            );
        }
        if !g.metadata.is_empty() {
            fields.insert(
                "metadata".into(),
                Json::Object(
                    g.metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            );
        }
        let metadata = fields.get("metadata").cloned().unwrap_or(Json::Null);
        self.expected.insert(
            id.clone(),
            Node {
                trace_id: self.trace_id.clone(),
                parent: parent.clone(),
                segment: top && segment,
                name: g.name.clone(),
                namespace: namespace.map(str::to_owned),
                start_us: g.start.value() / 1_000,
                end_us: end.value() / 1_000,
                origin,
                http: http_json.as_ref().map_or(Json::Null, norm_http),
                aws: norm_aws(&aws),
                sql: sql.map_or(Json::Null, Sql::expected),
                error,
                fault,
                throttle,
                cause: cause
                    .as_ref()
                    .map_or_else(Vec::new, |c| norm_cause(c, self.frames)),
                annotations: g.annotations.clone(),
                metadata: norm_metadata(&metadata),
            },
        );
        // The times as text, then the other fields, then the children.
        let mut out = format!(
            "{{\"start_time\":{},\"end_time\":{}",
            g.start.text(),
            end.text()
        );
        for (k, v) in &fields {
            out.push_str(&format!(",{}:{}", json!(k), v));
        }
        if !tree.children.is_empty() {
            out.push_str(",\"subsegments\":[");
            for (i, child) in tree.children.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let child = self.node(child, Some(id.clone()), false, false, doc);
                out.push_str(&child);
            }
            out.push(']');
        }
        out.push('}');
        out
    }
}

fn check(doc: &DocGen) -> Result<(), TestCaseError> {
    let trace_id = format!(
        "1-{:08x}-{}",
        doc.trace.0,
        doc.trace
            .1
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // Frames come back where the segment names a language whose traces to_xray parses.
    let frames = doc.lone.is_none() && doc.sdk != 0;
    let mut writer = Writer {
        trace_id,
        salt: doc.salt,
        next: 0,
        frames,
        expected: BTreeMap::new(),
    };
    let text = writer.write(doc);
    let converted = convert(text.as_bytes(), &Settings::default())
        .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert!(
        converted.left_out.is_empty(),
        "{}: {text}",
        converted.left_out
    );
    let mut actual_nodes = BTreeMap::new();
    for record in &converted.spans {
        let out = to_xray::convert(record, &to_xray::ConversionSettings::default(), 1 << 20)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(out.trimmed.is_empty());
        let json: Json = serde_json::from_slice(&out.document.body)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            json.get("subsegments").is_none(),
            "one span, one node: {json}"
        );
        let (id, node) = actual(&json, frames);
        prop_assert!(
            actual_nodes.insert(id.clone(), node).is_none(),
            "{id} twice"
        );
    }
    prop_assert_eq!(actual_nodes.len(), writer.expected.len(), "{}", text);
    for (id, expected) in &writer.expected {
        let actual = actual_nodes.get(id);
        prop_assert_eq!(Some(expected), actual, "node {} of {}", id, text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn xray_to_otlp_to_xray_keeps_what_the_document_says(doc in document()) {
        check(&doc)?;
    }
}
