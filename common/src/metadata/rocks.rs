//! Embedded RocksDB metadata store for `strata standalone`.
//!
//! Layout: each key under `/` maps to a record (see [`encode_record`]); the
//! store-wide revision lives at [`REVISION_KEY`], outside the `/` namespace so
//! no listing ever sees it, and is written in the same synced batch as every
//! change. Writers are serialized by one mutex around read-check-write, which
//! makes compare-and-set atomic within the process (the DB is locked against
//! other processes by RocksDB itself). Sessions and watches are in-process.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::local_sessions::{SessionKeys, SessionTable};
use super::watch_hub::WatchHub;
use super::{
    Expect, KeyValue, MetadataError, MetadataStore, PutOptions, Result, Session, Version,
    Versioned, WatchEvent, WatchStream, check_expect, check_key, check_prefix,
};

const REVISION_KEY: &[u8] = b"\0meta/revision";
const REVISION_KEY_NAME: &str = "\\0meta/revision";

/// Record layout: format byte, version u64 LE, session id u64 LE, value bytes.
const RECORD_FORMAT: u8 = 1;
const RECORD_HEADER_LEN: usize = 1 + 8 + 8;

#[derive(Debug, PartialEq, Eq)]
struct Record {
    version: Version,
    /// 0 when the key is not bound to a session.
    session: u64,
    value: Bytes,
}

fn encode_record(version: Version, session: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + value.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_record(key: &str, raw: &[u8]) -> Result<Record> {
    let corrupt = |reason: String| MetadataError::Corrupt {
        key: key.to_string(),
        reason,
    };
    if raw.len() < RECORD_HEADER_LEN {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its {RECORD_HEADER_LEN}-byte header",
            raw.len()
        )));
    }
    if raw[0] != RECORD_FORMAT {
        return Err(corrupt(format!("unknown record format {}", raw[0])));
    }
    let version = read_u64(&raw[1..9]).ok_or_else(|| corrupt("bad version".into()))?;
    let session = read_u64(&raw[9..17]).ok_or_else(|| corrupt("bad session".into()))?;
    if version == 0 {
        return Err(corrupt("version 0".into()));
    }
    Ok(Record {
        version,
        session,
        value: Bytes::copy_from_slice(&raw[RECORD_HEADER_LEN..]),
    })
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn key_string(raw: &[u8]) -> Result<String> {
    String::from_utf8(raw.to_vec()).map_err(|_| MetadataError::Corrupt {
        key: String::from_utf8_lossy(raw).into_owned(),
        reason: "key is not UTF-8".into(),
    })
}

fn sync_writes() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

pub struct RocksDbStore {
    core: Arc<Core>,
}

struct Core {
    db: DB,
    path: String,
    /// Held across read-check-write; guards the last persisted revision.
    writer: Mutex<Version>,
    hub: WatchHub,
    sessions: Arc<SessionTable>,
}

impl RocksDbStore {
    /// Opens (creating if needed) the store in directory `path`, dropping
    /// every session-bound key: their owners died with the previous process.
    pub fn open(path: &str) -> Result<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| MetadataError::Unavailable(format!("cannot create {path:?}: {e}")))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path)?;

        let mut revision = match db.get(REVISION_KEY)? {
            None => 0,
            Some(raw) => read_u64(&raw).ok_or_else(|| MetadataError::Corrupt {
                key: REVISION_KEY_NAME.to_string(),
                reason: format!("revision of {} bytes, expected 8", raw.len()),
            })?,
        };

        let mut batch = WriteBatch::default();
        let mut dropped = 0usize;
        for item in db.iterator(IteratorMode::From(b"/", Direction::Forward)) {
            let (raw_key, raw) = item?;
            if !raw_key.starts_with(b"/") {
                break;
            }
            let name = String::from_utf8_lossy(&raw_key);
            match decode_record(&name, &raw) {
                Ok(record) if record.session != 0 => {
                    batch.delete(&raw_key);
                    dropped += 1;
                }
                Ok(_) => {}
                // Left in place so that reading the key reports the corruption.
                Err(e) => tracing::warn!(error = %e, "corrupt record in metadata store"),
            }
        }
        if dropped > 0 {
            revision += 1;
            batch.put(REVISION_KEY, revision.to_le_bytes());
            db.write_opt(batch, &sync_writes())?;
            tracing::info!(
                path,
                dropped,
                "removed session keys left by the previous process"
            );
        }

        Ok(RocksDbStore {
            core: Arc::new(Core {
                db,
                path: path.to_string(),
                writer: Mutex::new(revision),
                hub: WatchHub::new(),
                sessions: SessionTable::new(),
            }),
        })
    }

    /// Runs blocking RocksDB work off the async worker threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Core) -> Result<T> + Send + 'static,
    {
        run_blocking(self.core.clone(), f).await
    }
}

