//! One listener's open connections: which slot each holds, whether it is idle, and how to
//! close it. Decides, when a connection arrives at the cap, which one makes room for it.
//!
//! In: "a connection was accepted" ([`Registry::admit`]), "a request started / its answer was
//! handed over" ([`Membership::busy`]), "it closed" (dropping its [`Membership`]), "out of file
//! descriptors" ([`Connections::shed_and_wait`]). Out: the slot the new connection holds, or a
//! refusal; the connection shed to make room is closed through its [`CancellationToken`] and
//! forgotten at once.
//!
//! The policy, in the order [`Registry::admit`] tries it:
//! 1. a free [`Slot::Regular`] slot (at most [`Limits::regular`]);
//! 2. at that cap, the slot of the regular connection idle the longest, which is closed;
//! 3. when every regular connection is in the middle of a request, a free [`Slot::Reserve`]
//!    slot (at most [`Limits::reserve`]): such a connection serves one request, on the admin
//!    routes only (the caller enforces that), so the reserve cannot stay busy for long;
//! 4. the slot of the reserve connection idle the longest, which is closed;
//! 5. else the new connection is refused.
//!
//! Idle means no request in progress: since it was accepted (one that never sends a request
//! is idle from the start), or since its last answer was handed to hyper (one still reading a
//! long answer slowly counts as idle). Ties go to the older connection. A request sent on a
//! connection just as it is shed is lost with it, as with any server that closes an idle
//! keep-alive connection; HTTP clients then open a new one. A connection holding a live stream ([`Activity::Streaming`], for the coming
//! viewer's server-sent events) is neither idle nor shed. There is no quota per peer address:
//! every SDK on a host connects from 127.0.0.1.
//!
//! Bounded: at most `regular + reserve` entries; picking the one to shed scans them (about a
//! thousand, under the lock, only at the cap or out of file descriptors). [`Registry`] is pure
//! apart from cancelling tokens: the time is passed in, so its tests need no clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How many connections a listener holds at once, by kind of slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections that may use every route and keep alive.
    pub regular: usize,
    /// Connections let in beyond `regular` while all of those are busy: one request each, on
    /// the admin routes only.
    pub reserve: usize,
}

/// Which of a listener's slots a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Every route, keep-alive.
    Regular,
    /// One request, on the admin routes only (health, stats, metrics).
    Reserve,
}

/// What a connection is doing, which decides whether it may be shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// No request in progress since this instant (its accept, or its last answer).
    Idle(Instant),
    /// A request is being answered.
    Busy,
    /// Holding a live stream open (the coming viewer): never shed, never counted idle.
    Streaming,
}

/// A connection let in by [`Registry::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Its id in the registry.
    pub id: u64,
    /// The slot it holds.
    pub slot: Slot,
    /// When a connection was closed to make room: how long that one had been idle.
    pub shed: Option<Duration>,
}

#[derive(Debug)]
struct Open {
    slot: Slot,
    activity: Activity,
    close: CancellationToken,
}

/// One listener's open connections; see the module docs.
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    open: HashMap<u64, Open>,
    regular: usize,
    reserve: usize,
    next_id: u64,
}

impl Registry {
    /// No connection yet.
    pub fn new(limits: Limits) -> Self {
        Registry {
            limits,
            open: HashMap::new(),
            regular: 0,
            reserve: 0,
            next_id: 0,
        }
    }

    /// Lets a connection accepted at `now` in, idle, closed by cancelling `close`; makes room
    /// for it by shedding an idle one if it must (see the module docs). `None`: every slot is
    /// busy, so the caller closes the new connection.
    pub fn admit(&mut self, now: Instant, close: CancellationToken) -> Option<Admitted> {
        let (slot, shed) = if self.regular < self.limits.regular {
            (Slot::Regular, None)
        } else if let Some(idle) = self.shed_longest_idle(Some(Slot::Regular), now) {
            (Slot::Regular, Some(idle))
        } else if self.reserve < self.limits.reserve {
            (Slot::Reserve, None)
        } else if let Some(idle) = self.shed_longest_idle(Some(Slot::Reserve), now) {
            (Slot::Reserve, Some(idle))
        } else {
            return None;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Open {
                slot,
                activity: Activity::Idle(now),
                close,
            },
        );
        *self.held(slot) += 1;
        Some(Admitted { id, slot, shed })
    }

