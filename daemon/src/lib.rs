//! The Anbox Application Registry daemon as a library: the `aar` binary is a thin
//! command-line front over it, and the charm reaches its config code through PyO3.
//!
//! Layers, each only calling the ones below it:
//! `cli` / `daemon` → `server` → `api` → `registry` → `storage`, with `admission` and
//! `write_timeout` beside `server`; `config`, `trust`, `tls`, `model`, `digest`,
//! `cloudfront`, `fsutil`, `malloc` and `metrics` are shared leaves.

pub mod admission;
pub mod api;
pub mod backup;
pub mod cli;
pub mod cloudfront;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod fsutil;
pub mod malloc;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod server;
pub mod startup;
pub mod storage;
pub mod tls;
pub mod trust;
pub mod trust_setup;
pub mod write_timeout;
