//! Positions and entries.
//!
//! A position is (ledger id, entry id). Ledgers of one managed ledger are
//! created one after the other and ledger ids are allocated increasingly, so
//! the derived order (ledger first, then entry) is the order of the log.
//! Ledger ids start at 1, so [`Position::EARLIEST`] (0:0) sorts before every
//! real entry: as a mark-delete position it means "nothing acknowledged",
//! as a read position "from the oldest entry still stored".

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub ledger_id: u64,
    pub entry_id: u64,
}

impl Position {
    /// Before every entry of every managed ledger (no ledger has id 0).
    pub const EARLIEST: Position = Position {
        ledger_id: 0,
        entry_id: 0,
    };

    pub const fn new(ledger_id: u64, entry_id: u64) -> Position {
        Position {
            ledger_id,
            entry_id,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ledger_id, self.entry_id)
    }
}

impl FromStr for Position {
    type Err = String;

    /// Parses the `L:E` form written by `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (l, e) = s
            .split_once(':')
            .ok_or_else(|| format!("position {s:?} is not L:E"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|err| format!("position {s:?}: {err}"))
        };
        Ok(Position::new(parse(l)?, parse(e)?))
    }
}

/// One entry of a managed ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub position: Position,
    pub data: Bytes,
}

/// Where a new durable cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InitialPosition {
    /// At the oldest entry still stored.
    Earliest,
    /// After the newest confirmed entry.
    #[default]
    Latest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_display_and_parse() {
        assert!(Position::EARLIEST < Position::new(1, 0));
        assert!(Position::new(1, 99) < Position::new(2, 0));
        let p = Position::new(12, 34);
        assert_eq!(p.to_string(), "12:34");
        assert_eq!("12:34".parse::<Position>(), Ok(p));
        assert!("12".parse::<Position>().is_err());
        assert!("a:1".parse::<Position>().is_err());
    }
}
