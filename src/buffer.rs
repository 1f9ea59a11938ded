//! The one memory-bounded store of items between the inputs and the sinks, and the memory rule.
//!
//! In: [`Intake`]s from the inputs (the UDP receiver pushes everything it read in one wake-up at
//! once; a push never waits), and settled [`Batch`]es from the upload stage. Out: [`Batch`]es
//! taken by each sink's batcher ([`Buffer::take`]).
//!
//! **Lanes.** Each sink has a lane of its own: the items it still has to send, in arrival
//! order, and the ones in its calls under way. An item pushed once goes into every lane that
//! takes it (the bytes are shared, not copied) and is freed once every one of those sinks has
//! sent, refused or dropped it. So a slow or dead sink never holds back another: each lane is
//! cut into batches and paced by its own batcher and upload workers.
//!
//! What a lane takes ([`Takes`]) is everything, except for the two lanes X-Ray gets with
//! `--otlp-to-xray otlp`: one takes the X-Ray documents (`PutTraceSegments`), the other the
//! spans (X-Ray's OTLP endpoint). An item never enters a lane that does not take it, rather
//! than being settled there as "sent" without a call: a lane that skipped an item would still
//! hold it until the lane's next batch, so while that sink is down (backing off, or over its
//! share of the budget) the skipped item would wait there, age, and could be dropped
//! (`sink_backlog`, `spillover`) although the other lane had delivered it; and its `sent`
//! count would include items it never sent. Filtering on the way in keeps every count true.
//!
//! **The memory rule** (also in the README):
//! - One budget (`-m`) covers every item held, waiting or in flight, in any lane, charged once
//!   per item ([`Item::cost`], plus a lane entry's bookkeeping per extra lane it enters).
//! - When a push does not fit, the [`FullPolicy`] decides; the default drops the oldest waiting
//!   items of any kind, across all lanes, until it fits (`spillover`, counted per sink and
//!   over all) — unless the items in flight leave no room, when the newcomer is dropped
//!   instead. Fresh traces are worth more than stale ones. (With several sinks the lane caps
//!   below usually act first: an item enters every lane that takes it, so the lane holding the
//!   oldest items reaches its share before the union reaches the budget.)
//! - With more than one sink, each lane's backlog (waiting and in flight) is capped at
//!   [`SINK_SHARE_PERCENT`] of the budget; past it, that lane drops its own oldest waiting item
//!   (`sink_backlog`, counted for that sink), so a sink that is down cannot take the whole
//!   budget from the others.
//! - Inputs that can push back (OTLP, later) stop admitting at [`ADMISSION_HIGH_WATER_PERCENT`]
//!   of the budget, so UDP, which cannot be told to wait, always has headroom
//!   ([`Buffer::has_room_for_admission`]).
//!
//! **Retries.** A batch whose call failed puts the items worth another attempt back into its
//! lane, in arrival order, still charged: a retry never needs room, and when the endpoint stays
//! down the oldest (the ones being retried) are the first to spill over. When to cut batches,
//! how long to wait after a failure and when to give up are decided elsewhere ([`crate::batcher`],
//! [`crate::upload::retry`]); this module only keeps items and books.
//!
//! **Accounting.** Every move happens under the buffer's lock and, inside it, under the books'
//! lock ([`Stats::books`]), so a snapshot sees every identity hold. A [`Batch`] dropped without
//! [`Batch::finish`] (an upload cut off at the shutdown deadline) counts its items as dropped.
//!
//! Cost: one short lock per intake and per batch taken or settled. With one sink (the usual
//! case) no per-item table is kept: the lane entry is the item.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::document::DocumentKind;
use crate::item::{Input, Item};
use crate::outcome::DropReason;
use crate::stats::{Books, Stats};

/// What to drop when a new item does not fit the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop the oldest waiting items until the new one fits.
    #[default]
    DropOldest,
    /// Drop the new item.
    DropNewest,
}

/// With more than one sink, the share of the budget (in percent) one lane's backlog may hold.
pub const SINK_SHARE_PERCENT: usize = 50;

