//! Serving: the accept loop and connections (`listen`, `connection`), the request path (`service`, then
//! `access` for authentication and authorization), errors as responses in one place (`response`), and the
//! HTTP/2 stream watchdog (`stream`). It knows the server only through the [`Site`] the server hands it:
//! nothing here imports `server`.

mod accept;
mod access;
mod connection;
mod index;
mod peer;
mod request;
mod response;
mod site;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use accept::Running;
pub(crate) use site::{Settings, Site};
