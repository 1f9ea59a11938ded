//! The conversion's rules, one test (or table) each.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::*;
use crate::otlp::proto::{ArrayValue, Resource, Span, Status, span::Event};
use crate::otlp::span::{SpanResource, SpanScope};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";
const XRAY_TRACE: &str = "1-5b8efff7-98038103d269b633813fc60c";

fn resource(attrs: Vec<KeyValue>) -> Arc<SpanResource> {
    Arc::new(SpanResource {
        resource: Resource {
            attributes: attrs,
            dropped_attributes_count: 0,
        },
        schema_url: String::new(),
    })
}

fn python_resource() -> Arc<SpanResource> {
    resource(vec![
        KeyValue::string("service.name", "flask-app"),
        KeyValue::string("telemetry.sdk.language", "python"),
        KeyValue::string("telemetry.sdk.name", "opentelemetry"),
        KeyValue::string("telemetry.sdk.version", "1.27.0"),
    ])
}

fn id(n: u8) -> Vec<u8> {
    vec![0x10, 0, 0, 0, 0, 0, 0, n]
}

fn id_hex(n: u8) -> String {
    hex::encode(id(n))
}

fn span(kind: SpanKind, name: &str, n: u8, parent: Option<u8>, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: hex::decode(TRACE).unwrap_or_default(),
        span_id: id(n),
        parent_span_id: parent.map(id).unwrap_or_default(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n) * 1_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: attrs,
        ..Span::default()
    }
}

fn record_in(resource: Arc<SpanResource>, span: Span) -> SpanRecord {
    SpanRecord::new(resource, Arc::new(SpanScope::default()), span)
}

fn record(
    kind: SpanKind,
    name: &str,
    n: u8,
    parent: Option<u8>,
    attrs: Vec<KeyValue>,
) -> SpanRecord {
    record_in(python_resource(), span(kind, name, n, parent, attrs))
}

/// Converts, checks every document with the daemon's own parse, and returns them as JSON.
fn convert_with(r: &SpanRecord, settings: &ConversionSettings) -> Vec<Json> {
    let converted = match to_documents(r, settings) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(converted.trimmed.is_empty(), "{:?}", converted.trimmed);
    vec![checked(&converted.document)]
}

fn checked(doc: &Document) -> Json {
    let datagram = [
        b"{\"format\":\"json\",\"version\":1}\n".as_slice(),
        &doc.body,
    ]
    .concat();
    if let Err(e) = crate::document::parse(&datagram, DEFAULT_MAX_DOCUMENT_BYTES) {
        panic!(
            "the daemon refuses {}: {e}",
            String::from_utf8_lossy(&doc.body)
        );
    }
    serde_json::from_slice(&doc.body).unwrap_or_default()
}

fn one(r: &SpanRecord) -> Json {
    let docs = convert_with(r, &ConversionSettings::default());
    assert_eq!(docs.len(), 1, "{docs:?}");
    docs.into_iter().next().unwrap_or_default()
}