async fn run_blocking<T, F>(core: Arc<Core>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Core) -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&core))
        .await
        .map_err(|e| MetadataError::Unavailable(format!("rocksdb task failed: {e}")))?
}

impl Drop for RocksDbStore {
    fn drop(&mut self) {
        self.core.sessions.shutdown();
    }
}

impl fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbStore")
            .field("path", &self.core.path)
            .finish()
    }
}

impl Core {
    fn read(&self, key: &str) -> Result<Option<Record>> {
        match self.db.get_pinned(key.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode_record(key, &raw).map(Some),
        }
    }

    /// The current record for a write. An unconditional write may replace a
    /// corrupt record, which is how an operator repairs one.
    fn read_for_write(&self, key: &str, expect: Expect) -> Result<Option<Record>> {
        match self.read(key) {
            Err(MetadataError::Corrupt { .. }) if expect == Expect::Any => Ok(None),
            other => other,
        }
    }

    /// Writes `batch` plus the next revision durably; returns that revision.
    /// `last` is the writer guard's value.
    fn commit(&self, last: &mut Version, mut batch: WriteBatch) -> Result<Version> {
        let version = *last + 1;
        batch.put(REVISION_KEY, version.to_le_bytes());
        self.db.write_opt(batch, &sync_writes())?;
        *last = version;
        Ok(version)
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        expect: Expect,
        session: Option<u64>,
    ) -> Result<Version> {
        let mut last = self.writer.lock();
        if let Some(id) = session
            && !self.sessions.is_alive(id)
        {
            return Err(MetadataError::SessionExpired(id));
        }
        let current = self.read_for_write(key, expect)?;
        check_expect(key, current.as_ref().map(|r| r.version), expect)?;

        let mut batch = WriteBatch::default();
        // The record carries the version `commit` is about to assign.
        batch.put(
            key.as_bytes(),
            encode_record(*last + 1, session.unwrap_or(0), &value),
        );
        let version = self.commit(&mut last, batch)?;
        if let Some(old) = current
            && old.session != 0
        {
            self.sessions.unbind(key, old.session);
        }
        if let Some(id) = session {
            self.sessions.bind(key, id);
        }
        self.hub.publish(WatchEvent::Put {
            key: key.to_string(),
            value,
            version,
        });
        Ok(version)
    }

