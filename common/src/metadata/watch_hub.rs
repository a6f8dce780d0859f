//! Watch fan-out for the in-process backends (memory, RocksDB).
//!
//! Backends publish while holding their write lock, so the single broadcast
//! channel carries events in version order; each watcher filters by prefix.

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{WatchEvent, WatchStream};

/// How many events a watcher may fall behind before it gets `Lagged`.
const CAPACITY: usize = 4096;

pub(crate) struct WatchHub {
    tx: broadcast::Sender<WatchEvent>,
}

impl WatchHub {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        WatchHub { tx }
    }

    /// Call with the backend's write lock held, right after the write is durable.
    pub(crate) fn publish(&self, event: WatchEvent) {
        // An error only means that nobody is watching right now.
        let _ = self.tx.send(event);
    }

    /// The subscription is taken before returning, so every later publish is seen.
    pub(crate) fn subscribe(&self, prefix: &str) -> WatchStream {
        let prefix = prefix.to_string();
        BroadcastStream::new(self.tx.subscribe())
            .filter_map(move |item| {
                let out = match item {
                    Ok(event) if under_prefix(&event, &prefix) => Some(Ok(event)),
                    Ok(_) => None,
                    // The receiver skips ahead to the oldest retained event and
                    // keeps going; the watcher must re-list to cover the gap.
                    Err(BroadcastStreamRecvError::Lagged(_)) => Some(Ok(WatchEvent::Lagged)),
                };
                futures::future::ready(out)
            })
            .boxed()
    }
}

fn under_prefix(event: &WatchEvent, prefix: &str) -> bool {
    match event {
        WatchEvent::Put { key, .. } | WatchEvent::Delete { key, .. } => key.starts_with(prefix),
        WatchEvent::Lagged => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(key: &str, version: u64) -> WatchEvent {
        WatchEvent::Put {
            key: key.to_string(),
            value: Bytes::from_static(b"v"),
            version,
        }
    }

    #[tokio::test]
    async fn filters_by_prefix_and_reports_lag() {
        let hub = WatchHub::new();
        let mut watch = hub.subscribe("/a/");
        hub.publish(put("/a/1", 1));
        hub.publish(put("/b/1", 2));
        hub.publish(put("/a/2", 3));
        assert_eq!(watch.next().await.unwrap().unwrap(), put("/a/1", 1));
        assert_eq!(watch.next().await.unwrap().unwrap(), put("/a/2", 3));

        for v in 0..(CAPACITY as u64 + 10) {
            hub.publish(put("/a/x", 10 + v));
        }
        assert_eq!(watch.next().await.unwrap().unwrap(), WatchEvent::Lagged);
        // After the lag the stream continues with retained events.
        assert!(matches!(
            watch.next().await.unwrap().unwrap(),
            WatchEvent::Put { .. }
        ));
    }
}
