//! Who a management request comes from, as its listener established it: the name every change is logged
//! and stored with ([`CallerName`]) and whom the request acts for ([`Principal`]). The listeners put both
//! in each request's extensions; the API's extractors read them. Also the one rule of what a caller who
//! is not an administrator may reach ([`is_jobs_path`]), which the listeners and the router both apply.

/// Who is calling, as the listener identified them; every change is logged and stored with it.
#[derive(Debug, Clone)]
pub struct CallerName(pub String);

/// Whom a request acts for, as the listener established it: the identity that owns the jobs it creates,
/// and whether it is an administrator (who may use the whole API and every job) or not (who may only use
/// `/v1/jobs`, and only for its own jobs).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The identity's name (a local caller's user name; a remote caller's authenticated name).
    pub name: String,
    /// Whether it passed the admin rule.
    pub admin: bool,
}

impl Principal {
    /// Whether this caller may see and manage a job owned by `owner`.
    pub(crate) fn may_manage(&self, owner: &str) -> bool {
        self.admin || (!self.name.is_empty() && self.name == owner)
    }
}

/// Whether a request path is one a caller who is not an administrator may use: `/v1/jobs` and below.
pub(crate) fn is_jobs_path(path: &str) -> bool {
    path == "/v1/jobs" || path.starts_with("/v1/jobs/")
}
