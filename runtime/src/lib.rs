//! mailprobe's runtime: what drives the check plugins. The configuration file ([`config`]),
//! the runner that runs the selected plugins against one mailbox within its deadline and turns
//! what they found into a report ([`runner`]), the scheduler of the daemon ([`scheduler`]), and
//! sharding over replicas ([`shard`]).
//!
//! It depends on `mailprobe-core` (the interface plugins see); plugins never depend on it.
#![forbid(unsafe_code)]

pub mod cadence;
pub mod config;
pub mod reference;
pub mod runner;
pub mod scheduler;
pub mod shard;
pub mod transcripts;
