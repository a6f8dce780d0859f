//! The client's errors.
//!
//! Errors are `Clone` because one failure (a lost connection, a failed
//! batch) is handed to every send or receive waiting on it.

use std::sync::Arc;

use strata_proto::frame::{CodecError, MessageError};
use strata_proto::pulsar::ServerError;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid service URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("connection to {0} is closed")]
    Disconnected(String),
    #[error("bad frame from {addr}: {source}")]
    Codec {
        addr: String,
        #[source]
        source: Arc<CodecError>,
    },
    #[error("bad message: {0}")]
    Message(#[source] Arc<MessageError>),
    #[error("the broker answered {code:?}: {message}")]
    Server { code: ServerError, message: String },
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    #[error("{0} timed out")]
    Timeout(String),
    #[error("lookup of {topic} did not settle after {redirects} redirects")]
    TooManyRedirects { topic: String, redirects: u32 },
    #[error("producer {0} is closed")]
    ProducerClosed(String),
    #[error("consumer {0} is closed")]
    ConsumerClosed(String),
    #[error("message of {size} bytes exceeds the broker's {max} byte limit")]
    MessageTooLarge { size: usize, max: usize },
    #[error("not supported by this client: {0}")]
    Unsupported(String),
}

impl From<MessageError> for ClientError {
    fn from(e: MessageError) -> Self {
        ClientError::Message(Arc::new(e))
    }
}

impl ClientError {
    pub(crate) fn server(code: i32, message: impl Into<String>) -> ClientError {
        ClientError::Server {
            code: ServerError::try_from(code).unwrap_or(ServerError::UnknownError),
            message: message.into(),
        }
    }
}
