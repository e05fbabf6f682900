//! Local mail lab for integration tests: private Dovecot, Postfix and Courier-IMAP instances on
//! loopback, started by the scripts in `tests/lab/` (see `tests/lab/README.md`).
//!
//! std only. Each `Lab` owns one server instance in `tests/lab/state/<name>-<pid>/` and stops it
//! when dropped. The scripts also get `LAB_OWNER_PID` = this test process, so a watchdog stops
//! the servers even if the test binary dies without unwinding.
//!
//! ```ignore
//! mod common;
//! use common::lab::{DovecotOpts, Lab, PostfixOpts};
//!
//! let dovecot = Lab::dovecot("imap-basic", DovecotOpts::default());
//! let postfix = Lab::postfix("smtp-basic", &dovecot, PostfixOpts::default());
//! let addr = dovecot.addr("imaps"); // 127.0.0.1:<port>, certificate for mail.lab.test
//! ```
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lab user (passwd-file user in Dovecot, userdb user in Courier).
pub const USER: &str = "alice@lab.test";
/// A Dovecot user with INBOX, Drafts and Trash but no Sent folder.
pub const NOSENT_USER: &str = "nosent@lab.test";
/// Password of every lab user.
pub const PASSWORD: &str = "Secr3t-Lab!";
/// The name that the `good`, `expired`, `soon`, `sanonly`, `wildcard` and `selfsigned`
/// certificates are issued for (`wrongname` is for `other.example.net`).
pub const HOSTNAME: &str = "mail.lab.test";

/// Options of a Dovecot instance (`tests/lab/dovecot.sh`).
#[derive(Clone, Debug)]
pub struct DovecotOpts {
    /// good | expired | soon | wrongname | sanonly | wildcard | selfsigned
    pub cert: &'static str,
    /// yes | no | required (`no`: no TLS at all, no STARTTLS, no imaps/pop3s listener)
    pub ssl: &'static str,
    /// `ssl_min_protocol`: TLSv1, TLSv1.1, TLSv1.2 (Dovecot's default), TLSv1.3.
    /// Below TLSv1.2 the server's cipher list is lowered to `@SECLEVEL=0`.
    pub tls_min: Option<&'static str>,
    /// Highest TLS version offered (through an OpenSSL config file: Dovecot 2.3 has no
    /// `ssl_max_protocol`).
    pub tls_max: Option<&'static str>,
    /// `ssl_cipher_list` verbatim (OpenSSL syntax, TLS ≤ 1.2 suites), e.g. "AES256-SHA".
    pub ciphers: Option<&'static str>,
    /// `mail_max_userip_connections` (script default 20).
    pub max_userip: Option<u32>,
    /// Users `user01@lab.test` … `userNN@lab.test` besides alice and nosent (same password,
    /// alice's folders).
    pub extra_users: u32,
    /// Pre-TLS CAPABILITY says LOGINDISABLED and LOGIN is refused before STARTTLS. Dovecot
    /// treats a client whose IP equals the server's IP as secure, so such a lab listens on
    /// 127.0.0.2 (the client then comes from 127.0.0.1): connect to [`Lab::host`].
    pub logindisabled: bool,
    /// Plain+STARTTLS IMAP listener ("imap").
    pub imap: bool,
    /// Implicit-TLS IMAP listener ("imaps"); ignored when `ssl` is "no".
    pub imaps: bool,
    /// POP3 listeners ("pop3", and "pop3s" unless `ssl` is "no").
    pub pop3: bool,
    /// More users, each with a password given as bytes (any, CR and LF included), with
    /// alice's folders: (name, password).
    pub byte_users: Vec<(&'static str, Vec<u8>)>,
}

impl Default for DovecotOpts {
    fn default() -> Self {
        DovecotOpts {
            cert: "good",
            ssl: "yes",
            tls_min: None,
            tls_max: None,
            ciphers: None,
            max_userip: None,
            extra_users: 0,
            logindisabled: false,
            imap: true,
            imaps: true,
            pop3: false,
            byte_users: Vec::new(),
        }
    }
}

impl DovecotOpts {
    /// Only TLS 1.2, with only a CBC suite with RSA key exchange (AES256-SHA): no ECDHE, no
    /// AEAD, no TLS 1.3, as old Exchange/IIS and appliances. rustls cannot speak it.
    pub fn tls12_cbc_only() -> Self {
        DovecotOpts {
            tls_max: Some("TLSv1.2"),
            ciphers: Some("AES256-SHA"),
            ..Default::default()
        }
    }

