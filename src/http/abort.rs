//! [`Abort`]: ends blocking requests from another thread by shutting their sockets down.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::transport::SocketHandle;

/// Ends blocking requests from another thread.
///
/// Pass one to [`super::send`]; the request registers its socket here while it runs.
/// [`Abort::abort`] shuts those sockets down, so a blocked connect, head wait, body read or watch
/// stream returns [`super::HttpError::Aborted`] at once, and later requests with this handle fail
/// the same way without connecting. Aborting is permanent; clones share the state.
#[derive(Clone, Default)]
pub struct Abort(Arc<AbortState>);

#[derive(Default)]
struct AbortState {
    aborted: AtomicBool,
    next_id: AtomicU64,
    sockets: Mutex<Vec<(u64, SocketHandle)>>,
}

impl Abort {
    pub fn new() -> Abort {
        Abort::default()
    }

    /// Aborts every in-flight and future request holding this handle.
    pub fn abort(&self) {
        let sockets = self.sockets();
        // Set the flag under the lock so `register` cannot slip a socket in afterwards.
        self.0.aborted.store(true, Ordering::SeqCst);
        for (_, socket) in sockets.iter() {
            socket.shutdown();
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::SeqCst)
    }

    fn sockets(&self) -> MutexGuard<'_, Vec<(u64, SocketHandle)>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.0
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection; `None` if already aborted (the caller must not proceed).
    pub fn register(&self, socket: SocketHandle) -> Option<Registration> {
        let mut sockets = self.sockets();
        if self.is_aborted() {
            return None;
        }
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        sockets.push((id, socket));
        Some(Registration {
            abort: self.clone(),
            id,
        })
    }

    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.sockets().len()
    }
}

impl fmt::Debug for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Abort")
            .field("aborted", &self.is_aborted())
            .finish()
    }
}

/// Keeps a connection registered with an [`Abort`] until dropped.
pub struct Registration {
    abort: Abort,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.abort.sockets().retain(|(id, _)| *id != self.id);
    }
}
