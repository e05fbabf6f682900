//! The mailbox/target model: what one check run looks at.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::secret::Secret;

/// The mail protocols a mailbox is reached over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Smtp,
}

impl Protocol {
    /// The requirement-ID prefix: `imap` or `smtp`.
    pub fn prefix(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Smtp => "SMTP",
        }
    }
    /// A requirement ID of this protocol: the prefix, a dot, and `suffix`.
    pub fn requirement(self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix())
    }
    pub fn default_port(self, security: Security) -> u16 {
        match (self, security) {
            (Protocol::Imap, Security::Tls) => 993,
            (Protocol::Imap, Security::Starttls) => 143,
            (Protocol::Smtp, Security::Tls) => 465,
            (Protocol::Smtp, Security::Starttls) => 587,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How the connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// A plain connection upgraded with STARTTLS.
    Starttls,
}

impl Security {
    /// The rule when the user says nothing: ports 993 and 465 mean TLS, others STARTTLS.
    pub fn for_port(port: u16) -> Security {
        Security::well_known(port).unwrap_or(Security::Starttls)
    }
    /// What a well-known mail port means; `None` for any other port.
    pub fn well_known(port: u16) -> Option<Security> {
        match port {
            993 | 465 => Some(Security::Tls),
            143 | 587 | 25 => Some(Security::Starttls),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
        }
    }
}

impl std::str::FromStr for Security {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::Starttls),
            other => Err(format!(
                "`{other}` is not a security mode; use tls or starttls"
            )),
        }
    }
}

/// How the user asked the probe to secure a port: a mode, or `auto` (the default), where
/// well-known ports mean what they mean and on any other port the probe finds out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Tls,
    Starttls,
    Auto,
}

impl SecurityMode {
    /// The mode the user fixed, if any.
    pub fn explicit(self) -> Option<Security> {
        match self {
            SecurityMode::Tls => Some(Security::Tls),
            SecurityMode::Starttls => Some(Security::Starttls),
            SecurityMode::Auto => None,
        }
    }
}

impl std::str::FromStr for SecurityMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tls" => Ok(SecurityMode::Tls),
            "starttls" => Ok(SecurityMode::Starttls),
            "auto" => Ok(SecurityMode::Auto),
            other => Err(format!(
                "`{other}` is not a security mode; use tls, starttls or auto"
            )),
        }
    }
}

/// One server port of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub protocol: Protocol,
    /// The host name the user gave: used for SNI and certificate name checks.
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Where to connect instead of resolving `host` (an IP address or another name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_to: Option<String>,
    /// The user left the security mode to the probe on a port that is not a well-known one:
    /// `security` is a guess until the first connection finds out (the reachability check
    /// does), and results then say `security_detected`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_security: bool,
    /// The local address to connect from (bound before connecting), so that the probe checks
    /// from the address the mailbox's firewall allowlists. None lets the kernel choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<std::net::IpAddr>,
}

impl Endpoint {
    /// `host:port`, with IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
    /// The name or address actually dialled.
    pub fn dial_host(&self) -> &str {
        self.connect_to.as_deref().unwrap_or(&self.host)
    }
}

/// Parses `HOST[:PORT]`, `[V6]:PORT` or a bare IPv6 literal. The port is `None` when absent.
pub fn parse_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the server is empty; give HOST or HOST:PORT".into());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "`{s}`: an IPv6 address in brackets needs the closing `]`"
            ));
        };
        if after.is_empty() {
            return Ok((host.to_string(), None));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("`{s}`: expected `:PORT` after `]`"));
        };
        return Ok((host.to_string(), Some(parse_port(s, port)?)));
    }
    match s.matches(':').count() {
        0 => Ok((s.to_string(), None)),
        1 => {
            let (host, port) = s.split_once(':').unwrap_or((s, ""));
            if host.is_empty() {
                return Err(format!("`{s}`: the host name is missing before `:`"));
            }
            Ok((host.to_string(), Some(parse_port(s, port)?)))
        }
        // An IPv6 literal without brackets cannot carry a port.
        _ => Ok((s.to_string(), None)),
    }
}

