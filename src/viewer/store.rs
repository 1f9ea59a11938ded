//! The viewer's store: the latest traces, their documents byte for byte, within a byte budget
//! of its own (`--viewer-memory`), and the latest refused datagrams.
//!
//! In: documents from the viewer's sink ([`crate::sink::viewer`]), each with its raw text (an
//! X-Ray document as the SDK sent it, or an OpenTelemetry span's OTLP JSON) and its X-Ray
//! segment (the same text for an X-Ray document; the span's conversion for a span); refusals
//! from the UDP receiver. Out: summaries and whole traces for the viewer's routes
//! ([`super::Viewer`]), and an [`Event`] on a broadcast channel for each change (the page's live
//! stream).
//!
//! Rules (unit-tested below):
//! - a trace is kept by its X-Ray trace id; each document once: a document with the id of one
//!   held replaces it when that one is `in_progress` (the complete document replaces the open
//!   one), and is ignored when it is itself `in_progress` and the held one is complete;
//! - a document whose parent is no node of its trace is an orphan until a document holding
//!   that parent arrives (across services too: a segment whose parent is another service's
//!   subsegment);
//! - past the budget, the least recently updated traces are forgotten (counted as evicted); a
//!   single document larger than the whole budget is not kept.
//!
//! Each document is read once, when it arrives, for what the list and the tree need (its ids,
//! name, times, HTTP fields, marks); the page gets the raw text and builds the waterfall.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::stats::{Stats, ViewerSnapshot};

/// Refused datagrams remembered (the newest).
pub const REFUSALS_KEPT: usize = 50;
/// Bytes of a refused datagram kept to show.
pub const FIRST_BYTES: usize = 200;
/// What a document costs beyond its text: its facts, ids and bookkeeping.
const PER_DOCUMENT_OVERHEAD: usize = 256;
/// Events a slow live stream may fall behind by before it is told to reload.
const EVENTS_BACKLOG: usize = 256;
/// Documents kept per trace; more are not kept (counted as skipped). Keeps each update's work
/// (the trace's summary) bounded, whatever one sender does to one trace id.
pub const MAX_DOCUMENTS_PER_TRACE: usize = 10_000;

/// How a document came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// An X-Ray segment document, as the SDK sent it.
    Xray,
    /// An OpenTelemetry span (its raw text is its OTLP JSON; its segment, the conversion).
    Otlp,
}

/// One document as the store keeps it.
#[derive(Clone, Debug)]
pub struct Doc {
    /// Arrival order in the store.
    pub seq: u64,
    /// How it came in.
    pub format: Format,
    /// The text as received (X-Ray) or the span's OTLP JSON.
    pub raw: Arc<str>,
    /// The X-Ray segment text: `raw` itself for an X-Ray document.
    pub segment: Arc<str>,
    /// Unix seconds when it arrived.
    pub received_at: f64,
    /// What it costs against the budget: its text and what was read from it.
    cost: usize,
    facts: Facts,
}

/// What the store reads from a document once, when it arrives.
#[derive(Clone, Debug, Default, PartialEq)]
struct Facts {
    trace_id: String,
    id: String,
    parent_id: Option<String>,
    /// Not a segment (`"type": "subsegment"`).
    subsegment: bool,
    name: String,
    start: Option<f64>,
    end: Option<f64>,
    in_progress: bool,
    error: bool,
    fault: bool,
    throttle: bool,
    method: Option<String>,
    url: Option<String>,
    status: Option<u64>,
    /// Every node id in the document: its own and its nested subsegments'.
    nodes: Vec<String>,
    /// Every node's name but the document's own (for the list's text filter).
    names: Vec<String>,
    /// Every node's annotations, their values as text (for the list's annotation filter).
    annotations: Vec<(String, String)>,
}