    /// Only TLS 1.0.
    pub fn tls10_only() -> Self {
        DovecotOpts {
            tls_min: Some("TLSv1"),
            tls_max: Some("TLSv1"),
            ..Default::default()
        }
    }
}

/// Options of a Postfix instance (`tests/lab/postfix.sh`). Every listener is on by default.
#[derive(Clone, Debug)]
pub struct PostfixOpts {
    pub cert: &'static str,
    /// `smtpd_tls_protocols`, e.g. ">=TLSv1.2" (default), ">=TLSv1", ">=TLSv1.3",
    /// ">=TLSv1.1, <=TLSv1.2". A minimum below TLSv1.2 lowers the ciphers to `@SECLEVEL=0`.
    pub tls_protocols: Option<&'static str>,
    /// The server's cipher list verbatim (OpenSSL syntax, TLS ≤ 1.2 suites), e.g. "AES256-SHA"
    /// (`tls_medium_cipherlist`, with `smtpd_tls_ciphers = medium`).
    pub ciphers: Option<&'static str>,
    /// `smtpd_client_connection_count_limit`, applied on loopback too (script default 50).
    pub client_limit: Option<u32>,
    /// "submission": STARTTLS required, AUTH only after STARTTLS.
    pub submission: bool,
    /// "submissions": implicit TLS, AUTH.
    pub submissions: bool,
    /// "nosasl": STARTTLS offered, AUTH never offered.
    pub nosasl: bool,
    /// "authplain": AUTH offered before STARTTLS (smtpd_tls_auth_only = no).
    pub authplain: bool,
    /// "smtp": plain MX-style port, STARTTLS offered, no AUTH.
    pub smtp: bool,
}

impl Default for PostfixOpts {
    fn default() -> Self {
        PostfixOpts {
            cert: "good",
            tls_protocols: None,
            ciphers: None,
            client_limit: None,
            submission: true,
            submissions: true,
            nosasl: true,
            authplain: true,
            smtp: false,
        }
    }
}

impl PostfixOpts {
    /// Only TLS 1.2, with only AES256-SHA (RSA key exchange, CBC): see
    /// [`DovecotOpts::tls12_cbc_only`].
    pub fn tls12_cbc_only() -> Self {
        PostfixOpts {
            tls_protocols: Some(">=TLSv1.2, <=TLSv1.2"),
            ciphers: Some("AES256-SHA"),
            ..Default::default()
        }
    }

    /// Only TLS 1.0.
    pub fn tls10_only() -> Self {
        PostfixOpts {
            tls_protocols: Some(">=TLSv1, <=TLSv1"),
            ..Default::default()
        }
    }
}

/// Options of a Courier-IMAP instance (`tests/lab/courier.sh`).
#[derive(Clone, Debug)]
pub struct CourierOpts {
    pub cert: &'static str,
    /// Minimum TLS version (TLSv1 .. TLSv1.3, default TLSv1.2), as a GnuTLS priority string.
    pub tls_min: Option<&'static str>,
    /// Maximum TLS version (default TLSv1.3).
    pub tls_max: Option<&'static str>,
    /// IMAP_TLS_REQUIRED=1: LOGINDISABLED before STARTTLS (Courier does this on 127.0.0.1 too).
    pub logindisabled: bool,
    /// STARTTLS listener ("imap").
    pub imap: bool,
    /// Implicit-TLS listener ("imaps").
    pub imaps: bool,
}

impl Default for CourierOpts {
    fn default() -> Self {
        CourierOpts {
            cert: "good",
            tls_min: None,
            tls_max: None,
            logindisabled: false,
            imap: true,
            imaps: true,
        }
    }
}

/// One running lab server instance; stopped on drop.
#[derive(Debug)]
pub struct Lab {
    kind: &'static str,
    state: PathBuf,
    host: &'static str,
    ports: Vec<(&'static str, u16)>,
    stopped: bool,
}

impl Lab {
    /// Starts a private Dovecot (IMAP, optional POP3, LMTP + auth sockets for Postfix).
    pub fn dovecot(name: &str, opts: DovecotOpts) -> Lab {
        Lab::dovecot_env(name, opts, Vec::new())
    }