/// The share of the budget (in percent) above which inputs that can push back stop admitting.
pub const ADMISSION_HIGH_WATER_PERCENT: usize = 75;

/// Budget bytes charged per item for each sink beyond the first: its lane entry (an item
/// handle, a sequence number and a retry state) twice over, as a growing queue holds two
/// copies while it moves, plus its share of the per-item table.
pub const PER_EXTRA_SINK_OVERHEAD: usize = 192;

/// Queue slots kept when a lane empties; a larger queue left by a backlog is shrunk to this.
const SHRINK_ABOVE: usize = 4096;

/// What the upload stage remembers about an item across attempts in one lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DocState {
    /// Attempts made so far (each one failed, or the item would not be back).
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: Option<Instant>,
    /// The sink held it back last time ([`Fate::Held`]): it waits its lane's linger like a new
    /// item, not as a retry would.
    pub held: bool,
}

/// What became of one item of a finished batch, in its lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered.
    Sent,
    /// Refused for good by the destination.
    Rejected,
    /// Given up, for this reason.
    Dropped(DropReason),
    /// Back into the lane for another attempt.
    Retry,
    /// Back into the lane unsent, held by the sink for a later batch (an OTLP sink waiting for
    /// a streamed subsegment's segment, or for an in-progress document's complete one): no
    /// attempt was made, so none is counted, and it is not `retried`.
    Held,
}

/// A sink's lane as the buffer needs to know it.
#[derive(Clone, Debug)]
pub struct LaneSettings {
    /// The sink's name in stats (`xray`, `stdout`, `file:PATH`).
    pub name: String,
    /// Items per batch; a lane with this many waiting wakes its batcher at once.
    pub batch_size: usize,
    /// Which items enter the lane.
    pub takes: Takes,
}

/// Which items a lane takes (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Takes {
    /// Every item: every sink but the two X-Ray lanes of `--otlp-to-xray otlp`.
    #[default]
    Everything,
    /// X-Ray documents only ([`Item::XrayDocument`], the distros' `T1S`… bodies included):
    /// `PutTraceSegments` while spans go to X-Ray's OTLP endpoint.
    XrayDocuments,
    /// OpenTelemetry spans only ([`Item::Span`]): X-Ray's OTLP endpoint.
    Spans,
}

impl Takes {
    /// True when a lane with this rule takes `item`.
    pub fn takes(self, item: &Item) -> bool {
        self.kinds()[kind_index(item)]
    }

    /// Whether it takes X-Ray documents, and whether it takes spans (see [`kind_index`]).
    fn kinds(self) -> [bool; 2] {
        match self {
            Takes::Everything => [true, true],
            Takes::XrayDocuments => [true, false],
            Takes::Spans => [false, true],
        }
    }
}

/// An item's kind as an index into [`Takes::kinds`].
fn kind_index(item: &Item) -> usize {
    match item {
        Item::XrayDocument(_) => 0,
        Item::Span(_) => 1,
    }
}

/// What one input read in one go, counted and parsed; [`Buffer::admit`] books it all at once.
#[derive(Debug)]
pub struct Intake {
    input: Input,
    received: u64,
    received_bytes: u64,
    refused: [u64; DropReason::ALL.len()],
    accepted_by_kind: [u64; DocumentKind::ALL.len()],
    items: Vec<Item>,
}

impl Intake {
    /// An empty intake for `input`, with room for `capacity` items.
    pub fn new(input: Input, capacity: usize) -> Self {
        Intake {
            input,
            received: 0,
            received_bytes: 0,
            refused: [0; DropReason::ALL.len()],
            accepted_by_kind: [0; DocumentKind::ALL.len()],
            items: Vec::with_capacity(capacity),
        }
    }

    /// A unit of `bytes` bytes came in.
    pub fn received(&mut self, bytes: usize) {
        self.received += 1;
        self.received_bytes += bytes as u64;
    }

    /// A unit that came in was refused as bad input.
    pub fn refused(&mut self, reason: DropReason) {
        self.refused[reason.index()] += 1;
    }

