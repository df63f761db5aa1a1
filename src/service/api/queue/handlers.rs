//! The handlers of `/v1/jobs`: the original's BitsClientJob calls through WMI (CreateJob, AddFile,
//! SetJobState, SetPriority, SetCredentials, RemoveCredentials, GetError) and the event stream's route.
//!
//! SECURITY: the threat is a caller reaching jobs that are not theirs. Every job records its owner (the
//! caller's identity when it was created); an administrator sees and manages every job, anyone else only
//! their own, and another's job answers 404 exactly as a missing one does, so its existence is not
//! revealed ([`visible`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;

use super::sse;
use super::wire::{
    credentials, error_view, proxy, view, ChangeJob, CreateJob, JobErrorView, JobStreamEvent,
    JobView, NameOrNumber, NewFile, SetCredentials, SetState,
};
use crate::client::{ClientSettings, SpkiPin};
use crate::jobs::{Action, Job, JobError, JobId, NewJob, Priority, TransitionError};
use crate::service::api::extract::{blocking, Body, Param};
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::service::principal::Principal;
use crate::service::sandbox::{DirsMade, PlannedPath};
use crate::service::service_jobs::ServiceJobs;

/// The most jobs a caller who is not an administrator may have (BITS's MaxJobsPerUser default).
const MAX_JOBS_PER_OWNER: usize = 60;

fn not_found(id: &str) -> MgmtError {
    MgmtError::NotFound {
        code: "job_not_found",
        message: format!("no job {id}"),
    }
}

fn jobs_of(m: &Managed) -> Result<&ServiceJobs, MgmtError> {
    m.jobs().ok_or_else(|| MgmtError::NotFound {
        code: "jobs_disabled",
        message: "this service runs no jobs".into(),
    })
}

/// The job `id` if the caller may see it; another's job is "not found", exactly like a missing one.
fn visible(m: &Managed, who: &Principal, id: &str) -> Result<(JobId, Job), MgmtError> {
    let jobs = jobs_of(m)?;
    let job_id: JobId = id.parse().map_err(|_| not_found(id))?;
    let job = jobs.job(job_id).map_err(|_| not_found(id))?;
    if !who.may_manage(&job.owner) {
        return Err(not_found(id));
    }
    Ok((job_id, job))
}

/// The refusal the job manager gives a change to a final job: a final job kept from before a restart is
/// no longer the manager's, and answers as it did.
fn still_open(job_id: JobId, job: &Job) -> Result<(), MgmtError> {
    match job.state.is_final() {
        true => Err(JobError::Transition {
            id: job_id,
            source: TransitionError::Final(job.state),
        }
        .into()),
        false => Ok(()),
    }
}

/// Every job the caller may see (an administrator: all).
#[utoipa::path(get, operation_id = "list_jobs", path = "/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobView>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(m): State<Arc<Managed>>,
    who: Principal,
) -> Result<Json<Vec<JobView>>, MgmtError> {
    let jobs = jobs_of(&m)?;
    Ok(Json(
        jobs.jobs()
            .iter()
            .filter(|j| who.may_manage(&j.owner))
            .map(view)
            .collect(),
    ))
}

/// Creates a job (CreateJob), owned by the caller: QUEUED at once unless `suspended` (or without files).
#[utoipa::path(post, operation_id = "create_job", path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    responses((status = 201, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn create(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Body(body): Body<CreateJob>,
) -> Result<(StatusCode, Json<JobView>), MgmtError> {
    body.check()?;
    let jobs = jobs_of(&m)?;
    // Checked here to refuse early, and again below while no other job is being made.
    under_the_cap(jobs, &who)?;
    if !who.admin {
        reachable(jobs, &body).await?;
    }
    let planned = body
        .files
        .iter()
        .map(|f| jobs.plan_path(&who, &f.local_file))
        .collect::<Result<Vec<_>, _>>()?;
    let new = new_job(body, &who, &planned)?;
    // Finished even if the caller leaves: the directories stay exactly when the job does.
    let owner = who.name.clone();
    let job = to_the_end(m, move |m| async move {
        let jobs = jobs_of(&m)?;
        let _making = jobs.making().await;
        // Again: other calls of the same caller may have made jobs while this one checked its hosts.
        under_the_cap(jobs, &who)?;
        let dirs = DirsMade::make(&planned)?;
        let job = jobs.manager().create_job(new).await?;
        dirs.keep();
        Ok(job)
    })
    .await?;
    tracing::info!(target: "bits_compact::service", who = %owner, job = %job.id, "created a job");
    Ok((StatusCode::CREATED, Json(view(&job))))
}

