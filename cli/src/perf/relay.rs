//! `perf cold-read --floor`: the thinnest relay from the object store to a
//! reader over loopback TCP, for the cold read's best case on this machine.
//!
//! A broker serving a cold read does at least what this does: it GETs the
//! objects (as the raw baseline does) and sends the bytes on over a socket,
//! and its consumer reads them from one. Here nothing else happens: no
//! framing, checksums, cache or decoding. So `cold_vs_floor` says how much
//! of what the machine allows the real path reaches, and `floor_vs_raw`
//! is the highest cold/raw ratio any broker could show here. On a small
//! machine that runs the object store too, every process shares the same
//! cores, so the relay's extra copies lower it below 1.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes the reader asks the socket for at a time (the consumer's frames
/// are of this order).
const READ_BUF: usize = 256 << 10;

/// Relays every range once: GETs with `concurrency` in flight, each body
/// written to a loopback socket as it completes, a reader task draining the
/// other end. Returns MB/s from the first GET to the reader's last byte.
pub async fn relay_mb_per_sec(
    store: Arc<dyn ObjectStore>,
    ranges: &[(Path, Range<u64>)],
    concurrency: usize,
) -> anyhow::Result<f64> {
    let want: u64 = ranges.iter().map(|(_, r)| r.end - r.start).sum();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        let mut buf = vec![0u8; READ_BUF];
        let mut got = 0u64;
        loop {
            match sock.read(&mut buf).await? {
                0 => return Ok::<u64, std::io::Error>(got),
                n => got += n as u64,
            }
        }
    });
    let mut out = TcpStream::connect(addr).await.context("relay socket")?;
    out.set_nodelay(true)?;
    let mut bodies = futures::stream::iter(ranges.to_vec())
        .map(|(p, r)| {
            let s = store.clone();
            async move { s.get_range(&p, r).await }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(body) = bodies.try_next().await.context("relay GETs")? {
        out.write_all(&body).await?;
    }
    out.shutdown().await?;
    drop(out);
    let got = reader.await.context("relay reader")??;
    let secs = started.elapsed().as_secs_f64();
    if got != want {
        bail!("the relay's reader got {got} bytes, not {want}");
    }
    Ok(want as f64 / 1e6 / secs.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn the_relay_moves_every_byte_of_every_range() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("a/data");
        store
            .put(&path, vec![7u8; 3 << 20].into())
            .await
            .expect("put");
        let ranges = vec![
            (path.clone(), 0..(1 << 20)),
            (path.clone(), (1 << 20)..(3 << 20)),
            (path.clone(), 5..9),
        ];
        let mbps = relay_mb_per_sec(store.clone(), &ranges, 2).await.unwrap();
        assert!(mbps.is_finite() && mbps > 0.0);
        // A range past the object's end is an error, not a short count.
        let bad = vec![(path, (3 << 20)..(4 << 20))];
        assert!(relay_mb_per_sec(store, &bad, 2).await.is_err());
    }
}
