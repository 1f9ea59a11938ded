//! The store's rules: the budget is never exceeded, the oldest go first, retries keep their
//! place and their charge, each lane is settled on its own, and every identity holds after
//! every move.

use std::time::Duration;

use super::testing::*;
use super::*;
use crate::stats::Snapshot;

fn checked(stats: &Stats) -> Snapshot {
    let snap = stats.snapshot();
    assert!(snap.broken_identities().is_empty(), "{snap:#?}");
    snap
}

#[test]
fn never_exceeds_the_budget_and_drops_oldest() {
    let one = named(0).cost();
    let (b, stats) = buffer(one * 3, 50, &["xray"]);
    push(&b, (0..5).map(named));
    let snap = checked(&stats);
    assert_eq!(snap.buffered, 3);
    assert_eq!(snap.dropped(DropReason::Spillover), 2);
    assert_eq!(snap.sinks["xray"].dropped["spillover"], 2);
    assert_eq!(
        snap.inputs["udp"].dropped["spillover"], 2,
        "counted for the input too"
    );
    assert!(snap.buffered_bytes <= (one * 3) as u64);
    assert_eq!(ids(&take(&b, 0, 50)), ["2", "3", "4"]);
}

#[test]
fn in_flight_bytes_count_until_the_batch_is_dropped() {
    let one = named(0).cost();
    let (b, stats) = buffer(one * 2, 50, &["xray"]);
    push(&b, [named(0), named(1)]);
    let batch = take(&b, 0, 50);
    push(&b, [named(2)]);
    assert_eq!(
        checked(&stats).dropped(DropReason::Spillover),
        1,
        "no room while two are in flight"
    );
    drop(batch);
    push(&b, [named(3)]);
    let snap = checked(&stats);
    assert_eq!((snap.buffered, snap.in_flight), (1, 0));
    assert_eq!(
        snap.dropped(DropReason::UploadFailed),
        2,
        "an unfinished batch counts itself"
    );
}

#[test]
fn waiting_items_are_not_evicted_when_that_cannot_make_room() {
    // With the budget taken by items in flight, a bigger newcomer must not evict every
    // waiting item and then be dropped itself.
    let small = named(0).cost();
    let (b, stats) = buffer(small * 4, 2, &["xray"]);
    push(&b, [named(0), named(1)]);
    let batch = take(&b, 0, 2);
    push(&b, [named(2), named(3)]);
    push(&b, [doc(4, small * 3)]);
    let snap = checked(&stats);
    assert_eq!((snap.buffered, snap.dropped(DropReason::Spillover)), (2, 1));
    drop(batch);
}

#[test]
fn a_retried_batch_goes_back_in_order_and_stays_charged() {
    let (b, stats) = buffer(1 << 20, 2, &["xray"]);
    push(&b, (0..5).map(named));
    let first = take(&b, 0, 2);
    let second = take(&b, 0, 2);
    let held = stats.snapshot().buffered_bytes + stats.snapshot().in_flight_bytes;
    settle(second, Fate::Retry);
    settle(first, Fate::Retry);
    let snap = checked(&stats);
    assert_eq!((snap.buffered, snap.in_flight, snap.retried), (5, 0, 4));
    assert_eq!(snap.buffered_bytes, held, "bytes charged all along");
    let again = take(&b, 0, 2);
    assert_eq!(ids(&again), ["0", "1"]);
    assert_eq!(again.states()[0].attempts, 1);
    assert!(b.status(0).retry_first);
    settle(again, Fate::Sent);
    assert_eq!(checked(&stats).sent, 2);
}

#[test]
fn a_held_item_goes_back_unsent_not_retried_and_lingers_like_a_new_one() {
    let (b, stats) = buffer(1 << 20, 2, &["xray"]);
    push(&b, (0..2).map(named));
    let first = take(&b, 0, 2);
    // A failed attempt first (the item now has attempts), then held back by the sink.
    settle(first, Fate::Retry);
    let again = take(&b, 0, 2);
    let states = again.states().to_vec();
    again.finish(&[Fate::Held, Fate::Sent], &states);
    let snap = checked(&stats);
    assert_eq!((snap.buffered, snap.sent, snap.retried), (1, 1, 2));
    // Not a retry to rush out: it waits the linger (a sink holding it back would spin).
    assert!(!b.status(0).retry_first);
    let third = take(&b, 0, 2);
    assert_eq!(ids(&third), ["0"]);
    assert!(third.states()[0].held);
    settle(third, Fate::Sent);
    assert_eq!(checked(&stats).sent, 2);
}

#[test]
fn items_being_retried_are_the_first_to_spill_over() {
    let one = named(0).cost();
    let (b, stats) = buffer(one * 3, 2, &["xray"]);
    push(&b, (0..2).map(named));
    let batch = take(&b, 0, 2);
    push(&b, [named(2)]);
    settle(batch, Fate::Retry);
    push(&b, [named(3), named(4)]);
    assert_eq!(checked(&stats).dropped(DropReason::Spillover), 2);
    let left = take(&b, 0, 2);
    assert_eq!(ids(&left), ["2", "3"]);
    drop(left);
    checked(&stats);
}

