//! What operators watch a server with: Prometheus metrics (`metrics`) and access logs (`access_log`),
//! checked with the real tools that read them (Prometheus, goaccess, logrotate).

mod access_log;
mod metrics;
mod robustness;

use crate::service::text;
use crate::support::run;

/// curl's view of one request (`args`: options, then the URL): body bytes received and status.
fn fetch(args: &[&str]) -> (u64, u16) {
    let out = run(
        "curl",
        &[
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{http_code}",
            ],
            args,
        ]
        .concat(),
    );
    let answer = text(&out.stdout);
    let (size, code) = answer.split_once(' ').unwrap();
    (size.parse().unwrap(), code.parse().unwrap())
}