impl Facts {
    /// The facts of segment text `segment`, or `None` when it is not an object with a
    /// `trace_id` and an `id`.
    fn read(segment: &str) -> Option<Facts> {
        let v: Value = serde_json::from_str(segment).ok()?;
        let trace_id = v.get("trace_id")?.as_str()?.to_owned();
        let id = v.get("id")?.as_str()?.to_owned();
        let flag = |node: &Value, k: &str| node.get(k).and_then(Value::as_bool) == Some(true);
        let mut facts = Facts {
            trace_id,
            id,
            parent_id: v
                .get("parent_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            subsegment: v.get("type").and_then(Value::as_str) == Some("subsegment"),
            name: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            start: v.get("start_time").and_then(Value::as_f64),
            end: v.get("end_time").and_then(Value::as_f64),
            in_progress: flag(&v, "in_progress"),
            error: false,
            fault: false,
            throttle: false,
            method: v
                .pointer("/http/request/method")
                .and_then(Value::as_str)
                .map(str::to_owned),
            url: v
                .pointer("/http/request/url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            status: v.pointer("/http/response/status").and_then(Value::as_u64),
            nodes: Vec::new(),
            names: Vec::new(),
            annotations: Vec::new(),
        };
        // Every node, depth first without recursion; marks anywhere in the document count.
        let mut work = vec![&v];
        while let Some(node) = work.pop() {
            if let Some(id) = node.get("id").and_then(Value::as_str) {
                facts.nodes.push(id.to_owned());
            }
            if let Some(name) = node.get("name").and_then(Value::as_str)
                && !std::ptr::eq(node, &v)
            {
                facts.names.push(name.to_owned());
            }
            if let Some(annotations) = node.get("annotations").and_then(Value::as_object) {
                facts.annotations.extend(
                    annotations
                        .iter()
                        .map(|(k, value)| (k.clone(), annotation_text(value))),
                );
            }
            facts.error |= flag(node, "error");
            facts.fault |= flag(node, "fault");
            facts.throttle |= flag(node, "throttle");
            if let Some(children) = node.get("subsegments").and_then(Value::as_array) {
                work.extend(children.iter());
            }
        }
        Some(facts)
    }

    fn is_root(&self) -> bool {
        !self.subsegment && self.parent_id.is_none()
    }

    /// Bytes these facts hold (their strings, each with its bookkeeping).
    fn cost(&self) -> usize {
        const STRING: usize = 24;
        let texts = [
            Some(&self.trace_id),
            Some(&self.id),
            self.parent_id.as_ref(),
            Some(&self.name),
            self.method.as_ref(),
            self.url.as_ref(),
        ];
        texts
            .iter()
            .flatten()
            .map(|t| t.len() + STRING)
            .sum::<usize>()
            + self
                .nodes
                .iter()
                .chain(&self.names)
                .map(|n| n.len() + STRING)
                .sum::<usize>()
            + self
                .annotations
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2 * STRING)
                .sum::<usize>()
    }
}

/// An annotation's value as the list's filter compares it: a string as is, anything else as
/// its JSON text.
fn annotation_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `text` holds `needle` (lowercase), case aside; without allocating when `text` is
/// ASCII (the list's filter runs over every name in the store, under its lock).
fn contains_folded(text: &str, needle: &str) -> bool {
    if text.is_ascii() && needle.is_ascii() {
        let (text, needle) = (text.as_bytes(), needle.as_bytes());
        needle.is_empty()
            || text
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
    } else {
        text.to_lowercase().contains(needle)
    }
}

/// What the trace list shows: every trace, or those matching all of the filter's parts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Lowercased text found (case-insensitively) in the trace id, a node's name, or the
    /// root's URL or method.
    pub text: Option<String>,
    /// Only traces with an error, fault or throttle somewhere, or a root status of 400 or more
    /// (what the page marks).
    pub errors: bool,
    /// Only traces lasting at least this many seconds.
    pub min_duration: Option<f64>,
    /// Only traces where some node has this annotation (with this value, as text, if given).
    pub annotation: Option<(String, Option<String>)>,
}

