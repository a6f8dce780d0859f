//! One client connection: the handshake, the read loop that decodes frames
//! and routes commands, keep-alive, and cleanup when the client goes away.
//!
//! Commands that touch one producer or consumer in order (SEND, ACK, FLOW,
//! REDELIVER) run inline in the read loop, so their order is the client's.
//! Commands that may wait on storage or metadata (LOOKUP, PRODUCER,
//! SUBSCRIBE, SEEK, ...) run as tasks so that one slow topic does not stall
//! the connection.

mod auth;
mod consumer;
mod gather;
mod lookup;
mod producer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use strata_proto::pulsar::{ServerError, base_command::Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::codec::{self, FrameInPlace as Frame};
use crate::commands;
use crate::consumer::Consumer;
use crate::error::BrokerError;
use crate::outbound::{ConnHandle, Outbound};
use crate::service::BrokerService;
use crate::subscription::Subscription;
use crate::topic::Topic;
use gather::Gather;

/// Highest protocol version this broker speaks.
pub const MAX_PROTOCOL_VERSION: i32 = 21;
/// Frames queued for a client before senders wait.
const OUTBOUND_QUEUE: usize = 4096;

pub(crate) struct ProducerState {
    topic: Arc<Topic>,
    receipts: mpsc::UnboundedSender<producer::Receipt>,
}

pub(crate) struct ConsumerState {
    topic: Arc<Topic>,
    sub: Arc<Subscription>,
    consumer: Arc<Consumer>,
}

/// How a client reached the broker, known before its CONNECT.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Over the TLS listener (`pulsar+ssl://`).
    pub tls: bool,
    /// The subject CN of the client certificate, when the client presented
    /// one and it chained to the trusted CA (see [`crate::tls::peer_cert_role`]).
    pub peer_cert_role: Option<String>,
}

/// The state of one connection after CONNECT.
pub(crate) struct Conn {
    service: Arc<BrokerService>,
    handle: Arc<ConnHandle>,
    /// The role its token proved (see `auth`).
    auth: auth::ConnAuth,
    producers: Mutex<HashMap<u64, ProducerState>>,
    consumers: Mutex<HashMap<u64, ConsumerState>>,
}

/// Why the read loop ended early.
#[derive(Debug)]
pub(crate) struct Fatal(pub String);

/// Serves one client on `stream` (plain TCP or TLS, already handshaken)
/// until it goes away or `shutdown`.
pub async fn serve<S>(
    service: Arc<BrokerService>,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _counted = service.metrics.connection_opened();
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let closed = shutdown.child_token();
    let writer_task = tokio::spawn(write_loop(writer, rx, closed.clone()));
    let max_frame = service.config.max_frame_size();
    let keepalive = service.config.keepalive_interval;
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut conn: Option<Arc<Conn>> = None;
    let mut ping_outstanding = false;
    let result: Result<(), Fatal> = async {
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(keepalive, reader.read_buf(&mut buf)) => r,
                _ = closed.cancelled() => return Ok(()),
            };
            match read {
                Err(_) => {
                    if ping_outstanding {
                        return Err(Fatal("no keep-alive answer from the client".into()));
                    }
                    ping_outstanding = true;
                    let _ = tx
                        .send(Outbound::Frame(codec::encode_command(&commands::ping())))
                        .await;
                    continue;
                }
                Ok(Ok(0)) => return Ok(()),
                // A TLS client that closed without close_notify (most do):
                // gone, as with a plain TCP close.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(Fatal(format!("read failed: {e}"))),
                Ok(Ok(_)) => ping_outstanding = false,
            }
            loop {
                let frame = match codec::decode_in_place(&mut buf, max_frame) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(Fatal(e.to_string())),
                };
                match &conn {
                    Some(c) => c.handle_frame(frame).await?,
                    None => {
                        conn =
                            Some(handshake(&service, frame, peer, &transport, &tx, &closed).await?);
                    }
                }
            }
        }
    }
    .await;
    if let Err(Fatal(reason)) = &result {
        // Said once, here, where the connection is dropped.
        info!(%peer, %reason, "closing client connection");
        // Let an ERROR queued just before reach the client.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    closed.cancel();
    if let Some(c) = conn {
        c.cleanup();
    }
    let _ = writer_task.await;
}