#[test]
fn every_fate_is_counted_once() {
    let (b, stats) = buffer(1 << 20, 5, &["xray"]);
    push(&b, (0..5).map(named));
    let batch = take(&b, 0, 5);
    let states = batch.states().to_vec();
    batch.finish(
        &[
            Fate::Sent,
            Fate::Rejected,
            Fate::Dropped(DropReason::RetriesExhausted),
            Fate::Dropped(DropReason::UploadFailed),
            Fate::Retry,
        ],
        &states,
    );
    let snap = checked(&stats);
    assert_eq!((snap.sent, snap.rejected, snap.buffered), (1, 1, 1));
    assert_eq!(snap.dropped(DropReason::RetriesExhausted), 1);
    assert_eq!(snap.dropped(DropReason::UploadFailed), 1);
    let sink = &snap.sinks["xray"];
    assert_eq!(
        (sink.received, sink.sent, sink.rejected, sink.pending),
        (5, 1, 1, 1)
    );
}

#[test]
fn abandoning_counts_waiting_and_in_flight_items_as_shutdown() {
    let (b, stats) = buffer(1 << 20, 2, &["xray"]);
    push(&b, (0..5).map(named));
    let cut_off = take(&b, 0, 2);
    let comes_back = take(&b, 0, 2);
    assert_eq!(b.abandon(), 1);
    drop(cut_off);
    settle(comes_back, Fate::Retry);
    let snap = checked(&stats);
    assert_eq!(snap.dropped(DropReason::Shutdown), 5);
    assert_eq!((snap.buffered, snap.in_flight), (0, 0));
    assert!(b.take(0, 2).is_none());
    assert!(b.status(0).done);
}

#[test]
fn an_item_is_freed_once_every_sink_is_done_with_it() {
    let (b, stats) = buffer(1 << 20, 50, &["xray", "file"]);
    push(&b, (0..3).map(named));
    let snap = checked(&stats);
    assert_eq!((snap.received, snap.buffered), (3, 3));
    assert_eq!(
        (snap.sinks["xray"].received, snap.sinks["file"].received),
        (3, 3)
    );
    let held = b.held_bytes();
    settle(take(&b, 1, 50), Fate::Sent);
    let snap = checked(&stats);
    assert_eq!(
        (snap.sent, snap.buffered, snap.sinks["file"].sent),
        (0, 3, 3)
    );
    assert_eq!(b.held_bytes(), held, "the xray lane still holds them");
    let x = take(&b, 0, 50);
    assert_eq!(checked(&stats).in_flight, 3);
    settle(x, Fate::Sent);
    let snap = checked(&stats);
    assert_eq!((snap.sent, snap.buffered, snap.in_flight), (3, 0, 0));
    assert_eq!(b.held_bytes(), 0);
}

#[test]
fn a_dead_sink_keeps_at_most_its_share_and_the_others_lose_nothing() {
    let one = named(0).cost() + PER_EXTRA_SINK_OVERHEAD;
    // Room for ten items; the dead sink's share is five.
    let (b, stats) = buffer(one * 10, 1, &["dead", "live"]);
    for i in 0..30 {
        push(&b, [named(i)]);
        settle(take(&b, 1, 1), Fate::Sent);
    }
    let snap = checked(&stats);
    let live = &snap.sinks["live"];
    let dead = &snap.sinks["dead"];
    assert_eq!((live.received, live.sent, live.dropped.len()), (30, 30, 0));
    assert_eq!((dead.received, dead.waiting), (30, 5));
    assert_eq!(dead.dropped["sink_backlog"], 25);
    assert_eq!(snap.dropped(DropReason::Spillover), 0);
    assert!(b.held_bytes() <= (one * 5) as u64);
    // Overall: an item dropped for one sink counts as dropped, once.
    assert_eq!(
        (snap.dropped(DropReason::SinkBacklog), snap.buffered),
        (25, 5)
    );
}

#[test]
fn an_item_enters_only_the_lanes_that_take_it() {
    let (b, stats) = filtered_buffer(
        1 << 20,
        50,
        &[
            ("xray", Takes::XrayDocuments),
            ("xray-otlp", Takes::Spans),
            ("stdout", Takes::Everything),
        ],
    );
    push(&b, [named(0), named(1)]);
    push_from(&b, Input::OtlpHttp, [span(1), span(2), span(3)]);
    let snap = checked(&stats);
    let received = |sink: &str| snap.sinks[sink].received;
    assert_eq!(
        (received("xray"), received("xray-otlp"), received("stdout")),
        (2, 3, 5)
    );
    let documents = take(&b, 0, 50);
    assert_eq!(ids(&documents).len(), 2, "documents only");
    let spans = take(&b, 1, 50);
    assert!(spans.items().iter().all(|i| matches!(i, Item::Span(_))));
    settle(spans, Fate::Sent);
    // A span is done once its two lanes are; the X-Ray document lane never held it.
    settle(take(&b, 2, 50), Fate::Sent);
    let snap = checked(&stats);
    assert_eq!((snap.sent, snap.in_flight), (3, 2));
    assert_eq!(snap.sinks["xray"].sent, 0);
    // Charged for the two lanes each kind enters, not three.
    assert_eq!(
        b.cost_of(&named(9)),
        named(9).cost() + PER_EXTRA_SINK_OVERHEAD
    );
}

