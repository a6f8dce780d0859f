//! The client-wide limit on payload bytes that producers have sent or
//! queued without a receipt (the Java client's `memoryLimit`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Shared by every producer of a client.
#[derive(Clone)]
pub(crate) struct MemoryLimit {
    room: Arc<Semaphore>,
    limit: u32,
}

/// Bytes taken from a [`MemoryLimit`], given back when dropped.
pub(crate) type Held = OwnedSemaphorePermit;

impl MemoryLimit {
    /// `None` for 0 (no limit).
    pub(crate) fn new(limit: usize) -> Option<MemoryLimit> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        (limit > 0).then(|| MemoryLimit {
            room: Arc::new(Semaphore::new(limit as usize)),
            limit,
        })
    }

    /// Room a payload of `bytes` takes: a payload larger than the whole
    /// limit takes all of it, so it goes out alone rather than never.
    fn room_for(&self, bytes: usize) -> u32 {
        u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.limit)
    }

    /// Takes room for a payload of `bytes` if there is some now (no waiter
    /// is built); `Err` when the limit is in use. (`Ok(None)`, like `None`
    /// from [`MemoryLimit::take`], only if the limit were closed, which it
    /// never is: it lives as long as the client.)
    pub(crate) fn try_take(&self, bytes: usize) -> Result<Option<Held>, ()> {
        match self
            .room
            .clone()
            .try_acquire_many_owned(self.room_for(bytes))
        {
            Ok(held) => Ok(Some(held)),
            Err(TryAcquireError::NoPermits) => Err(()),
            Err(TryAcquireError::Closed) => Ok(None),
        }
    }

    /// Takes room for a payload of `bytes`, waiting while the limit is in
    /// use.
    pub(crate) async fn take(&self, bytes: usize) -> Option<Held> {
        self.room
            .clone()
            .acquire_many_owned(self.room_for(bytes))
            .await
            .ok()
    }

    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.room.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zero_is_no_limit() {
        assert!(MemoryLimit::new(0).is_none());
        assert_eq!(MemoryLimit::new(usize::MAX).unwrap().limit, u32::MAX);
    }

    /// Room is taken per payload and given back when the holder drops it;
    /// a payload larger than the limit takes all of it and still goes.
    #[tokio::test]
    async fn a_send_waits_until_earlier_payloads_are_given_back() {
        let m = MemoryLimit::new(1000).unwrap();
        let a = m.take(600).await.unwrap();
        let mut b = m.try_take(300).unwrap().unwrap();
        assert_eq!(m.available(), 100);
        assert!(m.try_take(200).is_err());
        // 200 more does not fit until `a` is given back.
        let waiting = tokio::spawn({
            let m = m.clone();
            async move { m.take(200).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.available(), 500);
        // Held room merges (a batch of messages) and goes back at once.
        b.merge(c);
        drop(b);
        assert_eq!(m.available(), 1000);
        let huge = m.take(5000).await.unwrap();
        assert_eq!(m.available(), 0);
        drop(huge);
        assert_eq!(m.available(), 1000);
    }
}
