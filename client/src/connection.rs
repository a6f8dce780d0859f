//! One connection to a broker (TCP, or TLS over it): the CONNECT handshake
//! with the client's credentials, a reader task that routes every frame
//! (request answers by request id, receipts by producer id, messages by
//! consumer id, PING answered with PONG, AUTH_CHALLENGE with fresh
//! credentials) and a writer task that drains a bounded queue and sends
//! whatever has gathered with one vectored write, so many small frames cost
//! one syscall and a batch's payload is never copied into a write buffer.
//!
//! When the connection ends, for whatever reason, every waiting request,
//! every pending send and every consumer on it fails with the same error;
//! the client does not reconnect.

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use strata_proto::frame::{self, Frame};
use strata_proto::pulsar::{
    AuthData, BaseCommand, CommandAuthResponse, CommandConnect, CommandMessage, CommandPing,
    CommandPong, FeatureFlags, ProtocolVersion, ServerError, base_command::Type,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::auth::Authentication;
use crate::error::{ClientError, Result};
use crate::producer::ProducerShared;
use crate::tls::{self, TlsFailure};

/// The read and write halves of a connection, plain or TLS.
type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Frames queued for the writer before senders wait.
const WRITE_QUEUE: usize = 1024;
/// At most this much goes into one vectored write.
const MAX_WRITE_ITEMS: usize = 512;
const MAX_WRITE_BYTES: usize = 4 << 20;
/// Frames may exceed the broker's maximum message size by this much (command and metadata).
const FRAME_OVERHEAD: usize = 64 << 10;
/// The broker's default when CONNECTED does not say.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 5 << 20;

/// A frame for the writer: a command alone, or a header and the payload after it.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Bytes),
    Message(Bytes, Bytes),
}

/// A MESSAGE frame for one consumer.
pub(crate) type Delivery = (CommandMessage, Bytes);

type Reply = oneshot::Sender<Result<BaseCommand>>;

/// Settings of a connection.
#[derive(Clone)]
pub(crate) struct ConnectionOptions {
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub keepalive: Duration,
    /// Set for `pulsar+ssl://`.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Sent in CONNECT and in answer to AUTH_CHALLENGE.
    pub auth: Option<Arc<Authentication>>,
}