/// Refuses a caller who is not an administrator and already owns the most jobs one may.
///
/// SECURITY: such a caller must not grow the service's jobs (each one memory, store rows and event work)
/// without bound: BITS's MaxJobsPerUser, whose default this is. Concurrent creations are bounded too: the
/// second check runs while `making()` is held, so no two of them count the same jobs.
fn under_the_cap(jobs: &ServiceJobs, who: &Principal) -> Result<(), MgmtError> {
    let owned = || jobs.jobs().iter().filter(|j| j.owner == who.name).count();
    match !who.admin && owned() >= MAX_JOBS_PER_OWNER {
        true => Err(MgmtError::Invalid {
            code: "too_many_jobs",
            message: format!(
                "a caller who is not an administrator has at most {MAX_JOBS_PER_OWNER} jobs; delete finished ones first"
            ),
        }),
        false => Ok(()),
    }
}

/// Whether a job of a caller who is not an administrator may reach every file's host and its proxy
/// (see `JobPolicy`).
async fn reachable(jobs: &ServiceJobs, body: &CreateJob) -> Result<(), MgmtError> {
    let mut targets: Vec<(String, &str)> = Vec::new();
    for (i, file) in body.files.iter().enumerate() {
        targets.push((format!("files[{i}].remote_url"), &file.remote_url));
    }
    if let Some(proxy) = body.proxy.as_ref().and_then(|p| p.proxy.as_deref()) {
        targets.push(("proxy.proxy".to_owned(), proxy));
    }
    jobs.policy().check(targets).await
}

/// The job a checked request describes, owned by `who`, its files at `planned`.
fn new_job(body: CreateJob, who: &Principal, planned: &[PlannedPath]) -> Result<NewJob, MgmtError> {
    let mut new = NewJob::new(body.display_name)
        .description(body.description)
        .owner(who.name.clone())
        .suspended(body.suspended)
        // SECURITY: checked again at each connection (see `JobPolicy`), not only here.
        .restricted(!who.admin);
    if let Some(p) = &body.priority {
        new = new.priority(p.parse::<Priority>()?);
    }
    for (f, place) in body.files.iter().zip(planned) {
        new = new.file(f.remote_url.clone(), place.path());
    }
    if let Some(s) = body.minimum_retry_delay_secs {
        new = new.minimum_retry_delay(Duration::from_secs(s));
    }
    if let Some(s) = body.no_progress_timeout_secs {
        new = new.no_progress_timeout(Duration::from_secs(s.min(u64::from(u32::MAX))));
    }
    let mut client = ClientSettings::default();
    if let Some(c) = body.credentials {
        client.credentials = Some(credentials(c)?);
    }
    if let Some(p) = body.proxy {
        client.proxy = proxy(p)?;
    }
    for pin in &body.pins {
        client
            .tls
            .pins
            .push(pin.parse::<SpkiPin>().map_err(|e| MgmtError::Invalid {
                code: "invalid_job_setting",
                message: e.to_string(),
            })?);
    }
    Ok(new.client(client))
}

/// Runs `call` on its own task, so that a caller who leaves (dropping the request) cannot stop it
/// halfway: a change and what goes with it (its directories, its record) are made whole or not at all.
async fn to_the_end<T, F>(
    m: Arc<Managed>,
    call: impl FnOnce(Arc<Managed>) -> F,
) -> Result<T, MgmtError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, MgmtError>> + Send + 'static,
{
    tokio::spawn(call(m))
        .await
        .unwrap_or_else(|e| Err(MgmtError::Internal(format!("the call did not finish: {e}"))))
}

/// A job.
#[utoipa::path(get, operation_id = "show_job", path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Json<JobView>, MgmtError> {
    let (_, job) = visible(&m, &who, &id)?;
    Ok(Json(view(&job)))
}

/// Changes a job's priority (SetPriority), MinimumRetryDelay or NoProgressTimeout.
#[utoipa::path(patch, operation_id = "change_job", path = "/v1/jobs/{id}", tag = "jobs", request_body = ChangeJob,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn change(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<ChangeJob>,
) -> Result<Json<JobView>, MgmtError> {
    body.check()?;
    let (job_id, mut job) = visible(&m, &who, &id)?;
    let manager = jobs_of(&m)?.manager();
    let priority = body
        .priority
        .as_ref()
        .map(NameOrNumber::parse::<Priority>)
        .transpose()?;
    let delay = body.minimum_retry_delay_secs.map(Duration::from_secs);
    let timeout = body
        .no_progress_timeout_secs
        .map(|s| Duration::from_secs(s.min(u64::from(u32::MAX))));
    if delay.is_some() || timeout.is_some() || priority.is_some() {
        still_open(job_id, &job)?;
        // One change: a refused call sets none of the fields.
        job = manager
            .set_schedule(job_id, priority, delay, timeout)
            .await?;
    }
    Ok(Json(view(&job)))
}

/// Forgets a job that is ACKNOWLEDGED or CANCELLED.
#[utoipa::path(delete, operation_id = "delete_job", path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<StatusCode, MgmtError> {
    let (job_id, job) = visible(&m, &who, &id)?;
    let forgotten = to_the_end(m, move |m| async move {
        let _ending = jobs_of(&m)?.ending().await;
        blocking(&m, move |m| jobs_of(m)?.forget(job_id)).await
    })
    .await?;
    match forgotten {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(MgmtError::Conflict {
            code: "job_not_final",
            message: format!("job {id} is {}; complete or cancel it first", job.state),
        }),
    }
}