    /// A unit that came in was accepted as this item (counted by its document kind).
    pub fn accepted(&mut self, item: Item) {
        if let Some(doc) = item.as_document() {
            self.accepted_by_kind[doc.kind().index()] += 1;
        }
        self.items.push(item);
    }

    /// True when nothing came in since the last [`Buffer::admit`].
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }
}

/// An item waiting in a lane.
#[derive(Debug)]
struct Waiting {
    seq: u64,
    item: Item,
    state: DocState,
}

#[derive(Debug, Default)]
struct Lane {
    waiting: VecDeque<Waiting>,
    /// Budget bytes of the items waiting or in flight in this lane.
    backlog_bytes: usize,
    in_flight: usize,
    /// Batches taken and not settled yet.
    batches_out: usize,
}

/// Per-item state when there is more than one lane.
#[derive(Debug)]
struct Shared {
    /// Lanes that still hold the item (waiting or in flight).
    owed: u32,
    /// Lanes that have it in a call under way.
    flying: u32,
    /// What became of it so far, over all lanes (the worst fate).
    fate: Option<Fate>,
}

#[derive(Debug, Default)]
struct State {
    lanes: Vec<Lane>,
    /// Per-item state, kept only with more than one lane.
    shared: HashMap<u64, Shared>,
    next_seq: u64,
    /// Items held (in any lane) and their budget bytes.
    held_items: usize,
    held_bytes: usize,
    /// Items some lane has in flight, and their bytes (which eviction cannot free).
    flying_items: usize,
    flying_bytes: usize,
    closed: bool,
    /// The shutdown deadline passed: nothing more goes out; what comes back is dropped.
    abandoned: bool,
}

/// The bounded store. Shared as `Arc<Buffer>`.
#[derive(Debug)]
pub struct Buffer {
    state: Mutex<State>,
    budget: usize,
    /// Bytes a lane's backlog may hold.
    lane_cap: usize,
    /// The lanes an X-Ray document enters and those a span enters, as bit masks (never 0).
    lanes_of: [u32; 2],
    policy: FullPolicy,
    lanes: Box<[LaneSettings]>,
    /// One per lane: woken when items arrive, when a batch fills up, when a batch is settled,
    /// and on close.
    notify: Box<[Notify]>,
    /// Bytes held, for readers that must not take the lock (the receiver's memory release).
    held: AtomicU64,
    stats: Arc<Stats>,
}

/// What a lane looks like now, for its batcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneStatus {
    /// Items waiting.
    pub waiting: usize,
    /// The first waiting item has been tried before (retries go out without lingering).
    pub retry_first: bool,
    /// No more items will come in (shutdown).
    pub closed: bool,
    /// Nothing more will come out of this lane: closed, empty and no batch out that could come
    /// back, or abandoned.
    pub done: bool,
}

/// Items taken out of one lane for one call. Their bytes stay charged to the budget until the
/// batch is finished (or dropped).
#[derive(Debug)]
pub struct Batch {
    lane: usize,
    items: Vec<Item>,
    seqs: Vec<u64>,
    states: Vec<DocState>,
    buffer: Arc<Buffer>,
    finished: bool,
}

/// What settling a batch did, for the caller's log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Items delivered.
    pub sent: u64,
    /// Items refused for good.
    pub rejected: u64,
    /// Items put back for another attempt.
    pub retried: u64,
    /// Items put back unsent, held by the sink for a later batch.
    pub held: u64,
    /// Items given up.
    pub dropped: u64,
}

impl Batch {
    /// The items, in arrival order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Each item's retry state, in the order of [`Self::items`].
    pub fn states(&self) -> &[DocState] {
        &self.states
    }