    /// Closes and forgets the connection idle the longest (holding `slot`, or any slot when
    /// `None`); returns how long it had been idle, or `None` when no connection is idle.
    pub fn shed_longest_idle(&mut self, slot: Option<Slot>, now: Instant) -> Option<Duration> {
        let (id, since) = self
            .open
            .iter()
            .filter(|(_, open)| slot.is_none_or(|s| s == open.slot))
            .filter_map(|(id, open)| match open.activity {
                Activity::Idle(since) => Some((*id, since)),
                Activity::Busy | Activity::Streaming => None,
            })
            .min_by_key(|&(id, since)| (since, id))?;
        if let Some(open) = self.remove(id) {
            open.close.cancel();
        }
        Some(now.saturating_duration_since(since))
    }

    /// Records what connection `id` is doing; nothing if it is gone (shed).
    pub fn set(&mut self, id: u64, activity: Activity) {
        if let Some(open) = self.open.get_mut(&id) {
            open.activity = activity;
        }
    }

    /// Forgets connection `id` (closed, or shed); frees its slot.
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        let held = self.held(open.slot);
        *held = held.saturating_sub(1);
        Some(open)
    }

    /// Connections open, by slot: (regular, reserve).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.regular, self.reserve)
    }

    fn held(&mut self, slot: Slot) -> &mut usize {
        match slot {
            Slot::Regular => &mut self.regular,
            Slot::Reserve => &mut self.reserve,
        }
    }
}

/// A listener's [`Registry`], shared by its accept loop and its connections' tasks, with a
/// signal for each connection that ends.
#[derive(Debug)]
pub struct Connections {
    registry: Mutex<Registry>,
    /// Notified each time a connection's task has ended, its socket closed.
    ended: Notify,
}

impl Connections {
    /// No connection yet.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Connections {
            registry: Mutex::new(Registry::new(limits)),
            ended: Notify::new(),
        })
    }

    /// Locks the registry; a panic while it was held leaves it consistent (every method
    /// updates it in one step), so a poisoned lock is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sheds the connection idle the longest, whatever its slot, then waits until a
    /// connection's task has ended (its socket closed, so its file descriptor is free), for at
    /// most `within`. Returns how long the shed one had been idle; `None` at once when no
    /// connection is idle.
    pub async fn shed_and_wait(&self, within: Duration) -> Option<Duration> {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        // Registered before the shed, so the shed connection's end cannot be missed.
        ended.as_mut().enable();
        let idle = self.lock().shed_longest_idle(None, Instant::now())?;
        let _ = tokio::time::timeout(within, ended).await;
        Some(idle)
    }
}

/// A connection's place in its listener's [`Connections`]: marks it busy or idle, and frees
/// its slot when dropped (when the connection's task ends, however it ends).
#[derive(Debug)]
pub struct Membership {
    connections: Arc<Connections>,
    id: u64,
}

impl Membership {
    /// The membership of connection `id`, admitted into `connections`.
    pub fn new(connections: Arc<Connections>, id: u64) -> Self {
        Membership { connections, id }
    }

    /// Marks the connection busy until the returned guard drops, then idle from that instant.
    pub fn busy(&self) -> BusyGuard<'_> {
        self.connections.lock().set(self.id, Activity::Busy);
        BusyGuard(self)
    }

    /// Marks the connection as holding a live stream: it is not shed until it is marked
    /// otherwise or closes.
    pub fn streaming(&self) {
        self.connections.lock().set(self.id, Activity::Streaming);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.connections.lock().remove(self.id);
        self.connections.ended.notify_waiters();
    }
}