#[test]
fn a_flask_request_becomes_a_segment_with_its_subsegments() {
    let server = record(
        SpanKind::Server,
        "GET /home",
        1,
        None,
        vec![
            KeyValue::string("http.method", "GET"),
            KeyValue::string("http.route", "/home"),
            KeyValue::int("http.status_code", 200),
            KeyValue::string("http.scheme", "http"),
            KeyValue::string("http.host", "127.0.0.1:5000"),
            KeyValue::string("http.target", "/home"),
            KeyValue::string("http.server_name", "127.0.0.1"),
            KeyValue::int("net.host.port", 5000),
            KeyValue::string("net.peer.ip", "127.0.0.1"),
            KeyValue::string("http.user_agent", "python-requests/2.32.3"),
            KeyValue::string("http.flavor", "1.1"),
        ],
    );
    let data = record(
        SpanKind::Internal,
        "home-activities-data",
        2,
        Some(1),
        vec![KeyValue::string("app.hubabuba", "hubba")],
    );
    let result = record(
        SpanKind::Internal,
        "home-result-activities",
        3,
        Some(2),
        vec![],
    );
    let client = record(
        SpanKind::Client,
        "GET",
        4,
        Some(3),
        vec![
            KeyValue::string("http.method", "GET"),
            KeyValue::string("http.url", "https://api.example.com:8443/activities?day=1"),
            KeyValue::int("http.status_code", 200),
        ],
    );

    let segment = one(&server);
    assert_eq!(
        segment,
        json!({
            "name": "flask-app",
            "id": id_hex(1),
            "trace_id": XRAY_TRACE,
            "start_time": 1_700_000_000.001,
            "end_time": 1_700_000_000.5,
            "http": {
                "request": {
                    "method": "GET",
                    "url": "http://127.0.0.1:5000/home",
                    "user_agent": "python-requests/2.32.3",
                    "client_ip": "127.0.0.1"
                },
                "response": {"status": 200}
            },
            "aws": {"xray": {"sdk": "opentelemetry for python", "sdk_version": "1.27.0", "auto_instrumentation": false}},
            "metadata": {"default": {
                "http.route": "/home",
                "http.flavor": "1.1",
                "otel.resource.service.name": "flask-app",
                "otel.resource.telemetry.sdk.language": "python",
                "otel.resource.telemetry.sdk.name": "opentelemetry",
                "otel.resource.telemetry.sdk.version": "1.27.0"
            }}
        })
    );

    let sub = one(&data);
    assert_eq!(
        sub,
        json!({
            "name": "home-activities-data",
            "id": id_hex(2),
            "trace_id": XRAY_TRACE,
            "start_time": 1_700_000_000.002,
            "end_time": 1_700_000_000.5,
            "type": "subsegment",
            "parent_id": id_hex(1),
            "metadata": {"default": {"app.hubabuba": "hubba"}}
        })
    );
    let nested = one(&result);
    assert_eq!(nested["parent_id"], id_hex(2));
    assert_eq!(nested["name"], "home-result-activities");
    assert!(
        nested.get("metadata").is_none(),
        "no resource on subsegments: {nested}"
    );

    let call = one(&client);
    assert_eq!(call["parent_id"], id_hex(3));
    assert_eq!(call["type"], "subsegment");
    assert_eq!(call["name"], "api.example.com");
    assert_eq!(call["namespace"], "remote");
    assert_eq!(
        call["http"],
        json!({"request": {"method": "GET", "url": "https://api.example.com:8443/activities?day=1"}, "response": {"status": 200}})
    );
}

#[test]
fn trace_ids_take_the_xray_form() {
    assert_eq!(
        xray_trace_id(&hex::decode(TRACE).unwrap_or_default()),
        XRAY_TRACE
    );
    // Random W3C ids are taken as they are: no epoch check.
    assert_eq!(
        xray_trace_id(&[0xff; 16]),
        "1-ffffffff-ffffffffffffffffffffffff"
    );
}

#[test]
fn segments_and_subsegments() {
    let local_root = KeyValue::string("aws.span.kind", "LOCAL_ROOT");
    // (kind, parent, attributes, Span.flags, is a segment)
    type Case = (SpanKind, Option<u8>, Vec<KeyValue>, u32, bool);
    let cases: [Case; 10] = [
        (SpanKind::Server, None, vec![], 0, true),
        (SpanKind::Server, Some(9), vec![], 0, true),
        (SpanKind::Internal, None, vec![], 0, true),
        (SpanKind::Consumer, None, vec![], 0, true),
        (SpanKind::Internal, Some(9), vec![local_root], 0, true),
        (SpanKind::Internal, Some(9), vec![], 0, false),
        (SpanKind::Consumer, Some(9), vec![], 0, false),
        // The parent is known to be remote: a local root.
        (SpanKind::Internal, Some(9), vec![], 0x301, true),
        // Known to be local, or remoteness unknown: a subsegment.
        (SpanKind::Internal, Some(9), vec![], 0x101, false),
        (SpanKind::Internal, Some(9), vec![], 0x201, false),
    ];
    for (kind, parent, attrs, flags, is_segment) in cases {
        let mut s = span(kind, "op", 1, parent, attrs);
        s.flags = flags;
        let doc = one(&record_in(python_resource(), s));
        assert_eq!(
            doc.get("type").is_none(),
            is_segment,
            "{kind:?} {parent:?}: {doc}"
        );
        assert_eq!(
            doc.get("parent_id").and_then(Json::as_str),
            parent.map(id_hex).as_deref(),
            "{kind:?} {parent:?}"
        );
    }
}

