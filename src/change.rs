//! Changes made to a server, told to a listener in the order they were made (the service's store records
//! them).

use crate::lock::Recover;
use std::sync::Mutex;

/// One change made to a server, in the order made; what [`Server::on_change`](crate::Server::on_change)
/// listeners get. Each names what changed; [`Server::config`](crate::Server::config) has the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A group was created.
    GroupCreated(String),
    /// A group was deleted.
    GroupDeleted(String),
    /// A group's settings (schemes, limits, default SDDL) changed.
    GroupChanged(String),
    /// A URL was published.
    UrlAdded {
        /// The group.
        prefix: String,
        /// The suffix.
        suffix: String,
    },
    /// A URL was unpublished.
    UrlRemoved {
        /// The group.
        prefix: String,
        /// The suffix.
        suffix: String,
    },
    /// A port's TLS settings changed.
    TlsChanged(u16),
    /// The principals changed.
    PrincipalsChanged,
    /// A whole configuration was applied.
    Applied,
}

type Listener = Box<dyn Fn(&Change) + Send + Sync>;

/// Where changes are made: one at a time, each told to the listener before the next is made.
#[derive(Default)]
pub(crate) struct Events {
    listener: Mutex<Option<Listener>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Sets the listener (replacing any).
    pub(crate) fn listen(&self, listener: Listener) {
        *self.lock() = Some(listener);
    }

    /// Makes a change and, if it succeeded and `what` names one, tells the listener, under one lock: so
    /// listeners see changes in the order they were made. `change` must not make another recorded change.
    pub(crate) fn record<T, E>(
        &self,
        change: impl FnOnce() -> Result<T, E>,
        what: impl FnOnce(&T) -> Option<Change>,
    ) -> Result<T, E> {
        let listener = self.lock();
        let done = change()?;
        if let (Some(listener), Some(event)) = (listener.as_ref(), what(&done)) {
            listener(&event);
        }
        Ok(done)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Listener>> {
        self.listener.lock().recover()
    }
}