    /// [`Lab::dovecot`] serving `opts.cert` from a folder of the test's own certificates
    /// (`NAME.pem`, the chain to send, and `NAME.key`) instead of the lab's.
    #[allow(dead_code)]
    pub fn dovecot_with_certs(name: &str, opts: DovecotOpts, certs: &Path) -> Lab {
        Lab::dovecot_env(name, opts, vec![("LAB_CERTS", certs.display().to_string())])
    }

    fn dovecot_env(name: &str, opts: DovecotOpts, extra: Vec<(&'static str, String)>) -> Lab {
        let host = if opts.logindisabled {
            "127.0.0.2"
        } else {
            "127.0.0.1"
        };
        let tls = opts.ssl != "no";
        let mut wanted: Vec<(&'static str, &'static str)> = Vec::new();
        if opts.imap {
            wanted.push(("imap", "LAB_IMAP_PORT"));
        }
        if opts.imaps && tls {
            wanted.push(("imaps", "LAB_IMAPS_PORT"));
        }
        if opts.pop3 {
            wanted.push(("pop3", "LAB_POP3_PORT"));
            if tls {
                wanted.push(("pop3s", "LAB_POP3S_PORT"));
            }
        }
        let mut env: Vec<(&'static str, String)> = vec![
            ("LAB_CERT", opts.cert.to_string()),
            ("LAB_SSL", opts.ssl.to_string()),
            ("LAB_ADDR", host.to_string()),
            (
                "LAB_LOGINDISABLED",
                if opts.logindisabled { "1" } else { "0" }.to_string(),
            ),
        ];
        if let Some(v) = opts.tls_min {
            env.push(("LAB_TLS_MIN", v.to_string()));
        }
        if let Some(v) = opts.tls_max {
            env.push(("LAB_TLS_MAX", v.to_string()));
        }
        if let Some(v) = opts.ciphers {
            env.push(("LAB_TLS_CIPHERS", v.to_string()));
        }
        if let Some(v) = opts.max_userip {
            env.push(("LAB_MAX_USERIP", v.to_string()));
        }
        if opts.extra_users > 0 {
            env.push(("LAB_EXTRA_USERS", opts.extra_users.to_string()));
        }
        if !opts.byte_users.is_empty() {
            use base64::Engine as _;
            let pairs: Vec<String> = opts
                .byte_users
                .iter()
                .map(|(name, pw)| {
                    format!(
                        "{name}={}",
                        base64::engine::general_purpose::STANDARD.encode(pw)
                    )
                })
                .collect();
            env.push(("LAB_B64_USERS", pairs.join(" ")));
        }
        env.extend(extra);
        Lab::start("dovecot", name, host, &wanted, env)
    }

    /// Starts a private Postfix that authenticates against, and delivers (LMTP) into, `dovecot`.
    /// Drop it before the Dovecot lab (declare it after).
    pub fn postfix(name: &str, dovecot: &Lab, opts: PostfixOpts) -> Lab {
        Lab::postfix_env(name, dovecot, opts, Vec::new())
    }

    /// [`Lab::postfix`] serving `opts.cert` from a folder of the test's own certificates.
    #[allow(dead_code)]
    pub fn postfix_with_certs(name: &str, dovecot: &Lab, opts: PostfixOpts, certs: &Path) -> Lab {
        Lab::postfix_env(
            name,
            dovecot,
            opts,
            vec![("LAB_CERTS", certs.display().to_string())],
        )
    }

    fn postfix_env(
        name: &str,
        dovecot: &Lab,
        opts: PostfixOpts,
        extra: Vec<(&'static str, String)>,
    ) -> Lab {
        assert_eq!(dovecot.kind, "dovecot", "Lab::postfix needs a Dovecot lab");
        let mut wanted: Vec<(&'static str, &'static str)> = Vec::new();
        for (on, which, var) in [
            (opts.submission, "submission", "LAB_SUBMISSION_PORT"),
            (opts.submissions, "submissions", "LAB_SUBMISSIONS_PORT"),
            (opts.nosasl, "nosasl", "LAB_NOSASL_PORT"),
            (opts.authplain, "authplain", "LAB_AUTHPLAIN_PORT"),
            (opts.smtp, "smtp", "LAB_SMTP_PORT"),
        ] {
            if on {
                wanted.push((which, var));
            }
        }
        let mut env: Vec<(&'static str, String)> = vec![
            ("LAB_CERT", opts.cert.to_string()),
            ("LAB_DOVECOT_STATE", dovecot.state.display().to_string()),
            ("LAB_ADDR", "127.0.0.1".to_string()),
        ];
        if let Some(v) = opts.tls_protocols {
            env.push(("LAB_SMTP_TLS_PROTOCOLS", v.to_string()));
        }
        if let Some(v) = opts.ciphers {
            env.push(("LAB_SMTP_CIPHERS", v.to_string()));
        }
        if let Some(v) = opts.client_limit {
            env.push(("LAB_SMTP_CLIENT_LIMIT", v.to_string()));
        }
        env.extend(extra);
        Lab::start("postfix", name, "127.0.0.1", &wanted, env)
    }

    /// Starts a private Courier-IMAP (the server mailprobe must recognise).
    pub fn courier(name: &str, opts: CourierOpts) -> Lab {
        let mut wanted: Vec<(&'static str, &'static str)> = Vec::new();
        if opts.imap {
            wanted.push(("imap", "LAB_COURIER_IMAP_PORT"));
        }
        if opts.imaps {
            wanted.push(("imaps", "LAB_COURIER_IMAPS_PORT"));
        }
        let mut env: Vec<(&'static str, String)> = vec![
            ("LAB_CERT", opts.cert.to_string()),
            ("LAB_ADDR", "127.0.0.1".to_string()),
            (
                "LAB_LOGINDISABLED",
                if opts.logindisabled { "1" } else { "0" }.to_string(),
            ),
        ];
        if let Some(v) = opts.tls_min {
            env.push(("LAB_TLS_MIN", v.to_string()));
        }
        if let Some(v) = opts.tls_max {
            env.push(("LAB_TLS_MAX", v.to_string()));
        }
        Lab::start("courier", name, "127.0.0.1", &wanted, env)
    }

    /// Port of a listener: "imap", "imaps", "pop3", "pop3s", "submission", "submissions",
    /// "nosasl", "authplain", "smtp". Panics if this lab has no such listener.
    pub fn port(&self, which: &str) -> u16 {
        self.ports
            .iter()
            .find(|(w, _)| *w == which)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| {
                panic!(
                    "{} lab has no {which:?} listener (has {:?})",
                    self.kind, self.ports
                )
            })
    }

    /// Address to connect to: 127.0.0.1, or 127.0.0.2 for a LOGINDISABLED Dovecot.
    pub fn host(&self) -> &'static str {
        self.host
    }