#[test]
fn a_local_root_client_becomes_a_segment_with_an_embedded_dependency_subsegment() {
    for kind in [SpanKind::Client, SpanKind::Producer] {
        let r = record(
            kind,
            "GET",
            5,
            None,
            vec![
                KeyValue::string("http.method", "GET"),
                KeyValue::string("http.url", "http://inventory:8080/items"),
                KeyValue::string("aws.remote.service", "inventory"),
                KeyValue::string("app.tag", "x"),
            ],
        );
        let docs = convert_with(&r, &ConversionSettings::default());
        assert_eq!(docs.len(), 1, "{kind:?}");
        let service = &docs[0];
        let dependency = &service["subsegments"][0];
        assert!(service.get("type").is_none());
        assert!(service.get("parent_id").is_none());
        assert_eq!(service["name"], "flask-app");
        assert!(service.get("http").is_none(), "{service}");
        assert!(service.get("namespace").is_none());
        let meta = &service["metadata"]["default"];
        assert!(
            meta.get("app.tag").is_none() && meta.get("otel.resource.service.name").is_some(),
            "{service}"
        );
        assert_ne!(service["id"], id_hex(5));
        assert_eq!(
            dependency["id"],
            id_hex(5),
            "children still find the span's id"
        );
        for field in ["parent_id", "type", "trace_id"] {
            assert!(
                dependency.get(field).is_none(),
                "embedded: no {field}: {dependency}"
            );
        }
        assert_eq!(dependency["namespace"], "remote");
        assert_eq!(dependency["name"], "inventory");
        assert_eq!(
            dependency["http"]["request"]["url"],
            "http://inventory:8080/items"
        );
        // The same span always gives the same documents.
        assert_eq!(convert_with(&r, &ConversionSettings::default()), docs);
    }
}

#[test]
fn names_are_cleaned_and_cut() {
    let long = "é".repeat(250);
    let cases: [(&str, String); 6] = [
        ("GET /home?x=<1>", "GET /homex=1".into()),
        (
            "café:8080/a_b.c%&#=+\\-@",
            "café:8080/a_b.c%&#=+\\-@".into(),
        ),
        ("tab\there\nnewline", "tabherenewline".into()),
        ("", "span".into()),
        ("!!!", "span".into()),
        (long.as_str(), "é".repeat(200)),
    ];
    for (raw, want) in cases {
        assert_eq!(clean_name(raw), want, "{raw:?}");
        let doc = one(&record(SpanKind::Internal, raw, 1, Some(9), vec![]));
        assert_eq!(doc["name"], want.as_str());
    }
}

#[test]
fn subsegment_names_follow_the_collectors_order() {
    let s = KeyValue::string;
    let aws = s("rpc.system", "aws-api");
    let cases: [(SpanKind, Vec<KeyValue>, &str, Option<&str>); 10] = [
        (
            SpanKind::Client,
            vec![s("aws.remote.service", "AWS::DynamoDB"), aws.clone()],
            "DynamoDB",
            Some("aws"),
        ),
        (
            SpanKind::Client,
            vec![s("aws.remote.service", "AWS.SDK.S3"), aws.clone()],
            "S3",
            Some("aws"),
        ),
        (
            SpanKind::Client,
            vec![s("aws.remote.service", "AWS::Other")],
            "AWS::Other",
            Some("remote"),
        ),
        (
            SpanKind::Client,
            vec![s("peer.service", "billing"), s("http.host", "h")],
            "billing",
            Some("remote"),
        ),
        (
            SpanKind::Client,
            vec![s("rpc.service", "SQS"), aws.clone()],
            "SQS",
            Some("aws"),
        ),
        (
            SpanKind::Client,
            vec![
                s("db.name", "shop"),
                s("db.connection_string", "jdbc:mysql://db.example.com:3306"),
            ],
            "shop@db.example.com",
            Some("remote"),
        ),
        (
            SpanKind::Client,
            vec![s("db.namespace", "shop"), s("server.address", "pg")],
            "shop@pg",
            Some("remote"),
        ),
        (
            SpanKind::Client,
            vec![s("url.full", "https://[::1]:9/x")],
            "::1",
            Some("remote"),
        ),
        (
            SpanKind::Internal,
            vec![s("net.peer.name", "cache")],
            "cache",
            None,
        ),
        (
            SpanKind::Producer,
            vec![s("aws.remote.service", "queue")],
            "queue",
            Some("remote"),
        ),
    ];
    for (kind, attrs, name, namespace) in cases {
        let doc = one(&record(kind, "op", 1, Some(9), attrs.clone()));
        assert_eq!(doc["name"], name, "{attrs:?}");
        assert_eq!(
            doc.get("namespace").and_then(Json::as_str),
            namespace,
            "{attrs:?}"
        );
    }
}