fn parse_port(whole: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!(
            "`{whole}`: port {p} is out of range; use a port from 1 to 65535"
        )),
        Err(_) => Err(format!(
            "`{whole}`: `{port}` is not a port number; use a port from 1 to 65535"
        )),
    }
}

/// Builds an endpoint from `HOST[:PORT]` and an optional security mode, applying the
/// defaults: without a port, 993/465 for tls and 143/587 for starttls (tls when neither is given).
pub fn endpoint(
    protocol: Protocol,
    server: &str,
    security: Option<Security>,
) -> Result<Endpoint, String> {
    let (host, port) = parse_host_port(server)?;
    let (port, security, auto_security) = match (port, security) {
        (Some(p), Some(s)) => (p, s, false),
        (Some(p), None) => match Security::well_known(p) {
            Some(s) => (p, s, false),
            None => (p, Security::Starttls, true),
        },
        (None, Some(s)) => (protocol.default_port(s), s, false),
        (None, None) => (protocol.default_port(Security::Tls), Security::Tls, false),
    };
    Ok(Endpoint {
        protocol,
        host,
        port,
        security,
        connect_to: None,
        auto_security,
        source_address: None,
    })
}

/// Everything one mailbox check needs.
#[derive(Clone, Debug)]
pub struct Target {
    /// The `mailbox` label everywhere (the config's `name`, or the user on the command line).
    pub mailbox: String,
    pub profile: Arc<Profile>,
    pub imap: Endpoint,
    pub smtp: Option<Endpoint>,
    pub user: String,
    pub password: Secret,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure_cert: bool,
    /// Deadline for the whole check of this mailbox.
    pub timeout: Duration,
    /// The opt-in round-trip test (`--roundtrip`, config `roundtrip: true`); `None` when off.
    pub roundtrip: Option<Roundtrip>,
}

/// What the opt-in round-trip test needs: where the test message goes, and when a slow
/// delivery warns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roundtrip {
    /// The recipient: `roundtrip_to`, else the login (when it is an address).
    pub to: String,
    /// A delivery slower than this warns (`roundtrip_warn`).
    pub warn: Duration,
}

/// The default of `roundtrip_warn`.
pub const DEFAULT_ROUNDTRIP_WARN: Duration = Duration::from_secs(60);

impl Roundtrip {
    /// The round-trip settings of a mailbox whose login is `user`: the message goes to `to`
    /// when given, else to the login when it is an address. The error says what to give (the
    /// caller names the flag or key).
    pub fn new(user: &str, to: Option<&str>, warn: Option<Duration>) -> Result<Roundtrip, String> {
        let to = match to {
            Some(to) => {
                let to = to.trim();
                if !is_address(to) {
                    return Err(format!(
                        "`{to}` is not an e-mail address; give one like sales@example.com"
                    ));
                }
                to.to_string()
            }
            None if is_address(user.trim()) => user.trim().to_string(),
            None => {
                return Err(format!(
                    "the login `{user}` is not an e-mail address, so the test message has nowhere to go; give the mailbox's address"
                ));
            }
        };
        Ok(Roundtrip {
            to,
            warn: warn.unwrap_or(DEFAULT_ROUNDTRIP_WARN),
        })
    }
}

/// A plain `local@domain` address that is safe in an SMTP command and a header: one `@`, no
/// spaces, angle brackets, quotes or control characters.
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let plain = |part: &str| {
        !part.is_empty()
            && part.len() <= 254
            && part
                .chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && !"<>\"@,;:()[]".contains(c))
    };
    plain(local) && plain(domain) && !domain.starts_with('.') && !domain.ends_with('.')
}

impl Target {
    pub fn endpoint(&self, protocol: Protocol) -> Option<&Endpoint> {
        match protocol {
            Protocol::Imap => Some(&self.imap),
            Protocol::Smtp => self.smtp.as_ref(),
        }
    }
    /// The configured endpoints, IMAP first.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        std::iter::once(&self.imap).chain(self.smtp.as_ref())
    }
}

