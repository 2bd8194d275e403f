//! Which connections give way when connections run short.
//!
//! Every connection counts against `http.limits.max-connections`. Until its TLS handshake
//! ends, and afterwards if it presented no trusted certificate, a connection costs its
//! client next to nothing and is worth nothing to the registry; left alone, a few thousand
//! of them would hold every slot and trusted clients would wait in the listen backlog. So:
//!
//! * done with its handshake, a connection without a trusted certificate is *untrusted*:
//!   untrusted connections hold at most `untrusted-share` of the limit, the oldest idle one
//!   is closed when a new one would exceed it, and an untrusted connection is closed after
//!   `untrusted-idle-timeout` without a request (the server enforces that timeout);
//! * at the limit, a newcomer takes the place of the oldest idle untrusted connection, or
//!   else of the oldest handshake that has run for [`HANDSHAKE_GRACE`]; only when there is
//!   neither does it wait in the backlog;
//! * a connection with a trusted certificate is never closed to make room.
//!
//! The trust store decides every request on its own (`api::identity`); the class kept here
//! follows the outcome of those checks, so a revoked certificate's connection becomes
//! untrusted at its next request, and decides nothing but who gives way.

use crate::config::Limits;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A handshake is not cut off to make room before it has run this long: over a slow link a
/// TLS handshake with a client certificate takes a few round trips, and clients that
/// reconnect together (after a restart) should queue in the backlog, not evict each other.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

const HANDSHAKING: u8 = 0;
const UNTRUSTED: u8 = 1;
const TRUSTED: u8 = 2;

pub struct Admission {
    max: usize,
    max_untrusted: usize,
    table: Mutex<Table>,
    /// Signalled when a connection closes, for an accept loop waiting for room.
    room: Notify,
}

#[derive(Default)]
struct Table {
    /// Connections admitted and neither closed nor evicted.
    open: usize,
    /// By admission order, so the first is the oldest.
    handshaking: BTreeMap<u64, Arc<Slot>>,
    untrusted: BTreeMap<u64, Arc<Slot>>,
    next_id: u64,
}

/// What the table and the connection's task both see of one connection.
struct Slot {
    id: u64,
    admitted: Instant,
    /// `HANDSHAKING`, `UNTRUSTED` or `TRUSTED`; changed only under the table's lock.
    class: AtomicU8,
    /// Requests being answered, from their headers to the end of their response body.
    busy: AtomicUsize,
    /// When the last request ended, in milliseconds after `admitted`.
    last_active_ms: AtomicU64,
    evicted: Notify,
}

impl Slot {
    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    fn last_active(&self) -> Instant {
        self.admitted + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }
}

impl Admission {
    pub fn new(limits: &Limits) -> Arc<Admission> {
        Arc::new(Admission {
            max: limits.max_connections.max(1),
            max_untrusted: limits.max_untrusted(),
            table: Mutex::default(),
            room: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every change to the table is complete before anything that could panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once one more connection may be admitted, having closed a connection that
    /// gives way if that was needed.
    pub async fn wait_for_room(&self) {
        loop {
            // Created before looking, so that a connection closing in between is not missed.
            let closed = self.room.notified();
            match self.make_room() {
                Ok(()) => return,
                Err(Some(retry_at)) => tokio::select! {
                    () = closed => {}
                    () = tokio::time::sleep_until(retry_at) => {}
                },
                Err(None) => closed.await,
            }
        }
    }

    /// `Err` carries when a handshake becomes old enough to give way, if one is running.
    fn make_room(&self) -> Result<(), Option<Instant>> {
        let mut table = self.lock();
        if table.open < self.max {
            return Ok(());
        }
        if table.evict_oldest_idle_untrusted() {
            return Ok(());
        }
        let oldest = table.handshaking.values().next().cloned();
        match oldest {
            Some(slot) if slot.admitted.elapsed() >= HANDSHAKE_GRACE => {
                table.evict(&slot);
                Ok(())
            }
            Some(slot) => Err(Some(slot.admitted + HANDSHAKE_GRACE)),
            None => Err(None),
        }
    }

    /// Counts a connection just accepted; it starts in its TLS handshake.
    pub fn admit(self: &Arc<Self>) -> Ticket {
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            admitted: Instant::now(),
            class: AtomicU8::new(HANDSHAKING),
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            evicted: Notify::new(),
        });
        table.handshaking.insert(id, Arc::clone(&slot));
        table.open += 1;
        Ticket(Conn {
            admission: Arc::clone(self),
            slot,
        })
    }

    /// Gives the slot of a closed connection back, unless it was taken away already.
    fn release(&self, slot: &Slot) {
        let mut table = self.lock();
        if table.take(slot) {
            table.open -= 1;
            drop(table);
            self.room.notify_one();
        }
    }

    /// Moves a connection to the class the trust store's latest answer puts it in; false
    /// when it has been evicted and must close.
    fn classify(&self, slot: &Arc<Slot>, trusted: bool) -> bool {
        let wanted = if trusted { TRUSTED } else { UNTRUSTED };
        if slot.class.load(Ordering::Relaxed) == wanted {
            return true;
        }
        let mut table = self.lock();
        if !table.take(slot) {
            return false;
        }
        slot.class.store(wanted, Ordering::Relaxed);
        if !trusted {
            table.untrusted.insert(slot.id, Arc::clone(slot));
            let mut evicted = false;
            while table.untrusted.len() > self.max_untrusted {
                if !table.evict_oldest_idle_untrusted() {
                    // Every other one is answering a request: let them finish.
                    break;
                }
                evicted = true;
            }
            let kept = table.untrusted.contains_key(&slot.id);
            drop(table);
            if evicted {
                self.room.notify_one();
            }
            return kept;
        }
        true
    }
}

impl Table {
    /// Takes `slot` out of the map of its class (trusted connections are in none); false
    /// when it was evicted already. Call with the table locked, before changing the class.
    fn take(&mut self, slot: &Slot) -> bool {
        match slot.class.load(Ordering::Relaxed) {
            HANDSHAKING => self.handshaking.remove(&slot.id).is_some(),
            UNTRUSTED => self.untrusted.remove(&slot.id).is_some(),
            _ => true,
        }
    }

