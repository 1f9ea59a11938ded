//! Helpers for the tests of the buffer and of the stages that take batches from it.

use std::sync::Arc;

use super::{Batch, Buffer, DocState, Fate, FullPolicy, Intake, LaneSettings, Settled};
use crate::document::Document;
use crate::item::{Input, Item};
use crate::stats::Stats;

/// A document of about `n` bytes whose `id` is `id`.
pub(crate) fn doc(id: usize, n: usize) -> Item {
    let head = format!(r#"{{"id":"{id}","pad":""#);
    let pad = n.saturating_sub(head.len() + 2);
    Item::XrayDocument(Document::unchecked(format!(
        "{head}{}\"}}",
        "x".repeat(pad)
    )))
}

pub(crate) fn named(id: usize) -> Item {
    doc(id, 100)
}

pub(crate) fn buffer(
    budget: usize,
    batch_size: usize,
    sinks: &[&str],
) -> (Arc<Buffer>, Arc<Stats>) {
    let lanes: Vec<_> = sinks
        .iter()
        .map(|name| (*name, super::Takes::Everything))
        .collect();
    filtered_buffer(budget, batch_size, &lanes)
}

/// A buffer whose lanes take what they say.
pub(crate) fn filtered_buffer(
    budget: usize,
    batch_size: usize,
    sinks: &[(&str, super::Takes)],
) -> (Arc<Buffer>, Arc<Stats>) {
    let stats = Arc::new(Stats::new());
    let lanes = sinks
        .iter()
        .map(|(name, takes)| LaneSettings {
            name: (*name).to_owned(),
            batch_size,
            takes: *takes,
        })
        .collect();
    (
        Buffer::new(budget, lanes, FullPolicy::DropOldest, Arc::clone(&stats)),
        stats,
    )
}

/// An OpenTelemetry span item whose X-Ray document's `id` is `span{id}`.
pub(crate) fn span(id: u8) -> Item {
    let record = crate::otlp::span::SpanRecord::new(
        Arc::default(),
        Arc::default(),
        crate::otlp::proto::Span {
            trace_id: vec![1; 16],
            span_id: vec![id.max(1); 8],
            name: "s".into(),
            ..Default::default()
        },
    );
    let document = Document::unchecked(format!(r#"{{"id":"span{id}"}}"#));
    Item::Span(Arc::new(crate::item::SpanItem::new(
        record,
        document,
        Input::OtlpHttp,
    )))
}

pub(crate) fn push(b: &Buffer, items: impl IntoIterator<Item = Item>) {
    push_from(b, Input::Udp, items);
}

pub(crate) fn push_from(b: &Buffer, input: Input, items: impl IntoIterator<Item = Item>) {
    let mut intake = Intake::new(input, 8);
    for item in items {
        intake.received(item.cost());
        intake.accepted(item);
    }
    b.admit(&mut intake);
}

pub(crate) fn take(b: &Arc<Buffer>, lane: usize, max: usize) -> Batch {
    match b.take(lane, max) {
        Some(batch) => batch,
        None => panic!("no batch"),
    }
}

pub(crate) fn ids(batch: &Batch) -> Vec<String> {
    batch
        .items()
        .iter()
        .filter_map(Item::as_document)
        .map(|d| d.ids().id.as_deref().unwrap_or("-").to_owned())
        .collect()
}

pub(crate) fn settle(batch: Batch, fate: Fate) -> Settled {
    let fates = vec![fate; batch.len()];
    let states: Vec<DocState> = batch
        .states()
        .iter()
        .map(|s| DocState {
            attempts: s.attempts + 1,
            // As the upload stage does: the first failed attempt starts the item's age.
            first_failure: s.first_failure.or(Some(tokio::time::Instant::now())),
            held: false,
        })
        .collect();
    batch.finish(&fates, &states)
}
