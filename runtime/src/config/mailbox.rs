//! The checks of one mailbox entry that serde cannot make: its servers, its profile, a unique
//! name, a secret that is not written inline; each error names the field and its line.

use std::collections::HashSet;

use mailprobe_core::model::{self, Protocol, SecurityMode};
use mailprobe_core::profile::Profile;

use std::time::Duration;

use super::lines::find_key_line;
use super::{ConfigError, MailboxConfig};

pub(super) fn mailbox_error(file: &str, m: &MailboxConfig, message: String) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line: None,
        column: None,
        message: format!("mailbox `{}`: {message}", m.name),
    }
}

/// The checks of one mailbox entry (the `i`th), recording its name in `names`.
pub(super) fn check_mailbox(
    i: usize,
    start: Option<usize>,
    m: &MailboxConfig,
    text: &str,
    file: &str,
    names: &mut HashSet<String>,
) -> Result<(), ConfigError> {
    let err = |line: Option<usize>, message: String| ConfigError {
        file: file.to_string(),
        line,
        column: None,
        message,
    };
    let at = |key: &str| start.and_then(|l| find_key_line(text, l, key)).or(start);
    let here = format!("mailboxes[{i}] ({})", m.name);
    if m.name.trim().is_empty() {
        return Err(err(
            at("name"),
            format!("mailboxes[{i}].name is empty; give the mailbox a name"),
        ));
    }
    if !names.insert(m.name.clone()) {
        return Err(err(
            at("name"),
            format!(
                "{here}: the name `{}` is used twice; mailbox names must be unique",
                m.name
            ),
        ));
    }
    if m.user.trim().is_empty() {
        return Err(err(
            at("user"),
            format!("{here}.user is empty; give the login name"),
        ));
    }
    if let Err(e) = Profile::shared(&m.profile) {
        return Err(err(at("profile"), format!("{here}.profile: {e}")));
    }
    if let Err(e) = model::endpoint(
        Protocol::Imap,
        &m.imap,
        m.imap_security.and_then(SecurityMode::explicit),
    ) {
        return Err(err(at("imap"), format!("{here}.imap: {e}")));
    }
    if let Some(s) = &m.smtp {
        if let Err(e) = model::endpoint(
            Protocol::Smtp,
            s,
            m.smtp_security.and_then(SecurityMode::explicit),
        ) {
            return Err(err(at("smtp"), format!("{here}.smtp: {e}")));
        }
    } else if m.smtp_security.is_some() {
        return Err(err(
            at("smtp_security"),
            format!("{here}: smtp_security is set but smtp is not; add smtp: HOST[:PORT]"),
        ));
    }
    if let Some(source) = m.source_address
        && let Err(e) = mailprobe_core::net::check_source_address(source)
    {
        return Err(err(
            at("source_address"),
            format!("{here}.source_address: {e}"),
        ));
    }
    if let Some(t) = m.timeout
        && t < Duration::from_secs(1)
    {
        return Err(err(
            at("timeout"),
            format!("{here}.timeout must be at least 1s"),
        ));
    }
    if let Some(ca) = &m.ca_file
        && let Err(e) = mailprobe_core::tls::Trust::load(Some(ca))
    {
        return Err(err(at("ca_file"), format!("{here}.ca_file: {e}")));
    }
    check_roundtrip(m, &here).map_err(|(key, message)| err(at(key), message))
}

/// The round trip's keys: only with `roundtrip: true`, which needs `smtp` (the message is sent
/// through it) and somewhere to send to. Returns the key at fault and the message.
fn check_roundtrip(m: &MailboxConfig, here: &str) -> Result<(), (&'static str, String)> {
    if !m.roundtrip {
        for (key, set) in [
            ("roundtrip_to", m.roundtrip_to.is_some()),
            ("roundtrip_warn", m.roundtrip_warn.is_some()),
        ] {
            if set {
                return Err((
                    key,
                    format!("{here}: {key} is set but roundtrip is not; add roundtrip: true"),
                ));
            }
        }
        return Ok(());
    }
    if m.smtp.is_none() {
        return Err((
            "roundtrip",
            format!(
                "{here}: roundtrip needs smtp, the server the test message is sent through; add smtp: HOST[:PORT]"
            ),
        ));
    }
    if let Some(w) = m.roundtrip_warn
        && !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&w)
    {
        return Err((
            "roundtrip_warn",
            format!("{here}.roundtrip_warn must be between 1s and 10m"),
        ));
    }
    let key = if m.roundtrip_to.is_some() {
        "roundtrip_to"
    } else {
        "roundtrip"
    };
    mailprobe_core::model::Roundtrip::new(&m.user, m.roundtrip_to.as_deref(), m.roundtrip_warn)
        .map(|_| ())
        .map_err(|e| match m.roundtrip_to {
            Some(_) => (key, format!("{here}.roundtrip_to: {e}")),
            None => (key, format!("{here}.roundtrip: {e}, in roundtrip_to")),
        })
}
