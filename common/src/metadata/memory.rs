//! In-process metadata store for unit tests: a `BTreeMap` behind one mutex.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::local_sessions::{SessionKeys, SessionTable};
use super::watch_hub::WatchHub;
use super::{
    Expect, KeyValue, MetadataError, MetadataStore, PutOptions, Result, Session, Version,
    Versioned, WatchEvent, WatchStream, check_expect, check_key, check_prefix,
};

pub struct MemoryStore {
    core: Arc<Core>,
}

struct Core {
    state: Mutex<State>,
    hub: WatchHub,
    sessions: Arc<SessionTable>,
}

#[derive(Default)]
struct State {
    map: BTreeMap<String, Entry>,
    /// The last version handed out; 0 means none yet, so versions start at 1.
    revision: Version,
}

struct Entry {
    value: Bytes,
    version: Version,
    /// 0 when the key is not bound to a session.
    session: u64,
}

impl MemoryStore {
    /// Starts no task, so it works outside a runtime; session tasks start with
    /// the first [`MetadataStore::session`] call.
    pub fn new() -> Self {
        MemoryStore {
            core: Arc::new(Core {
                state: Mutex::new(State::default()),
                hub: WatchHub::new(),
                sessions: SessionTable::new(),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.core.sessions.shutdown();
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.core.state.lock();
        f.debug_struct("MemoryStore")
            .field("keys", &state.map.len())
            .field("revision", &state.revision)
            .finish()
    }
}

impl Core {
    /// Removes `key` under the held state lock; returns whether it existed.
    fn remove_locked(&self, state: &mut State, key: &str) -> bool {
        let Some(old) = state.map.remove(key) else {
            return false;
        };
        if old.session != 0 {
            self.sessions.unbind(key, old.session);
        }
        state.revision += 1;
        self.hub.publish(WatchEvent::Delete {
            key: key.to_string(),
            version: state.revision,
        });
        true
    }
}

#[async_trait]
impl SessionKeys for Core {
    async fn remove_session_keys(self: Arc<Self>, session_id: u64) -> Result<()> {
        let mut state = self.state.lock();
        for key in self.sessions.take_keys(session_id) {
            // The index is kept under this lock, so this only guards against
            // a key re-bound by someone else since.
            if state.map.get(&key).is_some_and(|e| e.session == session_id) {
                self.remove_locked(&mut state, &key);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MetadataStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        check_key(key)?;
        let state = self.core.state.lock();
        Ok(state.map.get(key).map(|e| Versioned {
            value: e.value.clone(),
            version: e.version,
        }))
    }

    async fn put(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<Version> {
        check_key(key)?;
        let session_id = opts.session.as_ref().map(|s| s.id());
        let core = &self.core;
        let mut state = core.state.lock();
        if let Some(id) = session_id
            && !core.sessions.is_alive(id)
        {
            return Err(MetadataError::SessionExpired(id));
        }
        check_expect(key, state.map.get(key).map(|e| e.version), opts.expect)?;

        state.revision += 1;
        let version = state.revision;
        let entry = Entry {
            value: value.clone(),
            version,
            session: session_id.unwrap_or(0),
        };
        if let Some(old) = state.map.insert(key.to_string(), entry)
            && old.session != 0
        {
            core.sessions.unbind(key, old.session);
        }
        if let Some(id) = session_id {
            core.sessions.bind(key, id);
        }
        core.hub.publish(WatchEvent::Put {
            key: key.to_string(),
            value,
            version,
        });
        Ok(version)
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<()> {
        check_key(key)?;
        let mut state = self.core.state.lock();
        check_expect(key, state.map.get(key).map(|e| e.version), expect)?;
        self.core.remove_locked(&mut state, key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        check_prefix(prefix)?;
        let state = self.core.state.lock();
        Ok(state
            .map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, e)| KeyValue {
                key: key.clone(),
                value: e.value.clone(),
                version: e.version,
            })
            .collect())
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
    use futures::StreamExt;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn new_works_outside_a_runtime() {
        let store = MemoryStore::new();
        drop(store);
    }

    #[tokio::test]
    async fn rejects_bad_keys_and_prefixes() {
        let store = MemoryStore::new();
        assert!(matches!(
            store.get("nope").await,
            Err(MetadataError::InvalidKey(_))
        ));
        assert!(matches!(
            store.put("/", b("x"), PutOptions::default()).await,
            Err(MetadataError::InvalidKey(_))
        ));
        assert!(matches!(
            store.list("x").await,
            Err(MetadataError::InvalidKey(_))
        ));
        assert!(store.list("/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn version_zero_never_matches() {
        let store = MemoryStore::new();
        let err = store
            .put("/k", b("x"), PutOptions::expect(Expect::Version(0)))
            .await
            .unwrap_err();
        assert!(err.is_bad_version());
        assert_eq!(
            store
                .put("/k", b("x"), PutOptions::default())
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn rebinding_a_key_moves_it_to_the_new_owner() {
        let store = MemoryStore::new();
        let s1 = store.session(Duration::from_secs(30)).await.unwrap();
        let s2 = store.session(Duration::from_secs(30)).await.unwrap();
        let mut watch = store.watch("/").await.unwrap();
        let opts = |s: &Arc<dyn Session>| PutOptions {
            expect: Expect::Any,
            session: Some(s.clone()),
        };
        store.put("/k", b("1"), opts(&s1)).await.unwrap();
        store.put("/k", b("2"), opts(&s2)).await.unwrap();
        s1.close().await.unwrap();
        assert_eq!(store.get("/k").await.unwrap().unwrap().value, b("2"));
        s2.close().await.unwrap();
        assert_eq!(store.get("/k").await.unwrap(), None);
        let events: Vec<_> = watch.by_ref().take(3).map(|e| e.unwrap()).collect().await;
        assert!(matches!(events[2], WatchEvent::Delete { version: 3, .. }));
    }

    #[tokio::test]
    async fn foreign_session_is_rejected() {
        let a = MemoryStore::new();
        let b_store = MemoryStore::new();
        let session = a.session(Duration::from_secs(5)).await.unwrap();
        let err = b_store
            .put(
                "/k",
                b("x"),
                PutOptions {
                    expect: Expect::Any,
                    session: Some(session.clone()),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MetadataError::SessionExpired(id) if id == session.id()));
    }
}
