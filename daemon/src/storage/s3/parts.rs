//! Part buffers of one PATCH, reused from part to part.
//!
//! A fresh part-sized allocation is a new mapping whose pages the kernel faults in and
//! zeroes one by one as the part fills: about one extra pass over every uploaded byte,
//! and memory the allocator may keep fragmented afterwards. A buffer lent to the SDK comes
//! back here when the SDK drops its last reference to the body, and the next part is
//! written into pages already mapped.
//!
//! A pool belongs to one PATCH rather than to the process: when the request ends its
//! buffers are freed, so an idle daemon holds none, and concurrent uploads never wait on
//! one another's buffers. It keeps at most `bound` idle buffers (the parts in flight plus
//! the one filling); one handed back beyond that, or after the PATCH has ended, is freed.

use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};

type Free = Mutex<Vec<Vec<u8>>>;

pub(super) struct PartPool {
    part: usize,
    bound: usize,
    free: Arc<Free>,
}

impl PartPool {
    /// A pool of buffers of `part` bytes that keeps at most `bound` of them idle.
    pub(super) fn new(part: usize, bound: usize) -> Self {
        PartPool {
            part,
            bound,
            free: Arc::new(Mutex::new(Vec::with_capacity(bound))),
        }
    }

    /// An empty buffer that holds a whole part without growing.
    pub(super) fn take(&self) -> Vec<u8> {
        let reused = lock(&self.free).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.part))
    }

    /// `buf` as the body of a request; the buffer comes back to this pool once every
    /// clone of the returned `Bytes` is dropped.
    pub(super) fn lend(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent {
            buf,
            part: self.part,
            bound: self.bound,
            home: Arc::downgrade(&self.free),
        })
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        lock(&self.free).len()
    }
}

fn lock(free: &Free) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    // The list is only pushed to and popped from: a panic elsewhere cannot leave it
    // inconsistent.
    free.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A buffer lent out as a request body.
struct Lent {
    buf: Vec<u8>,
    part: usize,
    bound: usize,
    home: Weak<Free>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if self.buf.capacity() < self.part {
            return;
        }
        let Some(home) = self.home.upgrade() else {
            return;
        };
        let mut free = lock(&home);
        if free.len() < self.bound {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PART: usize = 1 << 16;

    fn filled(pool: &PartPool, byte: u8) -> Vec<u8> {
        let mut buf = pool.take();
        assert!(buf.is_empty());
        assert!(buf.capacity() >= PART);
        buf.resize(PART, byte);
        buf
    }

    #[test]
    fn a_buffer_comes_back_once_every_clone_is_dropped_and_is_reused() {
        let pool = PartPool::new(PART, 2);
        let buf = filled(&pool, 7);
        let address = buf.as_ptr();
        let body = pool.lend(buf);
        assert_eq!(body.len(), PART);
        assert!(body.iter().all(|&b| b == 7));
        let clone = body.clone();
        drop(body);
        assert_eq!(pool.idle(), 0, "a clone still holds the buffer");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        let again = pool.take();
        assert_eq!(
            again.as_ptr(),
            address,
            "the same allocation is handed out again"
        );
        assert!(again.is_empty(), "a reused buffer starts empty");
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn at_most_bound_buffers_are_kept() {
        let pool = PartPool::new(PART, 2);
        let bodies: Vec<Bytes> = (0..5).map(|i| pool.lend(filled(&pool, i))).collect();
        assert_eq!(pool.idle(), 0);
        drop(bodies);
        assert_eq!(pool.idle(), 2);
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(pool.idle(), 0);
        drop((a, b, c));
    }

    #[test]
    fn buffers_returned_after_the_pool_is_gone_or_too_small_are_freed() {
        let pool = PartPool::new(PART, 2);
        let small = pool.lend(vec![1; 10]);
        drop(small);
        assert_eq!(pool.idle(), 0, "a buffer smaller than a part is not kept");
        let body = pool.lend(filled(&pool, 3));
        let home = Arc::downgrade(&pool.free);
        drop(pool);
        assert!(
            home.upgrade().is_none(),
            "a lent buffer does not keep the pool alive"
        );
        assert_eq!(&body[..3], &[3, 3, 3]);
        drop(body);
    }
}
