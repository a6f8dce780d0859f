//! Message ids and received messages.

use bytes::Bytes;
use strata_proto::pulsar::{KeyValue, MessageIdData};

/// Where a message is stored: its entry (ledger, entry), its topic
/// partition (-1 for a non-partitioned topic) and, inside a batch, its
/// index and the batch's size (-1 and 0 when it was sent alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    pub ledger_id: u64,
    pub entry_id: u64,
    pub partition: i32,
    pub batch_index: i32,
    pub batch_size: i32,
}

impl MessageId {
    /// The wire form that names the whole entry.
    pub(crate) fn entry_data(&self) -> MessageIdData {
        MessageIdData {
            ledger_id: self.ledger_id,
            entry_id: self.entry_id,
            partition: (self.partition >= 0).then_some(self.partition),
            ..Default::default()
        }
    }

    pub(crate) fn is_batched(&self) -> bool {
        self.batch_index >= 0 && self.batch_size > 1
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.ledger_id, self.entry_id, self.partition, self.batch_index
        )
    }
}

/// A received message. The payload is a slice of the frame it came in
/// (no copy).
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub payload: Bytes,
    /// Producer's sequence id of this message.
    pub sequence_id: u64,
    /// Milliseconds since the Unix epoch when the producer sent it (its batch).
    pub publish_time: u64,
    pub event_time: u64,
    pub partition_key: Option<String>,
    pub properties: Vec<KeyValue>,
    /// How many times the broker delivered it before.
    pub redelivery_count: u32,
}