/// Adds a file (AddFile).
#[utoipa::path(post, operation_id = "add_job_file", path = "/v1/jobs/{id}/files", tag = "jobs", request_body = NewFile,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_file(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<NewFile>,
) -> Result<Json<JobView>, MgmtError> {
    body.check("")?;
    let (job_id, job) = visible(&m, &who, &id)?;
    let jobs = jobs_of(&m)?;
    if !who.admin {
        let url = ("remote_url".to_owned(), body.remote_url.as_str());
        jobs.policy().check([url]).await?;
    }
    let planned = jobs.plan_path(&who, &body.local_file)?;
    still_open(job_id, &job)?;
    let job = to_the_end(m, move |m| async move {
        let jobs = jobs_of(&m)?;
        let _making = jobs.making().await;
        let dirs = DirsMade::make(std::slice::from_ref(&planned))?;
        let job = jobs
            .manager()
            .add_file(job_id, body.remote_url, planned.path())
            .await?;
        dirs.keep();
        Ok(job)
    })
    .await?;
    Ok(Json(view(&job)))
}

/// Changes a job's state (SetJobState): 0 CANCEL, 1 COMPLETE, 2 RESUME, 3 SUSPEND.
#[utoipa::path(put, operation_id = "set_job_state", path = "/v1/jobs/{id}/state", tag = "jobs", request_body = SetState,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn set_state(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<SetState>,
) -> Result<Json<JobView>, MgmtError> {
    body.action.check("action")?;
    let (job_id, job) = visible(&m, &who, &id)?;
    let action = body.action.parse::<Action>()?;
    still_open(job_id, &job)?;
    let job = match action {
        // These may end the job: it is recorded as it ended before anything else changes it.
        Action::Cancel | Action::Complete => {
            to_the_end(m, move |m| async move {
                let _ending = jobs_of(&m)?.ending().await;
                let job = jobs_of(&m)?.manager().set_state(job_id, action).await?;
                match job.state.is_final() {
                    true => blocking(&m, move |m| Ok(jobs_of(m)?.record_ended(job))).await,
                    false => Ok(job),
                }
            })
            .await?
        }
        _ => jobs_of(&m)?.manager().set_state(job_id, action).await?,
    };
    tracing::info!(target: "bits_compact::service", who = %who.name, job = %job_id, %action, "job state set");
    Ok(Json(view(&job)))
}

/// Sets a job's credentials (SetCredentials); the password is never shown again.
#[utoipa::path(put, operation_id = "set_job_credentials", path = "/v1/jobs/{id}/credentials", tag = "jobs", request_body = SetCredentials,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn set_credentials(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<SetCredentials>,
) -> Result<Json<JobView>, MgmtError> {
    replace_credentials(&m, &who, &id, Some(body)).await
}

/// Sets (or with `None` removes) a job's credentials, keeping its other client settings.
async fn replace_credentials(
    m: &Managed,
    who: &Principal,
    id: &str,
    credentials: Option<SetCredentials>,
) -> Result<Json<JobView>, MgmtError> {
    if let Some(c) = &credentials {
        c.check()?;
    }
    let (job_id, job) = visible(m, who, id)?;
    still_open(job_id, &job)?;
    let mut settings = job.client.clone();
    settings.credentials = credentials.map(self::credentials).transpose()?;
    let job = jobs_of(m)?
        .manager()
        .set_client_settings(job_id, settings)
        .await?;
    Ok(Json(view(&job)))
}

/// Removes a job's credentials (RemoveCredentials).
#[utoipa::path(delete, operation_id = "remove_job_credentials", path = "/v1/jobs/{id}/credentials", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove_credentials(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Json<JobView>, MgmtError> {
    replace_credentials(&m, &who, &id, None).await
}

/// The job's last error (GetError).
#[utoipa::path(get, operation_id = "show_job_error", path = "/v1/jobs/{id}/error", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobErrorView), (status = 404, body = ErrorBody)))]
pub(crate) async fn error(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Json<JobErrorView>, MgmtError> {
    let (_, job) = visible(&m, &who, &id)?;
    Ok(Json(error_view(&job, job.error.as_ref())))
}

/// A job's progress and state changes as server-sent events (`state`, `progress`), starting with its
/// current state (`job`, the whole job); ends when the job reaches a final state. A reader too slow for
/// the events loses the oldest and gets the job's current state instead.
#[utoipa::path(get, operation_id = "follow_job_events", path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "A stream of events (`text/event-stream`)", content_type = "text/event-stream", body = JobStreamEvent),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn events(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Response, MgmtError> {
    let (job_id, job) = visible(&m, &who, &id)?;
    if job.state.is_final() {
        return Ok(sse::ended(&job));
    }
    Ok(sse::response(jobs_of(&m)?.manager().clone(), job_id))
}
