//! The job state machine (sans-IO): BITS job states, priorities and SetJobState actions with the numbers
//! of BITS's interface, and the one function that says where an action or a transfer event takes a job.
//! Everything that changes a job's state goes through [`JobState::apply`] or [`JobState::on`]; an invalid
//! change is a [`TransitionError`], never a silent no-op.
//!
//! Invariants: ACKNOWLEDGED and CANCELLED are final (nothing leaves them); only a TRANSFERRED job can be
//! completed; a job without files cannot be resumed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a job. The numbers are the interface's (`BG_JOB_STATE_*`, WMI `BitsClientJob.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for its turn (or for a transfer slot).
    Queued = 0,
    /// Connecting to the server of the current file.
    Connecting = 1,
    /// Receiving bytes.
    Transferring = 2,
    /// Stopped by its owner (the state of a new job that was not started).
    Suspended = 3,
    /// Stopped by a failure that retrying will not fix; see the job's error.
    Error = 4,
    /// Stopped by a failure that may go away; retried after the minimum retry delay.
    TransientError = 5,
    /// Every file is on disk, under its temporary name until the job is completed.
    Transferred = 6,
    /// Completed: the files are under their final names. Final.
    Acknowledged = 7,
    /// Cancelled: the temporary files are gone. Final.
    Cancelled = 8,
}

/// A job's priority; lower numbers go first. The numbers are the interface's (`BG_JOB_PRIORITY_*`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Priority {
    /// Transferred before all others.
    Foreground = 0,
    /// Before NORMAL and LOW.
    High = 1,
    /// The default.
    #[default]
    Normal = 2,
    /// After all others.
    Low = 3,
}

/// What an owner asks of a job: WMI `SetJobState` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Action {
    /// Stop for good and delete the temporary files.
    Cancel = 0,
    /// Put the transferred files under their final names.
    Complete = 1,
    /// Start, or retry at once.
    Resume = 2,
    /// Stop until resumed.
    Suspend = 3,
}

/// What the transfer machinery reports about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// A transfer slot was given to the job.
    Started,
    /// The server answered and bytes flow.
    Receiving,
    /// Every file is on disk.
    AllTransferred,
    /// A failure that may go away (connection lost, 5xx, 503).
    TransientFailure,
    /// A failure that will not go away by itself (404, access denied, local disk).
    FatalFailure,
    /// The minimum retry delay has passed since a transient failure.
    RetryDue,
    /// No progress for the no-progress timeout since a transient failure.
    NoProgressTimeout,
    /// Files were added (a TRANSFERRED job has work again).
    FilesAdded,
    /// The process restarted: a job that was running is queued again.
    Reloaded,
}

/// Why a state change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The job is ACKNOWLEDGED or CANCELLED: nothing changes it any more.
    #[error("the job is {0} and can no longer change")]
    Final(JobState),
    /// Complete before every file was transferred.
    #[error("the job is {0}; only a TRANSFERRED job can be completed")]
    NotTransferred(JobState),
    /// Resume of a job without files.
    #[error("a job without files cannot be resumed")]
    NoFiles,
    /// A transfer event that cannot happen in this state (a defect of the caller).
    #[error("{event:?} cannot happen to a {from} job")]
    Unexpected {
        /// The state the job was in.
        from: JobState,
        /// What was reported.
        event: Event,
    },
}

/// A number that names no state, priority or action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}")]
pub struct UnknownValue {
    /// What was expected (`job state`, `priority`, `action`).
    pub what: &'static str,
    /// What was given.
    pub value: String,
}

impl JobState {
    /// Every state, in numeric order.
    pub const ALL: [JobState; 9] = [
        JobState::Queued,
        JobState::Connecting,
        JobState::Transferring,
        JobState::Suspended,
        JobState::Error,
        JobState::TransientError,
        JobState::Transferred,
        JobState::Acknowledged,
        JobState::Cancelled,
    ];

