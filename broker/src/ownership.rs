//! Topic ownership by namespace bundle.
//!
//! A namespace is split into `bundles_per_namespace` equal ranges of a 32-bit
//! hash of the topic name. The broker that holds a bundle's ownership key (a
//! session-bound key, so it vanishes when that broker dies) serves every topic
//! in the bundle; LOOKUP for such a topic answers with the owner's URL.
//! Ownership is taken on first use, even in standalone, so that several
//! brokers can share one metadata store.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_common::metadata::{Expect, MetadataStore, PutOptions, Session};
use strata_common::names::TopicName;
use strata_common::paths;

use crate::error::{BrokerError, Result};

/// The record under a bundle's ownership key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleOwner {
    pub broker_id: String,
    /// `pulsar://host:port`.
    pub service_url: String,
    /// `pulsar+ssl://host:port`, when the broker has a TLS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url_tls: Option<String>,
}

impl std::fmt::Display for BundleOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.service_url)
    }
}

/// Who serves a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Me,
    Other(BundleOwner),
}

pub struct Ownership {
    store: Arc<dyn MetadataStore>,
    session: Arc<dyn Session>,
    me: BundleOwner,
    bundles: u32,
    owned: Mutex<HashSet<String>>,
}

/// The bundle (`0x........_0x........`) of a topic.
pub fn bundle_of(topic: &TopicName, bundles: u32) -> String {
    let bundles = bundles.max(1) as u64;
    let hash = strata_proto::crc::crc32c(topic.to_string().as_bytes()) as u64;
    let width = (1u64 << 32) / bundles;
    let i = (hash / width).min(bundles - 1);
    let lo = i * width;
    let hi = if i == bundles - 1 {
        1u64 << 32
    } else {
        (i + 1) * width
    };
    format!("0x{lo:08x}_0x{:08x}", hi - 1)
}

impl Ownership {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        session: Arc<dyn Session>,
        me: BundleOwner,
        bundles: u32,
    ) -> Self {
        Ownership {
            store,
            session,
            me,
            bundles,
            owned: Mutex::new(HashSet::new()),
        }
    }

    /// This broker's record (its id and URLs).
    pub fn me(&self) -> &BundleOwner {
        &self.me
    }

    fn key(&self, topic: &TopicName) -> String {
        paths::bundle_owner(
            &topic.namespace.tenant,
            &topic.namespace.namespace,
            &bundle_of(topic, self.bundles),
        )
    }

    /// Takes the topic's bundle if nobody owns it; says who owns it otherwise.
    pub async fn acquire(&self, topic: &TopicName) -> Result<Owner> {
        let key = self.key(topic);
        if self.owned.lock().contains(&key) {
            return Ok(Owner::Me);
        }
        if !self.session.is_alive() {
            return Err(BrokerError::ServiceNotReady(
                "the broker's metadata session expired".into(),
            ));
        }
        let value = Bytes::from(serde_json::to_vec(&self.me).expect("serializable"));
        for _ in 0..3 {
            let opts = PutOptions {
                expect: Expect::Absent,
                session: Some(self.session.clone()),
            };
            match self.store.put(&key, value.clone(), opts).await {
                Ok(_) => {
                    self.owned.lock().insert(key);
                    return Ok(Owner::Me);
                }
                Err(e) if e.is_bad_version() => {}
                Err(e) => return Err(e.into()),
            }
            let Some(current) = self.store.get(&key).await? else {
                continue; // the owner just let go: try again
            };
            let owner: BundleOwner = serde_json::from_slice(&current.value).map_err(|e| {
                BrokerError::Metadata(format!("unreadable bundle owner at {key}: {e}"))
            })?;
            if owner.broker_id == self.me.broker_id {
                self.owned.lock().insert(key);
                return Ok(Owner::Me);
            }
            return Ok(Owner::Other(owner));
        }
        Err(BrokerError::ServiceNotReady(format!(
            "ownership of {key} keeps changing"
        )))
    }

    /// Gives up every bundle (clean shutdown).
    pub async fn release_all(&self) {
        let _ = self.session.close().await;
        self.owned.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_cover_the_hash_space() {
        let t = TopicName::parse("a").unwrap();
        assert_eq!(bundle_of(&t, 1), "0x00000000_0xffffffff");
        let b = bundle_of(&t, 4);
        assert!(
            [
                "0x00000000_0x3fffffff",
                "0x40000000_0x7fffffff",
                "0x80000000_0xbfffffff",
                "0xc0000000_0xffffffff"
            ]
            .contains(&b.as_str()),
            "{b}"
        );
    }
}
