//! The management listeners: a Unix socket for the local machine (`local`), and an optional TLS port for
//! remote administrators (`remote`). Each identifies the caller, decides whether they may manage, and
//! hands the request to the API router with who they are (`exchange`, which both use).
//!
//! SECURITY: the threat is someone other than an administrator changing what is served (publishing any
//! file the service can read), or reading how it is configured. Locally, the socket is mode 0600 in a
//! 0700 state directory, and each connection's peer uid (from the kernel, `SO_PEERCRED`) must be root or
//! the service's own user; anyone else gets 403 on every request. Remotely, callers authenticate with the
//! URL groups' schemes and their guessing limits (Basic only over this TLS, client certificates, NTLM,
//! Negotiate where built) and must pass the admin SDDL: read access for GET, write access for changes;
//! anonymous is 401, authenticated but not allowed is 403 — except under `/v1/jobs`, where any
//! authenticated caller may manage the jobs it owns (the router and the job handlers enforce "its own";
//! the router refuses such a caller everywhere else again). Both listeners bound what clients can hold:
//! connections at once, the header wait, and the body's time and rate (`exchange`); remotely, also
//! connections per client source before they authenticate and per caller after (`admission`), so that
//! administrators always get in.

mod admission;
mod exchange;
mod local;
mod remote;

pub use local::{bind_local, serve_local};
pub use remote::{serve_remote, AdminAccess};