#[test]
fn segment_names_prefer_aws_local_service() {
    let doc = one(&record(
        SpanKind::Server,
        "GET /",
        1,
        None,
        vec![KeyValue::string("aws.local.service", "checkout")],
    ));
    assert_eq!(doc["name"], "checkout");
    let bare = record_in(
        resource(vec![]),
        span(SpanKind::Server, "GET /x", 1, None, vec![]),
    );
    assert_eq!(one(&bare)["name"], "GET /x");
}

#[test]
fn error_throttle_and_fault() {
    let status = |code: StatusCode| {
        Some(Status {
            message: String::new(),
            code: code as i32,
        })
    };
    // (status attribute, span status, (error, throttle, fault))
    type Case = (Option<KeyValue>, StatusCode, (bool, bool, bool));
    let cases: [Case; 11] = [
        (None, StatusCode::Unset, (false, false, false)),
        (
            Some(KeyValue::int("http.status_code", 200)),
            StatusCode::Error,
            (false, false, true),
        ),
        (
            Some(KeyValue::int("http.status_code", 404)),
            StatusCode::Unset,
            (true, false, false),
        ),
        (
            Some(KeyValue::int("http.status_code", 404)),
            StatusCode::Error,
            (true, false, false),
        ),
        (
            Some(KeyValue::int("http.status_code", 429)),
            StatusCode::Unset,
            (true, true, false),
        ),
        (
            Some(KeyValue::int("http.status_code", 500)),
            StatusCode::Unset,
            (false, false, true),
        ),
        (
            Some(KeyValue::int("http.status_code", 503)),
            StatusCode::Ok,
            (false, false, true),
        ),
        (None, StatusCode::Error, (false, false, true)),
        (
            Some(KeyValue::int("http.response.status_code", 502)),
            StatusCode::Unset,
            (false, false, true),
        ),
        (
            Some(KeyValue::string("http.status_code", "404")),
            StatusCode::Unset,
            (true, false, false),
        ),
        (
            Some(KeyValue::int("http.response.status_code", 399)),
            StatusCode::Unset,
            (false, false, false),
        ),
    ];
    for (attr, code, (error, throttle, fault)) in cases {
        let mut s = span(
            SpanKind::Server,
            "op",
            1,
            None,
            attr.iter().cloned().collect(),
        );
        s.status = status(code);
        let doc = one(&record_in(python_resource(), s));
        let flag = |k: &str| doc.get(k).and_then(Json::as_bool).unwrap_or(false);
        assert_eq!(
            (flag("error"), flag("throttle"), flag("fault")),
            (error, throttle, fault),
            "{attr:?} {code:?}"
        );
    }
}

