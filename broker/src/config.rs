//! Broker settings.

use std::time::Duration;

use strata_managed_ledger::ManagedLedgerConfig;

use crate::tls::TlsConfig;

/// What auto topic creation creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoTopicCreationType {
    #[default]
    NonPartitioned,
    Partitioned,
}

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Address the Pulsar protocol listener binds (port 0: any free port).
    pub listen: String,
    /// Address the `pulsar+ssl://` listener binds (Pulsar's
    /// `brokerServicePortTls`, 6651 by convention; port 0: any free port);
    /// none: no TLS listener. Needs `tls`.
    pub listen_tls: Option<String>,
    /// Certificate, key and client-certificate checks of the TLS listener.
    pub tls: Option<TlsConfig>,
    /// Host name put in lookup answers and the service URL; defaults to the
    /// listen host (or 127.0.0.1 when that is a wildcard).
    pub advertised_host: Option<String>,
    /// Largest message a producer may send, in bytes (announced in CONNECTED).
    pub max_message_size: usize,
    /// Idle time after which the broker pings a client; twice this without
    /// any frame from the client closes the connection.
    pub keepalive_interval: Duration,
    /// Bytes of recently written entries kept in memory for tailing readers.
    pub cache_bytes: usize,
    /// A Shared / Key_Shared consumer with this many unacknowledged messages
    /// gets nothing more until it acknowledges half of them (0: no limit).
    pub max_unacked_messages_per_consumer: u32,
    /// Entries a dispatcher reads from storage at once.
    pub dispatch_batch_entries: usize,
    /// Create topics on first use.
    pub allow_auto_topic_creation: bool,
    /// What a topic created on first use is: one topic, or a partitioned
    /// topic of `default_num_partitions` partitions (Pulsar's
    /// `allowAutoTopicCreationType`).
    pub auto_topic_creation_type: AutoTopicCreationType,
    /// Partitions of a partitioned topic created on first use.
    pub default_num_partitions: u32,
    /// Hash ranges each namespace is split into for ownership.
    pub bundles_per_namespace: u32,
    /// Time-to-live of the broker's ownership session.
    pub session_ttl: Duration,
    /// Managed ledger settings (rollover, quorum, cursor persistence).
    pub managed_ledger: ManagedLedgerConfig,
    /// Window over which topic stats compute their rates (msgRateIn...).
    pub stats_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "0.0.0.0:6650".into(),
            listen_tls: None,
            tls: None,
            advertised_host: None,
            max_message_size: 5 << 20,
            keepalive_interval: Duration::from_secs(30),
            cache_bytes: 256 << 20,
            max_unacked_messages_per_consumer: 50_000,
            dispatch_batch_entries: 100,
            allow_auto_topic_creation: true,
            auto_topic_creation_type: AutoTopicCreationType::NonPartitioned,
            default_num_partitions: 1,
            bundles_per_namespace: 4,
            session_ttl: Duration::from_secs(10),
            managed_ledger: ManagedLedgerConfig::default(),
            stats_interval: Duration::from_secs(5),
        }
    }
}

impl BrokerConfig {
    /// Largest frame accepted: a full message plus room for its command and metadata.
    pub fn max_frame_size(&self) -> usize {
        self.max_message_size + (10 << 10)
    }
}
