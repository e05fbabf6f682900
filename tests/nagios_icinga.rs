//! Nagios and Icinga run mailprobe through the definitions shipped in `deploy/nagios/` and
//! `deploy/icinga2/`, not through a mock of them: the exit code and perfdata conventions only
//! matter as far as a real monitoring core reads them.
//!
//! The Nagios test starts Debian's `nagios4` from a private folder (its own nagios.cfg, status,
//! command pipe, query socket and check-result spool; nothing under /etc or /var), with the
//! shipped command and template files plus test services pointed at the lab's Dovecot and
//! Postfix. Scheduled checks are off, so the only checks are the ones forced through the
//! external command file; the test then reads the state and perfdata Nagios recorded in
//! status.dat. The Icinga tests validate the shipped CheckCommand and example with
//! `icinga2 daemon -C`, list the objects the apply rule produced, and run a private
//! `icinga2 daemon` (all paths in its own folder) whose checker runs the CheckCommand against
//! the lab, with results read back from its PerfdataWriter files.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::lab::HOSTNAME;
use common::{DovecotOpts, Lab, PostfixOpts};

/// Variable name that the UNKNOWN service asks for and that nobody sets.
const UNSET_PASSWORD_VAR: &str = "MAILPROBE_NAGIOS_TEST_UNSET_PASSWORD";
/// Upper bound for Nagios to run the forced checks and write them to status.dat.
const CHECK_WAIT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A program from PATH or the sbin folders (not on a non-root PATH); a missing one fails the
/// test with the package that provides it.
fn require(program: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed: install the Debian package {package} \
                 (`bash .ci/install-packages` does)"
            )
        })
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).1.trim() == "0"
}

/// The user and group the monitoring daemon runs checks as: Debian's `nagios` when the test
/// runs as root (Nagios will not keep root), else whoever runs the test.
fn daemon_user() -> (String, String) {
    if is_root() {
        let (exists, _) = output(Command::new("id").arg("nagios"));
        assert!(
            exists,
            "there is no user `nagios`: install the Debian package nagios4-common \
             (`bash .ci/install-packages` does)"
        );
        ("nagios".into(), "nagios".into())
    } else {
        (
            output(Command::new("id").arg("-un")).1.trim().to_string(),
            output(Command::new("id").arg("-gn")).1.trim().to_string(),
        )
    }
}

/// A private folder under the temp dir, handed to the daemon's user; removed on drop unless
/// the test failed (kept for inspection then).
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("mailprobe-{what}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Hands the folder to the daemon user (which must write its status and spool there, and
    /// read the password file that only it may read).
    fn give_to(&self, user: &str, group: &str) {
        let (ok, out) = output(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:{group}"))
                .arg(&self.0),
        );
        assert!(ok, "chown {}: {out}", self.0.display());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            eprintln!("kept {} for inspection", self.0.display());
        }
    }
}

/// Puts the mailprobe binary into `dir` (a hard link, else a copy): the daemon's user may not
/// be able to reach the build folder (a clone under /root).
fn install_binary(dir: &Path) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mailprobe"));
    let dest = dir.join("mailprobe");
    if fs::hard_link(&bin, &dest).is_err() {
        fs::copy(&bin, &dest).expect("copy the mailprobe binary");
    }
    dest
}

/// Copies every file of `from` ending in `ext` into `to`, as an administrator installs them.
fn copy_configs(from: &Path, ext: &str, to: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(ext) {
            fs::copy(&path, to.join(&name)).expect("copy config");
            names.push(name);
        }
    }
    names.sort();
    assert!(!names.is_empty(), "no *{ext} in {}", from.display());
    names
}

// ---------------------------------------------------------------------------------------------
// Nagios

/// A running private `nagios4`; stopped on drop, also when the test fails. A watchdog stops it
/// if the test process dies without unwinding.
struct Nagios {
    dir: PathBuf,
    main: Child,
    watchdog: Child,
}

