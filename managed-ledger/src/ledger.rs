//! The managed ledger (skeleton).
#![allow(unused_variables, dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use crate::config::ManagedLedgerConfig;
use crate::cursor::ManagedCursor;
use crate::error::{ManagedLedgerError, Result};
use crate::info::LedgerInfo;
use crate::position::{Entry, InitialPosition, Position};

/// Resolves once an entry given to [`ManagedLedger::add_entry`] is durable,
/// to its position.
pub struct AddFuture {
    pub(crate) rx: oneshot::Receiver<Result<Position>>,
    pub(crate) name: Arc<str>,
}

impl Future for AddFuture {
    type Output = Result<Position>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(ManagedLedgerError::Closed(self.name.to_string())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a managed ledger holds, for stats and admin.
#[derive(Clone, Debug, Default)]
pub struct ManagedLedgerStats {
    pub name: String,
    pub ledgers: Vec<LedgerInfo>,
    pub entries: u64,
    pub size_bytes: u64,
    pub last_confirmed: Option<Position>,
    pub first_position: Option<Position>,
    pub current_ledger: Option<u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cursors: usize,
}

pub struct ManagedLedger {
    name: String,
}

impl ManagedLedger {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn add_entry(&self, data: Bytes) -> Result<AddFuture> {
        todo!()
    }

    pub fn last_confirmed(&self) -> Option<Position> {
        todo!()
    }

    pub fn subscribe_confirmed(&self) -> watch::Receiver<Option<Position>> {
        todo!()
    }

    pub fn first_position(&self) -> Option<Position> {
        todo!()
    }

    pub async fn read_entries(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>> {
        todo!()
    }

    pub async fn read_entry(&self, pos: Position) -> Result<Entry> {
        todo!()
    }

    pub fn next_position(&self, pos: Position) -> Position {
        todo!()
    }

    pub fn entries_between(&self, from_exclusive: Position, to_inclusive: Position) -> u64 {
        todo!()
    }

    pub async fn find_newest_matching<F>(
        &self,
        start: Position,
        pred: F,
    ) -> Result<Option<Position>>
    where
        F: FnMut(&Entry) -> bool + Send,
    {
        todo!()
    }

    pub async fn open_cursor(
        &self,
        name: &str,
        initial: InitialPosition,
    ) -> Result<Arc<ManagedCursor>> {
        todo!()
    }

    pub fn new_non_durable_cursor(&self, start: Position) -> Arc<ManagedCursor> {
        todo!()
    }

    pub async fn delete_cursor(&self, name: &str) -> Result<()> {
        todo!()
    }

    pub fn cursors(&self) -> Vec<Arc<ManagedCursor>> {
        todo!()
    }

    pub fn stats(&self) -> ManagedLedgerStats {
        todo!()
    }

    pub fn config(&self) -> ManagedLedgerConfig {
        todo!()
    }

    pub fn set_config(&self, config: ManagedLedgerConfig) {
        todo!()
    }

    pub async fn trim(&self) -> Result<()> {
        todo!()
    }

    pub async fn close(&self) -> Result<()> {
        todo!()
    }

    pub fn is_closed(&self) -> bool {
        todo!()
    }
}
