//! Ledger metadata: what the metadata store records about each ledger, and
//! the id allocator. Only the writer changes an OPEN ledger's metadata (its
//! ensemble changes); a recoverer moves it to IN_RECOVERY and then CLOSED.
//! Every change is a compare-and-set on the record's version, which is what
//! lets a writer learn that it lost the ledger to a recoverer.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_common::metadata::{self, Expect, MetadataStore, PutOptions, Version};
use strata_common::paths;

use crate::error::{LedgerError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerStatus {
    Open,
    InRecovery,
    Closed,
}

/// The bookies that store entries from `first_entry` on (until the next fragment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub first_entry: u64,
    pub bookies: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMetadata {
    pub ledger_id: u64,
    pub ensemble_size: u32,
    pub write_quorum: u32,
    pub ack_quorum: u32,
    pub status: LedgerStatus,
    /// Last entry id once closed (-1: empty).
    pub last_entry_id: i64,
    /// Total payload bytes once closed.
    pub length: u64,
    pub ensembles: Vec<Fragment>,
    pub created_at_ms: u64,
    #[serde(default)]
    pub closed_at_ms: Option<u64>,
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
}

impl LedgerMetadata {
    /// The fragment that holds `entry`.
    pub fn fragment(&self, entry: u64) -> &Fragment {
        let i = self
            .ensembles
            .partition_point(|f| f.first_entry <= entry)
            .saturating_sub(1);
        &self.ensembles[i]
    }

    pub fn last_fragment(&self) -> &Fragment {
        // Invariant: a ledger always has at least one fragment (set at create).
        &self.ensembles[self.ensembles.len() - 1]
    }

    /// The bookies that must store `entry`, in replica order.
    pub fn write_set(&self, entry: u64) -> Vec<String> {
        write_set(&self.fragment(entry).bookies, self.write_quorum, entry)
    }

    pub fn is_closed(&self) -> bool {
        self.status == LedgerStatus::Closed
    }

    /// Checks what the rest of the client relies on, so a damaged record is
    /// an error rather than a panic.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| {
            Err(LedgerError::Metadata(format!(
                "corrupt metadata of ledger {}: {why}",
                self.ledger_id
            )))
        };
        let (e, qw, qa) = (self.ensemble_size, self.write_quorum, self.ack_quorum);
        if !(e >= qw && qw >= qa && qa >= 1 && e <= 64) {
            return bad(format!("ensemble={e} write_quorum={qw} ack_quorum={qa}"));
        }
        if self.ensembles.is_empty() || self.ensembles[0].first_entry != 0 {
            return bad("no fragment starting at entry 0".into());
        }
        if self
            .ensembles
            .windows(2)
            .any(|w| w[0].first_entry >= w[1].first_entry)
        {
            return bad("fragments out of order".into());
        }
        if let Some(f) = self
            .ensembles
            .iter()
            .find(|f| f.bookies.len() != e as usize)
        {
            return bad(format!(
                "fragment at {} has {} bookies",
                f.first_entry,
                f.bookies.len()
            ));
        }
        Ok(())
    }
}

/// Entry `i` goes to `qw` consecutive bookies starting at `i mod E`.
pub fn write_set(ensemble: &[String], qw: u32, entry: u64) -> Vec<String> {
    let e = ensemble.len() as u64;
    (0..qw as u64)
        .map(|r| ensemble[((entry + r) % e) as usize].clone())
        .collect()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Allocates a fresh ledger id (ids start at 1 and are never reused).
pub async fn allocate_id(store: &dyn MetadataStore) -> Result<u64> {
    loop {
        let current = store.get(paths::LEDGER_ID_COUNTER).await?;
        let (next, expect) = match &current {
            None => (1u64, Expect::Absent),
            Some(v) => {
                let text = std::str::from_utf8(&v.value).unwrap_or("");
                let n: u64 = text.parse().map_err(|_| {
                    LedgerError::Metadata(format!("ledger id counter holds {text:?}"))
                })?;
                (n, Expect::Version(v.version))
            }
        };
        let value = Bytes::from((next + 1).to_string());
        match store
            .put(paths::LEDGER_ID_COUNTER, value, PutOptions::expect(expect))
            .await
        {
            Ok(_) => return Ok(next),
            Err(e) if e.is_bad_version() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn read(store: &dyn MetadataStore, ledger_id: u64) -> Result<(LedgerMetadata, Version)> {
    let (md, version): (LedgerMetadata, Version) =
        metadata::get_json(store, &paths::ledger(ledger_id))
            .await?
            .ok_or(LedgerError::NoSuchLedger(ledger_id))?;
    md.validate()?;
    Ok((md, version))
}

/// Writes `md` if the stored version is still `expect`.
pub async fn write(
    store: &dyn MetadataStore,
    md: &LedgerMetadata,
    expect: Expect,
) -> Result<Version, metadata::MetadataError> {
    metadata::put_json(store, &paths::ledger(md.ledger_id), md, expect).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> LedgerMetadata {
        LedgerMetadata {
            ledger_id: 1,
            ensemble_size: 3,
            write_quorum: 2,
            ack_quorum: 2,
            status: LedgerStatus::Open,
            last_entry_id: -1,
            length: 0,
            ensembles: vec![
                Fragment {
                    first_entry: 0,
                    bookies: vec!["a".into(), "b".into(), "c".into()],
                },
                Fragment {
                    first_entry: 10,
                    bookies: vec!["a".into(), "d".into(), "c".into()],
                },
            ],
            created_at_ms: 0,
            closed_at_ms: None,
            custom: BTreeMap::new(),
        }
    }

    #[test]
    fn write_sets_follow_fragments() {
        let m = md();
        assert_eq!(m.write_set(0), vec!["a", "b"]);
        assert_eq!(m.write_set(2), vec!["c", "a"]);
        assert_eq!(m.write_set(9), vec!["a", "b"]);
        assert_eq!(m.write_set(10), vec!["d", "c"]);
        assert_eq!(m.fragment(11).first_entry, 10);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"OPEN\""));
        assert_eq!(serde_json::from_str::<LedgerMetadata>(&json).unwrap(), m);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        md().validate().unwrap();
        let mut m = md();
        m.ensembles.clear();
        assert!(m.validate().is_err());
        let mut m = md();
        m.ensembles[1].bookies.pop();
        assert!(m.validate().is_err());
        let mut m = md();
        m.ensembles[1].first_entry = 0;
        assert!(m.validate().is_err());
        let mut m = md();
        m.ack_quorum = 3;
        assert!(m.validate().is_err());
    }

    #[tokio::test]
    async fn ids_are_unique_under_concurrency() {
        let store: std::sync::Arc<dyn MetadataStore> =
            std::sync::Arc::new(strata_common::metadata::MemoryStore::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..20 {
                    ids.push(allocate_id(s.as_ref()).await.unwrap());
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (1..=160).collect::<Vec<u64>>());
    }
}
