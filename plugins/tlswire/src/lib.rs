//! Raw TLS ClientHello probes: one hand-built ClientHello offering exactly one version (SSLv3 to
//! TLS 1.3), and a parser for the server's first flight (ServerHello, Certificate, alerts). rustls
//! speaks only TLS 1.2 and 1.3, so this is how mailprobe learns about older versions, and reads
//! the certificate chain of a server that speaks nothing newer. Used by the `tls` plugin and by
//! the `imap` plugin (to tell a TLS ≤ 1.1 server from a broken one).
#![forbid(unsafe_code)]

pub mod hello;
pub mod probe;