    /// Whether nothing can change the job any more (ACKNOWLEDGED, CANCELLED).
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Acknowledged | JobState::Cancelled)
    }

    /// Whether a transfer is running for the job (CONNECTING, TRANSFERRING).
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Connecting | JobState::Transferring)
    }

    /// The state an owner's action leads to; `files` is how many files the job has.
    ///
    /// Resume of a running or queued job, and Suspend of a suspended one, change nothing and succeed; so
    /// do both on a TRANSFERRED job (nothing is left to run or to stop: it waits for Complete or Cancel).
    pub fn apply(self, action: Action, files: usize) -> Result<JobState, TransitionError> {
        use JobState::*;
        if self.is_final() {
            return Err(TransitionError::Final(self));
        }
        match action {
            Action::Cancel => Ok(Cancelled),
            Action::Complete if self == Transferred => Ok(Acknowledged),
            Action::Complete => Err(TransitionError::NotTransferred(self)),
            Action::Resume if files == 0 => Err(TransitionError::NoFiles),
            Action::Resume => Ok(match self {
                Suspended | Error | TransientError => Queued,
                other => other,
            }),
            Action::Suspend => Ok(match self {
                Transferred => Transferred,
                _ => Suspended,
            }),
        }
    }

    /// The state a transfer event leads to.
    pub fn on(self, event: Event) -> Result<JobState, TransitionError> {
        use JobState::*;
        if self.is_final() {
            return Err(TransitionError::Final(self));
        }
        let next = match (self, event) {
            (Queued, Event::Started) => Connecting,
            (Connecting | Transferring, Event::Receiving) => Transferring,
            (Connecting | Transferring, Event::AllTransferred) => Transferred,
            (Connecting | Transferring, Event::TransientFailure) => TransientError,
            (Connecting | Transferring, Event::FatalFailure) => Error,
            (TransientError, Event::RetryDue) => Queued,
            (TransientError, Event::NoProgressTimeout) => Error,
            (Transferred, Event::FilesAdded) => Queued,
            (state, Event::FilesAdded) => state,
            (Connecting | Transferring, Event::Reloaded) => Queued,
            (state, Event::Reloaded) => state,
            (from, event) => return Err(TransitionError::Unexpected { from, event }),
        };
        Ok(next)
    }

    fn name(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Connecting => "CONNECTING",
            JobState::Transferring => "TRANSFERRING",
            JobState::Suspended => "SUSPENDED",
            JobState::Error => "ERROR",
            JobState::TransientError => "TRANSIENT_ERROR",
            JobState::Transferred => "TRANSFERRED",
            JobState::Acknowledged => "ACKNOWLEDGED",
            JobState::Cancelled => "CANCELLED",
        }
    }
}

impl Priority {
    /// Every priority, first served first.
    pub const ALL: [Priority; 4] = [
        Priority::Foreground,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    fn name(self) -> &'static str {
        match self {
            Priority::Foreground => "FOREGROUND",
            Priority::High => "HIGH",
            Priority::Normal => "NORMAL",
            Priority::Low => "LOW",
        }
    }
}

impl Action {
    /// Every action, in numeric order.
    pub const ALL: [Action; 4] = [
        Action::Cancel,
        Action::Complete,
        Action::Resume,
        Action::Suspend,
    ];

    fn name(self) -> &'static str {
        match self {
            Action::Cancel => "CANCEL",
            Action::Complete => "COMPLETE",
            Action::Resume => "RESUME",
            Action::Suspend => "SUSPEND",
        }
    }
}

/// `as u32`, `TryFrom<u32>`, `Display` (the interface's upper-case name) and `FromStr` (the name in any
/// case, or the number) for each of the three enums.
macro_rules! numbered {
    ($ty:ident, $what:literal) => {
        impl From<$ty> for u32 {
            fn from(v: $ty) -> u32 {
                v as u32
            }
        }

        impl TryFrom<u32> for $ty {
            type Error = UnknownValue;
            fn try_from(n: u32) -> Result<Self, UnknownValue> {
                $ty::ALL
                    .into_iter()
                    .find(|v| *v as u32 == n)
                    .ok_or_else(|| UnknownValue {
                        what: $what,
                        value: n.to_string(),
                    })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                let unknown = || UnknownValue {
                    what: $what,
                    value: s.to_owned(),
                };
                if let Ok(n) = s.parse::<u32>() {
                    return $ty::try_from(n).map_err(|_| unknown());
                }
                let wanted = s.replace('-', "_");
                $ty::ALL
                    .into_iter()
                    .find(|v| v.name().eq_ignore_ascii_case(&wanted))
                    .ok_or_else(unknown)
            }
        }
    };
}

