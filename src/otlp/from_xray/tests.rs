//! The conversion's rules, one test each; garbage and deep nesting never panic; and
//! ([`roundtrip`]) the property that X-Ray → OTLP → X-Ray keeps what a document says.

mod roundtrip;

use super::*;
use crate::otlp::proto::attribute;

const TRACE: &str = "1-5b8efff7-98038103d269b633813fc60c";

fn convert_ok(doc: &str, settings: &Settings) -> Converted {
    match convert(doc.as_bytes(), settings) {
        Ok(c) => c,
        Err(e) => panic!("{e}: {doc}"),
    }
}

fn conv(doc: &str) -> Converted {
    convert_ok(doc, &Settings::default())
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    attribute(&span.attributes, key).and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn resource_str<'a>(record: &'a SpanRecord, key: &str) -> Option<&'a str> {
    attribute(&record.resource.resource.attributes, key).and_then(AnyValue::as_str)
}

fn hex_id(id: &[u8]) -> String {
    hex::encode(id)
}

/// What the Python SDK sends for a Flask request that read DynamoDB, called another service
/// and queried PostgreSQL (trimmed, with a few fields added to cover every block).
const FLASK: &str = r#"{
  "id": "1111111111111111", "trace_id": "1-5b8efff7-98038103d269b633813fc60c",
  "name": "flask-app", "start_time": 1700000000.1234567, "end_time": 1700000000.5,
  "origin": "AWS::EC2::Instance", "fault": true,
  "http": {"request": {"method": "GET", "url": "http://example.com/home",
                        "user_agent": "curl/8", "client_ip": "10.0.0.9",
                        "x_forwarded_for": true},
           "response": {"status": 500, "content_length": 12}},
  "aws": {"account_id": "123456789012",
          "ec2": {"instance_id": "i-0abc", "availability_zone": "us-east-1a"},
          "xray": {"sdk": "X-Ray for Python", "sdk_version": "2.14.0"}},
  "service": {"version": "1.2.3"},
  "user": "alice",
  "annotations": {"count": 3, "ratio": 0.5, "ok": true, "who": "bob",
                  "big": 18446744073709551615},
  "metadata": {"default": {"n": 1.10}, "app": {"x": [1, {"y": null}]}},
  "cause": {"working_directory": "/srv", "exceptions": [
    {"id": "aaaaaaaaaaaaaaaa", "type": "ValueError", "message": "bad", "remote": false,
     "cause": "bbbbbbbbbbbbbbbb",
     "stack": [{"path": "app.py", "line": 10, "label": "inner"},
               {"path": "flask/app.py", "line": 99, "label": "dispatch"}]},
    {"id": "bbbbbbbbbbbbbbbb", "type": "KeyError", "message": "k"}]},
  "links": [{"trace_id": "1-5b8efff7-00000000000000000000000a", "id": "000000000000000b",
             "attributes": {"why": "batch", "n": 2}}],
  "subsegments": [
    {"id": "2222222222222222", "name": "handler", "start_time": 1700000000.2,
     "end_time": 1700000000.4,
     "subsegments": [
       {"id": "3333333333333333", "name": "DynamoDB", "namespace": "aws",
        "start_time": 1700000000.21, "end_time": 1700000000.22,
        "aws": {"operation": "GetItem", "region": "us-east-1", "request_id": "R1",
                "table_name": "users", "retries": 1, "bucket_name": "b"},
        "http": {"response": {"status": 200}}},
       {"id": "4444444444444444", "name": "api.example.com", "namespace": "remote",
        "start_time": 1700000000.23, "end_time": 1700000000.24, "error": true,
        "throttle": true,
        "http": {"request": {"method": "POST", "url": "https://api.example.com/v1",
                             "traced": true},
                 "response": {"status": 429}}},
       {"id": "5555555555555555", "name": "mydb@db.local", "namespace": "remote",
        "start_time": 1700000000.25, "end_time": 1700000000.26,
        "sql": {"url": "postgresql://db.local:5432/mydb", "database_type": "PostgreSQL",
                "database_version": "16.1", "user": "app",
                "sanitized_query": "SELECT 1"}}]}]
}"#;