pub struct Connection {
    /// `host:port` dialled.
    pub addr: String,
    /// The broker's version string from CONNECTED.
    pub server_version: String,
    /// The protocol version both sides speak.
    pub protocol_version: i32,
    /// The largest message the broker accepts.
    pub max_message_size: usize,
    tx: mpsc::Sender<Outgoing>,
    requests: Mutex<HashMap<u64, Reply>>,
    producers: Mutex<HashMap<u64, Arc<ProducerShared>>>,
    consumers: Mutex<HashMap<u64, mpsc::Sender<Delivery>>>,
    closed: CancellationToken,
    close_reason: Mutex<Option<ClientError>>,
    next_request_id: AtomicU64,
    operation_timeout: Duration,
    auth: Option<Arc<Authentication>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

impl Connection {
    /// Dials `addr`, performs the handshake (TLS, then CONNECT), and starts
    /// the reader and writer.
    pub(crate) async fn connect(addr: &str, opts: &ConnectionOptions) -> Result<Arc<Connection>> {
        let connect_err = |e: std::io::Error| ClientError::Connect {
            addr: addr.to_string(),
            source: Arc::new(e),
        };
        let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(format!("connecting to {addr}")))?
            .map_err(connect_err)?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer): (Reader, Writer) = match &opts.tls {
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            Some(connector) => {
                let name = tls::server_name(addr)?;
                let stream =
                    tokio::time::timeout(opts.connect_timeout, connector.connect(name, stream))
                        .await
                        .map_err(|_| ClientError::Timeout(format!("TLS handshake with {addr}")))?
                        // Whatever ends the handshake (a certificate refused,
                        // a peer that does not speak TLS) is a TLS failure.
                        .map_err(|e| ClientError::Tls {
                            addr: addr.to_string(),
                            failure: tls::tls_failure(&e)
                                .unwrap_or_else(|| TlsFailure::Other(e.to_string())),
                        })?;
                let (r, w) = tokio::io::split(stream);
                (Box::new(r), Box::new(w))
            }
        };
        let mut buf = BytesMut::with_capacity(256 << 10);
        let connected = tokio::time::timeout(
            opts.operation_timeout,
            handshake(
                &mut reader,
                &mut writer,
                &mut buf,
                addr,
                opts.auth.as_deref(),
            ),
        )
        .await
        .map_err(|_| ClientError::Timeout(format!("handshake with {addr}")))??;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let conn = Arc::new(Connection {
            addr: addr.to_string(),
            server_version: connected.server_version,
            protocol_version: connected.protocol_version.unwrap_or(0),
            max_message_size: connected
                .max_message_size
                .and_then(|m| usize::try_from(m).ok())
                .filter(|m| *m > 0)
                .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            tx,
            requests: Mutex::new(HashMap::new()),
            producers: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            next_request_id: AtomicU64::new(1),
            operation_timeout: opts.operation_timeout,
            auth: opts.auth.clone(),
        });
        let c = conn.clone();
        tokio::spawn(async move {
            if let Err(e) = write_loop(writer, rx, c.closed.clone(), &c.addr).await {
                c.shutdown(e);
            }
        });
        let c = conn.clone();
        let keepalive = opts.keepalive;
        tokio::spawn(async move {
            let reason = c.read_loop(reader, buf, keepalive).await;
            c.shutdown(reason);
        });
        Ok(conn)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Why the connection closed (`Disconnected` if it has not).
    pub fn close_reason(&self) -> ClientError {
        self.close_reason
            .lock()
            .clone()
            .unwrap_or_else(|| ClientError::Disconnected(self.addr.clone()))
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Closes the connection: the socket, and everything waiting on it.
    pub fn close(&self) {
        self.shutdown(ClientError::Disconnected(self.addr.clone()));
    }

    fn shutdown(&self, reason: ClientError) {
        {
            let mut r = self.close_reason.lock();
            if r.is_none() {
                debug!(addr = %self.addr, %reason, "connection closed");
                *r = Some(reason.clone());
            }
        }
        // Cancel first: a registration that races with this sees the token
        // and takes itself back out.
        self.closed.cancel();
        let requests: Vec<Reply> = self.requests.lock().drain().map(|(_, r)| r).collect();
        for r in requests {
            let _ = r.send(Err(reason.clone()));
        }
        let producers: Vec<_> = self.producers.lock().drain().map(|(_, p)| p).collect();
        for p in producers {
            p.fail_all(&reason);
        }
        self.consumers.lock().clear();
    }

    /// Queues a frame, waiting for room.
    pub(crate) async fn send(&self, out: Outgoing) -> Result<()> {
        if self.is_closed() {
            return Err(self.close_reason());
        }
        self.tx.send(out).await.map_err(|_| self.close_reason())
    }

    pub(crate) async fn send_command(&self, cmd: &BaseCommand) -> Result<()> {
        self.send(Outgoing::Frame(frame::encode_command(cmd))).await
    }

    /// Sends a request and waits for the answer with the same request id
    /// (an ERROR answer becomes `ClientError::Server`).
    pub(crate) async fn request(
        &self,
        request_id: u64,
        cmd: &BaseCommand,
        what: &str,
    ) -> Result<BaseCommand> {
        let (tx, rx) = oneshot::channel();
        self.requests.lock().insert(request_id, tx);
        if self.is_closed() {
            self.requests.lock().remove(&request_id);
            return Err(self.close_reason());
        }
        if let Err(e) = self.send_command(cmd).await {
            self.requests.lock().remove(&request_id);
            return Err(e);
        }
        match tokio::time::timeout(self.operation_timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(self.close_reason()),
            Err(_) => {
                self.requests.lock().remove(&request_id);
                Err(ClientError::Timeout(format!("{what} on {}", self.addr)))
            }
        }
    }

    pub(crate) fn register_producer(&self, id: u64, p: Arc<ProducerShared>) -> Result<()> {
        self.producers.lock().insert(id, p);
        if self.is_closed() {
            self.producers.lock().remove(&id);
            return Err(self.close_reason());
        }
        Ok(())
    }

    pub(crate) fn deregister_producer(&self, id: u64) {
        self.producers.lock().remove(&id);
    }

    pub(crate) fn register_consumer(&self, id: u64, tx: mpsc::Sender<Delivery>) -> Result<()> {
        self.consumers.lock().insert(id, tx);
        if self.is_closed() {
            self.consumers.lock().remove(&id);
            return Err(self.close_reason());
        }
        Ok(())
    }

    pub(crate) fn deregister_consumer(&self, id: u64) {
        self.consumers.lock().remove(&id);
    }

    /// Reads and routes frames until the connection ends; returns why.
    async fn read_loop(
        &self,
        mut reader: Reader,
        mut buf: BytesMut,
        keepalive: Duration,
    ) -> ClientError {
        let max_frame = self.max_message_size + FRAME_OVERHEAD;
        let mut ping_outstanding = false;
        loop {
            loop {
                match frame::decode(&mut buf, max_frame) {
                    Ok(Some(f)) => self.dispatch(f).await,
                    Ok(None) => break,
                    Err(source) => {
                        return ClientError::Codec {
                            addr: self.addr.clone(),
                            source: Arc::new(source),
                        };
                    }
                }
            }
            let read = tokio::select! {
                r = tokio::time::timeout(keepalive, reader.read_buf(&mut buf)) => r,
                _ = self.closed.cancelled() => return self.close_reason(),
            };
            match read {
                Err(_) if ping_outstanding => {
                    return ClientError::Timeout(format!("keep-alive of {}", self.addr));
                }
                Err(_) => {
                    ping_outstanding = true;
                    let _ = self.send_command(&ping()).await;
                }
                Ok(Ok(0)) => return ClientError::Disconnected(self.addr.clone()),
                Ok(Ok(_)) => ping_outstanding = false,
                Ok(Err(e)) => return io_error(&self.addr, e),
            }
        }
    }

    async fn dispatch(&self, f: Frame) {
        let cmd = f.command;
        let Ok(t) = Type::try_from(cmd.r#type) else {
            debug!(addr = %self.addr, r#type = cmd.r#type, "unknown command from the broker ignored");
            return;
        };
        match t {
            Type::Ping => {
                let pong = BaseCommand {
                    r#type: Type::Pong as i32,
                    pong: Some(CommandPong {}),
                    ..Default::default()
                };
                let _ = self.send_command(&pong).await;
            }
            Type::Pong => {}
            Type::AuthChallenge => self.answer_challenge().await,
            Type::SendReceipt => {
                if let Some(r) = cmd.send_receipt {
                    let id = r.message_id.as_ref().map(|m| (m.ledger_id, m.entry_id));
                    if let Some(p) = self.producer(r.producer_id) {
                        p.on_receipt(r.sequence_id, id);
                    }
                }
            }
            Type::SendError => {
                if let Some(e) = cmd.send_error
                    && let Some(p) = self.producer(e.producer_id)
                {
                    p.on_send_error(e.sequence_id, ClientError::server(e.error, e.message));
                }
            }
            Type::Message => {
                let (Some(m), Some(data)) = (cmd.message, f.payload) else {
                    debug!(addr = %self.addr, "MESSAGE without its body ignored");
                    return;
                };
                let tx = self.consumers.lock().get(&m.consumer_id).cloned();
                if let Some(tx) = tx {
                    let id = m.consumer_id;
                    if tx.send((m, data)).await.is_err() {
                        self.deregister_consumer(id);
                    }
                }
            }
            Type::CloseProducer => {
                if let Some(c) = cmd.close_producer
                    && let Some(p) = self.producers.lock().remove(&c.producer_id)
                {
                    p.fail_all(&ClientError::ProducerClosed(format!(
                        "{} (closed by the broker)",
                        c.producer_id
                    )));
                }
            }
            Type::CloseConsumer => {
                if let Some(c) = cmd.close_consumer {
                    self.deregister_consumer(c.consumer_id);
                }
            }
            Type::Error => match cmd.error {
                Some(e) => {
                    let waiter = self.requests.lock().remove(&e.request_id);
                    match waiter {
                        Some(w) => {
                            let _ = w.send(Err(ClientError::server(e.error, e.message)));
                        }
                        // The broker refused the credentials of a live
                        // connection (an expired token, a bad refresh) and
                        // is closing it: that is why everything on it fails.
                        None if e.error == ServerError::AuthenticationError as i32 => {
                            info!(addr = %self.addr, message = %e.message, "the broker refused this connection's credentials");
                            self.shutdown(ClientError::server(e.error, e.message));
                        }
                        None => debug!(addr = %self.addr, code = e.error, message = %e.message,
                            "broker error without a waiting request"),
                    }
                }
                None => debug!(addr = %self.addr, "ERROR without its body"),
            },
            _ => match response_request_id(&cmd) {
                Some(id) => {
                    let waiter = self.requests.lock().remove(&id);
                    if let Some(w) = waiter {
                        let _ = w.send(Ok(cmd));
                    }
                }
                None => {
                    debug!(addr = %self.addr, command = ?t, "unhandled command from the broker")
                }
            },
        }
    }

    fn producer(&self, id: u64) -> Option<Arc<ProducerShared>> {
        self.producers.lock().get(&id).cloned()
    }

    /// AUTH_CHALLENGE: the broker saw the token expire and wants the
    /// current one (read again from its source). Without credentials to
    /// give, the challenge goes unanswered and the broker closes the
    /// connection with its reason.
    async fn answer_challenge(&self) {
        let Some(auth) = &self.auth else {
            info!(addr = %self.addr, "AUTH_CHALLENGE from the broker, but this client has no credentials");
            return;
        };
        let (method, data) = match auth.credentials().await {
            Ok(c) => c,
            Err(e) => {
                info!(addr = %self.addr, error = %e, "cannot answer AUTH_CHALLENGE");
                return;
            }
        };
        debug!(addr = %self.addr, method, "answering AUTH_CHALLENGE");
        let response = BaseCommand {
            r#type: Type::AuthResponse as i32,
            auth_response: Some(CommandAuthResponse {
                client_version: Some(client_version()),
                response: Some(AuthData {
                    auth_method_name: Some(method.to_string()),
                    auth_data: data,
                }),
                protocol_version: Some(ProtocolVersion::V21 as i32),
            }),
            ..Default::default()
        };
        let _ = self.send_command(&response).await;
    }
}

/// An I/O error of the connection to `addr`: a TLS failure when rustls is
/// behind it (a certificate either side refused, say), else plain I/O.
fn io_error(addr: &str, e: std::io::Error) -> ClientError {
    match tls::tls_failure(&e) {
        Some(failure) => ClientError::Tls {
            addr: addr.to_string(),
            failure,
        },
        None => ClientError::Io {
            addr: addr.to_string(),
            source: Arc::new(e),
        },
    }
}

fn client_version() -> String {
    format!("strata-client {}", env!("CARGO_PKG_VERSION"))
}

fn ping() -> BaseCommand {
    BaseCommand {
        r#type: Type::Ping as i32,
        ping: Some(CommandPing {}),
        ..Default::default()
    }
}

/// The request id of an answer to a request (None for anything else, and
/// for a PRODUCER_SUCCESS that says the producer is not ready yet: the
/// ready one follows with the same id).
fn response_request_id(cmd: &BaseCommand) -> Option<u64> {
    match Type::try_from(cmd.r#type).ok()? {
        Type::Success => cmd.success.as_ref().map(|c| c.request_id),
        Type::ProducerSuccess => cmd
            .producer_success
            .as_ref()
            .filter(|c| c.producer_ready.unwrap_or(true))
            .map(|c| c.request_id),
        Type::LookupResponse => cmd.lookup_topic_response.as_ref().map(|c| c.request_id),
        Type::PartitionedMetadataResponse => cmd
            .partition_metadata_response
            .as_ref()
            .map(|c| c.request_id),
        Type::GetLastMessageIdResponse => cmd
            .get_last_message_id_response
            .as_ref()
            .map(|c| c.request_id),
        Type::AckResponse => cmd.ack_response.as_ref().and_then(|c| c.request_id),
        Type::GetTopicsOfNamespaceResponse => cmd
            .get_topics_of_namespace_response
            .as_ref()
            .map(|c| c.request_id),
        Type::GetSchemaResponse => cmd.get_schema_response.as_ref().map(|c| c.request_id),
        _ => None,
    }
}

async fn handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    buf: &mut BytesMut,
    addr: &str,
    auth: Option<&Authentication>,
) -> Result<strata_proto::pulsar::CommandConnected> {
    let (auth_method_name, auth_data) = match auth {
        Some(a) => {
            let (method, data) = a.credentials().await?;
            (Some(method.to_string()), data)
        }
        None => (None, None),
    };
    let connect = BaseCommand {
        r#type: Type::Connect as i32,
        connect: Some(CommandConnect {
            client_version: client_version(),
            protocol_version: Some(ProtocolVersion::V21 as i32),
            auth_method_name,
            auth_data,
            feature_flags: Some(FeatureFlags {
                // AUTH_CHALLENGE is answered (see `answer_challenge`).
                supports_auth_refresh: Some(true),
                ..FeatureFlags::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    writer
        .write_all(&frame::encode_command(&connect))
        .await
        .map_err(|e| io_error(addr, e))?;
    // TLS holds written data in its record buffer until flushed.
    writer.flush().await.map_err(|e| io_error(addr, e))?;
    loop {
        if let Some(f) =
            frame::decode(buf, DEFAULT_MAX_MESSAGE_SIZE).map_err(|source| ClientError::Codec {
                addr: addr.to_string(),
                source: Arc::new(source),
            })?
        {
            let cmd = f.command;
            return match Type::try_from(cmd.r#type) {
                Ok(Type::Connected) => cmd
                    .connected
                    .ok_or_else(|| ClientError::Protocol("CONNECTED without its body".into())),
                Ok(Type::Error) => Err(match cmd.error {
                    Some(e) => ClientError::server(e.error, e.message),
                    None => ClientError::Protocol("ERROR without its body".into()),
                }),
                _ => Err(ClientError::Protocol(format!(
                    "expected CONNECTED, got command type {}",
                    cmd.r#type
                ))),
            };
        }
        if reader.read_buf(buf).await.map_err(|e| io_error(addr, e))? == 0 {
            return Err(ClientError::Disconnected(addr.to_string()));
        }
    }
}

async fn write_loop(
    mut w: Writer,
    mut rx: mpsc::Receiver<Outgoing>,
    closed: CancellationToken,
    addr: &str,
) -> Result<()> {
    let mut bufs: Vec<Bytes> = Vec::with_capacity(2 * MAX_WRITE_ITEMS);
    loop {
        let first = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            m = rx.recv() => m,
        };
        let Some(first) = first else { break };
        let mut bytes = push(&mut bufs, first);
        let mut items = 1;
        while items < MAX_WRITE_ITEMS && bytes < MAX_WRITE_BYTES {
            match rx.try_recv() {
                Ok(m) => {
                    bytes += push(&mut bufs, m);
                    items += 1;
                }
                Err(_) => break,
            }
        }
        write_all_vectored(&mut w, &bufs)
            .await
            .map_err(|e| io_error(addr, e))?;
        // A no-op on TCP; TLS sends its buffered records.
        w.flush().await.map_err(|e| io_error(addr, e))?;
        bufs.clear();
    }
    let _ = w.shutdown().await;
    Ok(())
}

fn push(bufs: &mut Vec<Bytes>, m: Outgoing) -> usize {
    match m {
        Outgoing::Frame(b) => {
            let n = b.len();
            bufs.push(b);
            n
        }
        Outgoing::Message(h, b) => {
            let n = h.len() + b.len();
            bufs.push(h);
            if !b.is_empty() {
                bufs.push(b);
            }
            n
        }
    }
}

/// Writes every buffer, in order, with as few syscalls as the socket allows.
async fn write_all_vectored(w: &mut Writer, bufs: &[Bytes]) -> std::io::Result<()> {
    // Linux takes at most 1024 slices per writev.
    const MAX_SLICES: usize = 1024;
    let mut idx = 0;
    let mut off = 0;
    while idx < bufs.len() {
        if off == bufs[idx].len() {
            idx += 1;
            off = 0;
            continue;
        }
        let mut slices = Vec::with_capacity((bufs.len() - idx).min(MAX_SLICES));
        slices.push(IoSlice::new(&bufs[idx][off..]));
        slices.extend(
            bufs[idx + 1..]
                .iter()
                .take(MAX_SLICES - 1)
                .map(|b| IoSlice::new(b)),
        );
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}