/// See [`Membership::busy`].
#[derive(Debug)]
pub struct BusyGuard<'a>(&'a Membership);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        self.0
            .connections
            .lock()
            .set(self.0.id, Activity::Idle(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        regular: 3,
        reserve: 1,
    };

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    /// Admits one connection at `now`; returns it and its close token.
    fn admit(r: &mut Registry, now: Instant) -> Option<(Admitted, CancellationToken)> {
        let close = CancellationToken::new();
        r.admit(now, close.clone()).map(|a| (a, close))
    }

    fn admitted(r: &mut Registry, now: Instant) -> (Admitted, CancellationToken) {
        admit(r, now).unwrap_or_else(|| panic!("refused: {r:?}"))
    }

    #[test]
    fn below_the_cap_every_connection_gets_a_regular_slot_and_none_is_shed() {
        let t = Instant::now();
        let mut r = Registry::new(LIMITS);
        let conns: Vec<_> = (0..3).map(|i| admitted(&mut r, at(t, i))).collect();
        for (a, close) in &conns {
            assert_eq!((a.slot, a.shed), (Slot::Regular, None));
            assert!(!close.is_cancelled());
        }
        assert_eq!(r.counts(), (3, 0));
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_is_shed_whatever_its_age() {
        let t = Instant::now();
        let mut r = Registry::new(LIMITS);
        let (first, first_close) = admitted(&mut r, at(t, 0));
        let (second, second_close) = admitted(&mut r, at(t, 10));
        let (_, third_close) = admitted(&mut r, at(t, 20));
        // The first connection answered a request at 30 ms: the second is now idle longest
        // (since 10 ms, never sent anything).
        r.set(first.id, Activity::Busy);
        r.set(first.id, Activity::Idle(at(t, 30)));
        let (new, _) = admitted(&mut r, at(t, 40));
        assert_eq!(new.slot, Slot::Regular);
        assert_eq!(new.shed, Some(Duration::from_millis(30)));
        assert!(second_close.is_cancelled());
        assert!(!first_close.is_cancelled() && !third_close.is_cancelled());
        assert_eq!(r.counts(), (3, 0));
        // The shed one is gone: what its task still reports changes nothing.
        r.set(second.id, Activity::Busy);
        r.remove(second.id);
        assert_eq!(r.counts(), (3, 0));
    }

    #[test]
    fn ties_go_to_the_older_connection() {
        let t = Instant::now();
        let mut r = Registry::new(LIMITS);
        let closes: Vec<_> = (0..3).map(|_| admitted(&mut r, t).1).collect();
        admitted(&mut r, t);
        let cancelled: Vec<bool> = closes.iter().map(CancellationToken::is_cancelled).collect();
        assert_eq!(cancelled, [true, false, false]);
    }

    #[test]
    fn busy_and_streaming_connections_are_not_shed_in_favour_of_idle_ones() {
        let t = Instant::now();
        let mut r = Registry::new(LIMITS);
        let (busy, busy_close) = admitted(&mut r, at(t, 0));
        let (stream, stream_close) = admitted(&mut r, at(t, 1));
        let (_, idle_close) = admitted(&mut r, at(t, 500));
        r.set(busy.id, Activity::Busy);
        r.set(stream.id, Activity::Streaming);
        let (new, _) = admitted(&mut r, at(t, 600));
        assert_eq!(
            (new.slot, new.shed),
            (Slot::Regular, Some(Duration::from_millis(100)))
        );
        assert!(idle_close.is_cancelled());
        assert!(!busy_close.is_cancelled() && !stream_close.is_cancelled());
    }

    #[test]
    fn with_every_regular_connection_busy_one_reserve_slot_then_refusal() {
        let t = Instant::now();
        let mut r = Registry::new(LIMITS);
        let mut regular = Vec::new();
        for i in 0..3 {
            let (a, close) = admitted(&mut r, at(t, i));
            r.set(a.id, Activity::Busy);
            regular.push((a.id, close));
        }
        let (reserve, reserve_close) = admitted(&mut r, at(t, 10));
        assert_eq!((reserve.slot, reserve.shed), (Slot::Reserve, None));
        assert_eq!(r.counts(), (3, 1));
        // An idle reserve connection makes room for the next one.
        let (next, next_close) = admitted(&mut r, at(t, 15));
        assert_eq!(
            (next.slot, next.shed),
            (Slot::Reserve, Some(Duration::from_millis(5)))
        );
        assert!(reserve_close.is_cancelled());
        // A busy one does not: everything is busy, so the new connection is refused.
        r.set(next.id, Activity::Busy);
        assert!(admit(&mut r, at(t, 20)).is_none());
        assert_eq!(r.counts(), (3, 1));
        assert!(!next_close.is_cancelled());
        assert!(regular.iter().all(|(_, c)| !c.is_cancelled()));
        // Once a regular connection is done, it is the one shed, not a reserve one.
        r.set(regular[0].0, Activity::Idle(at(t, 30)));
        let (after, _) = admitted(&mut r, at(t, 40));
        assert_eq!(
            (after.slot, after.shed),
            (Slot::Regular, Some(Duration::from_millis(10)))
        );
        assert!(regular[0].1.is_cancelled());
    }

    #[test]
    fn closing_frees_the_slot_without_shedding() {
        let t = Instant::now();
        let connections = Connections::new(LIMITS);
        let (a, close) = admitted(&mut connections.lock(), t);
        let membership = Membership::new(Arc::clone(&connections), a.id);
        {
            let _busy = membership.busy();
            assert_eq!(connections.lock().open[&a.id].activity, Activity::Busy);
        }
        assert!(matches!(
            connections.lock().open[&a.id].activity,
            Activity::Idle(_)
        ));
        membership.streaming();
        assert_eq!(
            connections.lock().shed_longest_idle(None, at(t, 1)),
            None,
            "a live stream is not idle"
        );
        drop(membership);
        assert_eq!(connections.lock().counts(), (0, 0));
        assert!(!close.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn shedding_for_a_descriptor_waits_for_a_connection_to_end_or_gives_up() {
        let connections = Connections::new(LIMITS);
        assert_eq!(
            connections.shed_and_wait(Duration::from_secs(1)).await,
            None,
            "nothing idle: at once"
        );
        let accepted = Instant::now();
        let (a, close) = admitted(&mut connections.lock(), accepted);
        // The connection's task: ends once its close token is cancelled.
        let membership = Membership::new(Arc::clone(&connections), a.id);
        let task = tokio::spawn(async move {
            close.cancelled().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(membership);
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let idle = connections.shed_and_wait(Duration::from_secs(1)).await;
        assert_eq!(idle, Some(Duration::from_millis(10)));
        assert_eq!(
            accepted.elapsed(),
            Duration::from_millis(40),
            "waited for its end"
        );
        task.await.unwrap_or_else(|e| panic!("{e}"));

        // A task that does not end in time: given up after `within`.
        let (_, _close) = admitted(&mut connections.lock(), Instant::now());
        let start = Instant::now();
        let idle = connections.shed_and_wait(Duration::from_millis(100)).await;
        assert_eq!(idle, Some(Duration::ZERO));
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn out_of_descriptors_any_idle_connection_may_go() {
        let t = Instant::now();
        let mut r = Registry::new(LIMITS);
        let (a, _) = admitted(&mut r, at(t, 0));
        r.set(a.id, Activity::Busy);
        let (_, idle_close) = admitted(&mut r, at(t, 5));
        assert_eq!(
            r.shed_longest_idle(None, at(t, 10)),
            Some(Duration::from_millis(5))
        );
        assert!(idle_close.is_cancelled());
        assert_eq!(r.shed_longest_idle(None, at(t, 10)), None);
        assert_eq!(r.counts(), (1, 0));
    }
}