#[test]
fn a_flask_request_becomes_a_span_per_node_sharing_one_resource() {
    let c = conv(FLASK);
    assert!(c.left_out.is_empty(), "{}", c.left_out);
    let ids: Vec<String> = c.spans.iter().map(|r| r.span_id_hex()).collect();
    assert_eq!(
        ids,
        [
            "1111111111111111",
            "2222222222222222",
            "3333333333333333",
            "4444444444444444",
            "5555555555555555"
        ],
        "depth first, in document order"
    );
    let parents: Vec<Option<String>> = c.spans.iter().map(|r| r.parent_id_hex()).collect();
    assert_eq!(
        parents,
        [
            None,
            Some("1111111111111111".to_owned()),
            Some("2222222222222222".to_owned()),
            Some("2222222222222222".to_owned()),
            Some("2222222222222222".to_owned()),
        ]
    );
    for r in &c.spans {
        assert_eq!(r.trace_id_hex(), "5b8efff798038103d269b633813fc60c");
        assert!(Arc::ptr_eq(&r.resource, &c.spans[0].resource));
    }
    let kinds: Vec<SpanKind> = c.spans.iter().map(SpanRecord::kind).collect();
    assert_eq!(
        kinds,
        [
            SpanKind::Server,
            SpanKind::Internal,
            SpanKind::Client,
            SpanKind::Client,
            SpanKind::Client
        ]
    );
    let names: Vec<&str> = c.spans.iter().map(|r| r.span.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "flask-app",
            "handler",
            "DynamoDB",
            "api.example.com",
            "mydb@db.local"
        ]
    );
    assert_eq!(c.head.kind, NodeKind::Segment);
    assert_eq!(c.head.xray_trace_id(), TRACE);
    assert_eq!(c.head.id_hex(), "1111111111111111");
    assert!(!c.head.in_progress);
}

#[test]
fn the_resource_names_the_service_its_platform_and_sdk() {
    let c = conv(FLASK);
    let r = &c.spans[0];
    for (key, value) in [
        ("service.name", "flask-app"),
        ("service.version", "1.2.3"),
        ("cloud.provider", "aws"),
        ("cloud.platform", "aws_ec2"),
        ("aws.xray.origin", "AWS::EC2::Instance"),
        ("cloud.account.id", "123456789012"),
        ("host.id", "i-0abc"),
        ("cloud.availability_zone", "us-east-1a"),
        ("telemetry.sdk.name", "X-Ray for Python"),
        ("telemetry.sdk.language", "python"),
        ("telemetry.sdk.version", "2.14.0"),
    ] {
        assert_eq!(resource_str(r, key), Some(value), "{key}");
    }
    let scope = r.scope.scope.clone().unwrap_or_default();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("X-Ray for Python", "2.14.0")
    );
}

#[test]
fn times_are_exact_to_the_nanosecond_from_the_text() {
    let c = conv(FLASK);
    assert_eq!(
        c.spans[0].span.start_time_unix_nano,
        1_700_000_000_123_456_700
    );
    assert_eq!(
        c.spans[0].span.end_time_unix_nano,
        1_700_000_000_500_000_000
    );
    assert_eq!(
        c.spans[2].span.start_time_unix_nano,
        1_700_000_000_210_000_000
    );
    for (text, nanos) in [
        ("1700000000.123456789", Some(1_700_000_000_123_456_789)),
        ("1700000000.1234567891", Some(1_700_000_000_123_456_789)),
        ("1.700000000123456789E9", Some(1_700_000_000_123_456_789)),
        ("17000000001234567.89e-7", Some(1_700_000_000_123_456_789)),
        ("1700000000", Some(1_700_000_000_000_000_000)),
        ("1700000000.0e0", Some(1_700_000_000_000_000_000)),
        ("1", Some(1_000_000_000)),
        ("0", Some(0)),
        ("0.000000001", Some(1)),
        ("0.0000000009", Some(0)),
        ("1e-400", Some(0)),
        ("18446744073.709551615", Some(u64::MAX)),
        ("18446744073.709551616", None),
        ("1e400", None),
        ("-1", None),
        ("1.", None),
        (".5", None),
        ("1e", None),
        ("1e+", None),
        ("\"1\"", None),
        ("null", None),
        ("", None),
    ] {
        assert_eq!(parse_nanos(text), nanos, "{text}");
    }
}