    fn evict_oldest_idle_untrusted(&mut self) -> bool {
        let oldest_idle = self.untrusted.values().find(|slot| slot.is_idle()).cloned();
        match oldest_idle {
            Some(slot) => {
                self.evict(&slot);
                true
            }
            None => false,
        }
    }

    /// Takes the slot away at once; the connection's task closes it when it next runs.
    fn evict(&mut self, slot: &Slot) {
        let held = self.handshaking.remove(&slot.id).is_some()
            || self.untrusted.remove(&slot.id).is_some();
        if held {
            self.open -= 1;
            slot.evicted.notify_one();
        }
    }
}

/// One admitted connection, owned by its task: dropping it gives the slot back.
pub struct Ticket(Conn);

impl Ticket {
    /// A handle for the connection's request handler.
    pub fn conn(&self) -> Conn {
        self.0.clone()
    }

    /// Resolves when the connection has been closed to make room for another.
    pub async fn evicted(&self) {
        self.0.slot.evicted.notified().await
    }

    /// When an untrusted connection idle since its last request should be closed; for any
    /// other connection, a time to look again.
    pub fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        let slot = &self.0.slot;
        if slot.class.load(Ordering::Relaxed) == UNTRUSTED && slot.is_idle() {
            slot.last_active() + idle_timeout
        } else {
            Instant::now() + idle_timeout
        }
    }

    /// Whether the connection is untrusted and has had no request for `idle_timeout`.
    pub fn idle_expired(&self, idle_timeout: Duration) -> bool {
        let slot = &self.0.slot;
        slot.class.load(Ordering::Relaxed) == UNTRUSTED
            && slot.is_idle()
            && slot.last_active().elapsed() >= idle_timeout
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.admission.release(&self.0.slot);
    }
}

/// What a connection's request handler may do with its admission.
#[derive(Clone)]
pub struct Conn {
    admission: Arc<Admission>,
    slot: Arc<Slot>,
}

impl Conn {
    /// Records whether the trust store trusts the connection's certificate now; false when
    /// the connection has been closed to make room.
    pub fn classify(&self, trusted: bool) -> bool {
        self.admission.classify(&self.slot, trusted)
    }

    /// Marks the connection busy until the returned guard is dropped (at the end of the
    /// response body), so that it is neither idle-closed nor evicted mid-answer.
    pub fn request(&self) -> Busy {
        self.slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(&self.slot))
    }
}