#[test]
fn a_dead_document_lane_never_drops_the_spans_it_does_not_take() {
    // Each lane's share holds ten documents and a span.
    let share = named(0).cost() * 10 + span(1).cost();
    let (b, stats) = filtered_buffer(
        share * 2,
        1,
        &[("xray", Takes::XrayDocuments), ("xray-otlp", Takes::Spans)],
    );
    for i in 0..30u8 {
        push(&b, [named(usize::from(i))]);
        push_from(&b, Input::OtlpHttp, [span(i + 1)]);
        settle(take(&b, 1, 1), Fate::Sent);
    }
    let snap = checked(&stats);
    assert_eq!(snap.sinks["xray-otlp"].sent, 30);
    assert_eq!(snap.sent, 30, "every span counts as sent");
    let dead = &snap.sinks["xray"];
    let dropped = dead.dropped.get("sink_backlog").copied().unwrap_or(0);
    assert!(dropped >= 10, "{snap:#?}");
    assert_eq!((dead.received, dead.waiting + dropped), (30, 30));
    assert!(snap.inputs["otlp_http"].dropped.is_empty(), "{snap:#?}");
}

#[test]
fn the_admission_mark_is_below_the_budget() {
    let one = named(0).cost();
    let (b, _) = buffer(one * 100, 10, &["xray"]);
    push(&b, (0..70).map(named));
    assert!(b.has_room_for_admission());
    push(&b, (70..80).map(named));
    assert!(!b.has_room_for_admission());
}

/// Every move, in a seeded random order over three lanes, keeps every identity (the
/// deterministic form of what the fuzz target explores).
#[test]
fn every_identity_holds_after_every_move() {
    let one = named(0).cost() + 2 * PER_EXTRA_SINK_OVERHEAD;
    let (b, stats) = buffer(one * 12, 3, &["a", "b", "c"]);
    let mut out: Vec<Batch> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut id = 0;
    for _ in 0..5000 {
        match next() % 7 {
            0 | 1 => {
                let n = (next() % 4) as usize;
                push(&b, (id..id + n).map(named));
                id += n;
            }
            2 => {
                if let Some(batch) = b.take((next() % 3) as usize, 3) {
                    out.push(batch);
                }
            }
            3 | 4 if !out.is_empty() => {
                let batch = out.swap_remove((next() as usize) % out.len());
                let fate = match next() % 5 {
                    0 => Fate::Retry,
                    1 => Fate::Rejected,
                    2 => Fate::Dropped(DropReason::RetriesExhausted),
                    _ => Fate::Sent,
                };
                settle(batch, fate);
            }
            5 => {
                let lane = (next() % 3) as usize;
                b.expire(lane, Duration::ZERO, tokio::time::Instant::now());
            }
            _ => {
                if let Some(batch) = out.pop() {
                    drop(batch);
                }
            }
        }
        let snap = checked(&stats);
        assert!(snap.buffered_bytes + snap.in_flight_bytes <= (one * 12) as u64);
        assert_eq!(snap.buffered_bytes + snap.in_flight_bytes, b.held_bytes());
    }
    b.abandon();
    out.clear();
    let snap = checked(&stats);
    assert_eq!((snap.buffered, snap.in_flight, b.held_bytes()), (0, 0, 0));
    let every_sink_sent = snap.sinks.values().all(|s| s.sent > 0);
    assert!(every_sink_sent && snap.dropped_total() > 0, "{snap:?}");
}

#[tokio::test(start_paused = true)]
async fn changed_wakes_a_waiter_for_its_lane() {
    let (b, _) = buffer(1 << 20, 2, &["a", "b"]);
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.changed(1).await })
    };
    tokio::task::yield_now().await;
    push(&b, [named(0)]);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn expire_gives_up_only_items_past_their_age_and_says_when_the_next_one_is_due() {
    let (b, stats) = buffer(1 << 20, 2, &["a"]);
    push(&b, (0..4).map(named));
    let (one, two) = (take(&b, 0, 2), take(&b, 0, 2));
    settle(one, Fate::Retry);
    let first = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(1)).await;
    settle(two, Fate::Retry);
    push(&b, [named(4)]);
    let age = Duration::from_secs(3);
    assert_eq!(b.expire(0, age, first), Some(first + age), "none due yet");
    assert_eq!(
        b.expire(0, age, first + age),
        Some(first + age + Duration::from_secs(1)),
        "the first two given up; the next two due a second later"
    );
    let snap = stats.snapshot();
    assert_eq!(snap.dropped(DropReason::RetriesExhausted), 2);
    assert_eq!(snap.buffered, 3);
    assert_eq!(
        b.expire(0, age, first + age * 2),
        None,
        "only the untried one left"
    );
    let left = take(&b, 0, 5);
    assert_eq!(ids(&left), ["4"]);
    assert_eq!(checked(&stats).dropped(DropReason::RetriesExhausted), 4);
}
