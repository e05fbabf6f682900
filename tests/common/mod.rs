//! Shared helpers for the integration tests (`mod common;`).
#![allow(dead_code, unused_imports)]

pub mod child;
pub mod lab;
pub mod probe;

pub use lab::{CourierOpts, DovecotOpts, Lab, PostfixOpts};
