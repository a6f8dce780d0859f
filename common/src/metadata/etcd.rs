//! etcd v3 metadata store for multi-node deployments.
//!
//! A key's [`Version`] is its `mod_revision`, so versions are etcd's
//! store-wide revisions. Conditional writes are single transactions whose
//! compare is the [`Expect`]; sessions are leases renewed by a background task.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, LeaseKeepAliveStream,
    LeaseKeeper, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    Expect, KeyValue, MetadataError, MetadataStore, PutOptions, Result, Session, Version,
    Versioned, WatchEvent, WatchStream, check_key, check_prefix,
};

/// Bounds every unary call: the client's balanced channel otherwise waits
/// forever for an endpoint to come up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings detect a dead connection under a long-lived watch; etcd
/// refuses pings more often than every 5 s by default.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Listings of many ledgers exceed tonic's default 4 MiB response limit.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// gRPC status codes (fixed by the gRPC spec) that mean "try again later".
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

fn map_err(e: etcd_client::Error) -> MetadataError {
    use etcd_client::Error as E;
    match &e {
        E::TransportError(_) | E::IoError(_) => MetadataError::Unavailable(e.to_string()),
        E::GRpcStatus(status)
            if matches!(
                i32::from(status.code()),
                GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED
            ) =>
        {
            MetadataError::Unavailable(e.to_string())
        }
        _ => MetadataError::Etcd(e),
    }
}

/// etcd reports a put with an expired or revoked lease this way.
fn is_lease_not_found(e: &MetadataError) -> bool {
    match e {
        MetadataError::Etcd(etcd_client::Error::GRpcStatus(status)) => {
            status.message().contains("lease not found")
        }
        MetadataError::Etcd(etcd_client::Error::LeaseKeepAliveError(msg)) => {
            msg.contains("lease not found")
        }
        _ => false,
    }
}

async fn timed<T>(fut: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(MetadataError::Unavailable(format!(
            "etcd request timed out after {REQUEST_TIMEOUT:?}"
        ))),
    }
}

fn to_version(key: &str, revision: i64) -> Result<Version> {
    match u64::try_from(revision) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(MetadataError::Corrupt {
            key: key.to_string(),
            reason: format!("etcd returned revision {revision}"),
        }),
    }
}

fn key_str(kv: &etcd_client::KeyValue) -> Result<String> {
    kv.key_str()
        .map(str::to_string)
        .map_err(|_| MetadataError::Corrupt {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            reason: "key is not UTF-8".into(),
        })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>, key: &str) -> Result<Version> {
    match header {
        Some(h) => to_version(key, h.revision()),
        None => Err(MetadataError::Corrupt {
            key: key.to_string(),
            reason: "etcd response without header".into(),
        }),
    }
}

/// The txn compare for `expect`; `Err` if it can never hold.
fn compare_for(key: &str, expect: Expect) -> Result<Option<Compare>> {
    match expect {
        Expect::Any => Ok(None),
        Expect::Absent => Ok(Some(Compare::create_revision(key, CompareOp::Equal, 0))),
        // etcd compares an absent key's mod_revision as 0, so version 0 would
        // match a missing key; no key ever has version 0, so refuse up front.
        Expect::Version(v) => match i64::try_from(v) {
            Ok(rev) if rev > 0 => Ok(Some(Compare::mod_revision(key, CompareOp::Equal, rev))),
            _ => Err(bad_version(key, expect)),
        },
    }
}

fn bad_version(key: &str, expect: Expect) -> MetadataError {
    MetadataError::BadVersion {
        key: key.to_string(),
        expected: expect,
    }
}

impl EtcdStore {
    /// Connects and checks that the cluster answers, so a wrong address
    /// fails here rather than on first use.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(PING_INTERVAL, PING_TIMEOUT);
        let client = timed(Client::connect(endpoints, Some(options))).await?;
        let store = EtcdStore {
            client,
            endpoints: endpoints.to_vec(),
        };
        current_revision(&mut store.kv(), "/").await?;
        Ok(store)
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}

async fn current_revision(kv: &mut KvClient, key: &str) -> Result<i64> {
    let resp = timed(kv.get(key, Some(GetOptions::new().with_count_only()))).await?;
    let revision = header_revision(resp.header(), key)?;
    i64::try_from(revision).map_err(|_| MetadataError::Corrupt {
        key: key.to_string(),
        reason: format!("revision {revision} out of range"),
    })
}