    /// `host():port(which)` as a socket address.
    pub fn addr(&self, which: &str) -> SocketAddr {
        format!("{}:{}", self.host, self.port(which))
            .parse()
            .expect("socket address")
    }

    /// The instance's state folder (configs, logs, mail).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Maildir of a Dovecot or Courier user (e.g. to check that a message was delivered).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.state.join("mail").join(user).join("Maildir")
    }

    /// The server's log (for assertions and failure messages).
    pub fn log(&self) -> String {
        let file = match self.kind {
            "dovecot" => "dovecot.log",
            "postfix" => "postfix.log",
            _ => "courier.log",
        };
        std::fs::read_to_string(self.state.join(file)).unwrap_or_default()
    }

    /// Folder with the lab CA and certificates (created on first use).
    pub fn certs_dir() -> PathBuf {
        ensure_certs().clone()
    }

    /// The lab CA certificate (PEM) that signs every lab certificate but `selfsigned`.
    pub fn ca_file() -> PathBuf {
        Lab::certs_dir().join("ca.pem")
    }

    /// Password of every lab user.
    pub fn password() -> &'static str {
        PASSWORD
    }

    /// The lab user.
    pub fn user() -> &'static str {
        USER
    }

    /// Stops the instance now (also done on drop).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new("bash")
            .arg(script(self.kind))
            .arg("stop")
            .arg(&self.state)
            .output();
    }

    fn start(
        kind: &'static str,
        name: &str,
        host: &'static str,
        wanted: &[(&'static str, &'static str)],
        env: Vec<(&'static str, String)>,
    ) -> Lab {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "lab name {name:?}: use letters, digits, '-' and '_'"
        );
        let certs = ensure_certs();
        let state = state_root().join(format!("{name}-{}", std::process::id()));
        let mut last = String::new();
        // A port picked as free can be taken before the server binds it: retry with new ports.
        for _attempt in 0..3 {
            let ports: Vec<(&'static str, u16)> = wanted
                .iter()
                .map(|(which, _)| (*which, free_port(host)))
                .collect();
            let mut cmd = Command::new("bash");
            cmd.arg(script(kind)).arg("start").arg(&state);
            cmd.env("LAB_CERTS", certs);
            cmd.env("LAB_OWNER_PID", std::process::id().to_string());
            for (k, v) in &env {
                cmd.env(k, v);
            }
            for ((_, var), (_, port)) in wanted.iter().zip(&ports) {
                cmd.env(var, port.to_string());
            }
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script(kind).display()));
            if out.status.success() {
                return Lab {
                    kind,
                    state,
                    host,
                    ports,
                    stopped: false,
                };
            }
            last = format!(
                "{} start {} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
                script(kind).display(),
                state.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let retryable = last.contains("already in use") || last.contains("did not come up");
            if !retryable {
                break;
            }
        }
        panic!("{last}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
        // Keep the state of a failed test for inspection; clean up after a passing one.
        if !std::thread::panicking() && std::env::var_os("LAB_KEEP_STATE").is_none() {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

fn lab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("lab")
}

fn state_root() -> PathBuf {
    lab_dir().join("state")
}

fn script(kind: &str) -> PathBuf {
    lab_dir().join(format!("{kind}.sh"))
}

/// Generates the certificates once per process; `certs.sh` itself is safe against concurrent
/// test processes (it builds into a temporary folder and renames it into place).
fn ensure_certs() -> &'static PathBuf {
    static CERTS: OnceLock<PathBuf> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = state_root().join("certs");
        let out = Command::new("bash")
            .arg(lab_dir().join("certs.sh"))
            .arg(&dir)
            .output()
            .expect("cannot run tests/lab/certs.sh");
        assert!(
            out.status.success(),
            "certs.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A port that is free on `host` now, outside the kernel's ephemeral range (so outgoing
/// connections do not grab it) and never handed out twice in this process.
pub fn free_port(host: &str) -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x: u64 = u64::from(std::process::id()) << 32 ^ u64::from(nanos) ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..500 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12000) as u16; // 20000..32000
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind((host, port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    // Fall back to a kernel-chosen port.
    let port = TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback");
    used.insert(port);
    port
}

/// Established client-side connections to 127.0.0.1 on any of `ports`, from `/proc/net/tcp`.
pub fn established_to(ports: &std::collections::BTreeSet<u16>) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[2]: remote address (hex IP:port, little-endian IP), f[3]: state (01 established).
            let (Some(remote), Some(state)) = (f.get(2), f.get(3)) else {
                return false;
            };
            let Some((ip, port)) = remote.split_once(':') else {
                return false;
            };
            *state == "01"
                && ip == "0100007F"
                && u16::from_str_radix(port, 16).is_ok_and(|p| ports.contains(&p))
        })
        .count()
}