impl Filter {
    /// The filter of the list's query string: `q`, `errors=1`, `min_ms=N`,
    /// `annotation=KEY[=VALUE]`, each optional and percent-encoded; empty ones are ignored.
    pub fn parse(query: Option<&str>) -> Result<Filter, String> {
        let mut filter = Filter::default();
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
        for (key, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match &*key {
                "q" => filter.text = Some(value.to_lowercase()),
                "errors" => filter.errors = matches!(value, "1" | "true" | "on"),
                "min_ms" => match value.parse::<f64>() {
                    Ok(ms) if ms.is_finite() && ms >= 0.0 => {
                        filter.min_duration = Some(ms / 1000.0);
                    }
                    _ => {
                        return Err(format!(
                            "min_ms must be a number of milliseconds, 0 or more (got {value:?})"
                        ));
                    }
                },
                "annotation" => {
                    filter.annotation = Some(match value.split_once('=') {
                        Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                        None => (value.to_owned(), None),
                    });
                }
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Whether this filter lets every trace through.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    fn matches(&self, trace: &Trace, summary: &Summary) -> bool {
        if self.errors && !summary.has_error() {
            return false;
        }
        if let Some(min) = self.min_duration
            && summary.duration.is_none_or(|d| d < min)
        {
            return false;
        }
        if let Some((key, value)) = &self.annotation {
            let found = trace.docs.iter().any(|d| {
                d.facts
                    .annotations
                    .iter()
                    .any(|(k, v)| k == key && value.as_ref().is_none_or(|want| want == v))
            });
            if !found {
                return false;
            }
        }
        match &self.text {
            None => true,
            Some(text) => {
                let has = |s: &str| contains_folded(s, text);
                has(&summary.trace_id)
                    || summary.url.as_deref().is_some_and(has)
                    || summary.method.as_deref().is_some_and(has)
                    || trace
                        .docs
                        .iter()
                        .any(|d| has(&d.facts.name) || d.facts.names.iter().any(|n| has(n)))
            }
        }
    }
}

/// A trace's line in the list.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The X-Ray trace id.
    pub trace_id: String,
    /// The root segment's name (else the first document's).
    pub name: String,
    /// The root's HTTP method.
    pub method: Option<String>,
    /// The root's URL.
    pub url: Option<String>,
    /// The root's HTTP status.
    pub status: Option<u64>,
    /// Earliest start, Unix seconds.
    pub start: Option<f64>,
    /// Seconds: the root's, else from the earliest start to the latest end.
    pub duration: Option<f64>,
    /// Documents held.
    pub documents: usize,
    /// Some node is an error (4xx).
    pub error: bool,
    /// Some node is a fault (5xx).
    pub fault: bool,
    /// Some node was throttled (429).
    pub throttle: bool,
    /// Some document is still open.
    pub in_progress: bool,
    /// Documents whose parent is not in the trace (yet).
    pub orphans: usize,
    /// Grows with every change to the store; this trace's last.
    pub updated: u64,
}

impl Summary {
    /// Whether the page marks this trace as failed: an error, fault or throttle somewhere, or
    /// a root status of 400 or more.
    pub fn has_error(&self) -> bool {
        self.error || self.fault || self.throttle || self.status.is_some_and(|s| s >= 400)
    }
}

/// One refused datagram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refusal {
    /// Unix seconds.
    pub at: f64,
    /// The drop reason's key (`missing_header`, `too_large`, …).
    pub reason: String,
    /// What was wrong, as the log says it.
    pub message: String,
    /// Who sent it.
    pub sender: String,
    /// Its first bytes (at most [`FIRST_BYTES`]), lossy UTF-8.
    pub first_bytes: String,
}

/// A change, for live streams.
#[derive(Clone, Debug)]
pub enum Event {
    /// A trace was added or updated.
    Trace(Summary),
    /// A datagram was refused.
    Refused(Refusal),
    /// Everything was forgotten ("Clear all").
    Cleared,
}

/// The store's counters, for `/daemon/stats` and the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Traces held.
    pub traces: usize,
    /// Documents held.
    pub documents: usize,
    /// Bytes charged.
    pub bytes: usize,
    /// The budget.
    pub budget_bytes: usize,
    /// Traces forgotten to stay within the budget, since start.
    pub evicted_traces: u64,
    /// The oldest documents of a trace that alone filled the budget, forgotten, since start.
    pub evicted_documents: u64,
    /// Documents not kept: without a `trace_id` and an `id`, nested deeper than the JSON
    /// reader's 128 levels, larger than the whole budget, open after their complete one, or
    /// past [`MAX_DOCUMENTS_PER_TRACE`].
    pub skipped_documents: u64,
}