#[async_trait]
impl MetadataStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        check_key(key)?;
        let resp = timed(self.kv().get(key, None)).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(Versioned {
                value: Bytes::copy_from_slice(kv.value()),
                version: to_version(key, kv.mod_revision())?,
            })),
        }
    }

    async fn put(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<Version> {
        check_key(key)?;
        let mut put_opts = etcd_client::PutOptions::new();
        let mut session_id = None;
        if let Some(session) = &opts.session {
            let id = session.id();
            let lease = i64::try_from(id).map_err(|_| MetadataError::SessionExpired(id))?;
            if !session.is_alive() {
                return Err(MetadataError::SessionExpired(id));
            }
            put_opts = put_opts.with_lease(lease);
            session_id = Some(id);
        }
        let mut txn = Txn::new();
        if let Some(compare) = compare_for(key, opts.expect)? {
            txn = txn.when(vec![compare]);
        }
        txn = txn.and_then(vec![TxnOp::put(key, value.to_vec(), Some(put_opts))]);
        let resp = match timed(self.kv().txn(txn)).await {
            Ok(resp) => resp,
            Err(e) => {
                return Err(match session_id {
                    Some(id) if is_lease_not_found(&e) => MetadataError::SessionExpired(id),
                    _ => e,
                });
            }
        };
        if !resp.succeeded() {
            return Err(bad_version(key, opts.expect));
        }
        header_revision(resp.header(), key)
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<()> {
        check_key(key)?;
        let mut txn = Txn::new();
        if let Some(compare) = compare_for(key, expect)? {
            txn = txn.when(vec![compare]);
        }
        txn = txn.and_then(vec![TxnOp::delete(key, None)]);
        let resp = timed(self.kv().txn(txn)).await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(bad_version(key, expect))
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        check_prefix(prefix)?;
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let resp = timed(self.kv().get(prefix, Some(options))).await?;
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = key_str(kv)?;
            let version = to_version(&key, kv.mod_revision())?;
            out.push(KeyValue {
                key,
                value: Bytes::copy_from_slice(kv.value()),
                version,
            });
        }
        // etcd sorts by raw key bytes already; this keeps the contract explicit.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        check_prefix(prefix)?;
        let mut state = Watcher {
            client: self.client.clone(),
            prefix: prefix.to_string(),
            stream: None,
            pending: VecDeque::new(),
            done: false,
        };
        state.restart().await?;
        Ok(Box::pin(futures::stream::unfold(state, Watcher::next)))
    }

    async fn session(&self, ttl: Duration) -> Result<Arc<dyn Session>> {
        let requested = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let requested = i64::try_from(requested.max(1)).unwrap_or(i64::MAX);
        let mut lease_client = self.client.lease_client();
        let granted_at = Instant::now();
        let resp = timed(lease_client.grant(requested, None)).await?;
        let lease = resp.id();
        let id = u64::try_from(lease).map_err(|_| MetadataError::Corrupt {
            key: String::new(),
            reason: format!("etcd granted lease id {lease}"),
        })?;
        // etcd raises TTLs below its minimum (about 2 s by default).
        let ttl = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0).max(1));

        let state = Arc::new(LeaseState {
            alive: AtomicBool::new(true),
            deadline: Mutex::new(granted_at + ttl),
        });
        let stop = CancellationToken::new();
        tokio::spawn(keep_lease(
            self.client.clone(),
            lease,
            ttl,
            state.clone(),
            stop.clone(),
        ));
        Ok(Arc::new(EtcdSession {
            id,
            lease,
            ttl,
            client: self.client.clone(),
            state,
            stop,
        }))
    }
}

/// One watch on the server plus events of the last response not yet handed out.
struct Watcher {
    client: Client,
    prefix: String,
    stream: Option<etcd_client::WatchStream>,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

impl Watcher {
    /// (Re)creates the server-side watch starting right after the current
    /// revision, so nothing from before this call is reported and nothing
    /// after it is missed.
    async fn restart(&mut self) -> Result<()> {
        self.stream = None;
        let mut kv = self.client.kv_client();
        let start = current_revision(&mut kv, &self.prefix).await? + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut watch_client = self.client.watch_client();
        let mut stream = timed(watch_client.watch(self.prefix.as_str(), Some(options))).await?;
        let created = timed(stream.message()).await?;
        match created {
            Some(resp) if resp.created() && !resp.canceled() => {}
            Some(resp) => {
                return Err(MetadataError::Unavailable(format!(
                    "etcd refused watch on {:?}: {}",
                    self.prefix,
                    resp.cancel_reason()
                )));
            }
            None => {
                return Err(MetadataError::Unavailable(
                    "etcd closed the watch stream while creating it".into(),
                ));
            }
        }
        self.stream = Some(stream);
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let message = match self.stream.as_mut() {
                Some(stream) => stream.message().await,
                None => return None,
            };
            let resp = match message {
                Ok(Some(resp)) if !resp.canceled() => resp,
                // Canceled (e.g. compacted past us), closed or broken: events
                // may be lost, so resume from now and make the watcher re-list.
                other => {
                    if let Err(e) = &other {
                        tracing::warn!(prefix = %self.prefix, error = %e, "etcd watch broke; restarting");
                    }
                    return match self.restart().await {
                        Ok(()) => Some((Ok(WatchEvent::Lagged), self)),
                        Err(e) => {
                            self.done = true;
                            Some((Err(e), self))
                        }
                    };
                }
            };
            for event in resp.events() {
                match translate(event) {
                    Ok(event) => self.pending.push_back(event),
                    Err(e) => {
                        self.done = true;
                        self.pending.clear();
                        return Some((Err(e), self));
                    }
                }
            }
        }
    }
}