async fn handshake(
    service: &Arc<BrokerService>,
    frame: Frame,
    peer: SocketAddr,
    transport: &Transport,
    tx: &mpsc::Sender<Outbound>,
    closed: &CancellationToken,
) -> Result<Arc<Conn>, Fatal> {
    let cmd = frame.command;
    let Some(connect) = cmd.connect.filter(|_| cmd.r#type == Type::Connect as i32) else {
        let e = commands::error_code(
            0,
            ServerError::NotAllowedError,
            "the first command must be CONNECT".into(),
        );
        let _ = tx.send(Outbound::Frame(codec::encode_command(&e))).await;
        return Err(Fatal(format!("command type {} before CONNECT", cmd.r#type)));
    };
    let version = connect
        .protocol_version
        .unwrap_or(0)
        .clamp(0, MAX_PROTOCOL_VERSION);
    let bem = connect
        .feature_flags
        .as_ref()
        .and_then(|f| f.supports_broker_entry_metadata)
        .unwrap_or(false);
    let auth = match auth::ConnAuth::connect(
        service,
        &connect,
        version,
        transport.peer_cert_role.as_deref(),
    ) {
        Ok(a) => a,
        Err(e) => return Err(auth::refuse_connect(tx, &e).await),
    };
    debug!(
        %peer,
        client = %connect.client_version,
        version,
        tls = transport.tls,
        cert_role = transport.peer_cert_role.as_deref().unwrap_or(""),
        role = ?auth.role,
        "client connected"
    );
    let handle = ConnHandle::new(
        service.next_conn_id(),
        peer,
        bem,
        tx.clone(),
        closed.clone(),
    );
    handle
        .send(commands::connected(
            format!("Strata {}", env!("CARGO_PKG_VERSION")),
            version,
            service.config.max_message_size,
        ))
        .await;
    let conn = Arc::new(Conn {
        service: service.clone(),
        handle,
        auth,
        producers: Mutex::new(HashMap::new()),
        consumers: Mutex::new(HashMap::new()),
    });
    conn.spawn_refresh();
    Ok(conn)
}

async fn write_loop<S: AsyncWrite>(
    mut writer: WriteHalf<S>,
    mut rx: mpsc::Receiver<Outbound>,
    closed: CancellationToken,
) {
    let mut out = Gather::default();
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        append(&mut out, first);
        while out.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(m) => append(&mut out, m),
                Err(_) => break,
            }
        }
        if let Err(e) = out.write_to(&mut writer).await {
            debug!(error = %e, "write to client failed");
            break;
        }
    }
    // Flush what was queued before the close (e.g. a final ERROR).
    while let Ok(m) = rx.try_recv() {
        append(&mut out, m);
    }
    if !out.is_empty() {
        let _ = out.write_to(&mut writer).await;
    }
    let _ = writer.shutdown().await;
    closed.cancel();
}

fn append(out: &mut Gather, m: Outbound) {
    match m {
        Outbound::Frame(b) => out.push(b),
        Outbound::Message { header, body } => {
            out.push(header);
            out.push(body);
        }
    }
}

impl Conn {
    async fn handle_frame(self: &Arc<Self>, frame: Frame) -> Result<(), Fatal> {
        let cmd = frame.command;
        let Ok(t) = Type::try_from(cmd.r#type) else {
            return Err(Fatal(format!("unknown command type {}", cmd.r#type)));
        };
        macro_rules! field {
            ($f:ident) => {
                match cmd.$f {
                    Some(v) => v,
                    None => return Err(Fatal(format!("{t:?} without its body"))),
                }
            };
        }
        match t {
            Type::Ping => self.handle.send(commands::pong()).await,
            Type::Pong => {}
            Type::Connect => return Err(Fatal("second CONNECT on one connection".into())),
            Type::AuthResponse => self.handle_auth_response(field!(auth_response)).await?,
            Type::Send => self.handle_send(field!(send), frame.payload).await?,
            Type::Producer => self.spawn_producer(field!(producer)),
            Type::CloseProducer => self.close_producer(field!(close_producer)).await,
            Type::Subscribe => self.spawn_subscribe(field!(subscribe)),
            Type::Flow => self.handle_flow(field!(flow)),
            Type::Ack => self.handle_ack(field!(ack)).await,
            Type::RedeliverUnacknowledgedMessages => {
                self.handle_redeliver(field!(redeliver_unacknowledged_messages))
            }
            Type::CloseConsumer => self.close_consumer(field!(close_consumer)).await,
            Type::Unsubscribe => self.spawn_unsubscribe(field!(unsubscribe)),
            Type::Seek => self.spawn_seek(field!(seek)),
            Type::GetLastMessageId => self.spawn_last_message_id(field!(get_last_message_id)),
            Type::Lookup => self.spawn_lookup(field!(lookup_topic)),
            Type::PartitionedMetadata => {
                self.spawn_partitioned_metadata(field!(partition_metadata))
            }
            Type::GetTopicsOfNamespace => {
                self.spawn_topics_of_namespace(field!(get_topics_of_namespace))
            }
            Type::GetSchema => {
                let g = field!(get_schema);
                self.handle
                    .send(commands::schema_not_found(g.request_id, &g.topic))
                    .await;
            }
            other => {
                // Known to the protocol but not served here (transactions,
                // schemas registry, topic watchers...): a clear error.
                warn!(peer = %self.handle.peer, command = ?other, "unsupported command");
                self.handle
                    .send(commands::error_code(
                        0,
                        ServerError::NotAllowedError,
                        format!("command {other:?} is not supported by this broker"),
                    ))
                    .await;
            }
        }
        Ok(())
    }

    /// Sends an error reply for `request_id` and logs it once.
    async fn reply_error(&self, what: &str, request_id: u64, e: &BrokerError) {
        self.service.log_client_error(what, e);
        self.handle.send(commands::error(request_id, e)).await;
    }

    fn cleanup(&self) {
        for (id, p) in self.producers.lock().drain() {
            p.topic.remove_producer(self.handle.id, id);
        }
        for (id, c) in self.consumers.lock().drain() {
            c.sub.remove_consumer(id, self.handle.id);
            c.topic.drop_if_non_durable(&c.sub);
        }
    }
}

/// Spawns a request handler owned by the connection.
fn spawn<F>(conn: &Arc<Conn>, f: impl FnOnce(Arc<Conn>) -> F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(f(conn.clone()));
}