numbered!(JobState, "job state");
numbered!(Priority, "priority");
numbered!(Action, "action");

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn numbers_are_the_interface() {
        let states: Vec<u32> = JobState::ALL.iter().map(|s| *s as u32).collect();
        assert_eq!(states, (0..9).collect::<Vec<_>>());
        assert_eq!(u32::from(TransientError), 5);
        assert_eq!(JobState::try_from(7), Ok(Acknowledged));
        assert!(JobState::try_from(9).is_err());
        assert_eq!(Priority::default(), Priority::Normal);
        assert_eq!(Priority::Foreground as u32, 0);
        assert_eq!(Priority::try_from(3), Ok(Priority::Low));
        assert!(Priority::try_from(4).is_err());
        assert_eq!(Action::try_from(0), Ok(Action::Cancel));
        assert_eq!(Action::try_from(1), Ok(Action::Complete));
        assert_eq!(Action::try_from(2), Ok(Action::Resume));
        assert_eq!(Action::try_from(3), Ok(Action::Suspend));
        assert!(Action::try_from(u32::MAX).is_err());
        assert!(Priority::Foreground < Priority::High && Priority::Normal < Priority::Low);
    }

    #[test]
    fn names_print_and_parse_back() {
        for s in JobState::ALL {
            assert_eq!(s.to_string().parse::<JobState>(), Ok(s));
            assert_eq!((s as u32).to_string().parse::<JobState>(), Ok(s));
        }
        assert_eq!("transient-error".parse::<JobState>(), Ok(TransientError));
        assert_eq!("high".parse::<Priority>(), Ok(Priority::High));
        assert_eq!("Suspend".parse::<Action>(), Ok(Action::Suspend));
        assert!("".parse::<Action>().is_err());
        assert!("-1".parse::<JobState>().is_err());
        assert!("99999999999".parse::<Priority>().is_err());
        let json = serde_json::to_string(&TransientError).unwrap();
        assert_eq!(json, "\"TRANSIENT_ERROR\"");
    }

    /// The whole action table: every state × every action, with and without files.
    #[test]
    fn action_table() {
        use Action::*;
        let ok = |s: JobState| Ok::<_, TransitionError>(s);
        #[rustfmt::skip]
        let table: [(JobState, [Result<JobState, TransitionError>; 4]); 9] = [
            //               Cancel          Complete                                   Resume                  Suspend
            (Queued,         [ok(Cancelled), Err(TransitionError::NotTransferred(Queued)), ok(Queued),         ok(Suspended)]),
            (Connecting,     [ok(Cancelled), Err(TransitionError::NotTransferred(Connecting)), ok(Connecting), ok(Suspended)]),
            (Transferring,   [ok(Cancelled), Err(TransitionError::NotTransferred(Transferring)), ok(Transferring), ok(Suspended)]),
            (Suspended,      [ok(Cancelled), Err(TransitionError::NotTransferred(Suspended)), ok(Queued),      ok(Suspended)]),
            (Error,          [ok(Cancelled), Err(TransitionError::NotTransferred(Error)), ok(Queued),          ok(Suspended)]),
            (TransientError, [ok(Cancelled), Err(TransitionError::NotTransferred(TransientError)), ok(Queued), ok(Suspended)]),
            (Transferred,    [ok(Cancelled), ok(Acknowledged),                            ok(Transferred),     ok(Transferred)]),
            (Acknowledged,   [Err(TransitionError::Final(Acknowledged)); 4]),
            (Cancelled,      [Err(TransitionError::Final(Cancelled)); 4]),
        ];
        for (from, expected) in table {
            for (action, want) in [Cancel, Complete, Resume, Suspend]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(from.apply(action, 1), want, "{from} {action}");
            }
        }
        // Without files, Resume is refused wherever the job is not final; the rest is unchanged.
        for from in JobState::ALL {
            let want = match from.is_final() {
                true => Err(TransitionError::Final(from)),
                false => Err(TransitionError::NoFiles),
            };
            assert_eq!(from.apply(Resume, 0), want, "{from}");
            assert_eq!(from.apply(Cancel, 0), from.apply(Cancel, 1));
        }
    }

    /// The whole event table.
    #[test]
    fn event_table() {
        use Event::*;
        let events = [
            Started,
            Receiving,
            AllTransferred,
            TransientFailure,
            FatalFailure,
            RetryDue,
            NoProgressTimeout,
            FilesAdded,
            Reloaded,
        ];
        let allowed = |from: JobState, e: Event| -> Option<JobState> {
            Some(match (from, e) {
                (Queued, Started) => Connecting,
                (Connecting | Transferring, Receiving) => Transferring,
                (Connecting | Transferring, AllTransferred) => Transferred,
                (Connecting | Transferring, TransientFailure) => TransientError,
                (Connecting | Transferring, FatalFailure) => Error,
                (TransientError, RetryDue) => Queued,
                (TransientError, NoProgressTimeout) => Error,
                (Transferred, FilesAdded) => Queued,
                (s, FilesAdded) => s,
                (Connecting | Transferring, Reloaded) => Queued,
                (s, Reloaded) => s,
                _ => return None,
            })
        };
        for from in JobState::ALL {
            for e in events {
                let got = from.on(e);
                match (from.is_final(), allowed(from, e)) {
                    (true, _) => assert_eq!(got, Err(TransitionError::Final(from))),
                    (false, Some(to)) => assert_eq!(got, Ok(to), "{from} {e:?}"),
                    (false, None) => assert_eq!(
                        got,
                        Err(TransitionError::Unexpected { from, event: e }),
                        "{from} {e:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn the_spec_examples() {
        // Complete after Cancel; anything after ACKNOWLEDGED; Complete before TRANSFERRED; Resume with no files.
        let cancelled = Queued.apply(Action::Cancel, 1).unwrap();
        assert_eq!(
            cancelled.apply(Action::Complete, 1),
            Err(TransitionError::Final(Cancelled))
        );
        assert!(Acknowledged.apply(Action::Suspend, 1).is_err());
        assert!(Acknowledged.on(Event::FilesAdded).is_err());
        assert_eq!(
            Transferring.apply(Action::Complete, 1),
            Err(TransitionError::NotTransferred(Transferring))
        );
        assert_eq!(
            Suspended.apply(Action::Resume, 0),
            Err(TransitionError::NoFiles)
        );
        assert!(TransitionError::Final(Cancelled)
            .to_string()
            .contains("CANCELLED"));
    }
}
