//! Limits: the per-group ConnectionLimit and BandwidthLimit of the original (Set/GetProperty), the values
//! that configure them, and the group's live state behind them.

mod bandwidth;
mod rate;
mod transfers;

pub(crate) use bandwidth::Bandwidth;
pub use rate::{ByteRate, ConnectionLimit, LimitError};
pub(crate) use transfers::{TransferPermit, Transfers};

/// A group's limits and their live state, shared by the group handle and the transfers in flight.
#[derive(Debug, Default)]
pub(crate) struct GroupLimits {
    pub(crate) transfers: std::sync::Arc<Transfers>,
    pub(crate) bandwidth: std::sync::Arc<Bandwidth>,
}