pub struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        let since = self.0.admitted.elapsed().as_millis();
        self.0
            .last_active_ms
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, share: u8) -> Arc<Admission> {
        Admission::new(&Limits {
            max_connections: max,
            untrusted_share: share,
            ..Limits::default()
        })
    }

    fn open(admission: &Admission) -> usize {
        admission.lock().open
    }

    fn is_evicted(ticket: &Ticket) -> bool {
        let table = ticket.0.admission.lock();
        let id = ticket.0.slot.id;
        match ticket.0.slot.class.load(Ordering::Relaxed) {
            HANDSHAKING => !table.handshaking.contains_key(&id),
            UNTRUSTED => !table.untrusted.contains_key(&id),
            _ => false,
        }
    }

    #[tokio::test]
    async fn untrusted_connections_keep_to_their_share_oldest_idle_first() {
        let admission = admission(10, 20); // two untrusted connections
        let tickets: Vec<Ticket> = (0..3).map(|_| admission.admit()).collect();
        assert!(tickets[0].conn().classify(false));
        let busy = tickets[0].conn().request();
        assert!(tickets[1].conn().classify(false));
        assert!(tickets[2].conn().classify(false));
        // The oldest, 0, is answering a request: 1 gives way.
        assert!(!is_evicted(&tickets[0]));
        assert!(is_evicted(&tickets[1]));
        assert!(!is_evicted(&tickets[2]));
        assert_eq!(open(&admission), 2);
        tokio::time::timeout(Duration::from_secs(1), tickets[1].evicted())
            .await
            .expect("the evicted connection is told");
        drop(busy);
        drop(tickets);
        assert_eq!(open(&admission), 0);
    }

    #[tokio::test]
    async fn at_the_limit_trusted_connections_stay_and_newcomers_wait() {
        let admission = admission(3, 100);
        let trusted: Vec<Ticket> = (0..2).map(|_| admission.admit()).collect();
        for ticket in &trusted {
            assert!(ticket.conn().classify(true));
        }
        let handshaking = admission.admit();
        // Full; the handshake is too young to give way.
        assert!(matches!(admission.make_room(), Err(Some(_))));
        // Once it has run for the grace period, it does.
        let started = Instant::now();
        admission.wait_for_room().await;
        assert!(started.elapsed() >= HANDSHAKE_GRACE);
        assert!(is_evicted(&handshaking));
        let newcomer = admission.admit();
        assert!(newcomer.conn().classify(true));
        // Only trusted connections: wait until one closes.
        assert_eq!(admission.make_room(), Err(None));
        let waiter = {
            let admission = Arc::clone(&admission);
            tokio::spawn(async move { admission.wait_for_room().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(trusted);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("room once a trusted connection closed")
            .unwrap();
        drop(handshaking);
        assert_eq!(open(&admission), 1);
    }

    #[tokio::test]
    async fn at_the_limit_an_idle_untrusted_connection_makes_room() {
        let admission = admission(2, 100);
        let trusted = admission.admit();
        trusted.conn().classify(true);
        let untrusted = admission.admit();
        untrusted.conn().classify(false);
        admission.make_room().unwrap();
        assert!(is_evicted(&untrusted));
        assert!(!is_evicted(&trusted));
        drop(untrusted);
        assert_eq!(open(&admission), 1);
    }

    #[tokio::test]
    async fn a_revoked_connection_becomes_untrusted_and_back() {
        let admission = admission(10, 10); // one untrusted connection
        let a = admission.admit();
        let b = admission.admit();
        assert!(a.conn().classify(true));
        assert!(b.conn().classify(false));
        // `a` is revoked while it makes a request: the idle `b` gives way.
        let busy = a.conn().request();
        assert!(a.conn().classify(false));
        assert!(is_evicted(&b));
        drop(busy);
        assert!(a.conn().classify(true));
        assert_eq!(admission.lock().untrusted.len(), 0);
        drop((a, b));
        assert_eq!(open(&admission), 0);
    }

    #[tokio::test]
    async fn only_idle_untrusted_connections_expire() {
        let admission = admission(10, 100);
        let idle = Duration::from_millis(100);
        let untrusted = admission.admit();
        let trusted = admission.admit();
        untrusted.conn().classify(false);
        trusted.conn().classify(true);
        let busy = untrusted.conn().request();
        tokio::time::sleep(idle * 2).await;
        assert!(!untrusted.idle_expired(idle), "busy");
        drop(busy);
        assert!(!untrusted.idle_expired(idle), "just answered");
        let deadline = untrusted.idle_deadline(idle);
        assert!(deadline > Instant::now() + idle / 2, "{deadline:?}");
        tokio::time::sleep_until(deadline).await;
        assert!(untrusted.idle_expired(idle));
        assert!(!trusted.idle_expired(idle));
    }
}
