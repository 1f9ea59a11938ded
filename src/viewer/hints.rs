//! Instrumentation hints: what in a trace's documents X-Ray will drop, refuse or show wrong,
//! said where it happens, so the developer fixes the instrumentation before it costs a trace.
//!
//! In: a trace's documents as the store holds them (raw text and X-Ray segment text) and the
//! ids of those whose parent never arrived. Out: [`Hint`]s in the trace's answer
//! (`api/traces/ID`), which the page shows beside each row.
//!
//! Each rule is a pure function (unit-tested below). X-Ray's limits checked:
//! - an annotation key of other than letters, digits and `_`, or longer than 500 characters, is
//!   dropped by X-Ray;
//! - an annotation value longer than 1,000 characters is dropped (strings only: numbers and
//!   booleans are short);
//! - X-Ray indexes at most 50 annotations per trace;
//! - a document is at most 64 KiB: one past [`NEAR_SIZE_CAP`] is close to being refused;
//! - a node needs `end_time`, or `in_progress: true` while it is open;
//! - a child that starts before or ends after its parent is drawn outside it (a clock, a unit
//!   or a reused id is wrong);
//! - a document whose parent never arrived is drawn at the top, unattached.
//!
//! Trace ids are not checked against the time: X-Ray accepts random W3C ids.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

/// X-Ray's largest document.
pub const SIZE_CAP: usize = 64 * 1024;
/// Past this, a document is said to be near [`SIZE_CAP`].
pub const NEAR_SIZE_CAP: usize = 56 * 1024;
/// Longest annotation value X-Ray keeps, in characters.
pub const MAX_ANNOTATION_VALUE: usize = 1_000;
/// Annotations X-Ray indexes per trace.
pub const MAX_ANNOTATIONS_PER_TRACE: usize = 50;
/// Longest annotation key X-Ray keeps.
pub const MAX_ANNOTATION_KEY: usize = 500;
/// Hints about nodes given per trace at most: the rest are only counted, in one last hint
/// (whatever a sender puts in a trace, its answer stays small).
pub const MAX_HINTS: usize = 500;

/// One hint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hint {
    /// The node (segment or subsegment id) it is about; `None` for the whole trace.
    pub id: Option<String>,
    /// The rule's stable key (`annotation_key`, `annotation_value_too_long`,
    /// `too_many_annotations`, `near_size_cap`, `no_end_time`, `outside_parent`,
    /// `parent_missing`; `more` for the count of those not given).
    pub rule: &'static str,
    /// What is wrong and what to do, in a sentence.
    pub message: String,
}

impl Hint {
    fn on(id: &str, rule: &'static str, message: String) -> Hint {
        Hint {
            id: Some(id.to_owned()),
            rule,
            message,
        }
    }
}

/// One document of the trace, as the hints read it.
#[derive(Clone, Copy, Debug)]
pub struct DocText<'a> {
    /// The text as received (its size is what X-Ray would be sent).
    pub raw: &'a str,
    /// Its X-Ray segment text.
    pub segment: &'a str,
}