fn translate(event: &etcd_client::Event) -> Result<WatchEvent> {
    let Some(kv) = event.kv() else {
        return Err(MetadataError::Corrupt {
            key: String::new(),
            reason: "etcd watch event without a key".into(),
        });
    };
    let key = key_str(kv)?;
    let version = to_version(&key, kv.mod_revision())?;
    // `Event::event_type` panics on an unknown type code; a deleted key is
    // reported with version 0 (etcd resets it on deletion), a put with >= 1.
    if kv.version() == 0 {
        Ok(WatchEvent::Delete { key, version })
    } else {
        Ok(WatchEvent::Put {
            key,
            value: Bytes::copy_from_slice(kv.value()),
            version,
        })
    }
}

/// What the keepalive task shares with the session handle.
struct LeaseState {
    alive: AtomicBool,
    /// The latest instant the lease is known to last until.
    deadline: Mutex<Instant>,
}

impl LeaseState {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && Instant::now() < *self.deadline.lock()
    }

    fn kill(&self) {
        self.alive.store(false, Ordering::Release);
    }
}

/// Renews the lease every ttl/3. A failed renewal is retried on the next
/// tick over a fresh stream; once the deadline has passed without renewal
/// the lease may be gone, so the session is dead for good.
async fn keep_lease(
    mut client: Client,
    lease: i64,
    ttl: Duration,
    state: Arc<LeaseState>,
    stop: CancellationToken,
) {
    let every = ttl / 3;
    let mut channel = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let sent_at = Instant::now();
        let outcome = tokio::time::timeout(every, renew(&mut client, lease, &mut channel)).await;
        match outcome {
            Ok(Ok(true)) => *state.deadline.lock() = sent_at + ttl,
            Ok(Ok(false)) => {
                tracing::warn!(lease, "etcd lease expired");
                state.kill();
                return;
            }
            Ok(Err(e)) => {
                channel = None;
                tracing::warn!(lease, error = %e, "etcd lease renewal failed");
            }
            Err(_) => {
                channel = None;
                tracing::warn!(lease, "etcd lease renewal timed out");
            }
        }
        if !state.is_alive() {
            state.kill();
            return;
        }
    }
}

/// One keepalive round trip; `Ok(false)` if the lease no longer exists.
async fn renew(
    client: &mut Client,
    lease: i64,
    channel: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<bool, etcd_client::Error> {
    let Some((keeper, responses)) = channel else {
        // Opening the stream performs a first renewal.
        return match client.lease_keep_alive(lease).await {
            Ok(opened) => {
                *channel = Some(opened);
                Ok(true)
            }
            Err(etcd_client::Error::LeaseKeepAliveError(msg))
                if msg.contains("lease not found") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        };
    };
    keeper.keep_alive().await?;
    match responses.message().await? {
        Some(resp) => Ok(resp.ttl() > 0),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "keepalive stream closed".into(),
        )),
    }
}

pub(crate) struct EtcdSession {
    id: u64,
    lease: i64,
    ttl: Duration,
    client: Client,
    state: Arc<LeaseState>,
    stop: CancellationToken,
}

impl fmt::Debug for EtcdSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSession")
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("alive", &self.state.is_alive())
            .finish()
    }
}

#[async_trait]
impl Session for EtcdSession {
    fn id(&self) -> u64 {
        self.id
    }

    fn is_alive(&self) -> bool {
        self.state.is_alive()
    }

    async fn close(&self) -> Result<()> {
        self.stop.cancel();
        self.state.kill();
        let mut lease_client = self.client.lease_client();
        match timed(lease_client.revoke(self.lease)).await {
            Ok(_) => Ok(()),
            // Already expired: its keys are gone too.
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn abandon(&self) {
        self.stop.cancel();
    }
}

impl Drop for EtcdSession {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_zero_and_overflow_never_compare() {
        assert!(compare_for("/k", Expect::Version(0)).is_err());
        assert!(compare_for("/k", Expect::Version(u64::MAX)).is_err());
        assert!(compare_for("/k", Expect::Any).unwrap().is_none());
        assert!(compare_for("/k", Expect::Absent).unwrap().is_some());
        assert!(compare_for("/k", Expect::Version(5)).unwrap().is_some());
    }

    #[test]
    fn revisions_must_be_positive() {
        assert_eq!(to_version("/k", 7).unwrap(), 7);
        assert!(to_version("/k", 0).is_err());
        assert!(to_version("/k", -1).is_err());
    }
}