#[test]
fn http_aws_and_sql_blocks_keep_the_collectors_keys() {
    let c = conv(FLASK);
    let seg = &c.spans[0].span;
    assert_eq!(str_attr(seg, "http.method"), Some("GET"));
    assert_eq!(str_attr(seg, "http.url"), Some("http://example.com/home"));
    assert_eq!(str_attr(seg, "http.user_agent"), Some("curl/8"));
    assert_eq!(str_attr(seg, "http.client_ip"), Some("10.0.0.9"));
    assert_eq!(attr(seg, "http.status_code"), Some(&Value::IntValue(500)));
    assert_eq!(
        attr(seg, "http.response_content_length"),
        Some(&Value::IntValue(12))
    );
    assert_eq!(str_attr(seg, "aws.account_id"), Some("123456789012"));
    assert_eq!(str_attr(seg, "enduser.id"), Some("alice"));
    assert!(
        attr(seg, "aws.ec2").is_none(),
        "platform blocks are the resource's"
    );

    let dynamo = &c.spans[2].span;
    assert_eq!(str_attr(dynamo, "aws.service"), Some("DynamoDB"));
    assert_eq!(str_attr(dynamo, "aws.operation"), Some("GetItem"));
    assert_eq!(str_attr(dynamo, "aws.region"), Some("us-east-1"));
    assert_eq!(str_attr(dynamo, "aws.request_id"), Some("R1"));
    assert_eq!(str_attr(dynamo, "aws.table_name"), Some("users"));
    assert_eq!(attr(dynamo, "aws.xray.retries"), Some(&Value::IntValue(1)));
    assert_eq!(str_attr(dynamo, "aws.bucket_name"), Some("b"));

    let remote = &c.spans[3].span;
    assert_eq!(str_attr(remote, "peer.service"), Some("api.example.com"));
    assert_eq!(
        attr(remote, "aws.xray.traced"),
        Some(&Value::BoolValue(true))
    );

    let db = &c.spans[4].span;
    assert_eq!(
        str_attr(db, "db.connection_string"),
        Some("postgresql://db.local:5432")
    );
    assert_eq!(str_attr(db, "db.name"), Some("mydb"));
    assert_eq!(str_attr(db, "db.system"), Some("postgresql"));
    assert_eq!(str_attr(db, "db.user"), Some("app"));
    assert_eq!(str_attr(db, "db.statement"), Some("SELECT 1"));
    assert_eq!(str_attr(db, "aws.xray.sql.database_version"), Some("16.1"));
}

#[test]
fn a_segment_with_a_caller_has_a_remote_parent_and_nodes_are_sampled() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","parent_id":"9999999999999999",
            "name":"s","start_time":1,"end_time":2,
            "subsegments":[{{"id":"2222222222222222","name":"c","start_time":1,"end_time":2}}]}}"#
    ));
    assert_eq!(
        c.spans[0].parent_id_hex().as_deref(),
        Some("9999999999999999")
    );
    assert_eq!(
        c.spans[0].span.flags, 0x301,
        "sampled, parent known to be remote"
    );
    assert_eq!(
        c.spans[1].span.flags, 0x101,
        "sampled, parent known to be local"
    );
    assert_eq!(conv(FLASK).spans[0].span.flags, 0x101, "a root");
}

#[test]
fn a_missing_time_is_counted_and_taken_from_the_other() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","end_time":2,
            "subsegments":[{{"id":"2222222222222222","name":"c","start_time":1}}]}}"#
    ));
    assert_eq!(c.left_out.count("start_time"), 1);
    assert_eq!(c.left_out.count("end_time"), 1);
    let times: Vec<(u64, u64)> = c
        .spans
        .iter()
        .map(|r| (r.span.start_time_unix_nano, r.span.end_time_unix_nano))
        .collect();
    assert_eq!(
        times,
        [
            (2_000_000_000, 2_000_000_000),
            (1_000_000_000, 1_000_000_000)
        ]
    );
}

#[test]
fn an_account_id_written_as_a_number_is_its_digits() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":1,"end_time":2,
            "aws":{{"account_id":123456789012,"region":["x"]}}}}"#
    ));
    assert_eq!(
        str_attr(&c.spans[0].span, "aws.account_id"),
        Some("123456789012")
    );
    assert_eq!(
        resource_str(&c.spans[0], "cloud.account.id"),
        Some("123456789012")
    );
    assert_eq!(c.left_out.count("aws"), 1, "a region that is a list");
}

