//! URL groups and URLs: prefixes (parsed once), suffixes and request paths, the group tables, and the
//! downloads in progress that the live view lists (`live`).

mod counters;
mod group;
mod live;
mod prefix;
mod suffix;

pub(crate) use counters::DownloadUnderWay;
pub use counters::UrlStats;
pub(crate) use group::Prepared;
pub(crate) use group::UrlEntry;
pub use group::{GroupProperty, Url, UrlError, UrlGroup};
pub(crate) use live::LiveDownload;
pub use live::{DownloadStatus, GroupStatus, ServerStatus, WINDOW_SECS};
pub use prefix::{Host, PrefixError, PrefixErrorKind, UrlPrefix, UrlScheme};
pub(crate) use suffix::RequestPath;
pub use suffix::{SegmentError, UrlSuffix};