    /// The lane (sink index) the batch was taken from.
    pub fn lane(&self) -> usize {
        self.lane
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if the batch holds no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Settles every item at once: counts the sent, rejected and dropped ones, and puts those
    /// to retry back into the lane with their new `states` (same order as [`Self::items`]). A
    /// missing fate counts as dropped (`upload_failed`).
    pub fn finish(mut self, fates: &[Fate], states: &[DocState]) -> Settled {
        self.finished = true;
        let items = std::mem::take(&mut self.items);
        let seqs = std::mem::take(&mut self.seqs);
        let old_states = std::mem::take(&mut self.states);
        let entries = items
            .into_iter()
            .zip(seqs)
            .enumerate()
            .map(|(i, (item, seq))| {
                let fate = fates
                    .get(i)
                    .copied()
                    .unwrap_or(Fate::Dropped(DropReason::UploadFailed));
                let state = states
                    .get(i)
                    .or(old_states.get(i))
                    .copied()
                    .unwrap_or_default();
                (seq, item, state, fate)
            });
        self.buffer.settle(self.lane, entries)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Not finished: its upload was cut off (shutdown deadline) or lost (a bug). Either way
        // its items are gone from this lane; count them.
        let reason = if self.buffer.lock().abandoned {
            DropReason::Shutdown
        } else {
            tracing::error!(
                "A batch of {} segment(s) was dropped before its upload finished",
                self.items.len()
            );
            DropReason::UploadFailed
        };
        let items = std::mem::take(&mut self.items);
        let seqs = std::mem::take(&mut self.seqs);
        let entries = items
            .into_iter()
            .zip(seqs)
            .map(|(item, seq)| (seq, item, DocState::default(), Fate::Dropped(reason)));
        self.buffer.settle(self.lane, entries);
    }
}

/// The worse of two fates of one item in different lanes: any drop beats a refusal, which
/// beats delivery.
fn worse(a: Option<Fate>, b: Fate) -> Fate {
    match (a, b) {
        (Some(Fate::Dropped(r)), _) => Fate::Dropped(r),
        (_, Fate::Dropped(r)) => Fate::Dropped(r),
        (Some(Fate::Rejected), _) | (_, Fate::Rejected) => Fate::Rejected,
        _ => Fate::Sent,
    }
}

impl State {
    /// The lane `lane` is done with the item `seq` (`fate` is final: not a retry). Counts the
    /// lane's outcome, and the item's overall one when no lane holds it any more; frees its
    /// bytes then.
    fn release(
        &mut self,
        books: &mut Books,
        lane: usize,
        seq: u64,
        item: &Item,
        cost: usize,
        fate: Fate,
    ) {
        let sink = &mut books.sinks[lane];
        match fate {
            Fate::Sent => sink.sent += 1,
            Fate::Rejected => sink.rejected += 1,
            Fate::Dropped(reason) => sink.dropped[reason.index()] += 1,
            Fate::Retry | Fate::Held => {}
        }
        self.lanes[lane].backlog_bytes -= cost;
        let overall = if self.lanes.len() == 1 {
            Some(fate)
        } else {
            match self.shared.get_mut(&seq) {
                Some(shared) => {
                    shared.owed &= !(1 << lane);
                    let merged = worse(shared.fate, fate);
                    shared.fate = Some(merged);
                    if shared.owed == 0 {
                        self.shared.remove(&seq);
                        Some(merged)
                    } else {
                        None
                    }
                }
                None => Some(fate),
            }
        };
        if let Some(fate) = overall {
            self.held_items -= 1;
            self.held_bytes -= cost;
            match fate {
                Fate::Sent => books.sent += 1,
                Fate::Rejected => books.rejected += 1,
                Fate::Dropped(reason) => {
                    books.dropped[reason.index()] += 1;
                    books.inputs[item.input().index()].dropped[reason.index()] += 1;
                }
                Fate::Retry | Fate::Held => {}
            }
        }
    }

    /// The item `seq` came back from a call in lane `lane`.
    fn landed(&mut self, lane: usize, seq: u64, cost: usize) {
        self.lanes[lane].in_flight -= 1;
        let still_flying = self.lanes.len() > 1
            && self.shared.get_mut(&seq).is_some_and(|s| {
                s.flying &= !(1 << lane);
                s.flying != 0
            });
        if !still_flying {
            self.flying_items -= 1;
            self.flying_bytes -= cost;
        }
    }

