//! Broker errors, and the Pulsar `ServerError` code each one becomes on the wire.

use strata_managed_ledger::ManagedLedgerError;
use strata_proto::pulsar::ServerError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic name: {0}")]
    InvalidTopicName(String),
    #[error("topic not found: {0}")]
    TopicNotFound(String),
    #[error("namespace not found: {0}")]
    NamespaceNotFound(String),
    #[error("tenant not found: {0}")]
    TenantNotFound(String),
    /// A create found the thing already there.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The change conflicts with the current state (not empty, fewer partitions...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The thing is in use (connected clients) and the change was not forced.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A malformed argument; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The operation does not apply to this kind of topic.
    #[error("not allowed on this topic: {0}")]
    OperationNotAllowed(String),
    #[error("subscription not found: {0}")]
    SubscriptionNotFound(String),
    #[error("consumer not found: consumer_id={0}")]
    ConsumerNotFound(u64),
    #[error("producer busy: {0}")]
    ProducerBusy(String),
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    #[error("consumer busy: {0}")]
    ConsumerBusy(String),
    #[error("consumer assign error: {0}")]
    ConsumerAssign(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The client's role may not do this.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    #[error("service not ready: {0}")]
    ServiceNotReady(String),
    #[error("persistence error: {0}")]
    Persistence(String),
    #[error("metadata error: {0}")]
    Metadata(String),
    #[error("checksum error: {0}")]
    Checksum(String),
    /// A quota with the `producer_request_hold` policy is exceeded: the
    /// client retries, its sends wait.
    #[error("producer blocked, quota exceeded: {0}")]
    QuotaExceededHold(String),
    /// A quota with the `producer_exception` policy is exceeded: the
    /// client's sends fail.
    #[error("producer blocked, quota exceeded: {0}")]
    QuotaExceededException(String),
    #[error("unknown error: {0}")]
    Unknown(String),
}

impl BrokerError {
    /// The code a client acts on.
    pub fn server_error(&self) -> ServerError {
        match self {
            BrokerError::InvalidTopicName(_) => ServerError::InvalidTopicName,
            BrokerError::TopicNotFound(_)
            | BrokerError::NamespaceNotFound(_)
            | BrokerError::TenantNotFound(_) => ServerError::TopicNotFound,
            BrokerError::AlreadyExists(_)
            | BrokerError::Conflict(_)
            | BrokerError::PreconditionFailed(_)
            | BrokerError::InvalidArgument(_)
            | BrokerError::OperationNotAllowed(_) => ServerError::NotAllowedError,
            BrokerError::SubscriptionNotFound(_) => ServerError::SubscriptionNotFound,
            BrokerError::ConsumerNotFound(_) => ServerError::ConsumerNotFound,
            BrokerError::ProducerBusy(_) => ServerError::ProducerBusy,
            BrokerError::ProducerFenced(_) => ServerError::ProducerFenced,
            BrokerError::ConsumerBusy(_) => ServerError::ConsumerBusy,
            BrokerError::ConsumerAssign(_) => ServerError::ConsumerAssignError,
            BrokerError::NotAllowed(_) => ServerError::NotAllowedError,
            BrokerError::NotAuthorized(_) => ServerError::AuthorizationError,
            BrokerError::ServiceNotReady(_) => ServerError::ServiceNotReady,
            BrokerError::Persistence(_) => ServerError::PersistenceError,
            BrokerError::Metadata(_) => ServerError::MetadataError,
            BrokerError::Checksum(_) => ServerError::ChecksumError,
            BrokerError::QuotaExceededHold(_) => ServerError::ProducerBlockedQuotaExceededError,
            BrokerError::QuotaExceededException(_) => {
                ServerError::ProducerBlockedQuotaExceededException
            }
            BrokerError::Unknown(_) => ServerError::UnknownError,
        }
    }
}

impl From<ManagedLedgerError> for BrokerError {
    fn from(e: ManagedLedgerError) -> Self {
        match e {
            ManagedLedgerError::Fenced(_) => BrokerError::ServiceNotReady(e.to_string()),
            ManagedLedgerError::Metadata(_) => BrokerError::Metadata(e.to_string()),
            _ => BrokerError::Persistence(e.to_string()),
        }
    }
}

impl From<strata_common::metadata::MetadataError> for BrokerError {
    fn from(e: strata_common::metadata::MetadataError) -> Self {
        BrokerError::Metadata(e.to_string())
    }
}

impl From<strata_common::names::NameError> for BrokerError {
    fn from(e: strata_common::names::NameError) -> Self {
        BrokerError::InvalidTopicName(e.to_string())
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
