//! The in-memory entries of uploads: what serialises the requests on one upload and what
//! a backend caches between them (a running hash, an offset).
//!
//! An entry exists only while a request holds it or while it caches something, so ids that
//! name no upload, and uploads that have ended, leave nothing behind however many requests
//! name them. Backends make an entry only for an upload they have found.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What an entry holds beyond its lock.
pub(super) trait Cached {
    /// Nothing worth keeping once no request holds the entry. Asked only when none does.
    fn is_empty(&self) -> bool;
}

pub(super) struct Sessions<T> {
    entries: Mutex<HashMap<String, Arc<T>>>,
}

impl<T: Cached + Default> Sessions<T> {
    pub(super) fn new() -> Self {
        Sessions {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<T>>> {
        // No code panics while holding it; a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of upload `id`, made if there is none. Call it only for an upload that
    /// exists: the entry lasts until no request holds it and it caches nothing.
    pub(super) fn hold(&self, id: &str) -> Held<'_, T> {
        let entry = Arc::clone(self.lock().entry(id.to_owned()).or_default());
        Held {
            sessions: self,
            id: id.to_owned(),
            entry: Some(entry),
        }
    }

    /// The entry of upload `id`, if there is one.
    pub(super) fn get(&self, id: &str) -> Option<Held<'_, T>> {
        let entry = Arc::clone(self.lock().get(id)?);
        Some(Held {
            sessions: self,
            id: id.to_owned(),
            entry: Some(entry),
        })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn release(&self, id: &str, entry: Arc<T>) {
        let mut entries = self.lock();
        // Clones are only taken under this lock, so the count cannot rise meanwhile: when it
        // is the map's and this one, no other request holds the entry or waits for it.
        // The last holder to come here removes it, since this one's count is dropped
        // before the lock is released.
        let unused = Arc::strong_count(&entry) == 2
            && entries
                .get(id)
                .is_some_and(|current| Arc::ptr_eq(current, &entry));
        if unused && entry.is_empty() {
            entries.remove(id);
        }
        drop(entry);
        drop(entries);
    }
}

/// A request's hold on an upload's entry; dropping it may remove the entry.
pub(super) struct Held<'a, T: Cached + Default> {
    sessions: &'a Sessions<T>,
    id: String,
    entry: Option<Arc<T>>,
}

impl<T: Cached + Default> Deref for Held<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.entry.as_ref().expect("held until dropped")
    }
}

impl<T: Cached + Default> Drop for Held<'_, T> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.sessions.release(&self.id, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Entry {
        lock: tokio::sync::Mutex<()>,
        cached: AtomicBool,
    }

    impl Cached for Entry {
        fn is_empty(&self) -> bool {
            !self.cached.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn an_entry_lasts_while_held_or_caching() {
        let sessions = Sessions::<Entry>::new();
        drop(sessions.hold("a"));
        assert_eq!(sessions.len(), 0);
        assert!(sessions.get("a").is_none());

        let first = sessions.hold("a");
        let second = sessions.hold("a");
        drop(first);
        assert_eq!(sessions.len(), 1, "still held by the second");
        second.cached.store(true, Ordering::Relaxed);
        drop(second);
        assert_eq!(sessions.len(), 1, "caching");
        let again = sessions.get("a").expect("kept");
        again.cached.store(false, Ordering::Relaxed);
        drop(again);
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn a_waiting_request_keeps_the_entry_and_its_lock() {
        let sessions = Sessions::<Entry>::new();
        let writer = sessions.hold("a");
        let guard = writer.lock.try_lock().unwrap();
        let waiter = sessions.hold("a");
        drop(guard);
        drop(writer);
        // Had the writer removed the entry, a newcomer would get a second lock and write
        // alongside the waiter.
        assert_eq!(sessions.len(), 1);
        let newcomer = sessions.hold("a");
        assert!(std::ptr::eq(&*newcomer, &*waiter), "one entry, one lock");
        drop(waiter);
        drop(newcomer);
        assert_eq!(sessions.len(), 0);
    }
}
