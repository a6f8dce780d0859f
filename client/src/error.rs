//! The client's errors.
//!
//! Errors are `Clone` because one failure (a lost connection, a failed
//! batch) is handed to every send or receive waiting on it.

use std::sync::Arc;

use strata_proto::frame::{CodecError, MessageError};
use strata_proto::pulsar::ServerError;

use crate::tls::{TlsFailure, TlsSetupError};

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
    /// The client's own credentials cannot be produced (an unreadable or
    /// empty token file...).
    #[error("authentication: {0}")]
    Auth(String),
    #[error("TLS settings: {0}")]
    TlsSetup(#[from] TlsSetupError),
    #[error("TLS with {addr} failed: {failure}")]
    Tls { addr: String, failure: TlsFailure },
}

impl From<MessageError> for ClientError {
    fn from(e: MessageError) -> Self {
        ClientError::Message(Arc::new(e))
    }
}

impl ClientError {
    /// The broker's error code, when the broker refused the request (e.g.
    /// `AuthenticationError` for bad credentials, `AuthorizationError` for
    /// a role without the permission).
    pub fn server_error(&self) -> Option<ServerError> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn server(code: i32, message: impl Into<String>) -> ClientError {
        ClientError::Server {
            code: ServerError::try_from(code).unwrap_or(ServerError::UnknownError),
            message: message.into(),
        }
    }
}
