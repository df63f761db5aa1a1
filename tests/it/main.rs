//! Integration tests in one binary: the in-process server and the real `bcs` binary over loopback, with real
//! clients (curl, wget, aria2c) and raw sockets.
#![allow(unreachable_pub)]

mod adversarial;
#[cfg(feature = "cli")]
mod auth;
mod authz;
#[cfg(feature = "cli")]
mod cli;
mod client;
mod clients;
mod config;
#[cfg(feature = "cli")]
mod download;
#[cfg(feature = "cli")]
mod download_hardening;
#[cfg(feature = "cli")]
mod examples;
mod exposure;
#[cfg(feature = "cli")]
mod fleet;
#[cfg(all(feature = "cli", feature = "fleet"))]
mod fleet_content;
#[cfg(feature = "cli")]
mod hardening;
mod job_hardening;
mod jobs;
#[cfg(feature = "negotiate")]
mod kdc;
#[cfg(all(feature = "negotiate", feature = "cli"))]
mod kerberos;
mod limits;
#[cfg(all(feature = "negotiate", feature = "cli"))]
mod negotiate;
#[cfg(feature = "cli")]
mod newcomer;
mod ntlm;
#[cfg(feature = "cli")]
mod observability;
mod pki;
#[cfg(feature = "cli")]
mod readme;
mod runtime;
mod samba;
#[cfg(feature = "cli")]
mod servejobs;
#[cfg(feature = "cli")]
mod service;
#[cfg(feature = "cli")]
mod status;
mod support;
mod tls;
mod unserved;
mod zerocopy;
