//! Configuration of managed ledgers.

use std::time::Duration;

/// How a managed ledger replicates, rolls its ledgers over, persists its
/// cursors and retains consumed data.
#[derive(Clone, Debug)]
pub struct ManagedLedgerConfig {
    /// Bookies per ledger (E).
    pub ensemble_size: u32,
    /// Copies of each entry (Qw).
    pub write_quorum: u32,
    /// Copies confirmed before an add is acknowledged (Qa).
    pub ack_quorum: u32,
    /// Roll over to a new ledger after this many entries...
    pub max_entries_per_ledger: u64,
    /// ...or this many payload bytes...
    pub max_ledger_size_bytes: u64,
    /// ...or once the current ledger (holding at least one entry) is this old.
    /// Checked on every add and by the managed ledger's timer.
    pub max_ledger_age: Duration,
    /// A ledger younger than this is not rolled over for its entry count or
    /// size (only for its age or a write failure). It keeps a fast topic from
    /// creating a ledger every few milliseconds, each one a metadata write and
    /// an info-record update; ledgers then grow past the entry/size limits.
    pub min_ledger_age_for_rollover: Duration,
    /// Cursor state is written at most this often per cursor (and on close,
    /// on `persist`, and after a `reset`).
    pub cursor_persist_interval: Duration,
    /// Consumed ledgers are kept this long after they were closed; `None`:
    /// time never makes a ledger deletable.
    pub retention_time: Option<Duration>,
    /// Consumed ledgers are deleted (oldest first) while the managed ledger
    /// holds more than this many bytes; `None`: size never makes a ledger
    /// deletable. With both `None` nothing is ever deleted.
    pub retention_size_bytes: Option<u64>,
    /// How often the managed ledger's timer trims consumed ledgers.
    pub trim_interval: Duration,
}

impl Default for ManagedLedgerConfig {
    fn default() -> Self {
        ManagedLedgerConfig {
            ensemble_size: 1,
            write_quorum: 1,
            ack_quorum: 1,
            max_entries_per_ledger: 50_000,
            max_ledger_size_bytes: 1 << 30,
            max_ledger_age: Duration::from_secs(4 * 3600),
            min_ledger_age_for_rollover: Duration::from_secs(10),
            cursor_persist_interval: Duration::from_secs(1),
            retention_time: None,
            retention_size_bytes: None,
            trim_interval: Duration::from_secs(60),
        }
    }
}

impl ManagedLedgerConfig {
    /// Checks the values the managed ledger relies on.
    pub fn validate(&self) -> Result<(), String> {
        let (e, qw, qa) = (self.ensemble_size, self.write_quorum, self.ack_quorum);
        if !(e >= qw && qw >= qa && qa >= 1) {
            return Err(format!(
                "ensemble_size={e} write_quorum={qw} ack_quorum={qa} (need e >= qw >= qa >= 1)"
            ));
        }
        if self.max_entries_per_ledger == 0 || self.max_ledger_size_bytes == 0 {
            return Err("max_entries_per_ledger and max_ledger_size_bytes must be > 0".into());
        }
        if self.cursor_persist_interval.is_zero() {
            return Err("cursor_persist_interval must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_caught() {
        assert!(ManagedLedgerConfig::default().validate().is_ok());
        let bad_quorum = ManagedLedgerConfig {
            write_quorum: 2,
            ..ManagedLedgerConfig::default()
        };
        assert!(bad_quorum.validate().is_err());
        let zero_interval = ManagedLedgerConfig {
            cursor_persist_interval: Duration::ZERO,
            ..ManagedLedgerConfig::default()
        };
        assert!(zero_interval.validate().is_err());
    }
}