#[test]
fn exception_events_become_the_cause_with_stack_frames() {
    let trace = "Traceback (most recent call last):\n  File \"/app/app.py\", line 30, in home\n    load()\n  File \"/app/data.py\", line 12, in load\n    raise ValueError(\"boom\")\nValueError: boom\n";
    let mut s = span(SpanKind::Client, "GET", 1, Some(9), vec![]);
    s.status = Some(Status {
        message: "ValueError: boom".into(),
        code: StatusCode::Error as i32,
    });
    s.events = vec![Event {
        time_unix_nano: 1,
        name: "exception".into(),
        attributes: vec![
            KeyValue::string("exception.type", "ValueError"),
            KeyValue::string("exception.message", "boom"),
            KeyValue::string("exception.stacktrace", trace),
        ],
        dropped_attributes_count: 0,
    }];
    let doc = one(&record_in(python_resource(), s.clone()));
    assert_eq!(doc["fault"], true);
    let exceptions = &doc["cause"]["exceptions"];
    assert_eq!(exceptions.as_array().map(Vec::len), Some(1), "{doc}");
    let e = &exceptions[0];
    assert_eq!(e["type"], "ValueError");
    assert_eq!(e["message"], "boom");
    assert_eq!(e["remote"], true);
    assert_eq!(e["id"].as_str().map(str::len), Some(16));
    assert_eq!(
        e["stack"],
        json!([
            {"path": "/app/data.py", "line": 12, "label": "load"},
            {"path": "/app/app.py", "line": 30, "label": "home"}
        ])
    );
    // Without exception events, an ERROR status's message is the cause.
    s.events.clear();
    let doc = one(&record_in(python_resource(), s));
    assert_eq!(doc["cause"]["exceptions"][0]["message"], "ValueError: boom");
}

#[test]
fn chained_exceptions_name_their_cause() {
    let trace = "java.lang.RuntimeException: outer\n\tat a.B.c(B.java:1)\nCaused by: java.io.IOException: inner\n\tat d.E.f(E.java:2)\n";
    let mut s = span(SpanKind::Server, "op", 1, None, vec![]);
    s.events = vec![Event {
        name: "exception".into(),
        attributes: vec![
            KeyValue::string("exception.type", "java.lang.RuntimeException"),
            KeyValue::string("exception.stacktrace", trace),
        ],
        ..Event::default()
    }];
    let java = resource(vec![KeyValue::string("telemetry.sdk.language", "java")]);
    let doc = one(&record_in(java, s));
    let e = &doc["cause"]["exceptions"];
    assert_eq!(e[1]["type"], "java.io.IOException");
    assert_eq!(e[0]["cause"], e[1]["id"]);
    assert_eq!(e[1]["stack"][0]["label"], "d.E.f");
}

#[test]
fn annotations_from_settings_index_all_and_the_span() {
    let attrs = vec![
        KeyValue::string("app.hubabuba", "hubba"),
        KeyValue::int("order.count", 3),
        KeyValue::string("other", "o"),
        KeyValue {
            key: "app.list".into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue::int(1)],
                })),
            }),
        },
    ];
    let settings = ConversionSettings {
        indexed_attributes: vec![
            "app.hubabuba".into(),
            "app.list".into(),
            "otel.resource.service.name".into(),
        ],
        index_all: false,
    };
    let doc = convert_with(
        &record(SpanKind::Server, "op", 1, None, attrs.clone()),
        &settings,
    )
    .pop()
    .unwrap_or_default();
    assert_eq!(
        doc["annotations"],
        json!({"app_hubabuba": "hubba", "otel_resource_service_name": "flask-app"})
    );
    assert_eq!(
        doc["metadata"]["default"]["app.list"],
        json!([1]),
        "a list stays metadata"
    );
    assert_eq!(doc["metadata"]["default"]["order.count"], 3);
    assert!(doc["metadata"]["default"].get("app.hubabuba").is_none());

    let all = ConversionSettings {
        index_all: true,
        ..ConversionSettings::default()
    };
    let doc = convert_with(
        &record(SpanKind::Internal, "op", 1, Some(9), attrs.clone()),
        &all,
    )
    .pop()
    .unwrap_or_default();
    assert_eq!(
        doc["annotations"],
        json!({"app_hubabuba": "hubba", "order_count": 3, "other": "o"})
    );

    let mut named = attrs;
    named.push(KeyValue {
        key: "aws.xray.annotations".into(),
        value: Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![AnyValue::string("other")],
            })),
        }),
    });
    let doc = one(&record(SpanKind::Internal, "op", 1, Some(9), named));
    assert_eq!(doc["annotations"], json!({"other": "o"}));
    assert!(
        doc["metadata"]["default"]
            .get("aws.xray.annotations")
            .is_none()
    );
}

#[test]
fn annotation_keys_are_cleaned() {
    let cases = [
        ("app.hubabuba", "app_hubabuba"),
        ("a-b c/d", "a_b_c_d"),
        ("ünï", "_n_"),
        ("Already_OK9", "Already_OK9"),
    ];
    for (raw, want) in cases {
        assert_eq!(clean_annotation_key(raw), want, "{raw}");
    }
}

