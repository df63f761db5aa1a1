//! What operators watch a server with: Prometheus metrics (`metrics`) and access logs (`access_log`),
//! checked with the real tools that read them (Prometheus, goaccess, logrotate).

mod access_log;
mod metrics;
mod robustness;