    fn delete(&self, key: &str, expect: Expect) -> Result<()> {
        let mut last = self.writer.lock();
        let (present, version, owner) = match self.read(key) {
            Ok(Some(record)) => (true, Some(record.version), record.session),
            Ok(None) => (false, None, 0),
            // An unconditional delete also removes a corrupt record; its owner is unknown.
            Err(MetadataError::Corrupt { .. }) if expect == Expect::Any => (true, None, 0),
            Err(e) => return Err(e),
        };
        check_expect(key, version, expect)?;
        if !present {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.delete(key.as_bytes());
        let version = self.commit(&mut last, batch)?;
        if owner != 0 {
            self.sessions.unbind(key, owner);
        }
        self.hub.publish(WatchEvent::Delete {
            key: key.to_string(),
            version,
        });
        Ok(())
    }

    fn remove_session_keys(&self, session_id: u64) -> Result<()> {
        let mut last = self.writer.lock();
        let keys = self.sessions.take_keys(session_id);
        let mut doomed = Vec::new();
        for key in &keys {
            match self.read(key) {
                Ok(Some(record)) if record.session == session_id => doomed.push(key.clone()),
                Ok(_) => {}
                // Left for reads to report; whose it was is unknowable now.
                Err(MetadataError::Corrupt { .. }) => {}
                Err(e) => {
                    for key in &keys {
                        self.sessions.bind(key, session_id);
                    }
                    return Err(e);
                }
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for key in &doomed {
            batch.delete(key.as_bytes());
        }
        let version = match self.commit(&mut last, batch) {
            Ok(version) => version,
            Err(e) => {
                // Nothing was written: restore the index so a retry finds the keys.
                for key in &doomed {
                    self.sessions.bind(key, session_id);
                }
                return Err(e);
            }
        };
        // One revision for the batch, as etcd does when a lease expires.
        for key in doomed {
            self.hub.publish(WatchEvent::Delete { key, version });
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        for item in self.db.iterator(mode) {
            let (raw_key, raw) = item?;
            if !raw_key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = key_string(&raw_key)?;
            let record = decode_record(&key, &raw)?;
            out.push(KeyValue {
                key,
                value: record.value,
                version: record.version,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl SessionKeys for Core {
    async fn remove_session_keys(self: Arc<Self>, session_id: u64) -> Result<()> {
        run_blocking(self, move |core| core.remove_session_keys(session_id)).await
    }
}

#[async_trait]
impl MetadataStore for RocksDbStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        check_key(key)?;
        let key = key.to_string();
        let record = self.blocking(move |core| core.read(&key)).await?;
        Ok(record.map(|r| Versioned {
            value: r.value,
            version: r.version,
        }))
    }

    async fn put(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<Version> {
        check_key(key)?;
        let key = key.to_string();
        let session = opts.session.as_ref().map(|s| s.id());
        self.blocking(move |core| core.put(&key, value, opts.expect, session))
            .await
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<()> {
        check_key(key)?;
        let key = key.to_string();
        self.blocking(move |core| core.delete(&key, expect)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        check_prefix(prefix)?;
        let prefix = prefix.to_string();
        self.blocking(move |core| core.list(&prefix)).await
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        check_prefix(prefix)?;
        Ok(self.core.hub.subscribe(prefix))
    }

    async fn session(&self, ttl: Duration) -> Result<Arc<dyn Session>> {
        let owner: Arc<dyn SessionKeys> = self.core.clone();
        Ok(self
            .core
            .sessions
            .start_session(Arc::downgrade(&owner), ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let raw = encode_record(42, 7, b"hello");
        let record = decode_record("/k", &raw).unwrap();
        assert_eq!(
            record,
            Record {
                version: 42,
                session: 7,
                value: Bytes::from_static(b"hello")
            }
        );
        assert_eq!(
            decode_record("/k", &encode_record(1, 0, b""))
                .unwrap()
                .value
                .len(),
            0
        );
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let good = encode_record(42, 7, b"hello");
        for len in 0..RECORD_HEADER_LEN {
            assert!(matches!(
                decode_record("/k", &good[..len]),
                Err(MetadataError::Corrupt { .. })
            ));
        }
        let mut bad_format = good.clone();
        bad_format[0] = 9;
        assert!(decode_record("/k", &bad_format).is_err());
        assert!(decode_record("/k", &encode_record(0, 0, b"x")).is_err());
    }

    #[tokio::test]
    async fn corrupt_record_is_reported_and_repairable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let path = path.to_str().unwrap();
        {
            let store = RocksDbStore::open(path).unwrap();
            store.core.db.put(b"/bad", b"\x01short").unwrap();
        }
        let store = RocksDbStore::open(path).unwrap();
        assert!(matches!(
            store.get("/bad").await,
            Err(MetadataError::Corrupt { .. })
        ));
        assert!(matches!(
            store.list("/").await,
            Err(MetadataError::Corrupt { .. })
        ));
        let err = store
            .put(
                "/bad",
                Bytes::from_static(b"x"),
                PutOptions::expect(Expect::Absent),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MetadataError::Corrupt { .. }));
        store
            .put("/bad", Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(
            store.get("/bad").await.unwrap().unwrap().value,
            Bytes::from_static(b"x")
        );
        store.core.db.put(b"/bad", b"").unwrap();
        store.delete("/bad", Expect::Any).await.unwrap();
        assert_eq!(store.get("/bad").await.unwrap(), None);
    }

    #[tokio::test]
    async fn revision_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("db");
        let path = path.to_str().unwrap();
        let v1 = {
            let store = RocksDbStore::open(path).unwrap();
            store
                .put("/a", Bytes::from_static(b"1"), PutOptions::default())
                .await
                .unwrap()
        };
        let store = RocksDbStore::open(path).unwrap();
        let v2 = store
            .put("/b", Bytes::from_static(b"2"), PutOptions::default())
            .await
            .unwrap();
        assert!(v2 > v1);
    }
}
