//! The sending side of a client connection, shared by everything that
//! writes to that client (request handlers, receipt tasks, dispatchers).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use strata_proto::pulsar::BaseCommand;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::codec;

/// One frame for the connection's writer task.
#[derive(Debug)]
pub enum Outbound {
    Frame(Bytes),
    /// A MESSAGE: the encoded command header and the stored entry after it.
    Message {
        header: Bytes,
        body: Bytes,
    },
}

/// A cheap handle to one client connection.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub peer: SocketAddr,
    /// The client announced it can parse broker-entry metadata.
    pub broker_entry_metadata: bool,
    tx: mpsc::Sender<Outbound>,
    closed: CancellationToken,
}

impl ConnHandle {
    pub fn new(
        id: u64,
        peer: SocketAddr,
        broker_entry_metadata: bool,
        tx: mpsc::Sender<Outbound>,
        closed: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(ConnHandle {
            id,
            peer,
            broker_entry_metadata,
            tx,
            closed,
        })
    }

    /// Sends a command, waiting for room in the connection's queue.
    pub async fn send(&self, cmd: BaseCommand) {
        let _ = self
            .tx
            .send(Outbound::Frame(codec::encode_command(&cmd)))
            .await;
    }

    /// Sends a message frame, waiting for room.
    pub async fn send_message(&self, header: Bytes, body: Bytes) {
        let _ = self.tx.send(Outbound::Message { header, body }).await;
    }

    /// Queues a command from code that cannot wait (under a lock): when the
    /// queue is full a task delivers it.
    pub fn post(&self, cmd: BaseCommand) {
        let frame = Outbound::Frame(codec::encode_command(&cmd));
        if let Err(mpsc::error::TrySendError::Full(frame)) = self.tx.try_send(frame) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(frame).await;
            });
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Closes the connection (what is queued is still written).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Waits until the connection is closed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}