#[test]
fn http_block_from_the_new_attribute_names() {
    let s = KeyValue::string;
    let doc = one(&record(
        SpanKind::Server,
        "GET /p",
        1,
        None,
        vec![
            s("http.request.method", "POST"),
            s("url.scheme", "https"),
            s("server.address", "shop.example.com"),
            KeyValue::int("server.port", 8443),
            s("url.path", "/cart"),
            s("url.query", "id=1"),
            s("client.address", "203.0.113.9"),
            s("user_agent.original", "curl/8"),
            KeyValue::int("http.response.status_code", 201),
            KeyValue::int("http.response.body.size", 17),
        ],
    ));
    assert_eq!(
        doc["http"],
        json!({
            "request": {
                "method": "POST",
                "url": "https://shop.example.com:8443/cart?id=1",
                "user_agent": "curl/8",
                "client_ip": "203.0.113.9",
                "x_forwarded_for": true
            },
            "response": {"status": 201, "content_length": 17}
        })
    );
    assert!(
        doc["metadata"]["default"].get("url.path").is_none(),
        "{doc}"
    );
}

#[test]
fn attributes_without_http_stay_metadata() {
    let doc = one(&record(
        SpanKind::Client,
        "GET",
        1,
        Some(9),
        vec![KeyValue::string("net.peer.name", "redis")],
    ));
    assert!(doc.get("http").is_none());
    assert_eq!(doc["metadata"]["default"]["net.peer.name"], "redis");
}

#[test]
fn sql_block() {
    let s = KeyValue::string;
    let doc = one(&record(
        SpanKind::Client,
        "SELECT shop",
        1,
        Some(9),
        vec![
            s("db.system", "postgresql"),
            s("db.name", "shop"),
            s("db.statement", "SELECT * FROM items WHERE id = ?"),
            s("db.user", "app"),
            s("net.peer.name", "pg.internal"),
        ],
    ));
    assert_eq!(doc["name"], "shop@pg.internal");
    assert_eq!(
        doc["sql"],
        json!({
            "url": "SELECT shop",
            "connection_string": "localhost/shop",
            "database_type": "postgresql",
            "user": "app",
            "sanitized_query": "SELECT * FROM items WHERE id = ?"
        })
    );
    let not_sql = one(&record(
        SpanKind::Client,
        "GET",
        1,
        Some(9),
        vec![s("db.system", "redis")],
    ));
    assert!(not_sql.get("sql").is_none());
}

#[test]
fn aws_block_from_an_aws_sdk_span() {
    let s = KeyValue::string;
    let doc = one(&record(
        SpanKind::Client,
        "DynamoDB.Query",
        1,
        Some(9),
        vec![
            s("rpc.system", "aws-api"),
            s("rpc.service", "DynamoDB"),
            s("rpc.method", "Query"),
            s("aws.region", "eu-west-1"),
            s("aws.request_id", "R1"),
            KeyValue {
                key: "aws.dynamodb.table_names".into(),
                value: Some(AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue::string("a"), AnyValue::string("b")],
                    })),
                }),
            },
        ],
    ));
    assert_eq!(doc["name"], "DynamoDB");
    assert_eq!(doc["namespace"], "aws");
    assert_eq!(
        doc["aws"],
        json!({"operation": "Query", "region": "eu-west-1", "request_id": "R1", "table_names": ["a", "b"]})
    );
}

#[test]
fn segments_carry_origin_user_service_version_and_platform() {
    let res = resource(vec![
        KeyValue::string("service.name", "api"),
        KeyValue::string("service.version", "1.2.3"),
        KeyValue::string("cloud.provider", "aws"),
        KeyValue::string("cloud.platform", "aws_ecs"),
        KeyValue::string("aws.ecs.launchtype", "fargate"),
        KeyValue::string("cloud.account.id", "123456789012"),
        KeyValue::string("container.name", "web"),
    ]);
    let s = span(
        SpanKind::Server,
        "op",
        1,
        None,
        vec![KeyValue::string("enduser.id", "u-1")],
    );
    let doc = one(&record_in(res, s));
    assert_eq!(doc["origin"], "AWS::ECS::Fargate");
    assert_eq!(doc["user"], "u-1");
    assert_eq!(doc["service"], json!({"version": "1.2.3"}));
    assert_eq!(doc["aws"]["account_id"], "123456789012");
    assert_eq!(
        doc["aws"]["ecs"],
        json!({"container": "web", "launch_type": "fargate"})
    );
    assert!(doc["metadata"]["default"].get("enduser.id").is_none());
}