#[test]
fn a_client_ip_not_forwarded_is_the_peers_address() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":1,"end_time":2,
            "http":{{"request":{{"client_ip":"10.1.1.1"}}}}}}"#
    ));
    assert_eq!(str_attr(&c.spans[0].span, "net.peer.ip"), Some("10.1.1.1"));
    assert_eq!(str_attr(&c.spans[0].span, "http.client_ip"), None);
}

#[test]
fn error_fault_and_throttle_are_kept_and_a_fault_is_status_error() {
    let c = conv(FLASK);
    let seg = &c.spans[0];
    assert_eq!(seg.status_code(), StatusCode::Error);
    assert_eq!(
        attr(&seg.span, "aws.xray.fault"),
        Some(&Value::BoolValue(true))
    );
    let throttled = &c.spans[3];
    assert_eq!(
        throttled.status_code(),
        StatusCode::Unset,
        "a client error is not a fault"
    );
    assert_eq!(
        attr(&throttled.span, "aws.xray.error"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attr(&throttled.span, "aws.xray.throttle"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(attr(&throttled.span, "aws.xray.fault"), None);
}

#[test]
fn annotations_keep_their_types_and_are_listed() {
    let c = conv(FLASK);
    let seg = &c.spans[0].span;
    assert_eq!(attr(seg, "count"), Some(&Value::IntValue(3)));
    assert_eq!(attr(seg, "ratio"), Some(&Value::DoubleValue(0.5)));
    assert_eq!(attr(seg, "ok"), Some(&Value::BoolValue(true)));
    assert_eq!(str_attr(seg, "who"), Some("bob"));
    assert_eq!(
        attr(seg, "big"),
        Some(&Value::DoubleValue(18_446_744_073_709_551_615.0)),
        "beyond i64: a double"
    );
    let Some(Value::ArrayValue(list)) = attr(seg, "aws.xray.annotations") else {
        panic!("no aws.xray.annotations");
    };
    let keys: Vec<&str> = list.values.iter().filter_map(AnyValue::as_str).collect();
    assert_eq!(keys, ["big", "count", "ok", "ratio", "who"]);
}

#[test]
fn metadata_namespaces_are_json_text_as_written() {
    let c = conv(FLASK);
    let seg = &c.spans[0].span;
    assert_eq!(
        str_attr(seg, "aws.xray.metadata.default"),
        Some(r#"{"n": 1.10}"#),
        "every digit kept"
    );
    assert_eq!(
        str_attr(seg, "aws.xray.metadata.app"),
        Some(r#"{"x": [1, {"y": null}]}"#)
    );
}

#[test]
fn exceptions_are_events_with_a_stack_trace_in_the_sdks_language() {
    let c = conv(FLASK);
    let seg = &c.spans[0].span;
    assert_eq!(seg.events.len(), 2);
    let e = &seg.events[0];
    assert_eq!(e.name, "exception");
    assert_eq!(e.time_unix_nano, seg.end_time_unix_nano);
    let a = |k: &str| attribute(&e.attributes, k).and_then(|v| v.value.clone());
    assert_eq!(
        a("exception.type"),
        Some(Value::StringValue("ValueError".into()))
    );
    assert_eq!(
        a("exception.message"),
        Some(Value::StringValue("bad".into()))
    );
    assert_eq!(
        a("exception.stacktrace"),
        Some(Value::StringValue(
            "Traceback (most recent call last):\n  File \"flask/app.py\", line 99, in dispatch\n  \
             File \"app.py\", line 10, in inner\nValueError: bad\n"
                .into()
        ))
    );
    assert_eq!(
        a("aws.xray.exception.id"),
        Some(Value::StringValue("aaaaaaaaaaaaaaaa".into()))
    );
    assert_eq!(
        a("aws.xray.exception.cause"),
        Some(Value::StringValue("bbbbbbbbbbbbbbbb".into()))
    );
    assert_eq!(
        a("aws.xray.exception.remote"),
        Some(Value::BoolValue(false))
    );
    assert_eq!(
        str_attr(seg, "aws.xray.cause.working_directory"),
        Some("/srv")
    );
    let parsed = crate::otlp::to_xray::stack::parse(
        attribute(&e.attributes, "exception.stacktrace")
            .and_then(AnyValue::as_str)
            .unwrap_or_default(),
        "python",
    );
    let frames: Vec<(&str, u32, &str)> = parsed[0]
        .frames
        .iter()
        .map(|f| (f.path.as_str(), f.line, f.label.as_str()))
        .collect();
    assert_eq!(
        frames,
        [("app.py", 10, "inner"), ("flask/app.py", 99, "dispatch")],
        "what to_xray reads back"
    );
}

#[test]
fn other_languages_print_java_stack_traces() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":1,"end_time":2,
            "cause":{{"exceptions":[{{"type":"E","message":"m","stack":[
               {{"path":"A.java","line":3,"label":"a.B.c"}},{{"path":"C:\\x","label":"d"}},
               {{"label":"e"}}]}}]}}}}"#
    ));
    let e = &c.spans[0].span.events[0];
    let trace = attribute(&e.attributes, "exception.stacktrace")
        .and_then(AnyValue::as_str)
        .unwrap_or_default();
    assert_eq!(
        trace,
        "E: m\n\tat a.B.c(A.java:3)\n\tat d(C:\\x:0)\n\tat e()\n"
    );
    let parsed = crate::otlp::to_xray::stack::parse(trace, "java");
    let frames: Vec<(&str, u32, &str)> = parsed[0]
        .frames
        .iter()
        .map(|f| (f.path.as_str(), f.line, f.label.as_str()))
        .collect();
    assert_eq!(
        frames,
        [("A.java", 3, "a.B.c"), ("C:\\x", 0, "d"), ("", 0, "e")]
    );
}

