//! Limits: the per-group ConnectionLimit and BandwidthLimit of the original (Set/GetProperty), the values
//! that configure them, and the group's live state behind them; and the server's own bounds on what
//! response bodies hold in memory and how long a stream may stall.

mod bandwidth;
mod memory;
mod progress;
mod rate;
mod shares;
mod sources;
mod transfers;

pub(crate) use bandwidth::Bandwidth;
pub(crate) use memory::{hold, Permits, ReadBudget, Reservation, H2_CHUNK, SERVER_BUDGET};
pub(crate) use progress::StreamProgress;
pub use rate::{ByteRate, ConnectionLimit, LimitError};
pub(crate) use shares::ServerBudget;
pub(crate) use sources::{SourceTicket, SourceTransfers, PER_SOURCE};
pub(crate) use transfers::{TransferPermit, Transfers};

/// A group's limits and their live state, shared by the group handle and the transfers in flight.
#[derive(Debug, Default)]
pub(crate) struct GroupLimits {
    pub(crate) transfers: std::sync::Arc<Transfers>,
    pub(crate) bandwidth: std::sync::Arc<Bandwidth>,
}
