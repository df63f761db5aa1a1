//! [`NewJob`]: what a job is made of before it joins a manager (CreateJob's arguments), and the checks a
//! job's settings and every file pass before they are accepted (an absolute http(s) URL, an absolute local
//! path that is not a temporary's name, at most [`MAX_FILES_PER_JOB`] files; MinimumRetryDelay and
//! NoProgressTimeout within BITS's ranges, see [`check_timing`]).

use std::path::PathBuf;
use std::time::Duration;

use super::job::{
    Job, JobFile, DEFAULT_MINIMUM_RETRY_DELAY, LONGEST_JOB_TIMING, MINIMUM_RETRY_DELAY_FLOOR,
};
use super::job_error::JobError;
use super::state::{JobState, Priority};
use super::transfer;
use crate::client::ClientSettings;

/// What a new job looks like; build with [`NewJob::new`] and the setters.
#[derive(Debug, Clone)]
pub struct NewJob {
    display_name: String,
    description: String,
    owner: String,
    priority: Priority,
    files: Vec<(String, PathBuf)>,
    suspended: bool,
    minimum_retry_delay: Option<Duration>,
    no_progress_timeout: Option<Duration>,
    client: ClientSettings,
    restricted: bool,
}

impl NewJob {
    /// A job named `display_name`, started at once (WMI's default), NORMAL priority, no files.
    pub fn new(display_name: impl Into<String>) -> NewJob {
        NewJob {
            display_name: display_name.into(),
            description: String::new(),
            owner: String::new(),
            priority: Priority::Normal,
            files: Vec::new(),
            suspended: false,
            minimum_retry_delay: None,
            no_progress_timeout: None,
            client: ClientSettings::default(),
            restricted: false,
        }
    }

    /// Description. Default is empty.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Owner. Default is empty.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Priority. Default is NORMAL.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Adds a file: a remote `http://` or `https://` URL and an absolute local path.
    pub fn file(mut self, remote_url: impl Into<String>, local_file: impl Into<PathBuf>) -> Self {
        self.files.push((remote_url.into(), local_file.into()));
        self
    }

    /// Whether the job stays SUSPENDED until resumed (COM's way). Default is false: QUEUED at once.
    pub fn suspended(mut self, suspended: bool) -> Self {
        self.suspended = suspended;
        self
    }

    /// MinimumRetryDelay, from 5 s to [`LONGEST_JOB_TIMING`] (BITS's range); outside it, creating the job
    /// fails with [`JobError::InvalidSetting`]. Default is 600 s.
    pub fn minimum_retry_delay(mut self, delay: Duration) -> Self {
        self.minimum_retry_delay = Some(delay);
        self
    }

    /// NoProgressTimeout, from 0 (the first transient error is an ERROR) to [`LONGEST_JOB_TIMING`];
    /// beyond it, creating the job fails with [`JobError::InvalidSetting`]. Default is 14 days.
    pub fn no_progress_timeout(mut self, timeout: Duration) -> Self {
        self.no_progress_timeout = Some(timeout);
        self
    }

    /// TLS trust, proxy usage and credentials. Default is the system's roots, the environment's proxies
    /// and no credentials.
    pub fn client(mut self, settings: ClientSettings) -> Self {
        self.client = settings;
        self
    }

    /// Whether every connection the job makes is checked by the manager's peer guard (see
    /// [`JobManagerBuilder::peer_guard`](crate::jobs::JobManagerBuilder::peer_guard)). Default is false.
    pub fn restricted(mut self, restricted: bool) -> Self {
        self.restricted = restricted;
        self
    }
}

impl NewJob {
    /// The job it describes, QUEUED (or SUSPENDED if asked, or if it has no files yet), once its settings
    /// and files pass their checks.
    pub(super) fn into_job(self) -> Result<Job, JobError> {
        let delay = self
            .minimum_retry_delay
            .unwrap_or(DEFAULT_MINIMUM_RETRY_DELAY);
        check_timing(Some(delay), self.no_progress_timeout)?;
        self.client
            .check()
            .map_err(|e| JobError::InvalidSetting(e.to_string()))?;
        let start = !self.suspended && !self.files.is_empty();
        let mut job = Job::new(self.display_name, JobState::Suspended);
        job.description = self.description;
        job.owner = self.owner;
        job.priority = self.priority;
        job.minimum_retry_delay = delay;
        job.client = self.client;
        job.restricted = self.restricted;
        if let Some(t) = self.no_progress_timeout {
            job.no_progress_timeout = t;
        }
        for (url, local) in self.files {
            let file = checked_file(&job, url, local)?;
            job.files.push(file);
        }
        if start {
            job.state = JobState::Queued;
        }
        Ok(job)
    }
}

/// Checks MinimumRetryDelay (5 s to [`LONGEST_JOB_TIMING`]) and NoProgressTimeout (at most
/// [`LONGEST_JOB_TIMING`]), each when given: BITS's ranges, which also keep every deadline the scheduler
/// computes from them within the clock's range.
pub(super) fn check_timing(
    minimum_retry_delay: Option<Duration>,
    no_progress_timeout: Option<Duration>,
) -> Result<(), JobError> {
    if let Some(delay) = minimum_retry_delay {
        if delay < MINIMUM_RETRY_DELAY_FLOOR || delay > LONGEST_JOB_TIMING {
            return Err(JobError::InvalidSetting(format!(
                "MinimumRetryDelay {} s is outside {} s to {} s",
                delay.as_secs(),
                MINIMUM_RETRY_DELAY_FLOOR.as_secs(),
                LONGEST_JOB_TIMING.as_secs()
            )));
        }
    }
    if let Some(timeout) = no_progress_timeout.filter(|t| *t > LONGEST_JOB_TIMING) {
        return Err(JobError::InvalidSetting(format!(
            "NoProgressTimeout {} s is over {} s",
            timeout.as_secs(),
            LONGEST_JOB_TIMING.as_secs()
        )));
    }
    Ok(())
}

/// Checks a file before it joins a job.
pub(super) fn checked_file(
    job: &Job,
    remote_url: String,
    local: PathBuf,
) -> Result<JobFile, JobError> {
    let refuse = |reason: String| JobError::InvalidFile {
        remote_url: remote_url.clone(),
        local_file: local.clone(),
        reason,
    };
    transfer::parse_url(&remote_url).map_err(|f| refuse(f.error.message))?;
    if !local.is_absolute() || transfer::part_path(&local).is_none() {
        return Err(refuse(
            "the local file must be an absolute path to a file".into(),
        ));
    }
    if job.files.iter().any(|f| f.local_file == local) {
        return Err(refuse(
            "the job already has a file with this local path".into(),
        ));
    }
    if job.files.len() >= MAX_FILES_PER_JOB {
        return Err(refuse(format!(
            "a job has at most {MAX_FILES_PER_JOB} files (BITS's MaxFilesPerJob)"
        )));
    }
    // SECURITY: a destination named like a temporary would write (and on Complete rename over) another
    // file's temporary: whoever can create jobs could swap the bytes another job verified.
    if transfer::is_part_name(&local) {
        return Err(refuse("the name is that of a job's temporary file".into()));
    }
    Ok(JobFile::new(remote_url, local))
}

/// The most files one job holds (BITS's MaxFilesPerJob default): a job's JSON, its events and its saves
/// grow with its files.
pub(crate) const MAX_FILES_PER_JOB: usize = 200;
