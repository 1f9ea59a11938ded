//! The `memory` sink: a bounded store of the latest items, kept in the daemon's memory instead
//! of uploaded anywhere.
//!
//! In: batches from its lane like any sink (it never fails, so nothing is retried). Out:
//! [`MemoryStore::items`], the items held, oldest first, for a reader in the same process (the
//! coming trace viewer; the in-process tests). Bound: [`MemoryStore::new`]'s byte cap, charged
//! as the buffer charges items ([`Item::cost`]); past it the oldest items are forgotten. This
//! memory is outside the buffer's budget: the README's worst-case total counts it apart.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{Delivery, Sink, SinkFuture};
use crate::item::Item;

/// Default byte cap of a memory store: 16 MiB.
pub const DEFAULT_CAPACITY: usize = 16 * 1024 * 1024;

/// The latest items, at most `capacity` bytes of them.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    items: VecDeque<Item>,
    bytes: usize,
    /// Items taken since start (held or forgotten).
    taken: u64,
}

impl MemoryStore {
    /// An empty store holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            capacity,
            held: Mutex::new(Held::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The items held, oldest first.
    pub fn items(&self) -> Vec<Item> {
        self.lock().items.iter().cloned().collect()
    }

    /// Items taken since start, including those forgotten to stay within the cap.
    pub fn taken(&self) -> u64 {
        self.lock().taken
    }

    /// Bytes held now (never more than the cap).
    pub fn held_bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Sink for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        let mut held = self.lock();
        for item in batch {
            let cost = item.cost();
            if cost > self.capacity {
                held.taken += 1;
                continue;
            }
            while held.bytes + cost > self.capacity {
                match held.items.pop_front() {
                    Some(old) => held.bytes -= old.cost(),
                    None => break,
                }
            }
            held.bytes += cost;
            held.items.push_back(item.clone());
            held.taken += 1;
        }
        drop(held);
        Box::pin(std::future::ready(Ok(Delivery::default())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;

    #[tokio::test]
    async fn keeps_the_latest_items_within_its_cap() {
        let item = |n: u8| Item::XrayDocument(Document::unchecked(vec![n; 100]));
        let cost = item(0).cost();
        let store = MemoryStore::new(cost * 2);
        assert!(store.send(&[item(1), item(2), item(3)]).await.is_ok());
        let held: Vec<u8> = store
            .items()
            .iter()
            .filter_map(|i| i.as_document().map(|d| d.body[0]))
            .collect();
        assert_eq!(held, [2, 3]);
        assert_eq!((store.taken(), store.held_bytes()), (3, cost * 2));
    }
}
