//! Real bookies in the calling process (real gRPC, real disks in temp
//! dirs) over an in-memory metadata store, for the tests of the crates above
//! the bookie (`ledger`, `managed-ledger`). Enabled by the `testing` feature.

use std::sync::Arc;
use std::time::Duration;

use strata_common::metadata::{MemoryStore, MetadataStore};

use crate::{Bookie, BookieConfig};

pub struct TestCluster {
    pub store: Arc<dyn MetadataStore>,
    /// `None` where a bookie was stopped.
    pub bookies: Vec<Option<Bookie>>,
    dirs: Vec<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `n` bookies on free loopback ports.
    pub async fn start(n: usize) -> TestCluster {
        let mut c = TestCluster {
            store: Arc::new(MemoryStore::new()),
            bookies: Vec::new(),
            dirs: Vec::new(),
        };
        for _ in 0..n {
            c.add_bookie().await;
        }
        c
    }

    pub async fn add_bookie(&mut self) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BookieConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            journal_preallocate: 1 << 20,
            gc_interval: Duration::from_millis(200),
            ..BookieConfig::default()
        };
        let bookie = Bookie::start_with_store(config, self.store.clone())
            .await
            .expect("bookie starts");
        self.bookies.push(Some(bookie));
        self.dirs.push(dir);
    }

    /// Shuts bookie `i` down cleanly.
    pub async fn stop_bookie(&mut self, i: usize) {
        if let Some(b) = self.bookies[i].take() {
            b.shutdown().await.expect("bookie shuts down");
        }
    }
}

/// Bookies are shut down when the test ends, so that no flush or RocksDB
/// work still runs when the test process exits (RocksDB aborts the process
/// if its statics are destroyed under a live database). Needs a
/// multi-threaded runtime.
impl Drop for TestCluster {
    fn drop(&mut self) {
        let bookies: Vec<Bookie> = self.bookies.iter_mut().filter_map(Option::take).collect();
        if bookies.is_empty() {
            return;
        }
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for b in bookies {
                    let _ = b.shutdown().await;
                }
            })
        });
    }
}
