//! The mail protocols as the plugins speak them: one IMAP engine and preamble ([`imap`]), one
//! SMTP client and preamble ([`smtp`]), and the TLS handshake with each port, made once per
//! run and shared by every plugin that needs its facts ([`handshake`]), redone with the legacy
//! TLS engine for a server rustls cannot speak to ([`legacy`]), and the byte budget on the
//! streams async-imap reads ([`budget`]).
//!
//! It is an interface crate: the imap, smtp, tls and certificate plugins depend on it, so none
//! of them needs another for a greeting or a STARTTLS, and the core knows no mail protocol.
#![forbid(unsafe_code)]

pub mod budget;
pub mod handshake;
pub mod imap;
pub mod legacy;
pub mod literal;
pub mod smtp;

pub use budget::{BudgetExceeded, Budgeted};
pub use handshake::Handshakes;