#[test]
fn links_are_span_links() {
    let c = conv(FLASK);
    let links = &c.spans[0].span.links;
    assert_eq!(links.len(), 1);
    assert_eq!(
        hex_id(&links[0].trace_id),
        "5b8efff700000000000000000000000a"
    );
    assert_eq!(hex_id(&links[0].span_id), "000000000000000b");
    assert_eq!(
        attribute(&links[0].attributes, "n").and_then(|v| v.value.clone()),
        Some(Value::IntValue(2))
    );
}

#[test]
fn a_subsegment_document_takes_the_given_service_name_and_its_parent() {
    let doc = format!(
        r#"{{"type":"subsegment","id":"2222222222222222","parent_id":"1111111111111111",
            "trace_id":"{TRACE}","name":"S3","namespace":"aws","start_time":5,"end_time":6,
            "subsegments":[{{"id":"3333333333333333","name":"inner","start_time":5,
                             "end_time":5.5}}]}}"#
    );
    let settings = Settings {
        service_name: "checkout".into(),
        ..Settings::default()
    };
    let c = convert_ok(&doc, &settings);
    assert_eq!(c.head.kind, NodeKind::Subsegment);
    assert_eq!(c.head.parent_id_hex().as_deref(), Some("1111111111111111"));
    assert_eq!(resource_str(&c.spans[0], "service.name"), Some("checkout"));
    assert_eq!(
        c.spans[0].parent_id_hex().as_deref(),
        Some("1111111111111111")
    );
    assert_eq!(c.spans[0].kind(), SpanKind::Client);
    assert_eq!(
        c.spans[1].parent_id_hex().as_deref(),
        Some("2222222222222222")
    );
    assert_eq!(c.spans[1].kind(), SpanKind::Internal);
    let default = convert_ok(&doc, &Settings::default());
    assert_eq!(
        resource_str(&default.spans[0], "service.name"),
        Some(DEFAULT_SERVICE_NAME)
    );
    assert_eq!(head(doc.as_bytes()), Ok(c.head));
}

#[test]
fn an_in_progress_document_is_held_unless_asked_then_marked() {
    let doc = format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":7,
            "in_progress":true,
            "subsegments":[{{"id":"2222222222222222","name":"c","start_time":7.5,
                             "end_time":8}}]}}"#
    );
    let held = conv(&doc);
    assert!(held.head.in_progress);
    assert!(held.spans.is_empty());
    let marked = convert_ok(
        &doc,
        &Settings {
            in_progress: InProgress::Mark,
            ..Settings::default()
        },
    );
    assert_eq!(marked.spans.len(), 2);
    let s = &marked.spans[0].span;
    assert_eq!(
        attr(s, "aws.xray.inprogress"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(s.start_time_unix_nano, 7_000_000_000);
    assert_eq!(
        s.end_time_unix_nano, s.start_time_unix_nano,
        "no end: zero length"
    );
    assert_eq!(attr(&marked.spans[1].span, "aws.xray.inprogress"), None);
    assert!(marked.left_out.is_empty(), "{}", marked.left_out);
}

#[test]
fn an_in_progress_subsegment_of_a_complete_document_is_converted_marked() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":7,"end_time":9,
            "subsegments":[{{"id":"2222222222222222","name":"c","start_time":7.5,
                             "in_progress":true}}]}}"#
    ));
    assert_eq!(c.spans.len(), 2);
    assert_eq!(
        attr(&c.spans[1].span, "aws.xray.inprogress"),
        Some(&Value::BoolValue(true))
    );
}