impl Nagios {
    fn start(nagios4: &Path, dir: &Path) -> Nagios {
        let cfg = dir.join("nagios.cfg");
        let (ok, out) = output(Command::new(nagios4).arg("-v").arg(&cfg));
        assert!(
            ok,
            "nagios4 -v {} refuses the config:\n{out}",
            cfg.display()
        );
        let log = fs::File::create(dir.join("nagios.out")).expect("nagios.out");
        let err = log.try_clone().expect("nagios.out");
        let mut cmd = Command::new(nagios4);
        cmd.arg(&cfg)
            .env_remove(UNSET_PASSWORD_VAR)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let main = cmd.spawn().expect("start nagios4");
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(
                "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; kill -TERM \"$2\" 2>/dev/null",
            )
            .arg("nagios-watchdog")
            .arg(std::process::id().to_string())
            .arg(main.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog");
        Nagios {
            dir: dir.to_path_buf(),
            main,
            watchdog,
        }
    }

    /// Writes one line to the external command pipe. Opening a FIFO blocks until Nagios reads
    /// it, so the write runs on a thread and is given a bounded time.
    fn command(&self, line: &str) {
        let pipe = self.dir.join("nagios.cmd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pipe.exists() {
            assert!(
                Instant::now() < deadline,
                "nagios4 made no command pipe {} within 30 s:\n{}",
                pipe.display(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (tx, rx) = mpsc::channel();
        let text = format!("{line}\n");
        std::thread::spawn(move || {
            let res = fs::OpenOptions::new()
                .write(true)
                .open(&pipe)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            let _ = tx.send(res);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("writing {line:?} to the command pipe: {e}"),
            Err(_) => panic!(
                "nagios4 did not read its command pipe within 10 s:\n{}",
                self.logs()
            ),
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for f in ["nagios.out", "nagios.log"] {
            let text = fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out += &format!("---- {f} ----\n{}\n", tail.join("\n"));
        }
        out
    }

    /// Polls status.dat until every service in `names` has been checked, then returns their
    /// recorded status blocks.
    fn wait_checked(&mut self, names: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
        let deadline = Instant::now() + CHECK_WAIT;
        loop {
            if let Ok(Some(status)) = self.main.try_wait() {
                panic!("nagios4 exited ({status}):\n{}", self.logs());
            }
            let text = fs::read_to_string(self.dir.join("status.dat")).unwrap_or_default();
            let services = service_status(&text);
            let done = names.iter().all(|n| {
                services
                    .get(*n)
                    .is_some_and(|s| s.get("has_been_checked").map(String::as_str) == Some("1"))
            });
            if done {
                return services;
            }
            assert!(
                Instant::now() < deadline,
                "Nagios did not record a check of every service within {CHECK_WAIT:?}; \
                 status.dat has:\n{services:#?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Nagios {
    fn drop(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let pid = self.main.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while !exited && Instant::now() < deadline {
            exited = matches!(self.main.try_wait(), Ok(Some(_)));
            if !exited {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !exited {
            // Still unreaped, so its pid cannot have been reused for another group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = self.main.wait();
        }
        // The check workers put themselves in process groups of their own; each one names this
        // instance's query socket on its command line, so it is found by that and nothing else.
        let marker = self.dir.join("nagios.qh").display().to_string();
        for pid in processes_mentioning(&marker) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// Pids whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.to_string();
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(pid)
        })
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// The `servicestatus { key=value ... }` blocks of a status.dat, by service description.
fn service_status(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<BTreeMap<String, String>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "servicestatus {" {
            current = Some(BTreeMap::new());
        } else if line == "}" {
            if let Some(block) = current.take()
                && let Some(name) = block.get("service_description")
            {
                out.insert(name.clone(), block);
            }
        } else if let Some(block) = current.as_mut()
            && let Some((k, v)) = line.split_once('=')
        {
            block.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// Nagios perfdata, `label=value[UOM];[warn];[crit];[min];[max]` separated by spaces, as a map
/// of label to the numeric value; panics on an item a Nagios grapher would not parse.
fn perfdata(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for item in text.split_whitespace() {
        let (label, rest) = item
            .split_once('=')
            .unwrap_or_else(|| panic!("perfdata item {item:?} has no '=' (in {text:?})"));
        let fields: Vec<&str> = rest.split(';').collect();
        assert!(
            fields.len() <= 5,
            "perfdata item {item:?} has too many fields"
        );
        let value = fields[0].trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("perfdata item {item:?}: value is not a number"));
        for threshold in fields.iter().skip(1) {
            assert!(
                threshold.is_empty()
                    || threshold
                        .chars()
                        .all(|c| c.is_ascii_digit() || "@:~.-".contains(c)),
                "perfdata item {item:?}: {threshold:?} is not a Nagios range"
            );
        }
        out.insert(label.to_string(), value);
    }
    out
}

fn nagios_cfg(dir: &Path, cfg_files: &[String], user: &str, group: &str) -> String {
    let d = dir.display();
    let mut cfg = String::new();
    for f in cfg_files {
        cfg += &format!("cfg_file={d}/{f}\n");
    }
    cfg += &format!(
        "cfg_file={d}/test-objects.cfg
resource_file={d}/resource.cfg
log_file={d}/nagios.log
object_cache_file={d}/objects.cache
precached_object_file={d}/objects.precache
status_file={d}/status.dat
status_update_interval=1
nagios_user={user}
nagios_group={group}
check_external_commands=1
command_file={d}/nagios.cmd
query_socket={d}/nagios.qh
lock_file={d}/nagios.lock
temp_file={d}/nagios.tmp
temp_path={d}
check_result_path={d}/checkresults
check_result_reaper_frequency=1
use_syslog=0
retain_state_information=0
check_for_updates=0
enable_notifications=0
enable_flap_detection=0
execute_host_checks=0
execute_service_checks=0
service_check_timeout=90
illegal_macro_output_chars=`~$&|'\"<>
"
    );
    cfg
}

/// What a site's stock configuration provides and the shipped files rely on (`24x7`,
/// `generic-service`, a contact), then the host and the services under test.
fn test_objects(services: &[(&str, String)]) -> String {
    let mut objects = String::from(
        "define timeperiod {
    timeperiod_name 24x7
    alias 24 hours a day, 7 days a week
    sunday 00:00-24:00
    monday 00:00-24:00
    tuesday 00:00-24:00
    wednesday 00:00-24:00
    thursday 00:00-24:00
    friday 00:00-24:00
    saturday 00:00-24:00
}
define command {
    command_name notify-nobody
    command_line /bin/true
}
define contact {
    contact_name nobody
    service_notification_period 24x7
    host_notification_period 24x7
    service_notification_options n
    host_notification_options n
    service_notification_commands notify-nobody
    host_notification_commands notify-nobody
}
define service {
    name generic-service
    contacts nobody
    notification_period 24x7
    register 0
}
define host {
    host_name mail.lab.test
    address 127.0.0.1
    max_check_attempts 1
    check_period 24x7
    contacts nobody
    notification_period 24x7
    notification_interval 0
}
",
    );
    for (name, check_command) in services {
        objects += &format!(
            "define service {{
    use mailprobe-service
    host_name mail.lab.test
    service_description {name}
    check_command {check_command}
}}
"
        );
    }
    objects
}

#[test]
fn nagios_records_ok_warning_critical_and_unknown_with_perfdata() {
    let nagios4 = require("nagios4", "nagios4-core (from the nagios4 source)");
    let good = Lab::dovecot("nagios-good", DovecotOpts::default());
    let smtp = Lab::postfix(
        "nagios-smtp",
        &good,
        PostfixOpts {
            submissions: false,
            nosasl: false,
            authplain: false,
            ..PostfixOpts::default()
        },
    );
    let soon = Lab::dovecot(
        "nagios-soon",
        DovecotOpts {
            cert: "soon",
            imap: false,
            ..DovecotOpts::default()
        },
    );
    let expired = Lab::dovecot(
        "nagios-expired",
        DovecotOpts {
            cert: "expired",
            imap: false,
            ..DovecotOpts::default()
        },
    );

    let tmp = TempDir::new("nagios");
    let dir = tmp.path();
    let (user, group) = daemon_user();
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins).expect("plugins dir");
    fs::create_dir_all(dir.join("checkresults")).expect("checkresults dir");
    install_binary(&plugins);
    fs::copy(Lab::ca_file(), dir.join("ca.pem")).expect("copy the lab CA");
    let password_file = dir.join("alice.pw");
    fs::write(&password_file, format!("{}\n", Lab::password())).expect("password file");
    let cfg_files = copy_configs(&root().join("deploy/nagios"), ".cfg", dir);
    fs::write(
        dir.join("resource.cfg"),
        format!("$USER1$={}\n", plugins.display()),
    )
    .expect("resource.cfg");

    let common = format!(
        "--imap-security tls --connect-to {HOSTNAME}:127.0.0.1 --ca-file {}",
        dir.join("ca.pem").display()
    );
    let pw = password_file.display();
    let user_name = Lab::user();
    let services = [
        (
            "mailbox-good",
            format!(
                "check_mailprobe!{HOSTNAME}:{}!{user_name}!{pw}!{common} --smtp {HOSTNAME}:{} --smtp-security starttls",
                good.port("imaps"),
                smtp.port("submission")
            ),
        ),
        (
            "mailbox-cert-soon",
            format!(
                "check_mailprobe!{HOSTNAME}:{}!{user_name}!{pw}!{common}",
                soon.port("imaps")
            ),
        ),
        (
            "mailbox-cert-expired",
            format!(
                "check_mailprobe!{HOSTNAME}:{}!{user_name}!{pw}!{common}",
                expired.port("imaps")
            ),
        ),
        // check_ssl_cert's habits: days thresholds of the user's own, and a bare number of
        // seconds for the timeout.
        (
            "mailbox-cert-soon-crit-days",
            format!(
                "check_mailprobe!{HOSTNAME}:{}!{user_name}!{pw}!{common} --cert-warn-days 40 --cert-crit-days 20 --timeout 30",
                soon.port("imaps")
            ),
        ),
        (
            "mailbox-cert-soon-warn-days",
            format!(
                "check_mailprobe!{HOSTNAME}:{}!{user_name}!{pw}!{common} --cert-warn-days 2 --timeout 30",
                soon.port("imaps")
            ),
        ),
        (
            "mailbox-no-password",
            format!(
                "check_mailprobe_env!{HOSTNAME}:{}!{user_name}!{UNSET_PASSWORD_VAR}!{common}",
                good.port("imaps")
            ),
        ),
    ];
    fs::write(dir.join("test-objects.cfg"), test_objects(&services)).expect("objects");
    fs::write(
        dir.join("nagios.cfg"),
        nagios_cfg(dir, &cfg_files, &user, &group),
    )
    .expect("nagios.cfg");
    tmp.give_to(&user, &group);
    // Only the daemon's user may read the password, as the deploy README asks.
    let (ok, out) = output(Command::new("chmod").arg("600").arg(&password_file));
    assert!(ok, "chmod: {out}");

    let mut nagios = Nagios::start(&nagios4, dir);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, _) in &services {
        nagios.command(&format!(
            "[{now}] SCHEDULE_FORCED_SVC_CHECK;{HOSTNAME};{name};{now}"
        ));
    }
    let names: Vec<&str> = services.iter().map(|(n, _)| *n).collect();
    let status = nagios.wait_checked(&names);
    let logs = nagios.logs();
    drop(nagios);

    let show = |name: &str| format!("{name}: {:#?}\n{logs}", status[name]);
    let field =
        |name: &str, key: &str| -> String { status[name].get(key).cloned().unwrap_or_default() };

    // Compliant: OK, with the probe's perfdata recorded.
    let name = "mailbox-good";
    assert_eq!(field(name, "current_state"), "0", "{}", show(name));
    assert!(
        field(name, "plugin_output").starts_with("MAILPROBE OK - alice@lab.test compliant"),
        "{}",
        show(name)
    );
    let perf = perfdata(&field(name, "performance_data"));
    assert_eq!(perf.get("compliant"), Some(&1.0), "{}", show(name));
    assert_eq!(perf.get("fail"), Some(&0.0), "{}", show(name));
    assert!(perf.contains_key("duration"), "{}", show(name));
    assert!(perf["imap_cert_days"] > 300.0, "{}", show(name));
    assert!(perf["smtp_cert_days"] > 300.0, "{}", show(name));
    assert_eq!(perf.get("connections"), Some(&5.0), "{}", show(name));

    // A certificate with 10 days left: compliant with a warning, so WARNING.
    let name = "mailbox-cert-soon";
    assert_eq!(field(name, "current_state"), "1", "{}", show(name));
    let output_line = field(name, "plugin_output");
    assert!(
        output_line.starts_with("MAILPROBE WARNING")
            && output_line.contains("warnings: imap.certificate.expiry"),
        "{}",
        show(name)
    );
    let perf = perfdata(&field(name, "performance_data"));
    assert!(
        (0.0..30.0).contains(&perf["imap_cert_days"]),
        "{}",
        show(name)
    );
    // Long output: the warning requirement with its remedy, as Nagios recorded it.
    let long = field(name, "long_plugin_output");
    assert!(
        long.contains("WARNING imap.certificate.expiry: expires on ")
            && long.contains(" - remedy: "),
        "{}",
        show(name)
    );

    // The same certificate under the user's thresholds: within --cert-crit-days it fails...
    let name = "mailbox-cert-soon-crit-days";
    assert_eq!(field(name, "current_state"), "2", "{}", show(name));
    assert!(
        field(name, "plugin_output").contains("failing: imap.certificate.expiry"),
        "{}",
        show(name)
    );
    assert!(
        field(name, "long_plugin_output").contains("under the critical 20"),
        "{}",
        show(name)
    );
    let perf = field(name, "performance_data");
    assert!(
        perf.contains("imap_cert_days=") && perf.contains(";40:;"),
        "{}",
        show(name)
    );
    // ... and outside --cert-warn-days (the lab renews it with 3 days left) it passes.
    let name = "mailbox-cert-soon-warn-days";
    assert_eq!(field(name, "current_state"), "0", "{}", show(name));

    // An expired certificate: non-compliant, so CRITICAL, naming the failed requirement.
    let name = "mailbox-cert-expired";
    assert_eq!(field(name, "current_state"), "2", "{}", show(name));
    let output_line = field(name, "plugin_output");
    assert!(
        output_line.starts_with("MAILPROBE CRITICAL") && output_line.contains("failing: "),
        "{}",
        show(name)
    );
    assert!(
        output_line.contains("imap.certificate.expiry"),
        "{}",
        show(name)
    );
    let long = field(name, "long_plugin_output");
    assert!(
        long.contains("CRITICAL imap.certificate.expiry: expired on ")
            && long.contains(" - remedy: "),
        "{}",
        show(name)
    );
    let perf = perfdata(&field(name, "performance_data"));
    assert_eq!(perf.get("compliant"), Some(&0.0), "{}", show(name));
    assert!(perf["imap_cert_days"] < 0.0, "{}", show(name));

    // No password to log in with: the check cannot judge the mailbox, so UNKNOWN, and the
    // output says which variable to set.
    let name = "mailbox-no-password";
    assert_eq!(field(name, "current_state"), "3", "{}", show(name));
    let text = format!(
        "{}{}",
        field(name, "plugin_output"),
        field(name, "long_plugin_output")
    );
    assert!(text.contains(UNSET_PASSWORD_VAR), "{}", show(name));

    // The password went through a file only: nothing Nagios recorded shows it.
    let recorded = fs::read_to_string(dir.join("status.dat")).unwrap_or_default()
        + &fs::read_to_string(dir.join("nagios.log")).unwrap_or_default()
        + &fs::read_to_string(dir.join("objects.cache")).unwrap_or_default();
    assert!(
        !recorded.contains(Lab::password()),
        "the password appears in Nagios' files"
    );
}

// ---------------------------------------------------------------------------------------------
// Icinga 2

#[test]
fn icinga2_accepts_the_check_command_and_the_example_apply_rule() {
    let icinga2 = require("icinga2", "icinga2-bin");
    let tmp = TempDir::new("icinga2");
    let dir = tmp.path();
    let conf = dir.join("conf");
    let cache = dir.join("cache");
    fs::create_dir_all(&conf).expect("conf dir");
    fs::create_dir_all(&cache).expect("cache dir");
    let files = copy_configs(&root().join("deploy/icinga2"), ".conf", &conf);
    // A main file of our own instead of /etc/icinga2/icinga2.conf: the ITL, the plugin
    // definitions the example's host check uses, and the shipped files.
    let main = dir.join("icinga2.conf");
    fs::write(
        &main,
        format!(
            "const PluginDir = \"/usr/lib/nagios/plugins\"
const NodeName = \"mailprobe-test\"
const ZoneName = \"mailprobe-test\"
include <itl>
include <plugins>
include \"{}/*.conf\"
",
            conf.display()
        ),
    )
    .expect("icinga2.conf");
    let (user, group) = {
        let u = output(Command::new("id").arg("-un")).1.trim().to_string();
        let g = output(Command::new("id").arg("-gn")).1.trim().to_string();
        (u, g)
    };
    // Validation as whoever runs the test, with the object cache in our folder: nothing in
    // /var/cache/icinga2 is written.
    let defines = [
        format!("-DConfiguration.CacheDir={}", cache.display()),
        format!("-DConfiguration.RunAsUser={user}"),
        format!("-DConfiguration.RunAsGroup={group}"),
    ];
    let (ok, out) = output(
        Command::new(&icinga2)
            .args(["daemon", "-C", "-c"])
            .arg(&main)
            .args(&defines),
    );
    assert!(ok, "icinga2 daemon -C rejects {files:?}:\n{out}");

    let (ok, out) = output(
        Command::new(&icinga2)
            .args([
                "object",
                "list",
                "--type",
                "CheckCommand",
                "--name",
                "mailprobe",
            ])
            .args(&defines),
    );
    assert!(ok && out.contains("Object 'mailprobe'"), "{out}");
    // Every argument the CheckCommand passes is an option `mailprobe check` knows.
    let flags: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("* --"))
        .collect();
    for wanted in ["imap", "user", "password-file", "password-env", "smtp"] {
        assert!(flags.contains(&wanted), "no --{wanted} in:\n{out}");
    }
    let (_, help) = output(Command::new(env!("CARGO_BIN_EXE_mailprobe")).args(["check", "--help"]));
    for flag in &flags {
        assert!(
            help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n")),
            "the CheckCommand passes --{flag}, which `mailprobe check` does not know:\n{help}"
        );
    }
    assert!(out.contains("MAILPROBE_PASSWORD"), "{out}");

    let (ok, out) = output(
        Command::new(&icinga2)
            .args(["object", "list", "--type", "Service"])
            .args(&defines),
    );
    assert!(ok, "{out}");
    for mailbox in ["sales@example.com", "support@example.com"] {
        let header = format!("Object 'mail.example.com!mailbox {mailbox}' of type 'Service'");
        let block = out
            .split("Object '")
            .find(|b| format!("Object '{b}").starts_with(&header))
            .unwrap_or_else(|| panic!("no service for {mailbox} in:\n{out}"));
        assert!(block.contains("check_command = \"mailprobe\""), "{block}");
        assert!(
            block.contains(&format!("mailprobe_user = \"{mailbox}\"")),
            "{block}"
        );
    }
}

/// A running private `icinga2 daemon`; its process group is stopped on drop (Icinga can take
/// long to shut down while checks run, so it gets a short grace and then SIGKILL).
struct Icinga {
    child: Child,
}

impl Drop for Icinga {
    fn drop(&mut self) {
        let pgid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The group outlives its leader when workers linger: kill it by its id either way.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// The service records of PerfdataWriter files (`KEY::value` separated by tabs), by service.
fn icinga_results(dir: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let record: BTreeMap<String, String> = line
                .split('\t')
                .filter_map(|f| f.split_once("::"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Some(name) = record.get("SERVICEDESC") {
                out.insert(name.clone(), record);
            }
        }
    }
    out
}

#[test]
fn icinga2_runs_the_check_command_with_the_password_in_the_environment() {
    let icinga2 = require("icinga2", "icinga2-bin");
    let lab = Lab::dovecot("icinga-good", DovecotOpts::default());
    let tmp = TempDir::new("icinga2-run");
    let dir = tmp.path();
    for sub in [
        "conf",
        "data",
        "log",
        "cache",
        "spool",
        "run/icinga2",
        "perfdata",
    ] {
        fs::create_dir_all(dir.join(sub)).expect("icinga2 dirs");
    }
    install_binary(dir);
    fs::copy(Lab::ca_file(), dir.join("ca.pem")).expect("copy the lab CA");
    // Only the command file: the example's hosts would be checked for real.
    fs::copy(
        root().join("deploy/icinga2/mailprobe-command.conf"),
        dir.join("conf/mailprobe-command.conf"),
    )
    .expect("copy the CheckCommand");
    let d = dir.display();
    let service = |name: &str, password: &str| {
        format!(
            "object Service \"{name}\" {{
  host_name = \"lab\"
  import \"mailprobe-service\"
  check_interval = 2s
  retry_interval = 2s
  vars.mailprobe_imap = \"{HOSTNAME}:{port}\"
  vars.mailprobe_imap_security = \"tls\"
  vars.mailprobe_user = \"{user}\"
  vars.mailprobe_connect_to = [ \"{HOSTNAME}:127.0.0.1\" ]
  vars.mailprobe_ca_file = \"{d}/ca.pem\"
  {password}
}}
",
            port = lab.port("imaps"),
            user = Lab::user(),
        )
    };
    let main = format!(
        "const PluginDir = \"{d}\"
const NodeName = \"mailprobe-test\"
const ZoneName = \"mailprobe-test\"
include <itl>
include \"{d}/conf/*.conf\"
object CheckerComponent \"checker\" {{ }}
object PerfdataWriter \"perfdata\" {{
  host_perfdata_path = \"{d}/perfdata/host\"
  service_perfdata_path = \"{d}/perfdata/service\"
  host_temp_path = \"{d}/host.tmp\"
  service_temp_path = \"{d}/service.tmp\"
  service_format_template = \"SERVICEDESC::$service.name$\\tSERVICESTATE::$service.state$\\tSERVICEOUTPUT::$service.output$\\tSERVICEPERFDATA::$service.perfdata$\"
  rotation_interval = 1s
}}
object Host \"lab\" {{
  check_command = \"dummy\"
  address = \"127.0.0.1\"
}}
{}{}",
        service(
            "password-in-env",
            &format!("vars.mailprobe_password = \"{}\"", Lab::password())
        ),
        service("no-password", ""),
    );
    fs::write(dir.join("icinga2.conf"), main).expect("icinga2.conf");
    let user = output(Command::new("id").arg("-un")).1.trim().to_string();
    let group = output(Command::new("id").arg("-gn")).1.trim().to_string();
    let mut cmd = Command::new(&icinga2);
    cmd.args(["daemon", "-c"])
        .arg(dir.join("icinga2.conf"))
        .arg(format!("-DConfiguration.RunAsUser={user}"))
        .arg(format!("-DConfiguration.RunAsGroup={group}"));
    for (name, sub) in [
        ("DataDir", "data"),
        ("LogDir", "log"),
        ("CacheDir", "cache"),
        ("SpoolDir", "spool"),
        ("InitRunDir", "run"),
        ("PidPath", "run/icinga2/icinga2.pid"),
        ("StatePath", "data/icinga2.state"),
        ("ObjectsPath", "cache/icinga2.debug"),
        ("VarsPath", "cache/icinga2.vars"),
        ("ModAttrPath", "data/modified-attributes.conf"),
    ] {
        cmd.arg(format!("-DConfiguration.{name}={d}/{sub}"));
    }
    let log = fs::File::create(dir.join("icinga2.out")).expect("icinga2.out");
    cmd.env_remove("MAILPROBE_PASSWORD")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut icinga = Icinga {
        child: cmd.spawn().expect("start icinga2"),
    };
    let deadline = Instant::now() + CHECK_WAIT;
    let results = loop {
        let results = icinga_results(&dir.join("perfdata"));
        if results.contains_key("password-in-env") && results.contains_key("no-password") {
            break results;
        }
        if let Ok(Some(status)) = icinga.child.try_wait() {
            panic!(
                "icinga2 exited ({status}):\n{}",
                fs::read_to_string(dir.join("icinga2.out")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "Icinga 2 wrote no result for both services within {CHECK_WAIT:?} ({results:#?}):\n{}",
            fs::read_to_string(dir.join("icinga2.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    drop(icinga);

    let ok = &results["password-in-env"];
    assert_eq!(ok["SERVICESTATE"], "OK", "{results:#?}");
    assert!(
        ok["SERVICEOUTPUT"].starts_with("MAILPROBE OK"),
        "{results:#?}"
    );
    assert!(
        ok["SERVICEPERFDATA"].contains("compliant=1"),
        "{results:#?}"
    );
    let unknown = &results["no-password"];
    assert_eq!(unknown["SERVICESTATE"], "UNKNOWN", "{results:#?}");
    assert!(
        unknown["SERVICEOUTPUT"].contains("MAILPROBE_PASSWORD"),
        "{results:#?}"
    );
    assert!(
        !format!("{results:?}").contains(Lab::password()),
        "the password appears in what Icinga recorded"
    );
}
