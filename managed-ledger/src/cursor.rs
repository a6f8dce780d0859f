//! Cursors (skeleton).
#![allow(unused_variables, dead_code)]

use std::collections::BTreeMap;

use crate::error::Result;
use crate::position::{Entry, Position};

pub struct ManagedCursor {
    name: String,
}

impl ManagedCursor {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn is_durable(&self) -> bool {
        todo!()
    }
    pub fn mark_delete_position(&self) -> Position {
        todo!()
    }
    pub fn read_position(&self) -> Position {
        todo!()
    }
    pub async fn read_entries(&self, max_entries: usize, max_bytes: usize) -> Result<Vec<Entry>> {
        todo!()
    }
    pub async fn wait_entries(&self) {
        todo!()
    }
    pub fn seek(&self, read_position: Position) {
        todo!()
    }
    pub fn rewind(&self) {
        todo!()
    }
    pub fn reset(&self, pos: Position) {
        todo!()
    }
    pub fn ack(&self, positions: &[Position]) -> bool {
        todo!()
    }
    pub fn ack_cumulative(&self, pos: Position) {
        todo!()
    }
    pub fn ack_batch_indexes(&self, pos: Position, acked_bits: &[i64], batch_size: u32) {
        todo!()
    }
    pub fn batch_ack_set(&self, pos: Position) -> Option<Vec<i64>> {
        todo!()
    }
    pub fn is_acked(&self, pos: Position) -> bool {
        todo!()
    }
    pub fn backlog(&self) -> u64 {
        todo!()
    }
    pub fn properties(&self) -> BTreeMap<String, String> {
        todo!()
    }
    pub fn set_property(&self, key: &str, value: &str) {
        todo!()
    }
    pub async fn persist(&self) -> Result<()> {
        todo!()
    }
}
