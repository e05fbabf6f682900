//! The client model against the clients it stands for. Real Dovecot and Postfix serve
//! certificates this test generates with the OpenSSL CLI (CN/SAN combinations, CN only, IP
//! hosts, wildcards, a 1024-bit RSA key, a SHA-1 signature, a missing intermediate); for each
//! case mailprobe's name and trust verdicts and its decision to send the password are compared
//! with `openssl s_client -verify_return_error -verify_hostname`, Python's
//! `ssl.create_default_context()` and a small Java program (JSSE's PKIX trust manager with
//! LDAPS hostname checking, as JavaMail checks server identity). mailprobe's decision to send
//! the password must equal the JVM's decision to connect, always; where OpenSSL and Python
//! differ from the model on purpose, the case names the model rule.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::probe::{PASSWORD_ENV, mailprobe, requirement, status};
use common::{DovecotOpts, Lab, PostfixOpts};
use serde_json::Value;

/// A folder of the test's own PKI: a root, an intermediate, and one leaf per case.
struct Pki {
    dir: PathBuf,
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); install the package that has it"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One leaf certificate to generate.
struct Leaf {
    name: &'static str,
    cn: &'static str,
    /// The subjectAltName extension's value, or none at all.
    san: Option<&'static str>,
    rsa_bits: u32,
    digest: &'static str,
    /// Signed by the intermediate (else by the root).
    by_intermediate: bool,
    /// The server sends the intermediate too.
    sends_chain: bool,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "mailprobe-client-model-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        let ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
        std::fs::write(pki.dir.join("ca.ext"), ca_ext).unwrap();
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Client Model Test Root",
            "-days",
            "30",
            "-sha256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "inter.key",
            "-out",
            "inter.csr",
            "-subj",
            "/CN=Client Model Test Intermediate",
        ]);
        pki.openssl(&[
            "x509",
            "-req",
            "-in",
            "inter.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            "ca.ext",
            "-out",
            "inter.pem",
        ]);
        pki
    }

    fn openssl(&self, args: &[&str]) {
        run(
            Command::new("openssl").args(args).current_dir(&self.dir),
            &format!("openssl {}", args.first().copied().unwrap_or_default()),
        );
    }

    fn leaf(&self, l: &Leaf) {
        let mut ext = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        );
        if let Some(san) = l.san {
            ext.push_str(&format!("subjectAltName={san}\n"));
        }
        let ext_file = format!("{}.ext", l.name);
        std::fs::write(self.dir.join(&ext_file), ext).unwrap();
        let key = format!("{}.key", l.name);
        let csr = format!("{}.csr", l.name);
        let crt = format!("{}.crt", l.name);
        let bits = format!("rsa:{}", l.rsa_bits);
        let subj = format!("/CN={}", l.cn);
        self.openssl(&[
            "req", "-new", "-newkey", &bits, "-nodes", "-keyout", &key, "-out", &csr, "-subj",
            &subj,
        ]);
        let (ca, ca_key) = if l.by_intermediate {
            ("inter.pem", "inter.key")
        } else {
            ("ca.pem", "ca.key")
        };
        let digest = format!("-{}", l.digest);
        let serial = format!("{}", 100 + self.dir.read_dir().unwrap().count());
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-set_serial",
            &serial,
            "-days",
            "30",
            &digest,
            "-extfile",
            &ext_file,
            "-out",
            &crt,
        ]);
        let mut pem = std::fs::read_to_string(self.dir.join(&crt)).unwrap();
        if l.sends_chain {
            pem.push_str(&std::fs::read_to_string(self.dir.join("inter.pem")).unwrap());
        }
        std::fs::write(self.dir.join(format!("{}.pem", l.name)), pem).unwrap();
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Java oracle, compiled once per test run.
fn java_classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mailprobe-jsse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/JsseClient.java");
        run(
            Command::new("javac").arg("-d").arg(&dir).arg(src),
            "javac (Debian package openjdk-17-jdk-headless)",
        );
        dir
    })
}

