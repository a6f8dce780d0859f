//! One consumer of a subscription: its permits, the messages it holds
//! unacknowledged, and how it is reached.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use parking_lot::Mutex;
use strata_managed_ledger::Position;
use strata_proto::pulsar::command_subscribe::SubType;

use crate::outbound::ConnHandle;
use crate::stats::Meter;

/// Hash ranges (inclusive, within 0..=65535) a Key_Shared consumer asked for.
pub type HashRanges = Vec<(u32, u32)>;

/// Size of the Key_Shared hash space.
pub const HASH_RANGE_SIZE: u32 = 1 << 16;

pub struct Consumer {
    pub consumer_id: u64,
    pub name: String,
    pub conn: Arc<ConnHandle>,
    pub priority: i32,
    pub sub_type: SubType,
    /// Sticky Key_Shared ranges; `None` for auto-split.
    pub sticky_ranges: Option<HashRanges>,
    /// Messages the client can still take (may go negative: a batch entry
    /// is sent whole).
    permits: AtomicI64,
    /// Entries sent and not yet acknowledged, with their message counts.
    pending: Mutex<BTreeMap<Position, u32>>,
    unacked_messages: AtomicI64,
    blocked: AtomicBool,
    /// Key_Shared: the newest position dispatched before this consumer
    /// joined. Newer entries go to it only once everything up to here is
    /// acknowledged, so a key never has messages at two consumers at once.
    joined_at: Mutex<Option<Position>>,
    /// 0: no limit. Changed live with the namespace's policies.
    max_unacked: AtomicU32,
    /// Shared / Key_Shared: the only types with an unacked limit.
    limited: bool,
    /// Messages and bytes dispatched to this consumer (stats).
    pub out: Meter,
    /// When it subscribed, ms since the Unix epoch (stats).
    pub connected_since_ms: u64,
}

impl Consumer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consumer_id: u64,
        name: String,
        conn: Arc<ConnHandle>,
        priority: i32,
        sub_type: SubType,
        sticky_ranges: Option<HashRanges>,
        max_unacked: u32,
    ) -> Consumer {
        let limited = matches!(sub_type, SubType::Shared | SubType::KeyShared);
        Consumer {
            consumer_id,
            name,
            conn,
            priority,
            sub_type,
            sticky_ranges,
            permits: AtomicI64::new(0),
            pending: Mutex::new(BTreeMap::new()),
            unacked_messages: AtomicI64::new(0),
            blocked: AtomicBool::new(false),
            joined_at: Mutex::new(None),
            max_unacked: AtomicU32::new(max_unacked),
            limited,
            out: Meter::new(),
            connected_since_ms: crate::stats::now_ms(),
        }
    }

    pub fn permits(&self) -> i64 {
        self.permits.load(Ordering::Acquire)
    }

    pub fn add_permits(&self, n: u32) {
        self.permits.fetch_add(n as i64, Ordering::AcqRel);
    }

    /// Messages sent to it and not acknowledged yet.
    pub fn unacked_messages(&self) -> i64 {
        self.unacked_messages.load(Ordering::Acquire)
    }

    /// Its unacknowledged-message limit (0: none).
    pub fn max_unacked(&self) -> u32 {
        if self.limited {
            self.max_unacked.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// Changes the limit; returns true if that unblocked the consumer.
    pub fn set_max_unacked(&self, max: u32) -> bool {
        self.max_unacked.store(max, Ordering::Release);
        let unacked = self.unacked_messages();
        let blocked = self.limited && max > 0 && unacked >= max as i64;
        self.blocked.swap(blocked, Ordering::AcqRel) && !blocked
    }

    /// Held back because it reached its unacknowledged-message limit.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// Can take a message now.
    pub fn available(&self) -> bool {
        self.permits() > 0 && !self.blocked.load(Ordering::Acquire) && !self.conn.is_closed()
    }

    pub fn set_joined_at(&self, pos: Option<Position>) {
        *self.joined_at.lock() = pos;
    }

    /// Key_Shared: may `pos` go to this consumer, given the subscription's
    /// mark-delete position?
    pub fn may_receive(&self, pos: Position, mark_delete: Position) -> bool {
        let mut joined = self.joined_at.lock();
        match *joined {
            None => true,
            Some(j) if mark_delete >= j => {
                *joined = None;
                true
            }
            Some(j) => pos <= j,
        }
    }

    /// Records an entry of `messages` messages as sent.
    pub fn on_sent(&self, pos: Position, messages: u32) {
        self.permits.fetch_sub(messages as i64, Ordering::AcqRel);
        let mut pending = self.pending.lock();
        if pending.insert(pos, messages).is_none() {
            let unacked = self
                .unacked_messages
                .fetch_add(messages as i64, Ordering::AcqRel)
                + messages as i64;
            let max = self.max_unacked();
            if max > 0 && unacked >= max as i64 {
                self.blocked.store(true, Ordering::Release);
            }
        }
    }

    /// Forgets acknowledged entries; returns true if the consumer was
    /// blocked on its unacked limit and may now take messages again.
    pub fn on_acked(&self, positions: &[Position]) -> bool {
        let mut pending = self.pending.lock();
        let mut freed = 0i64;
        for p in positions {
            if let Some(n) = pending.remove(p) {
                freed += n as i64;
            }
        }
        drop(pending);
        self.release(freed)
    }

    /// Forgets every entry at or before `pos` (cumulative ack).
    pub fn on_acked_up_to(&self, pos: Position) -> bool {
        let mut pending = self.pending.lock();
        let rest = pending.split_off(&Position::new(
            pos.ledger_id,
            pos.entry_id.saturating_add(1),
        ));
        let freed: i64 = pending.values().map(|n| *n as i64).sum();
        *pending = rest;
        drop(pending);
        self.release(freed)
    }

    fn release(&self, freed: i64) -> bool {
        if freed == 0 {
            return false;
        }
        let left = self.unacked_messages.fetch_sub(freed, Ordering::AcqRel) - freed;
        if self.blocked.load(Ordering::Acquire) && left <= (self.max_unacked() / 2) as i64 {
            self.blocked.store(false, Ordering::Release);
            return true;
        }
        false
    }

    /// Takes back the given pending entries (or all of them) for redelivery.
    pub fn take_pending(&self, only: Option<&[Position]>) -> Vec<Position> {
        let mut pending = self.pending.lock();
        let taken: Vec<(Position, u32)> = match only {
            None => std::mem::take(&mut *pending).into_iter().collect(),
            Some(ids) => ids
                .iter()
                .filter_map(|p| pending.remove(p).map(|n| (*p, n)))
                .collect(),
        };
        drop(pending);
        let freed: i64 = taken.iter().map(|(_, n)| *n as i64).sum();
        self.release(freed);
        taken.into_iter().map(|(p, _)| p).collect()
    }

    /// The Key_Shared hash of a message key (0..65535).
    pub fn key_hash(key: &[u8]) -> u32 {
        strata_proto::crc::crc32c(key) % HASH_RANGE_SIZE
    }

    pub fn covers(&self, hash: u32) -> bool {
        self.sticky_ranges
            .as_ref()
            .is_some_and(|r| r.iter().any(|(lo, hi)| *lo <= hash && hash <= *hi))
    }
}
