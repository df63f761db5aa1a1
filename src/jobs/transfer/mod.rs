//! One file's transfer, from the remote URL into its temporary beside the destination: what the job's
//! runner calls for each unfinished file, through the [`Fetch`] seam (HTTP here; the manager's tests put a
//! scripted fetcher in its place).
//!
//! | file | owns |
//! |---|---|
//! | `fetch` | HTTP/1.1: size and validators, ranged GETs with If-Range, the overlap check before a resume, restarts, redirects |
//! | `answer` | what an answer means (sans-IO): validators, Content-Range, If-Range, an answer to a ranged GET |
//! | `receive` | a body into the temporary: bytes held compared, the rest written; the low-speed limit |
//! | `part_file` | the temporary `.NAME.bcs-part`: open (never through a link), sync, rename on Complete, remove on Cancel |
//! | `verify` | the check of a complete temporary against the server's `Repr-Digest` (RFC 9530) |
//! | `pace` | a job's own bandwidth limit, held in the transfer loop |
//! | `failure` | why a transfer stops: TRANSIENT_ERROR or ERROR, status classification, Retry-After; the progress callback |
//!
//! Imports go one way: `fetch` uses the six others; `answer`, `part_file` and `verify` use only
//! `failure`; `receive` uses `failure` and `pace`.

mod answer;
mod failure;
mod fetch;
mod pace;
mod part_file;
mod receive;
mod verify;

pub(crate) use failure::Failure;
pub(crate) use fetch::{parse_url, Fetch, Http};
pub use part_file::part_path;
pub(crate) use part_file::{complete, discard, is_part_name};
pub use receive::LowSpeedLimit;

#[cfg(test)]
pub(crate) use failure::{classify, Report};
#[cfg(test)]
pub(crate) use fetch::Fetching;