/// The JVM's decision for each `(name, port)`: `Ok(protocol)` when it connects.
fn jvm(ca: &Path, cases: &[(&str, u16)]) -> Vec<Result<String, String>> {
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(java_classes())
        .arg("JsseClient")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java (Debian package openjdk-17-jdk-headless)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (name, port) in cases {
            writeln!(stdin, "{name} {port}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Result<String, String>> = text
        .lines()
        .map(|l| match l.split_once(' ') {
            Some(("ACCEPT", p)) => Ok(p.to_string()),
            Some((_, why)) => Err(why.to_string()),
            None => Err(l.to_string()),
        })
        .collect();
    assert_eq!(
        lines.len(),
        cases.len(),
        "java: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

fn is_ip(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

/// `openssl s_client -verify_return_error -verify_hostname NAME` (`-verify_ip` for an IP host).
fn openssl_accepts(ca: &Path, name: &str, port: u16) -> bool {
    let mut cmd = Command::new("timeout");
    cmd.args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(ca)
        .arg("-verify_return_error");
    if is_ip(name) {
        cmd.args(["-verify_ip", name]);
    } else {
        cmd.args(["-servername", name, "-verify_hostname", name]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("openssl (Debian package openssl)");
    out.status.success()
}

/// Python's `ssl.create_default_context(cafile=CA)` with `server_hostname=NAME`.
fn python_accepts(ca: &Path, name: &str, port: u16) -> bool {
    python_says(ca, name, port).starts_with("ACCEPT")
}

fn python_says(ca: &Path, name: &str, port: u16) -> String {
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[3])), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=sys.argv[2]):
            print("ACCEPT")
except Exception as e:
    print("REFUSE", e)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(ca)
        .arg(name)
        .arg(port.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_imaps(ca: &Path, name: &str, port: u16) -> Value {
    let mut args: Vec<String> = vec![
        "check".into(),
        "--imap".into(),
        format!("{name}:{port}"),
        "--imap-security".into(),
        "tls".into(),
        "--ca-file".into(),
        ca.display().to_string(),
        "--user".into(),
        Lab::user().into(),
        "--password-env".into(),
        PASSWORD_ENV.into(),
        "--only".into(),
        "imap,certificate".into(),
        "--format".into(),
        "json".into(),
    ];
    if !is_ip(name) {
        args.extend(["--connect-to".into(), format!("{name}:127.0.0.1")]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = mailprobe(&refs);
    assert!((0..=3).contains(&run.code), "{}", run.stderr);
    run.json()
}

/// Whether mailprobe sent the password: the login ran (it passes with the lab's credentials)
/// rather than being held back by the certificate gate.
fn password_sent(report: &Value, login: &str) -> bool {
    let r = requirement(report, login);
    match r["status"].as_str() {
        Some("pass") => true,
        Some("skip") => false,
        other => panic!("{login} {other:?}: {r:#}"),
    }
}

/// One certificate case: a host name checked against the served certificate.
struct Case {
    host: &'static str,
    name: &'static str,
    trust: &'static str,
    sends: bool,
    /// Where OpenSSL and Python refuse but the modelled JVM client accepts, on purpose: the
    /// model rule that makes the difference.
    differs_by: Option<&'static str>,
}

const fn case(host: &'static str, name: &'static str, trust: &'static str, sends: bool) -> Case {
    Case {
        host,
        name,
        trust,
        sends,
        differs_by: None,
    }
}

fn leaf(name: &'static str, cn: &'static str, san: Option<&'static str>) -> Leaf {
    Leaf {
        name,
        cn,
        san,
        rsa_bits: 2048,
        digest: "sha256",
        by_intermediate: false,
        sends_chain: false,
    }
}

const HOST: &str = "mail.lab.test";

#[test]
fn certificate_verdicts_and_the_password_gate_match_the_clients() {
    let pki = Pki::new("verdicts");
    let table: Vec<(Leaf, Vec<Case>)> = vec![
        (
            leaf("good", HOST, Some("DNS:mail.lab.test")),
            vec![case(HOST, "pass", "pass", true)],
        ),
        (
            // CN = host, SAN lists only another name: every client refuses it.
            leaf("cn-host-san-other", HOST, Some("DNS:other.lab.test")),
            vec![case(HOST, "fail", "pass", false)],
        ),
        (
            // CN only, no SAN: JSSE, OpenSSL and Python fall back to the CN.
            leaf("cn-only", HOST, None),
            vec![case(HOST, "warn", "pass", true)],
        ),
        (
            leaf("san-only", "Lab Mail Server", Some("DNS:mail.lab.test")),
            vec![case(HOST, "warn", "pass", true)],
        ),
        (
            leaf("wildcard", "*.lab.test", Some("DNS:*.lab.test")),
            vec![
                case(HOST, "pass", "pass", true),
                case("a.b.lab.test", "fail", "pass", false),
                case("lab.test", "fail", "pass", false),
            ],
        ),
        (
            leaf("ip-san", "127.0.0.1", Some("IP:127.0.0.1")),
            vec![case("127.0.0.1", "pass", "pass", true)],
        ),
        (
            // An IP host is matched only against IP SANs, never the CN.
            leaf("ip-cn-only", "127.0.0.1", None),
            vec![case("127.0.0.1", "fail", "pass", false)],
        ),
        (
            Leaf {
                rsa_bits: 1024,
                ..leaf("rsa1024", HOST, Some("DNS:mail.lab.test"))
            },
            vec![Case {
                differs_by: Some(
                    "client.keys.rsa_min_bits: 1024 (the JVM refuses RSA under 1024 bits only; OpenSSL's and Python's security level 2 need 2048)",
                ),
                ..case(HOST, "pass", "warn", true)
            }],
        ),
        (
            Leaf {
                digest: "sha1",
                ..leaf("sha1", HOST, Some("DNS:mail.lab.test"))
            },
            vec![Case {
                differs_by: Some(
                    "client.signature_algorithms lists sha1WithRSAEncryption (JSSE refuses SHA-1 only under the JDK's own roots; OpenSSL 3 refuses SHA-1 from security level 1)",
                ),
                ..case(HOST, "pass", "warn", true)
            }],
        ),
        (
            Leaf {
                by_intermediate: true,
                ..leaf("missing-intermediate", HOST, Some("DNS:mail.lab.test"))
            },
            vec![case(HOST, "pass", "fail", false)],
        ),
        (
            Leaf {
                by_intermediate: true,
                sends_chain: true,
                ..leaf("full-chain", HOST, Some("DNS:mail.lab.test"))
            },
            vec![case(HOST, "pass", "pass", true)],
        ),
    ];
    let ca = pki.ca();
    for (l, cases) in &table {
        pki.leaf(l);
        let lab = Lab::dovecot_with_certs(
            &format!("cm-{}", l.name),
            DovecotOpts {
                cert: l.name,
                imap: false,
                // Dovecot's OpenSSL refuses to load a 1024-bit key or a SHA-1 certificate at
                // its default security level; real servers with such certificates run lower.
                ciphers: Some("DEFAULT:@SECLEVEL=0"),
                ..Default::default()
            },
            &pki.dir,
        );
        let port = lab.port("imaps");
        let hosts: Vec<(&str, u16)> = cases.iter().map(|c| (c.host, port)).collect();
        let jvm = jvm(&ca, &hosts);
        for (c, java) in cases.iter().zip(jvm) {
            let what = format!("certificate {} for {}", l.name, c.host);
            let report = check_imaps(&ca, c.host, port);
            let name = requirement(&report, "imap.certificate.name");
            let trust = requirement(&report, "imap.certificate.trust");
            assert_eq!(
                name["status"],
                c.name,
                "{what}: {name:#} {:#}",
                requirement(&report, "imap.encryption")
            );
            assert_eq!(trust["status"], c.trust, "{what}: {trust:#}");
            let sent = password_sent(&report, "imap.login");
            assert_eq!(
                sent,
                c.sends,
                "{what}: {:#}",
                requirement(&report, "imap.login")
            );
            // The model is the JVM's: the password goes exactly where the JVM connects.
            assert_eq!(
                sent,
                java.is_ok(),
                "{what}: mailprobe sends the password = {sent}, the JVM connects = {java:?}"
            );
            if let Ok(protocol) = &java {
                assert_eq!(protocol, "TLSv1.2", "{what}");
            }
            let openssl = openssl_accepts(&ca, c.host, port);
            let python_text = python_says(&ca, c.host, port);
            let python = python_text.starts_with("ACCEPT");
            match c.differs_by {
                None => {
                    assert_eq!(openssl, sent, "{what}: openssl s_client says {openssl}");
                    assert_eq!(python, sent, "{what}: Python says {python_text}");
                }
                Some(rule) => {
                    assert!(
                        sent && !openssl && !python,
                        "{what}: expected the model ({rule}) to accept what OpenSSL ({openssl}) and Python ({python}) refuse"
                    );
                }
            }
            if !sent {
                let login = requirement(&report, "imap.login");
                let gate = if c.name == "fail" {
                    "imap.certificate.name"
                } else {
                    "imap.certificate.trust"
                };
                assert_eq!(login["evidence"]["prerequisite"], gate, "{what}: {login:#}");
            }
            if c.trust == "warn" {
                let remedy = trust["remedy"].as_str().unwrap_or_default();
                assert!(
                    remedy.contains("1024-bit RSA") || remedy.contains("SHA-1"),
                    "{what}: the remedy names the key or algorithm: {remedy}"
                );
                assert!(
                    trust["evidence"]["chain"][0]["key_bits"].is_number(),
                    "{trust:#}"
                );
            }
            if c.name == "fail" && !is_ip(c.host) && l.san.is_some() {
                let summary = name["summary"].as_str().unwrap_or_default();
                assert!(
                    summary.contains("subjectAltName")
                        && summary.contains(l.san.unwrap_or_default().trim_start_matches("DNS:")),
                    "{what}: the summary names the SAN's names: {summary}"
                );
            }
            // The login session speaks what the client speaks: TLS 1.2 at most for hubspot.
            if sent {
                let enc = requirement(&report, "imap.encryption");
                assert_eq!(enc["evidence"]["tls_version"], "TLSv1.2", "{what}: {enc:#}");
            }
        }
    }
}

#[test]
fn an_insecure_certificate_allowed_relaxes_trust_never_the_name() {
    let pki = Pki::new("insecure");
    pki.leaf(&leaf("cn-host-san-other", HOST, Some("DNS:other.lab.test")));
    let lab = Lab::dovecot_with_certs(
        "cm-insecure",
        DovecotOpts {
            cert: "cn-host-san-other",
            imap: false,
            ..Default::default()
        },
        &pki.dir,
    );
    let port = lab.port("imaps");
    // No --ca-file: untrusted too. With --allow-insecure-cert the trust warns, the name still
    // fails and the password is not sent.
    let run = mailprobe(&[
        "check",
        "--imap",
        &format!("{HOST}:{port}"),
        "--imap-security",
        "tls",
        "--connect-to",
        &format!("{HOST}:127.0.0.1"),
        "--allow-insecure-cert",
        "--user",
        Lab::user(),
        "--password-env",
        PASSWORD_ENV,
        "--only",
        "imap,certificate",
        "--format",
        "json",
    ]);
    let report = run.json();
    assert_eq!(run.code, 2, "{report:#}");
    assert_eq!(status(&report, "imap.certificate.name"), "fail");
    assert_eq!(status(&report, "imap.certificate.trust"), "warn");
    let login = requirement(&report, "imap.login");
    assert_eq!(login["status"], "skip", "{login:#}");
    assert_eq!(login["evidence"]["prerequisite"], "imap.certificate.name");
}

#[test]
fn postfix_with_a_cn_only_certificate_gets_the_password_as_the_jvm_would_connect() {
    let pki = Pki::new("postfix");
    pki.leaf(&leaf("cn-only", HOST, None));
    pki.leaf(&leaf("cn-host-san-other", HOST, Some("DNS:other.lab.test")));
    let ca = pki.ca();
    // One CA file for both: the lab's (Dovecot) and this test's (Postfix).
    let both = pki.dir.join("both.pem");
    let mut pem = std::fs::read_to_string(Lab::ca_file()).unwrap();
    pem.push_str(&std::fs::read_to_string(&ca).unwrap());
    std::fs::write(&both, pem).unwrap();
    let dovecot = Lab::dovecot(
        "cm-pf-auth",
        DovecotOpts {
            imaps: false,
            ..Default::default()
        },
    );
    for (cert, sends, name) in [
        ("cn-only", true, "warn"),
        ("cn-host-san-other", false, "fail"),
    ] {
        let postfix = Lab::postfix_with_certs(
            &format!("cm-pf-{cert}"),
            &dovecot,
            PostfixOpts {
                cert,
                submission: false,
                nosasl: false,
                authplain: false,
                ..Default::default()
            },
            &pki.dir,
        );
        let port = postfix.port("submissions");
        let java = jvm(&ca, &[(HOST, port)]).remove(0);
        let run = mailprobe(&[
            "check",
            "--imap",
            &format!("{HOST}:{}", dovecot.port("imap")),
            "--imap-security",
            "starttls",
            "--smtp",
            &format!("{HOST}:{port}"),
            "--smtp-security",
            "tls",
            "--connect-to",
            &format!("{HOST}:127.0.0.1"),
            "--ca-file",
            &both.display().to_string(),
            "--user",
            Lab::user(),
            "--password-env",
            PASSWORD_ENV,
            "--only",
            "smtp,certificate",
            "--format",
            "json",
        ]);
        let report = run.json();
        assert_eq!(status(&report, "smtp.certificate.name"), name, "{report:#}");
        let sent = password_sent(&report, "smtp.login");
        assert_eq!(sent, sends, "{cert}: {report:#}");
        assert_eq!(sent, java.is_ok(), "{cert}: the JVM says {java:?}");
        assert_eq!(openssl_accepts(&ca, HOST, port), sent, "{cert}: openssl");
        assert_eq!(python_accepts(&ca, HOST, port), sent, "{cert}: python");
    }
}

#[test]
fn the_report_reader_refuses_debug_formatted_text() {
    use common::probe::debug_text;
    assert!(debug_text("untrusted: invalid peer certificate: UnsupportedSignatureAlgorithmContext { signature_algorithm_id: [6, 9], supported_algorithms: [] }").is_some());
    assert!(debug_text("TLS handshake failed: invalid peer certificate: BadSignature").is_some());
    assert!(debug_text("got Some(\"x\")").is_some());
    assert!(debug_text("the certificate is not valid for mail.lab.test: its subjectAltName lists other.lab.test").is_none());
    assert!(debug_text("Dovecot: set ssl_min_protocol = TLSv1.2 { see the docs }").is_none());
}

#[test]
fn a_profile_of_ones_own_changes_the_verdicts_and_the_gate() {
    let pki = Pki::new("own-profile");
    pki.leaf(&leaf("cn-only", HOST, None));
    let lab = Lab::dovecot_with_certs(
        "cm-own-profile",
        DovecotOpts {
            cert: "cn-only",
            imap: false,
            ..Default::default()
        },
        &pki.dir,
    );
    let file = pki.dir.join("profiles.yaml");
    std::fs::write(
        &file,
        "profiles:\n  - name: strict-client\n    extends: hubspot\n    description: a client that never reads the CN\n    client:\n      names:\n        common_name_fallback: false\n",
    )
    .unwrap();
    let port = lab.port("imaps");
    let ca = pki.ca();
    let file_arg = file.display().to_string();
    let ca_arg = ca.display().to_string();
    let run = mailprobe(&[
        "check",
        "--imap",
        &format!("{HOST}:{port}"),
        "--imap-security",
        "tls",
        "--connect-to",
        &format!("{HOST}:127.0.0.1"),
        "--ca-file",
        &ca_arg,
        "--user",
        Lab::user(),
        "--password-env",
        PASSWORD_ENV,
        "--profile-file",
        &file_arg,
        "--profile",
        "strict-client",
        "--only",
        "imap,certificate",
        "--format",
        "json",
    ]);
    let report = run.json();
    assert_eq!(report["profile"], "strict-client", "{report:#}");
    // The hubspot client accepts this certificate through the CN; this one does not, and the
    // password stays home.
    assert_eq!(
        status(&report, "imap.certificate.name"),
        "fail",
        "{report:#}"
    );
    assert!(!password_sent(&report, "imap.login"));

    let listed = mailprobe(&["profiles", "--profile-file", &file_arg, "--format", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows: Value = serde_json::from_str(&listed.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["hubspot", "strict-client"], "{rows:#}");
    assert_eq!(rows[1]["kind"], "user");
    assert_eq!(rows[1]["client"]["names"]["common_name_fallback"], false);
}