#[test]
fn a_bad_field_is_left_out_and_counted_never_the_document() {
    let doc = format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":"soon",
            "end_time":1e400,"parent_id":"xyz","fault":"yes","namespace":"aws",
            "http":{{"request":{{"method":7}},"response":{{"status":"200"}}}},
            "sql":{{"url":"not a url","database_type":"MySQL"}},
            "annotations":{{"a":{{"x":1}},"b":[1],"c":null,"d":1}},
            "metadata":{{"m":[1],"n":{{"ok":1}}}},
            "cause":{{"exceptions":[7,{{"type":"E","stack":[1,{{"line":"x"}}]}}]}},
            "links":[{{"trace_id":"nope","id":"1"}}],
            "subsegments":[3,
              {{"id":"0000000000000000","name":"bad id","start_time":1,"end_time":2,
                "subsegments":[{{"id":"4444444444444444","name":"orphan","start_time":1,
                                 "end_time":2,"namespace":"other"}}]}}]}}"#
    );
    let c = conv(&doc);
    let counts: Vec<(&str, usize)> = c.left_out.iter().collect();
    assert_eq!(
        counts,
        [
            ("annotations", 3),
            ("cause", 1),
            ("cause.exception", 2),
            ("end_time", 1),
            ("fault", 1),
            ("http.request.method", 1),
            ("http.response.status", 1),
            ("id", 1),
            ("links", 1),
            ("metadata", 1),
            ("namespace", 1),
            ("parent_id", 1),
            ("start_time", 1),
            ("subsegments", 1),
        ],
        "{}",
        c.left_out
    );
    assert_eq!(c.left_out.total(), 17);
    assert_eq!(c.left_out.count("annotations"), 3);
    let ids: Vec<String> = c.spans.iter().map(|r| r.span_id_hex()).collect();
    assert_eq!(ids, ["1111111111111111", "4444444444444444"]);
    assert_eq!(
        c.spans[1].parent_id_hex().as_deref(),
        Some("1111111111111111"),
        "the orphan hangs from the node above the one left out"
    );
    let seg = &c.spans[0].span;
    assert_eq!(
        seg.kind,
        SpanKind::Server as i32,
        "a segment's namespace is not read"
    );
    assert_eq!(seg.start_time_unix_nano, 0);
    assert_eq!(str_attr(seg, "db.connection_string"), Some("not a url"));
    assert_eq!(str_attr(seg, "db.system"), Some("mysql"));
    assert_eq!(attr(seg, "d"), Some(&Value::IntValue(1)));
    assert_eq!(str_attr(seg, "aws.xray.metadata.n"), Some(r#"{"ok":1}"#));
    assert_eq!(seg.events.len(), 1);
    assert!(
        c.left_out
            .to_string()
            .starts_with("annotations=3, cause=1, ")
    );
}

#[test]
fn a_sql_url_with_a_query_is_kept_whole_too() {
    let c = conv(&format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":1,"end_time":2,
            "sql":{{"url":"jdbc:mysql://h:3306/db?ssl=true","connection_string":"x"}}}}"#
    ));
    let s = &c.spans[0].span;
    assert_eq!(
        str_attr(s, "db.connection_string"),
        Some("jdbc:mysql://h:3306")
    );
    assert_eq!(str_attr(s, "db.name"), Some("db"));
    assert_eq!(
        str_attr(s, "aws.xray.sql.url"),
        Some("jdbc:mysql://h:3306/db?ssl=true")
    );
    assert_eq!(str_attr(s, "aws.xray.sql.connection_string"), Some("x"));
}