/// What a dynamic plugin is told about the target: everything but the password is plain data;
/// the password travels only because a plugin may need to log in, and is never logged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetView {
    pub mailbox: String,
    pub profile: String,
    pub imap: Endpoint,
    pub smtp: Option<Endpoint>,
    pub user: String,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure_cert: bool,
    pub timeout_ms: u64,
}

impl From<&Target> for TargetView {
    fn from(t: &Target) -> Self {
        TargetView {
            mailbox: t.mailbox.clone(),
            profile: t.profile.name.clone(),
            imap: t.imap.clone(),
            smtp: t.smtp.clone(),
            user: t.user.clone(),
            ca_file: t.ca_file.clone(),
            allow_insecure_cert: t.allow_insecure_cert,
            timeout_ms: t.timeout.as_millis() as u64,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A target on `mail.example.com:993` with the `hubspot` profile, for unit tests.
    pub(crate) fn target() -> Target {
        Target {
            mailbox: "sales".into(),
            profile: Arc::new(Profile::builtin("hubspot").unwrap()),
            imap: endpoint(Protocol::Imap, "mail.example.com:993", None).unwrap(),
            smtp: None,
            user: "u".into(),
            password: Secret::new("p"),
            ca_file: None,
            allow_insecure_cert: false,
            timeout: Duration::from_secs(10),
            roundtrip: None,
        }
    }

    #[test]
    fn roundtrip_recipient_is_the_login_or_the_given_address() {
        let r = Roundtrip::new("sales@example.com", None, None).unwrap();
        assert_eq!(r.to, "sales@example.com");
        assert_eq!(r.warn, DEFAULT_ROUNDTRIP_WARN);
        let r = Roundtrip::new(
            "sales",
            Some("team@example.com"),
            Some(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(
            (r.to.as_str(), r.warn),
            ("team@example.com", Duration::from_secs(5))
        );
        let e = Roundtrip::new("sales", None, None).unwrap_err();
        assert!(e.contains("not an e-mail address"), "{e}");
        for bad in [
            "a b@x.test",
            "a@",
            "@x.test",
            "a@x.test>\r\nRSET",
            "a@b@c",
            "a@x\u{7}.test",
        ] {
            assert!(Roundtrip::new("u", Some(bad), None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("imap.x.com").unwrap(),
            ("imap.x.com".into(), None)
        );
        assert_eq!(
            parse_host_port("imap.x.com:143").unwrap(),
            ("imap.x.com".into(), Some(143))
        );
        assert_eq!(
            parse_host_port("[::1]:993").unwrap(),
            ("::1".into(), Some(993))
        );
        assert_eq!(parse_host_port("::1").unwrap(), ("::1".into(), None));
        assert!(parse_host_port("h:0").unwrap_err().contains("out of range"));
        assert!(
            parse_host_port("h:70000")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_host_port("h:abc").unwrap_err().contains("not a port"));
        assert!(parse_host_port(":993").is_err());
    }

    #[test]
    fn default_ports_and_security_follow_the_spec() {
        let e = endpoint(Protocol::Imap, "h", None).unwrap();
        assert_eq!((e.port, e.security), (993, Security::Tls));
        let e = endpoint(Protocol::Imap, "h", Some(Security::Starttls)).unwrap();
        assert_eq!((e.port, e.security), (143, Security::Starttls));
        let e = endpoint(Protocol::Smtp, "h:465", None).unwrap();
        assert_eq!(e.security, Security::Tls);
        let e = endpoint(Protocol::Smtp, "h:2525", None).unwrap();
        assert_eq!(e.security, Security::Starttls);
        assert!(
            e.auto_security,
            "a port that is not well-known is found out"
        );
        let e = endpoint(Protocol::Smtp, "h:587", None).unwrap();
        assert!(!e.auto_security);
        let e = endpoint(Protocol::Smtp, "h:2525", Some(Security::Tls)).unwrap();
        assert!(!e.auto_security);
        let e = endpoint(Protocol::Smtp, "h", Some(Security::Starttls)).unwrap();
        assert_eq!(e.port, 587);
    }
}
