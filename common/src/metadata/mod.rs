//! The metadata store: one small key-value API with three backends chosen by URL.
//!
//! | URL                        | backend                                    |
//! |----------------------------|--------------------------------------------|
//! | `memory://`                | in-process map, for unit tests             |
//! | `rocksdb:///path/to/dir`   | embedded RocksDB, for `strata standalone`  |
//! | `etcd://h1:2379,h2:2379`   | etcd v3, for every multi-node deployment   |
//!
//! Invariants every backend keeps (checked by the conformance suite in
//! `tests/tests/metadata_conformance.rs`):
//! - every successful write returns a [`Version`] strictly greater than any
//!   version the store returned before (a store-wide revision, as in etcd);
//! - `put`/`delete` with [`Expect::Version`] succeed only if the key's current
//!   version is exactly that; [`Expect::Absent`] only if the key does not exist;
//!   a mismatch is [`MetadataError::BadVersion`] and changes nothing;
//! - a key written with a [`Session`] is deleted by the store once the session
//!   is closed or has not been renewed for its TTL (the owner died);
//! - a watch reports every change under its prefix made after `watch` returned,
//!   in version order; if the watcher falls too far behind it receives
//!   [`WatchEvent::Lagged`] and must re-list.

mod etcd;
mod local_sessions;
mod memory;
mod rocks;
mod watch_hub;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use rocks::RocksDbStore;

/// A store-wide revision identifying one write of one key.
pub type Version = u64;

/// A value with the version of the write that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub version: Version,
}

/// A key and its value, as returned by [`MetadataStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub version: Version,
}

/// The condition a write requires of the key's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Unconditional.
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist with exactly this version (compare-and-set).
    Version(Version),
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put {
        key: String,
        value: Bytes,
        version: Version,
    },
    Delete {
        key: String,
        version: Version,
    },
    /// Events were lost because the watcher fell behind: re-list the prefix.
    Lagged,
}

pub type WatchStream = BoxStream<'static, Result<WatchEvent, MetadataError>>;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("version mismatch: key={key} expected={expected:?}")]
    BadVersion { key: String, expected: Expect },
    #[error("key not found: key={0}")]
    NotFound(String),
    #[error("session expired or closed: session_id={0}")]
    SessionExpired(u64),
    #[error("invalid metadata store url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid key {0:?}: keys start with '/' and are not empty")]
    InvalidKey(String),
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt metadata record: key={key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl MetadataError {
    /// True for a compare-and-set conflict (someone else wrote the key).
    pub fn is_bad_version(&self) -> bool {
        matches!(self, MetadataError::BadVersion { .. })
    }
}

pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// A liveness-bound owner of keys (an etcd lease). Keys put with a session are
/// removed when the session is closed, or when it was not renewed within its
/// TTL because its process died. The backend renews it in the background
/// until [`Session::close`] or drop.
#[async_trait]
pub trait Session: Send + Sync + fmt::Debug {
    fn id(&self) -> u64;
    /// False once the store has expired the session (renewal failed too long).
    fn is_alive(&self) -> bool;
    /// Stops renewing and deletes the session's keys now.
    async fn close(&self) -> Result<()>;
    /// Stops renewing without deleting anything, as a crashed owner would:
    /// the keys vanish once the TTL runs out. For fault tests.
    fn abandon(&self);
}

/// Options of a put.
#[derive(Clone, Debug)]
pub struct PutOptions {
    pub expect: Expect,
    /// Bind the key to this session (ephemeral key).
    pub session: Option<Arc<dyn Session>>,
}

impl Default for PutOptions {
    fn default() -> Self {
        PutOptions {
            expect: Expect::Any,
            session: None,
        }
    }
}

impl PutOptions {
    pub fn expect(expect: Expect) -> Self {
        PutOptions {
            expect,
            session: None,
        }
    }
}

#[async_trait]
pub trait MetadataStore: Send + Sync + fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Versioned>>;
    /// Writes `value` under `key` if `opts.expect` holds; returns the new version.
    async fn put(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<Version>;
    /// Deletes `key` if `expect` holds. Deleting an absent key with
    /// [`Expect::Any`] is not an error; with a version it is `BadVersion`.
    async fn delete(&self, key: &str, expect: Expect) -> Result<()>;
    /// Every key starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>>;
    /// Changes under `prefix` from now on.
    async fn watch(&self, prefix: &str) -> Result<WatchStream>;
    /// A new session that expires `ttl` after its last renewal.
    async fn session(&self, ttl: Duration) -> Result<Arc<dyn Session>>;
}

/// Opens the store named by `url` (see the module docs).
pub async fn open(url: &str) -> Result<Arc<dyn MetadataStore>> {
    let invalid = |reason: &str| MetadataError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected scheme://..."))?;
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::new())),
        "rocksdb" => {
            if rest.is_empty() {
                return Err(invalid("rocksdb:// needs a directory path"));
            }
            Ok(Arc::new(RocksDbStore::open(rest)?))
        }
        "etcd" => {
            let endpoints: Vec<String> = rest
                .trim_end_matches('/')
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| format!("http://{s}"))
                .collect();
            if endpoints.is_empty() {
                return Err(invalid("etcd:// needs host:port[,host:port...]"));
            }
            Ok(Arc::new(EtcdStore::connect(&endpoints).await?))
        }
        other => Err(invalid(&format!(
            "unknown scheme {other:?} (memory, rocksdb, etcd)"
        ))),
    }
}

/// Reads a JSON value; `None` if absent.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn MetadataStore,
    key: &str,
) -> Result<Option<(T, Version)>> {
    match store.get(key).await? {
        None => Ok(None),
        Some(v) => {
            let parsed = serde_json::from_slice(&v.value).map_err(|e| MetadataError::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
            Ok(Some((parsed, v.version)))
        }
    }
}

/// Writes a JSON value with the given condition.
pub async fn put_json<T: serde::Serialize>(
    store: &dyn MetadataStore,
    key: &str,
    value: &T,
    expect: Expect,
) -> Result<Version> {
    let bytes = serde_json::to_vec(value).map_err(|e| MetadataError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    store
        .put(key, Bytes::from(bytes), PutOptions::expect(expect))
        .await
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.starts_with('/') && key.len() > 1 {
        Ok(())
    } else {
        Err(MetadataError::InvalidKey(key.to_string()))
    }
}

/// List and watch prefixes live in the same `/` namespace as keys; `/` alone
/// means everything.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.starts_with('/') {
        Ok(())
    } else {
        Err(MetadataError::InvalidKey(prefix.to_string()))
    }
}

/// The compare half of compare-and-set for the in-process backends, given the
/// key's current version (`None` if absent).
pub(crate) fn check_expect(key: &str, current: Option<Version>, expect: Expect) -> Result<()> {
    let holds = match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => current == Some(v),
    };
    if holds {
        Ok(())
    } else {
        Err(MetadataError::BadVersion {
            key: key.to_string(),
            expected: expect,
        })
    }
}