#[derive(Debug, Default)]
struct Trace {
    docs: Vec<Doc>,
    /// Where each document is in `docs`, by id and whether it is a subsegment document.
    index: HashMap<(String, bool), usize>,
    bytes: usize,
    updated: u64,
}

impl Trace {
    fn reindex(&mut self) {
        self.index = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.facts.id.clone(), d.facts.subsegment), i))
            .collect();
    }

    fn summary(&self, trace_id: &str) -> Summary {
        let root = self.docs.iter().find(|d| d.facts.is_root());
        let first = root.or(self.docs.first());
        let start = self
            .docs
            .iter()
            .filter_map(|d| d.facts.start)
            .reduce(f64::min);
        let end = self
            .docs
            .iter()
            .filter_map(|d| d.facts.end)
            .reduce(f64::max);
        let duration = match root.map(|r| (r.facts.start, r.facts.end)) {
            Some((Some(s), Some(e))) => Some(e - s),
            _ => start.zip(end).map(|(s, e)| e - s),
        };
        Summary {
            trace_id: trace_id.to_owned(),
            name: first.map(|d| d.facts.name.clone()).unwrap_or_default(),
            method: root.and_then(|r| r.facts.method.clone()),
            url: root.and_then(|r| r.facts.url.clone()),
            status: root.and_then(|r| r.facts.status),
            start,
            duration,
            documents: self.docs.len(),
            error: self.docs.iter().any(|d| d.facts.error),
            fault: self.docs.iter().any(|d| d.facts.fault),
            throttle: self.docs.iter().any(|d| d.facts.throttle),
            in_progress: self.docs.iter().any(|d| d.facts.in_progress),
            orphans: self.orphan_docs().count(),
            updated: self.updated,
        }
    }

    /// The documents whose parent is not in the trace.
    fn orphan_docs(&self) -> impl Iterator<Item = &Doc> {
        let nodes: HashSet<&str> = self
            .docs
            .iter()
            .flat_map(|d| d.facts.nodes.iter().map(String::as_str))
            .collect();
        self.docs.iter().filter(move |d| {
            d.facts
                .parent_id
                .as_deref()
                .is_some_and(|p| !nodes.contains(p))
        })
    }

    /// The ids of documents whose parent is not in the trace.
    fn orphans(&self) -> Vec<String> {
        self.orphan_docs().map(|d| d.facts.id.clone()).collect()
    }
}

/// A whole trace, for its page.
#[derive(Clone, Debug)]
pub struct TraceView {
    /// Its line in the list.
    pub summary: Summary,
    /// Its documents, in arrival order.
    pub documents: Vec<Doc>,
    /// Ids of documents whose parent is not in the trace.
    pub orphans: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<String, Trace>,
    /// Traces by their last update, oldest first (the eviction order).
    by_update: BTreeMap<u64, String>,
    seq: u64,
    bytes: usize,
    documents: usize,
    evicted: u64,
    evicted_documents: u64,
    skipped: u64,
    refusals: VecDeque<Refusal>,
}

/// The viewer's store (see the module docs).
#[derive(Debug)]
pub struct Store {
    budget: usize,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    stats: Arc<Stats>,
}

impl Store {
    /// An empty store of at most `budget` bytes, reporting its counters to `stats`.
    pub fn new(budget: usize, stats: Arc<Stats>) -> Self {
        let store = Store {
            budget,
            inner: Mutex::default(),
            events: broadcast::channel(EVENTS_BACKLOG).0,
            stats,
        };
        store.report(&store.lock());
        store
    }

    /// Tells the daemon's stats what the store holds.
    fn report(&self, inner: &Inner) {
        let counts = self.counts(inner);
        self.stats.set_viewer(ViewerSnapshot {
            traces: counts.traces as u64,
            documents: counts.documents as u64,
            bytes: counts.bytes as u64,
            budget_bytes: counts.budget_bytes as u64,
            evicted_traces: counts.evicted_traces,
            evicted_documents: counts.evicted_documents,
            skipped_documents: counts.skipped_documents,
        });
    }

