//! A TCP proxy in front of a real server that can hold back answers: the
//! first `count` requests whose bytes contain every one of `markers` get no
//! answer for `hold`, then their connection is closed, as a server that
//! stalls does to a client. Everything else passes through unchanged.
//!
//! It reads HTTP only as bytes: a marker must arrive within one read of the
//! client's stream, which holds for a request line written in one piece, as
//! HTTP clients do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct StallProxy {
    address: SocketAddr,
    stalled: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

struct Rule {
    markers: Vec<Vec<u8>>,
    left: AtomicUsize,
    hold: Duration,
}

impl StallProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        markers: &[&str],
        count: usize,
        hold: Duration,
    ) -> std::io::Result<StallProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let stalled = Arc::new(AtomicUsize::new(0));
        let rule = Arc::new(Rule {
            markers: markers.iter().map(|m| m.as_bytes().to_vec()).collect(),
            left: AtomicUsize::new(count),
            hold,
        });
        let counter = stalled.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (rule, counter) = (rule.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, rule, counter).await;
                    }
                });
            }
        });
        Ok(StallProxy {
            address,
            stalled,
            accept,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Requests held back so far.
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn relay(client: TcpStream, server: TcpStream, rule: Arc<Rule>, stalled: Arc<AtomicUsize>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    // When set, answers on this connection are held until then, and the
    // connection is closed after.
    let held: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let held_up = held.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if rule.markers.iter().all(|m| contains(chunk, m))
                && rule
                    .left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                    .is_ok()
            {
                // Set before the request reaches the server, so its answer
                // cannot slip through.
                *held_up.lock() = Some(Instant::now() + rule.hold);
                stalled.fetch_add(1, Ordering::SeqCst);
            }
            if server_tx.write_all(chunk).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let until = *held.lock();
            if let Some(until) = until {
                tokio::time::sleep_until(until).await;
                break;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    // Either side ending ends the connection (both halves drop).
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
