//! What the connection's writer sends in one go: small frames are copied
//! together into one buffer, large bodies (entries on their way to a
//! consumer) are written in place with vectored writes, so dispatch does not
//! copy every payload once more in user space before the kernel's copy.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Pieces at least this long are written in place, not copied.
const IN_PLACE: usize = 16 << 10;
/// Slices handed to one `writev`.
const MAX_SLICES: usize = 64;

#[derive(Default)]
pub(super) struct Gather {
    parts: VecDeque<Bytes>,
    /// Small pieces since the last in-place one.
    small: BytesMut,
    len: usize,
}

impl Gather {
    /// Bytes gathered and not written yet.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, b: Bytes) {
        self.len += b.len();
        if b.len() < IN_PLACE {
            self.small.extend_from_slice(&b);
            return;
        }
        self.seal_small();
        self.parts.push_back(b);
    }

    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            self.parts.push_back(self.small.split().freeze());
        }
    }

    /// Writes everything gathered, in order.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.seal_small();
        while !self.parts.is_empty() {
            let n = if self.parts.len() == 1 || !w.is_write_vectored() {
                w.write(&self.parts[0]).await?
            } else {
                // On the stack: no allocation per write.
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut n = 0;
                for (slot, part) in slices.iter_mut().zip(&self.parts) {
                    *slot = IoSlice::new(part);
                    n += 1;
                }
                w.write_vectored(&slices[..n]).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.parts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes a call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn everything_is_written_in_order_whatever_the_writer_takes() {
        let pieces: Vec<Bytes> = (0..200usize)
            .map(|i| {
                let len = [3, 40_000, 17, 16 << 10, 1, 100_000][i % 6];
                Bytes::from(vec![(i % 251) as u8; len])
            })
            .collect();
        let want: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        for (step, vectored) in [(1 << 30, true), (7, true), (50_000, true), (4096, false)] {
            let mut g = Gather::default();
            for p in &pieces {
                g.push(p.clone());
            }
            assert_eq!(g.len(), want.len());
            let mut w = Trickle {
                out: Vec::new(),
                step,
                vectored,
            };
            g.write_to(&mut w).await.unwrap();
            assert!(g.is_empty());
            assert_eq!(w.out, want, "step {step}, vectored {vectored}");
            // Reusable after a write.
            g.push(Bytes::from_static(b"again"));
            g.write_to(&mut w).await.unwrap();
            assert!(w.out.ends_with(b"again"));
        }
    }
}