    /// The item `seq` went into a call in lane `lane`.
    fn took_off(&mut self, lane: usize, seq: u64, cost: usize) {
        self.lanes[lane].in_flight += 1;
        let already_flying = self.lanes.len() > 1
            && self.shared.get_mut(&seq).is_some_and(|s| {
                let was = s.flying != 0;
                s.flying |= 1 << lane;
                was
            });
        if !already_flying {
            self.flying_items += 1;
            self.flying_bytes += cost;
        }
    }

    /// The lane whose oldest waiting item is the oldest of all, if any waits.
    fn oldest_lane(&self) -> Option<usize> {
        self.lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.waiting.front().map(|w| (w.seq, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Copies the gauges into the books.
    fn publish(&self, books: &mut Books) {
        books.buffered = (self.held_items - self.flying_items) as u64;
        books.buffered_bytes = (self.held_bytes - self.flying_bytes) as u64;
        books.in_flight = self.flying_items as u64;
        books.in_flight_bytes = self.flying_bytes as u64;
        for (lane, sink) in self.lanes.iter().zip(books.sinks.iter_mut()) {
            sink.waiting = lane.waiting.len() as u64;
            sink.in_flight = lane.in_flight as u64;
        }
    }
}

impl Buffer {
    /// A buffer holding at most `budget` bytes, with one lane per sink (at most 32).
    pub fn new(
        budget: usize,
        lanes: Vec<LaneSettings>,
        policy: FullPolicy,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        let mut lanes = lanes;
        lanes.truncate(32);
        if lanes.is_empty() {
            lanes.push(LaneSettings {
                name: "none".into(),
                batch_size: 1,
                takes: Takes::Everything,
            });
        }
        stats.set_budget(budget);
        stats.add_sinks(&lanes.iter().map(|l| l.name.clone()).collect::<Vec<_>>());
        let n = lanes.len();
        let every = if n >= 32 { u32::MAX } else { (1 << n) - 1 };
        // An item kind no lane takes would go nowhere: it enters every lane instead (the
        // daemon never builds such lanes; the X-Ray lanes split the kinds between them).
        let lanes_of = [0, 1].map(|kind| {
            let mask = lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| l.takes.kinds()[kind])
                .fold(0u32, |m, (i, _)| m | (1 << i));
            if mask == 0 { every } else { mask }
        });
        let state = State {
            lanes: (0..n).map(|_| Lane::default()).collect(),
            ..State::default()
        };
        Arc::new(Buffer {
            state: Mutex::new(state),
            budget,
            lane_cap: if n > 1 {
                budget.saturating_mul(SINK_SHARE_PERCENT) / 100
            } else {
                budget
            },
            lanes_of,
            policy,
            notify: (0..n).map(|_| Notify::new()).collect(),
            lanes: lanes.into_boxed_slice(),
            held: AtomicU64::new(0),
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module; the state is still
        // consistent counters, so carry on with it rather than poison the whole daemon.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters this buffer books into.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Number of lanes (sinks).
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Budget bytes an item costs here.
    fn cost_of(&self, item: &Item) -> usize {
        let extra_lanes = self.lanes_of(item).count_ones().saturating_sub(1) as usize;
        item.cost() + extra_lanes * PER_EXTRA_SINK_OVERHEAD
    }

    /// The lanes `item` enters, as a bit mask (never 0).
    fn lanes_of(&self, item: &Item) -> u32 {
        self.lanes_of[kind_index(item)]
    }

    /// The memory budget in bytes (`-m`).
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes held now, waiting and in flight (one atomic read).
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// True while the buffer holds less than [`ADMISSION_HIGH_WATER_PERCENT`] of its budget:
    /// inputs that can ask their clients to retry later admit only then.
    pub fn has_room_for_admission(&self) -> bool {
        self.held_bytes() < (self.budget.saturating_mul(ADMISSION_HIGH_WATER_PERCENT) / 100) as u64
    }

    /// Books what an input read (received, refused) and adds its items to every lane,
    /// dropping per the memory rule where they do not fit. Never waits. Leaves `intake`
    /// empty for reuse.
    pub fn admit(&self, intake: &mut Intake) {
        let mut spilled = 0u64;
        let mut backlogged = 0u64;
        let mut s = self.lock();
        let mut books = self.stats.books();
        let input = &mut books.inputs[intake.input.index()];
        input.received += intake.received;
        input.received_bytes += intake.received_bytes;
        for (i, n) in intake.refused.iter().enumerate() {
            input.refused[i] += n;
        }
        for (i, n) in intake.accepted_by_kind.iter().enumerate() {
            input.accepted_by_kind[i] += n;
        }
        for (i, n) in intake.refused.iter().enumerate() {
            books.dropped[i] += n;
        }
        let mut woken = vec![false; self.lanes.len()];
        for item in intake.items.drain(..) {
            let cost = self.cost_of(&item);
            let spill = DropReason::Spillover.index();
            if s.closed || cost > self.budget {
                books.dropped[spill] += 1;
                books.inputs[item.input().index()].dropped[spill] += 1;
                spilled += 1;
                continue;
            }
            // Evicting waiting items only helps when the ones in flight leave room.
            if s.held_bytes + cost > self.budget
                && s.flying_bytes + cost <= self.budget
                && self.policy == FullPolicy::DropOldest
            {
                while s.held_bytes + cost > self.budget {
                    let Some(oldest) = s.oldest_lane() else { break };
                    let seq = s.lanes[oldest].waiting.front().map_or(0, |w| w.seq);
                    for lane in 0..s.lanes.len() {
                        if s.lanes[lane].waiting.front().is_some_and(|w| w.seq == seq)
                            && let Some(w) = s.lanes[lane].waiting.pop_front()
                        {
                            let c = self.cost_of(&w.item);
                            let fate = Fate::Dropped(DropReason::Spillover);
                            s.release(&mut books, lane, w.seq, &w.item, c, fate);
                            spilled += 1;
                        }
                    }
                }
            }
            if s.held_bytes + cost > self.budget {
                books.dropped[spill] += 1;
                books.inputs[item.input().index()].dropped[spill] += 1;
                spilled += 1;
                continue;
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            s.held_items += 1;
            s.held_bytes += cost;
            let n = s.lanes.len();
            let enters = self.lanes_of(&item);
            if n > 1 {
                s.shared.insert(
                    seq,
                    Shared {
                        owed: enters,
                        flying: 0,
                        fate: None,
                    },
                );
            }
            // The last lane it enters takes the item itself, the others a clone.
            let last = 31 - enters.leading_zeros() as usize;
            let mut item = Some(item);
            for (lane, woken) in woken.iter_mut().enumerate() {
                if enters & (1 << lane) == 0 {
                    continue;
                }
                let it = if lane == last {
                    item.take()
                } else {
                    item.clone()
                };
                let Some(it) = it else { break };
                // Over its share, a lane drops its own oldest waiting items first.
                while s.lanes[lane].backlog_bytes + cost > self.lane_cap {
                    let Some(old) = s.lanes[lane].waiting.pop_front() else {
                        break;
                    };
                    let c = self.cost_of(&old.item);
                    let fate = Fate::Dropped(DropReason::SinkBacklog);
                    s.release(&mut books, lane, old.seq, &old.item, c, fate);
                    backlogged += 1;
                }
                books.sinks[lane].received += 1;
                let l = &mut s.lanes[lane];
                l.backlog_bytes += cost;
                l.waiting.push_back(Waiting {
                    seq,
                    item: it,
                    state: DocState::default(),
                });
                let len = l.waiting.len();
                if len == 1 || len == self.lanes[lane].batch_size {
                    *woken = true;
                }
            }
        }
        intake.received = 0;
        intake.received_bytes = 0;
        intake.refused = [0; DropReason::ALL.len()];
        intake.accepted_by_kind = [0; DocumentKind::ALL.len()];
        s.publish(&mut books);
        self.held.store(s.held_bytes as u64, Ordering::Relaxed);
        drop(books);
        drop(s);
        for (lane, woken) in woken.into_iter().enumerate() {
            if woken {
                self.notify[lane].notify_one();
            }
        }
        self.stats.warn_dropped(DropReason::Spillover, spilled);
        self.stats.warn_dropped(DropReason::SinkBacklog, backlogged);
    }

    /// What lane `lane` looks like now.
    pub fn status(&self, lane: usize) -> LaneStatus {
        let s = self.lock();
        let Some(l) = s.lanes.get(lane) else {
            return LaneStatus {
                waiting: 0,
                retry_first: false,
                closed: true,
                done: true,
            };
        };
        LaneStatus {
            waiting: l.waiting.len(),
            retry_first: l
                .waiting
                .front()
                .is_some_and(|w| w.state.attempts > 0 && !w.state.held),
            closed: s.closed,
            done: s.abandoned || (s.closed && l.waiting.is_empty() && l.batches_out == 0),
        }
    }

    /// Waits until something changes in lane `lane` (items arrived, a batch filled up or was
    /// settled, the buffer closed). Wakes at once if a change came since the last wait.
    pub async fn changed(&self, lane: usize) {
        if let Some(n) = self.notify.get(lane) {
            n.notified().await;
        }
    }

    /// Takes up to `max` items of lane `lane` now, if any wait (none once abandoned).
    pub fn take(self: &Arc<Self>, lane: usize, max: usize) -> Option<Batch> {
        let mut s = self.lock();
        if s.abandoned || lane >= s.lanes.len() {
            return None;
        }
        let n = s.lanes[lane].waiting.len().min(max.max(1));
        if n == 0 {
            return None;
        }
        let mut items = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut taken = std::mem::take(&mut s.lanes[lane].waiting);
        for w in taken.drain(..n) {
            let cost = self.cost_of(&w.item);
            s.took_off(lane, w.seq, cost);
            items.push(w.item);
            seqs.push(w.seq);
            states.push(w.state);
        }
        if taken.is_empty() && taken.capacity() > SHRINK_ABOVE {
            // A backlog is gone: give its slots back (nothing to move in an empty queue).
            taken.shrink_to(SHRINK_ABOVE);
        }
        s.lanes[lane].waiting = taken;
        s.lanes[lane].batches_out += 1;
        let mut books = self.stats.books();
        s.publish(&mut books);
        drop(books);
        drop(s);
        Some(Batch {
            lane,
            items,
            seqs,
            states,
            buffer: Arc::clone(self),
            finished: false,
        })
    }

    fn settle(
        &self,
        lane: usize,
        entries: impl Iterator<Item = (u64, Item, DocState, Fate)>,
    ) -> Settled {
        let mut done = Settled::default();
        let mut dropped = [0u64; DropReason::ALL.len()];
        let mut s = self.lock();
        let mut books = self.stats.books();
        let abandoned = s.abandoned;
        for (seq, item, state, fate) in entries {
            let cost = self.cost_of(&item);
            s.landed(lane, seq, cost);
            let fate = match fate {
                Fate::Retry | Fate::Held if abandoned => Fate::Dropped(DropReason::Shutdown),
                fate => fate,
            };
            match fate {
                Fate::Retry | Fate::Held => {
                    let state = DocState {
                        held: fate == Fate::Held,
                        ..state
                    };
                    let waiting = &mut s.lanes[lane].waiting;
                    let at = waiting.partition_point(|w| w.seq < seq);
                    waiting.insert(at, Waiting { seq, item, state });
                    if fate == Fate::Retry {
                        books.retried += 1;
                        done.retried += 1;
                    } else {
                        done.held += 1;
                    }
                    continue;
                }
                Fate::Sent => done.sent += 1,
                Fate::Rejected => done.rejected += 1,
                Fate::Dropped(reason) => {
                    done.dropped += 1;
                    dropped[reason.index()] += 1;
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        // Which segments were lost, for an operator who needs to know.
                        tracing::debug!("Lost {} ({})", item.log_name(), reason.as_str());
                    }
                }
            }
            s.release(&mut books, lane, seq, &item, cost, fate);
        }
        s.lanes[lane].batches_out = s.lanes[lane].batches_out.saturating_sub(1);
        s.publish(&mut books);
        self.held.store(s.held_bytes as u64, Ordering::Relaxed);
        drop(books);
        drop(s);
        for reason in DropReason::ALL {
            self.stats.warn_dropped(reason, dropped[reason.index()]);
        }
        self.notify[lane].notify_one();
        done
    }

    /// Gives up, now, the items waiting in lane `lane` for another attempt whose first failure
    /// is `max_age` old or older (dropped as `retries_exhausted`), so an item ages out on time
    /// and not only at its next failed attempt. Returns when the next of those left will age
    /// out, if any is left.
    ///
    /// Items being retried are always at the front of a lane (a batch takes the front, and a
    /// retry goes back by arrival order), so only that run is looked at: an item never tried,
    /// behind it, ends the scan.
    pub fn expire(&self, lane: usize, max_age: Duration, now: Instant) -> Option<Instant> {
        let retried = |w: &&Waiting| w.state.attempts > 0;
        let limit = |w: &Waiting| w.state.first_failure.map(|t| t + max_age);
        let mut s = self.lock();
        let l = s.lanes.get(lane)?;
        let due = |w: &&Waiting| limit(w).is_some_and(|t| t <= now);
        if !l.waiting.iter().take_while(retried).any(|w| due(&w)) {
            return l.waiting.iter().take_while(retried).filter_map(limit).min();
        }
        let mut books = self.stats.books();
        let mut kept = VecDeque::with_capacity(s.lanes[lane].waiting.len());
        let mut expired = 0u64;
        let mut next: Option<Instant> = None;
        let mut waiting = std::mem::take(&mut s.lanes[lane].waiting);
        while let Some(w) = waiting.pop_front() {
            if w.state.attempts == 0 {
                kept.push_back(w);
                kept.append(&mut waiting);
                break;
            }
            match limit(&w) {
                Some(t) if t <= now => {
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        tracing::debug!("Lost {} (retries_exhausted)", w.item.log_name());
                    }
                    let cost = self.cost_of(&w.item);
                    let fate = Fate::Dropped(DropReason::RetriesExhausted);
                    s.release(&mut books, lane, w.seq, &w.item, cost, fate);
                    expired += 1;
                }
                limit => {
                    next = match (next, limit) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    kept.push_back(w);
                }
            }
        }
        s.lanes[lane].waiting = kept;
        s.publish(&mut books);
        self.held.store(s.held_bytes as u64, Ordering::Relaxed);
        drop(books);
        drop(s);
        self.stats
            .warn_dropped(DropReason::RetriesExhausted, expired);
        next
    }

    /// Stops accepting items; batchers hand out what is left (retries included), then see
    /// their lane done.
    pub fn close(&self) {
        self.lock().closed = true;
        for n in self.notify.iter() {
            n.notify_one();
        }
    }

    /// The shutdown deadline passed: drops every waiting item (counted as `shutdown`), hands
    /// out no more batches, and counts items of batches still in flight as `shutdown` when
    /// they come back. Returns how many items were freed now.
    pub fn abandon(&self) -> u64 {
        let mut s = self.lock();
        s.closed = true;
        s.abandoned = true;
        let before = s.held_items;
        let mut books = self.stats.books();
        for lane in 0..s.lanes.len() {
            let waiting = std::mem::take(&mut s.lanes[lane].waiting);
            for w in waiting {
                let cost = self.cost_of(&w.item);
                let fate = Fate::Dropped(DropReason::Shutdown);
                s.release(&mut books, lane, w.seq, &w.item, cost, fate);
            }
        }
        let freed = (before - s.held_items) as u64;
        s.publish(&mut books);
        self.held.store(s.held_bytes as u64, Ordering::Relaxed);
        drop(books);
        drop(s);
        for n in self.notify.iter() {
            n.notify_one();
        }
        freed
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