#[test]
fn xray_metadata_namespaces() {
    let doc = one(&record(
        SpanKind::Internal,
        "op",
        1,
        Some(9),
        vec![
            KeyValue::string("aws.xray.metadata.orders", r#"{"count":2}"#),
            KeyValue::string("aws.xray.metadata.default", r#"{"k":"v"}"#),
            KeyValue::string("aws.xray.metadata.bad", "not json"),
        ],
    ));
    assert_eq!(
        doc["metadata"],
        json!({"orders": {"count": 2}, "default": {"k": "v", "aws.xray.metadata.bad": "not json"}})
    );
}

#[test]
fn documents_over_the_cap_lose_metadata_first() {
    let mut attrs: Vec<KeyValue> = (0..100)
        .map(|i| KeyValue::string(format!("big.{i:03}"), "x".repeat(1000)))
        .collect();
    attrs.push(KeyValue::string("small", "s"));
    attrs.push(KeyValue::string("note", "n"));
    let settings = ConversionSettings {
        indexed_attributes: vec!["note".into()],
        index_all: false,
    };
    let r = record(SpanKind::Internal, "op", 1, Some(9), attrs);
    let converted = match to_documents(&r, &settings) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let body = &converted.document.body;
    assert!(body.len() <= DEFAULT_MAX_DOCUMENT_BYTES, "{}", body.len());
    assert!(converted.trimmed.metadata > 30, "{:?}", converted.trimmed);
    assert!(
        converted.trimmed.metadata < 50,
        "only what was needed: {:?}",
        converted.trimmed
    );
    assert_eq!(converted.trimmed.annotations, 0);
    let doc = checked(&converted.document);
    assert_eq!(doc["annotations"]["note"], "n");
    assert_eq!(doc["metadata"]["default"]["small"], "s", "largest first");
}

#[test]
fn trimming_goes_on_to_stacks_annotations_and_long_strings() {
    let mut s = span(
        SpanKind::Client,
        "op",
        1,
        Some(9),
        vec![
            KeyValue::string("note", "n".repeat(900)),
            KeyValue::string("http.url", format!("http://h/{}", "p".repeat(3000))),
            KeyValue::string("meta", "m".repeat(500)),
        ],
    );
    s.events = vec![Event {
        name: "exception".into(),
        attributes: vec![KeyValue::string(
            "exception.stacktrace",
            format!(
                "Traceback (most recent call last):\n{}E: x\n",
                "  File \"/a.py\", line 1, in f\n    x\n".repeat(20)
            ),
        )],
        ..Event::default()
    }];
    let r = record_in(python_resource(), s);
    let settings = ConversionSettings {
        indexed_attributes: vec!["note".into()],
        index_all: false,
    };
    let converted = match convert(&r, &settings, 2_000) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        converted.trimmed,
        Trimmed {
            metadata: 1,
            stack_frames: 20,
            annotations: 1,
            cut_strings: 1
        }
    );
    assert!(converted.document.body.len() <= 2_000);
    let r = convert(&r, &settings, 200);
    assert!(
        matches!(r, Err(ConvertError::TooLarge { cap: 200, .. })),
        "{r:?}"
    );
}

#[test]
fn times_are_seconds_to_the_microsecond() {
    let mut s = span(SpanKind::Server, "op", 1, None, vec![]);
    s.start_time_unix_nano = 1_700_000_000_123_456_789;
    s.end_time_unix_nano = 1_700_000_000_000_000_000;
    let doc = one(&record_in(python_resource(), s));
    assert_eq!(doc["start_time"], 1_700_000_000.123_456);
    assert_eq!(
        doc["end_time"], doc["start_time"],
        "an end before the start is the start"
    );
}