/// Whether X-Ray keeps an annotation with this key.
pub fn key_is_kept(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_ANNOTATION_KEY
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether X-Ray keeps this annotation value (a string of at most
/// [`MAX_ANNOTATION_VALUE`] characters, or anything else).
pub fn value_is_kept(value: &Value) -> bool {
    value
        .as_str()
        .is_none_or(|s| s.chars().count() <= MAX_ANNOTATION_VALUE)
}

/// The hint for a document of `bytes` bytes, if it is near X-Ray's cap.
pub fn size_hint(id: &str, bytes: usize) -> Option<Hint> {
    (bytes > NEAR_SIZE_CAP).then(|| {
        Hint::on(
            id,
            "near_size_cap",
            format!(
                "this document is {:.1} KiB of the 64 KiB X-Ray accepts: send its subsegments \
                 as documents of their own (the SDKs' streaming threshold), or record less \
                 metadata",
                bytes as f64 / 1024.0
            ),
        )
    })
}

/// The hint for a node with neither `end_time` nor `in_progress: true`.
pub fn end_hint(id: &str, node: &Value) -> Option<Hint> {
    let open = node.get("in_progress").and_then(Value::as_bool) == Some(true);
    (node.get("end_time").is_none() && !open).then(|| {
        Hint::on(
            id,
            "no_end_time",
            "no end_time, and not in_progress: X-Ray refuses it; end the segment or subsegment \
             before it is sent, or send it with \"in_progress\": true"
                .to_owned(),
        )
    })
}

/// The hint for a child whose time span `(start, end)` is not inside its parent's.
pub fn span_hint(id: &str, child: (f64, Option<f64>), parent: (f64, Option<f64>)) -> Option<Hint> {
    let before = parent.0 - child.0;
    let after = match (child.1, parent.1) {
        (Some(c), Some(p)) => c - p,
        _ => 0.0,
    };
    // Times are seconds to the microsecond: anything less is rounding.
    const SLACK: f64 = 0.000_001;
    let message = if before > SLACK {
        format!(
            "starts {} before its parent: a clock is off, a time is not in seconds, or the \
             parent id is wrong",
            millis(before)
        )
    } else if after > SLACK {
        format!(
            "ends {} after its parent: end the child before its parent, or check the clock \
             and units",
            millis(after)
        )
    } else {
        return None;
    };
    Some(Hint::on(id, "outside_parent", message))
}

/// The hint for a document whose parent `parent_id` is not in the trace.
pub fn parent_hint(id: &str, parent_id: &str) -> Hint {
    Hint::on(
        id,
        "parent_missing",
        format!(
            "its parent {parent_id} never arrived: the parent is still open (not streamed as \
             in_progress), was sent elsewhere, or was refused"
        ),
    )
}

/// A node's annotation hints, and how many annotations it has.
pub fn annotation_hints(id: &str, node: &Value, out: &mut impl Extend<Hint>) -> usize {
    let Some(annotations) = node.get("annotations").and_then(Value::as_object) else {
        return 0;
    };
    for (key, value) in annotations {
        if !key_is_kept(key) {
            let message = if key.len() > MAX_ANNOTATION_KEY {
                format!(
                    "an annotation key is {} characters, over the 500 X-Ray keeps: X-Ray drops \
                     it",
                    key.len()
                )
            } else {
                format!(
                    "annotation key {key:?} has characters other than letters, digits and _: \
                     X-Ray drops it"
                )
            };
            out.extend([Hint::on(id, "annotation_key", message)]);
        }
        if !value_is_kept(value) {
            let chars = value.as_str().map_or(0, |s| s.chars().count());
            out.extend([Hint::on(
                id,
                "annotation_value_too_long",
                format!(
                    "annotation {key:?} is {chars} characters, over the 1,000 X-Ray keeps: \
                     put long values in metadata"
                ),
            )]);
        }
    }
    annotations.len()
}

/// Hints as they are found: the first [`MAX_HINTS`] kept, the rest counted.
#[derive(Debug, Default)]
struct Collected {
    hints: Vec<Hint>,
    more: usize,
}

impl Extend<Hint> for Collected {
    fn extend<I: IntoIterator<Item = Hint>>(&mut self, iter: I) {
        for hint in iter {
            if self.hints.len() < MAX_HINTS {
                self.hints.push(hint);
            } else {
                self.more += 1;
            }
        }
    }
}

/// Every hint for a trace: its documents in arrival order, and the ids of those whose parent
/// is not in the trace.
pub fn of_trace(docs: &[DocText<'_>], orphans: &[String]) -> Vec<Hint> {
    let parsed: Vec<(usize, Value)> = docs
        .iter()
        .filter_map(|d| Some((d.raw.len(), serde_json::from_str(d.segment).ok()?)))
        .collect();
    // Every node's time span, by id, for children in other documents.
    let mut spans: HashMap<&str, (f64, Option<f64>)> = HashMap::new();
    for (_, doc) in &parsed {
        each_node(doc, &mut |node, _| {
            if let (Some(id), Some(span)) = (node.get("id").and_then(Value::as_str), span(node)) {
                spans.insert(id, span);
            }
        });
    }
    let orphans: HashSet<&str> = orphans.iter().map(String::as_str).collect();
    let mut hints = Collected::default();
    let mut annotations = 0;
    for (bytes, doc) in &parsed {
        let Some(doc_id) = doc.get("id").and_then(Value::as_str) else {
            continue;
        };
        hints.extend(size_hint(doc_id, *bytes));
        if orphans.contains(doc_id) {
            if let Some(parent) = doc.get("parent_id").and_then(Value::as_str) {
                hints.extend([parent_hint(doc_id, parent)]);
            }
        } else if let (Some(parent), Some(child)) = (
            doc.get("parent_id")
                .and_then(Value::as_str)
                .and_then(|p| spans.get(p)),
            span(doc),
        ) {
            hints.extend(span_hint(doc_id, child, *parent));
        }
        each_node(doc, &mut |node, parent| {
            let Some(id) = node.get("id").and_then(Value::as_str) else {
                return;
            };
            hints.extend(end_hint(id, node));
            annotations += annotation_hints(id, node, &mut hints);
            if let (Some(parent), Some(child)) = (parent.and_then(span), span(node)) {
                hints.extend(span_hint(id, child, parent));
            }
        });
    }
    let Collected { mut hints, more } = hints;
    if annotations > MAX_ANNOTATIONS_PER_TRACE {
        hints.push(Hint {
            id: None,
            rule: "too_many_annotations",
            message: format!(
                "{annotations} annotations in this trace: X-Ray indexes at most 50 per trace; \
                 move the rest to metadata"
            ),
        });
    }
    if more > 0 {
        hints.push(Hint {
            id: None,
            rule: "more",
            message: format!("{more} more hints not shown"),
        });
    }
    hints
}

/// A node's `(start, end)`, if it has a start.
fn span(node: &Value) -> Option<(f64, Option<f64>)> {
    let start = node.get("start_time")?.as_f64()?;
    Some((start, node.get("end_time").and_then(Value::as_f64)))
}

/// Calls `f` with each node of `doc` and its parent node (none for the document itself),
/// depth first, without recursion.
fn each_node<'a>(doc: &'a Value, f: &mut impl FnMut(&'a Value, Option<&'a Value>)) {
    let mut work: Vec<(&Value, Option<&Value>)> = vec![(doc, None)];
    while let Some((node, parent)) = work.pop() {
        f(node, parent);
        if let Some(children) = node.get("subsegments").and_then(Value::as_array) {
            work.extend(children.iter().map(|c| (c, Some(node))));
        }
    }
}

fn millis(seconds: f64) -> String {
    format!("{:.3} ms", seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(hints: &[Hint]) -> Vec<(Option<&str>, &str)> {
        hints.iter().map(|h| (h.id.as_deref(), h.rule)).collect()
    }

    fn trace(docs: &[Value], orphans: &[&str]) -> Vec<Hint> {
        let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
        let docs: Vec<DocText<'_>> = texts
            .iter()
            .map(|t| DocText { raw: t, segment: t })
            .collect();
        let orphans: Vec<String> = orphans.iter().map(|o| (*o).to_owned()).collect();
        of_trace(&docs, &orphans)
    }

    #[test]
    fn annotation_keys_x_ray_keeps_are_letters_digits_and_underscores() {
        for kept in ["user", "user_id", "A1", "_"] {
            assert!(key_is_kept(kept), "{kept}");
        }
        for dropped in ["user-id", "user.id", "user id", "", "café", "a:b"] {
            assert!(!key_is_kept(dropped), "{dropped}");
        }
        assert!(key_is_kept(&"k".repeat(500)));
        assert!(!key_is_kept(&"k".repeat(501)), "longer than 500");
    }

    #[test]
    fn annotation_values_over_1000_characters_are_dropped() {
        assert!(
            value_is_kept(&json!("é".repeat(1000))),
            "characters, not bytes"
        );
        assert!(!value_is_kept(&json!("x".repeat(1001))));
        assert!(value_is_kept(&json!(12345)));
        assert!(value_is_kept(&json!(true)));
        let mut out = Vec::new();
        let node = json!({"annotations": {"ok": 1, "bad-key": "v", "long": "x".repeat(1001)}});
        assert_eq!(annotation_hints("a1", &node, &mut out), 3);
        let mut got = rules(&out);
        got.sort();
        assert_eq!(
            got,
            [
                (Some("a1"), "annotation_key"),
                (Some("a1"), "annotation_value_too_long")
            ]
        );
        assert!(out[0].message.contains("bad-key") || out[1].message.contains("bad-key"));
    }

    #[test]
    fn more_than_50_annotations_in_a_trace_is_one_hint_for_the_trace() {
        let annotations = |from: usize, n: usize| -> Value {
            (from..from + n)
                .map(|i| (format!("k{i}"), json!(i)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let doc = |id: &str, a: Value| {
            json!({"trace_id": "1-5f84c7a1-0123456789abcdef01234567", "id": id, "name": "app",
                   "start_time": 1.0, "end_time": 2.0, "annotations": a})
        };
        // 50 in all is within the limit; 51, over two documents, is not.
        assert!(
            trace(
                &[
                    doc("a1", annotations(0, 30)),
                    doc("a2", annotations(30, 20))
                ],
                &[]
            )
            .is_empty()
        );
        let over = trace(
            &[
                doc("a1", annotations(0, 30)),
                doc("a2", annotations(30, 21)),
            ],
            &[],
        );
        assert_eq!(rules(&over), [(None, "too_many_annotations")]);
        assert!(over[0].message.starts_with("51 annotations"));
    }

    #[test]
    fn a_document_past_56_kib_is_near_the_cap() {
        assert_eq!(size_hint("a1", NEAR_SIZE_CAP), None);
        let hint = size_hint("a1", 60 * 1024);
        assert_eq!(hint.as_ref().map(|h| h.rule), Some("near_size_cap"));
        assert!(hint.is_some_and(|h| h.message.contains("60.0 KiB of the 64 KiB")));
    }

    #[test]
    fn a_node_needs_an_end_time_or_in_progress() {
        assert!(end_hint("a1", &json!({"start_time": 1.0, "end_time": 2.0})).is_none());
        assert!(end_hint("a1", &json!({"start_time": 1.0, "in_progress": true})).is_none());
        assert!(end_hint("a1", &json!({"start_time": 1.0})).is_some());
        assert!(end_hint("a1", &json!({"start_time": 1.0, "in_progress": false})).is_some());
    }

    #[test]
    fn a_child_outside_its_parents_span_is_said_by_how_much() {
        assert!(span_hint("c", (1.1, Some(1.9)), (1.0, Some(2.0))).is_none());
        assert!(
            span_hint("c", (1.0, Some(2.0)), (1.0, Some(2.0))).is_none(),
            "edges are in"
        );
        assert!(
            span_hint("c", (1.0, None), (1.0, None)).is_none(),
            "open is not outside"
        );
        let early = span_hint("c", (0.995, Some(1.5)), (1.0, Some(2.0)));
        assert!(early.is_some_and(|h| h.message.starts_with("starts 5.000 ms before")));
        let late = span_hint("c", (1.5, Some(2.25)), (1.0, Some(2.0)));
        assert!(late.is_some_and(|h| h.message.starts_with("ends 250.000 ms after")));
    }

    #[test]
    fn a_trace_is_read_across_its_documents() {
        let t = "1-5f84c7a1-0123456789abcdef01234567";
        let root = json!({"trace_id": t, "id": "root", "name": "app", "start_time": 10.0,
        "end_time": 11.0, "subsegments": [
            {"id": "late", "name": "db", "start_time": 10.5, "end_time": 11.5},
            {"id": "open", "name": "cache", "start_time": 10.1},
        ]});
        // A streamed subsegment of the root, starting before it.
        let streamed = json!({"trace_id": t, "id": "early", "type": "subsegment",
            "parent_id": "root", "name": "s3", "start_time": 9.0, "end_time": 10.2});
        // A segment of another service whose parent never came.
        let orphan = json!({"trace_id": t, "id": "lost", "parent_id": "gone", "name": "api",
            "start_time": 10.2, "end_time": 10.3, "annotations": {"a.b": 1}});
        let hints = trace(&[root, streamed, orphan], &["lost"]);
        let mut got = rules(&hints);
        got.sort();
        assert_eq!(
            got,
            [
                (Some("early"), "outside_parent"),
                (Some("late"), "outside_parent"),
                (Some("lost"), "annotation_key"),
                (Some("lost"), "parent_missing"),
                (Some("open"), "no_end_time"),
            ]
        );
    }

    #[test]
    fn a_trace_of_many_problems_gives_at_most_max_hints() {
        let subsegments: Vec<Value> = (0..MAX_HINTS * 2)
            .map(|i| json!({"id": format!("s{i}"), "name": "x", "start_time": 1.0}))
            .collect();
        let doc = json!({"trace_id": "1-5f84c7a1-0123456789abcdef01234567", "id": "root",
            "name": "app", "start_time": 1.0, "end_time": 2.0, "subsegments": subsegments});
        let hints = trace(&[doc], &[]);
        assert_eq!(hints.len(), MAX_HINTS + 1);
        assert_eq!(hints.last().map(|h| h.rule), Some("more"));
        assert_eq!(
            hints.last().map(|h| h.message.as_str()),
            Some("500 more hints not shown")
        );
    }
}