#[test]
fn documents_without_usable_ids_are_refused() {
    for (doc, expected) in [
        ("[]".to_owned(), "object"),
        ("{".to_owned(), "object"),
        ("{} {}".to_owned(), "object"),
        (r#"{"id":"1111111111111111"}"#.to_owned(), "trace"),
        (
            r#"{"id":"1111111111111111","trace_id":"1-00000000-000000000000000000000000"}"#
                .to_owned(),
            "trace",
        ),
        (
            r#"{"id":"1111111111111111","trace_id":"1-5b8efff7-98038103d269b633813fc60"}"#
                .to_owned(),
            "trace",
        ),
        (format!(r#"{{"trace_id":"{TRACE}"}}"#), "id"),
        (
            format!(r#"{{"trace_id":"{TRACE}","id":"111111111111111g"}}"#),
            "id",
        ),
        (format!(r#"{{"trace_id":"{TRACE}","id":1}}"#), "id"),
    ] {
        let got = convert(doc.as_bytes(), &Settings::default());
        let ok = matches!(
            (&got, expected),
            (Err(Error::NotAnObject(_)), "object")
                | (Err(Error::TraceId), "trace")
                | (Err(Error::Id), "id")
        );
        assert!(ok, "{doc}: {got:?}");
    }
}

#[test]
fn deep_nesting_never_exhausts_the_stack() {
    let depth = 1_000;
    let mut doc = format!(
        r#"{{"id":"1111111111111111","trace_id":"{TRACE}","name":"s","start_time":1,"end_time":2"#
    );
    for i in 0..depth {
        doc.push_str(&format!(
            r#","subsegments":[{{"id":"{:016x}","name":"n","start_time":1,"end_time":2"#,
            i + 2
        ));
    }
    for _ in 0..depth {
        doc.push_str("}]");
    }
    doc.push('}');
    let c = conv(&doc);
    assert_eq!(c.spans.len(), depth + 1);
    assert_eq!(
        c.spans[depth].parent_id_hex(),
        Some(format!("{:016x}", depth))
    );
}

/// A small deterministic generator (xorshift), so the garbage is the same on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks what any conversion promises, and that to_xray and the OTLP JSON rendering take
/// every span.
fn check_any(doc: &[u8]) {
    for in_progress in [InProgress::Hold, InProgress::Mark] {
        let settings = Settings {
            in_progress,
            ..Settings::default()
        };
        let Ok(c) = convert(doc, &settings) else {
            continue;
        };
        for r in &c.spans {
            assert_eq!(r.span.trace_id.len(), 16);
            assert_eq!(r.span.span_id.len(), 8);
            assert!(r.span.parent_span_id.is_empty() || r.span.parent_span_id.len() == 8);
            let _ = crate::otlp::to_xray::to_documents(
                r,
                &crate::otlp::to_xray::ConversionSettings::default(),
            );
            let line = crate::otlp::render::otlp_json_line(r);
            assert!(
                crate::otlp::decode::parse(line.as_bytes(), crate::otlp::decode::Format::Json)
                    .is_ok(),
                "{line}"
            );
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let base = FLASK.as_bytes();
    // Every prefix of a real document.
    for end in 0..base.len() {
        check_any(&base[..end]);
    }
    // Bytes replaced with JSON's punctuation, digits or anything.
    const PICKS: &[u8] = b"{}[]\",:0123456789.eE-+ntfa\\u\x00\xff";
    for _ in 0..3_000 {
        let mut doc = base.to_vec();
        for _ in 0..(noise.next() % 4 + 1) {
            let at = (noise.next() as usize) % doc.len();
            let pick = noise.next() as usize;
            doc[at] = if pick.is_multiple_of(3) {
                pick as u8
            } else {
                PICKS[pick % PICKS.len()]
            };
        }
        check_any(&doc);
    }
    // Random bytes, and valid JSON of the wrong shapes.
    for _ in 0..500 {
        let doc: Vec<u8> = (0..noise.next() % 64).map(|_| noise.next() as u8).collect();
        check_any(&doc);
    }
    for doc in [
        "null",
        "1",
        "\"x\"",
        "{}",
        r#"{"id":null,"trace_id":null}"#,
        r#"{"id":"1111111111111111","trace_id":"1-5b8efff7-98038103d269b633813fc60c","subsegments":{"a":1}}"#,
        r#"{"id":"1111111111111111","trace_id":"1-5b8efff7-98038103d269b633813fc60c","aws":{"ec2":1,"xray":{"sdk":1,"x":[1]}},"origin":7}"#,
    ] {
        check_any(doc.as_bytes());
    }
}