    fn counts(&self, inner: &Inner) -> StoreStats {
        StoreStats {
            traces: inner.traces.len(),
            documents: inner.documents,
            bytes: inner.bytes,
            budget_bytes: self.budget,
            evicted_traces: inner.evicted,
            evicted_documents: inner.evicted_documents,
            skipped_documents: inner.skipped,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Live changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Keeps one document: `raw` as received, `segment` its X-Ray form (the same text for an
    /// X-Ray document). Returns the trace id, or `None` when it was not kept (not a segment
    /// with ids, larger than the budget, or open after its complete document).
    pub fn add(&self, format: Format, raw: Arc<str>, segment: Arc<str>) -> Option<String> {
        let facts = Facts::read(&segment);
        let mut inner = self.lock();
        let skip = |inner: &mut Inner| {
            inner.skipped += 1;
            self.report(inner);
            None
        };
        let Some(facts) = facts else {
            return skip(&mut inner);
        };
        let cost = cost_of(format, &raw, &segment) + facts.cost();
        if cost > self.budget {
            return skip(&mut inner);
        }
        let trace_id = facts.trace_id.clone();
        let key = (facts.id.clone(), facts.subsegment);
        // One document per id: the complete one replaces the open one, not the other way.
        let same = inner
            .traces
            .get(&trace_id)
            .and_then(|t| t.index.get(&key).map(|&i| (i, t.docs[i].facts.in_progress)));
        match same {
            Some((_, false)) if facts.in_progress => return skip(&mut inner),
            None if inner
                .traces
                .get(&trace_id)
                .is_some_and(|t| t.docs.len() >= MAX_DOCUMENTS_PER_TRACE) =>
            {
                return skip(&mut inner);
            }
            _ => {}
        }
        inner.seq += 1;
        let seq = inner.seq;
        let doc = Doc {
            seq,
            format,
            raw,
            segment,
            received_at: now_unix(),
            cost,
            facts,
        };
        let Inner {
            traces,
            by_update,
            bytes,
            documents,
            ..
        } = &mut *inner;
        let trace = traces.entry(trace_id.clone()).or_default();
        match same {
            Some((i, _)) => {
                let old = std::mem::replace(&mut trace.docs[i], doc);
                trace.bytes -= old.cost;
                *bytes -= old.cost;
            }
            None => {
                trace.index.insert(key, trace.docs.len());
                trace.docs.push(doc);
                *documents += 1;
            }
        }
        trace.bytes += cost;
        *bytes += cost;
        if trace.updated != 0 {
            by_update.remove(&trace.updated);
        }
        trace.updated = seq;
        by_update.insert(seq, trace_id.clone());
        self.evict(&mut inner, &trace_id);
        // The summary is for live streams: none open, none made.
        let summary = (self.events.receiver_count() > 0)
            .then(|| inner.traces.get(&trace_id).map(|t| t.summary(&trace_id)))
            .flatten();
        self.report(&inner);
        // Sent under the lock, so a live stream sees changes in the store's order (never a
        // trace after the clear that forgot it).
        if let Some(summary) = summary {
            let _ = self.events.send(Event::Trace(summary));
        }
        drop(inner);
        Some(trace_id)
    }

    /// Forgets the least recently updated traces until the store is within its budget, never
    /// `keep` (the one just updated); if that one alone is over it, its oldest documents.
    fn evict(&self, inner: &mut Inner, keep: &str) {
        while inner.bytes > self.budget {
            let Some((&updated, id)) = inner.by_update.iter().find(|(_, id)| id.as_str() != keep)
            else {
                break;
            };
            let id = id.clone();
            inner.by_update.remove(&updated);
            if let Some(trace) = inner.traces.remove(&id) {
                inner.bytes -= trace.bytes;
                inner.documents -= trace.docs.len();
                inner.evicted += 1;
            }
        }
        if inner.bytes <= self.budget {
            return;
        }
        let Inner {
            traces,
            bytes,
            documents,
            evicted_documents,
            ..
        } = inner;
        let Some(trace) = traces.get_mut(keep) else {
            return;
        };
        // The documents in arrival order, the newest (just added) kept.
        trace.docs.sort_by_key(|d| d.seq);
        let over = *bytes - self.budget;
        let mut freed = 0;
        let mut gone = 0;
        while freed < over && gone + 1 < trace.docs.len() {
            freed += trace.docs[gone].cost;
            gone += 1;
        }
        trace.docs.drain(..gone);
        trace.bytes -= freed;
        *bytes -= freed;
        *documents -= gone;
        *evicted_documents += gone as u64;
        trace.reindex();
    }

    /// Remembers a refused datagram (the newest [`REFUSALS_KEPT`]).
    pub fn refused(&self, reason: &str, message: String, sender: String, bytes: &[u8]) {
        let refusal = Refusal {
            at: now_unix(),
            reason: reason.to_owned(),
            message,
            sender,
            first_bytes: String::from_utf8_lossy(&bytes[..bytes.len().min(FIRST_BYTES)])
                .into_owned(),
        };
        let mut inner = self.lock();
        if inner.refusals.len() >= REFUSALS_KEPT {
            inner.refusals.pop_back();
        }
        inner.refusals.push_front(refusal.clone());
        let _ = self.events.send(Event::Refused(refusal));
        drop(inner);
    }

    /// Every trace's summary, the most recently updated first.
    pub fn summaries(&self) -> Vec<Summary> {
        self.summaries_matching(&Filter::default())
    }

    /// The summaries of the traces `filter` lets through, the most recently updated first.
    pub fn summaries_matching(&self, filter: &Filter) -> Vec<Summary> {
        let inner = self.lock();
        inner
            .by_update
            .values()
            .rev()
            .filter_map(|id| {
                let trace = inner.traces.get(id)?;
                let summary = trace.summary(id);
                filter.matches(trace, &summary).then_some(summary)
            })
            .collect()
    }

    /// Forgets every trace and refusal (the page's "Clear all"); returns how many traces there
    /// were. Live streams are told to reload.
    pub fn clear(&self) -> usize {
        let mut inner = self.lock();
        let cleared = inner.traces.len();
        inner.traces.clear();
        inner.by_update.clear();
        inner.refusals.clear();
        inner.bytes = 0;
        inner.documents = 0;
        self.report(&inner);
        let _ = self.events.send(Event::Cleared);
        drop(inner);
        cleared
    }

    /// One trace, if held.
    pub fn trace(&self, trace_id: &str) -> Option<TraceView> {
        let inner = self.lock();
        let trace = inner.traces.get(trace_id)?;
        Some(TraceView {
            summary: trace.summary(trace_id),
            documents: trace.docs.clone(),
            orphans: trace.orphans(),
        })
    }

    /// The latest refusals, newest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.lock().refusals.iter().cloned().collect()
    }

    /// The counters.
    pub fn stats(&self) -> StoreStats {
        self.counts(&self.lock())
    }
}

/// What a document costs against the budget: its text (both texts of a span) and overhead.
fn cost_of(format: Format, raw: &str, segment: &str) -> usize {
    let text = match format {
        Format::Xray => raw.len(),
        Format::Otlp => raw.len() + segment.len(),
    };
    text + PER_DOCUMENT_OVERHEAD
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "1-5f84c7a1-0123456789abcdef01234567";

    fn segment(trace: &str, id: &str, extra: &str) -> Arc<str> {
        Arc::from(format!(
            r#"{{"trace_id":"{trace}","id":"{id}","name":"app","start_time":1.0{extra}}}"#
        ))
    }

    fn add(store: &Store, text: &Arc<str>) -> Option<String> {
        store.add(Format::Xray, Arc::clone(text), Arc::clone(text))
    }

    #[test]
    fn documents_without_ids_or_nested_too_deep_are_counted_as_skipped() {
        let store = Store::new(1 << 20, Arc::new(Stats::new()));
        let deep = "[".repeat(200) + &"]".repeat(200);
        let nested = segment(
            TRACE,
            "00000000000000a1",
            &format!(r#","metadata":{{"x":{deep}}}"#),
        );
        let no_id: Arc<str> = Arc::from(r#"{"trace_id":"1-5f84c7a1-0123456789abcdef01234567"}"#);
        assert_eq!(add(&store, &nested), None);
        assert_eq!(add(&store, &no_id), None);
        let stats = store.stats();
        assert_eq!((stats.documents, stats.skipped_documents), (0, 2));
    }

    #[test]
    fn the_text_filter_ignores_case_in_any_script() {
        assert!(contains_folded("Checkout-DB", "kout-d"));
        assert!(contains_folded("anything", ""));
        assert!(!contains_folded("db", "dbx"));
        assert!(contains_folded("Ödeme SERVİSİ", "ödeme"));
        assert!(!contains_folded("Ödeme", "odeme"));
    }

    #[test]
    fn the_least_recently_updated_trace_goes_when_the_budget_is_passed() {
        let doc = |trace: &str| segment(trace, "00000000000000a1", r#","end_time":2.0"#);
        // What one such document costs, measured on a store of its own.
        let probe = Store::new(1 << 20, Arc::new(Stats::new()));
        add(&probe, &doc(TRACE));
        let one = probe.stats().bytes;
        assert!(one > doc(TRACE).len() + PER_DOCUMENT_OVERHEAD);
        let store = Store::new(one * 2, Arc::new(Stats::new()));
        let (a, b, c) = (
            TRACE.replace("0123", "aaaa"),
            TRACE.replace("0123", "bbbb"),
            TRACE.replace("0123", "cccc"),
        );
        assert!(add(&store, &doc(&a)).is_some());
        assert!(add(&store, &doc(&b)).is_some());
        // `a` is updated again (a second document): now `b` is the least recently updated.
        let again = segment(&a, "00000000000000a2", r#","end_time":2.0"#);
        assert!(add(&store, &again).is_some());
        assert!(add(&store, &doc(&c)).is_some());
        let held: Vec<String> = store.summaries().into_iter().map(|s| s.trace_id).collect();
        assert_eq!(held, std::slice::from_ref(&c), "{held:?}");
        let stats = store.stats();
        assert!(stats.bytes <= stats.budget_bytes, "{stats:?}");
        assert_eq!((stats.evicted_traces, stats.traces), (2, 1));
        // Larger than the whole budget: not kept, nothing else lost.
        let huge = segment(
            TRACE,
            "00000000000000ff",
            &format!(r#","x":"{}""#, "y".repeat(one * 3)),
        );
        assert_eq!(add(&store, &huge), None);
        assert_eq!(store.stats().traces, 1);
    }

    #[test]
    fn a_trace_that_alone_fills_the_budget_loses_its_oldest_documents() {
        let doc = |n: u64| segment(TRACE, &format!("{n:016x}"), r#","end_time":2.0"#);
        let probe = Store::new(1 << 20, Arc::new(Stats::new()));
        add(&probe, &doc(1));
        let one = probe.stats().bytes;
        let store = Store::new(one * 3, Arc::new(Stats::new()));
        for n in 1..=10 {
            assert!(add(&store, &doc(n)).is_some());
        }
        let stats = store.stats();
        assert!(stats.bytes <= stats.budget_bytes, "{stats:?}");
        assert_eq!((stats.documents, stats.evicted_documents), (3, 7));
        let kept: Vec<u64> = store
            .trace(TRACE)
            .map(|t| t.documents.iter().map(|d| d.seq).collect())
            .unwrap_or_default();
        assert_eq!(kept, [8, 9, 10], "the newest kept");
        // Replacing one still finds it (the index follows the trim).
        let open = segment(TRACE, &format!("{:016x}", 11), r#","in_progress":true"#);
        let done = segment(TRACE, &format!("{:016x}", 11), r#","end_time":3.0"#);
        add(&store, &open);
        add(&store, &done);
        let docs = store.trace(TRACE).map(|t| t.documents).unwrap_or_default();
        assert_eq!(
            docs.iter()
                .filter(|d| d.raw.contains("000000000000000b"))
                .count(),
            1
        );
    }

    #[test]
    fn at_most_max_documents_per_trace() {
        let store = Store::new(64 << 20, Arc::new(Stats::new()));
        for n in 0..MAX_DOCUMENTS_PER_TRACE as u64 + 5 {
            add(
                &store,
                &segment(TRACE, &format!("{n:016x}"), r#","end_time":2.0"#),
            );
        }
        let stats = store.stats();
        assert_eq!(
            (stats.documents, stats.skipped_documents),
            (MAX_DOCUMENTS_PER_TRACE, 5)
        );
    }

    #[test]
    fn the_complete_document_replaces_the_open_one_and_not_the_other_way() {
        let store = Store::new(1 << 20, Arc::new(Stats::new()));
        let open = segment(TRACE, "00000000000000a1", r#","in_progress":true"#);
        let complete = segment(TRACE, "00000000000000a1", r#","end_time":3.0"#);
        add(&store, &open);
        assert!(store.summaries()[0].in_progress);
        add(&store, &complete);
        let view = store.trace(TRACE).map(|t| (t.summary, t.documents));
        let Some((summary, docs)) = view else {
            panic!("trace kept")
        };
        assert_eq!(docs.len(), 1);
        assert_eq!(&*docs[0].raw, &*complete);
        assert!(!summary.in_progress);
        assert_eq!(summary.duration, Some(2.0));
        // An open copy arriving late does not undo it.
        assert_eq!(add(&store, &open), None);
        assert_eq!(store.trace(TRACE).map(|t| t.documents.len()), Some(1));
    }

    #[test]
    fn an_orphan_is_attached_when_its_parent_arrives_even_nested_in_another_document() {
        let store = Store::new(1 << 20, Arc::new(Stats::new()));
        let streamed = Arc::<str>::from(format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"00000000000000c1","parent_id":"00000000000000b1","name":"query","start_time":1.1,"end_time":1.2}}"#
        ));
        add(&store, &streamed);
        assert_eq!(
            store.trace(TRACE).map(|t| t.orphans),
            Some(vec!["00000000000000c1".to_owned()])
        );
        assert_eq!(store.summaries()[0].orphans, 1);
        // Its parent is a subsegment nested inside the segment that comes later.
        let root = Arc::<str>::from(format!(
            r#"{{"trace_id":"{TRACE}","id":"00000000000000a1","name":"app","start_time":1,"end_time":2,"fault":true,"http":{{"request":{{"method":"GET","url":"http://localhost/x"}},"response":{{"status":500}}}},"subsegments":[{{"id":"00000000000000b1","name":"db","start_time":1.05,"end_time":1.5}}]}}"#
        ));
        add(&store, &root);
        let summary = &store.summaries()[0];
        assert_eq!(store.trace(TRACE).map(|t| t.orphans), Some(vec![]));
        assert_eq!(
            (
                summary.orphans,
                summary.name.as_str(),
                summary.status,
                summary.fault
            ),
            (0, "app", Some(500), true)
        );
        assert_eq!(summary.method.as_deref(), Some("GET"));
    }

    #[test]
    fn refusals_keep_the_newest_and_their_first_bytes() {
        let store = Store::new(1 << 20, Arc::new(Stats::new()));
        for n in 0..REFUSALS_KEPT + 5 {
            let bytes = format!("{n} {}", "x".repeat(FIRST_BYTES * 2));
            store.refused(
                "missing_header",
                "no header".into(),
                "127.0.0.1:1".into(),
                bytes.as_bytes(),
            );
        }
        let kept = store.refusals();
        assert_eq!(kept.len(), REFUSALS_KEPT);
        assert!(
            kept[0]
                .first_bytes
                .starts_with(&format!("{} ", REFUSALS_KEPT + 4))
        );
        assert_eq!(kept[0].first_bytes.len(), FIRST_BYTES);
    }

    #[test]
    fn changes_are_announced_to_live_streams() {
        let store = Store::new(1 << 20, Arc::new(Stats::new()));
        let mut live = store.subscribe();
        add(
            &store,
            &segment(TRACE, "00000000000000a1", r#","end_time":2.0"#),
        );
        match live.try_recv() {
            Ok(Event::Trace(s)) => assert_eq!(s.trace_id, TRACE),
            other => panic!("{other:?}"),
        }
    }
}
