//! The managed-ledger factory (skeleton).
#![allow(unused_variables, dead_code)]

use std::sync::Arc;

use strata_ledger::LedgerClient;

use crate::config::ManagedLedgerConfig;
use crate::error::Result;
use crate::ledger::ManagedLedger;

#[derive(Clone)]
pub struct ManagedLedgerFactory {
    client: LedgerClient,
}

impl ManagedLedgerFactory {
    pub fn new(client: LedgerClient, config: ManagedLedgerConfig, cache_bytes: usize) -> Self {
        ManagedLedgerFactory { client }
    }
    pub async fn open(&self, name: &str) -> Result<Arc<ManagedLedger>> {
        todo!()
    }
    pub async fn open_with_config(
        &self,
        name: &str,
        config: ManagedLedgerConfig,
    ) -> Result<Arc<ManagedLedger>> {
        todo!()
    }
    pub async fn exists(&self, name: &str) -> Result<bool> {
        todo!()
    }
    pub async fn delete(&self, name: &str) -> Result<()> {
        todo!()
    }
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        todo!()
    }
    pub async fn close_all(&self) {
        todo!()
    }
}
