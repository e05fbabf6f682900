//! The report of one mailbox run, and its renderings: text, JSON (`mailprobe.report/v1`, see docs/report.md) and Nagios.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{Protocol, Target};
use crate::requirement::{Measurement, RequirementResult, SkipReason, Status, Verdict};

pub const SCHEMA: &str = "mailprobe.report/v1";

/// The JSON report (`mailprobe.report/v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub mailbox: String,
    pub profile: String,
    pub verdict: Verdict,
    pub started_at: String,
    pub duration_ms: u64,
    pub requirements: Vec<RequirementResult>,
    /// The servers checked, for grouping and labels: `imap` and `smtp` as `host:port`.
    #[serde(default, skip_serializing_if = "Servers::is_empty")]
    pub servers: Servers,
    /// The values the exporters publish, taken from the evidence as the plugins declared.
    #[serde(skip)]
    pub measures: Vec<Measurement>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Servers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
}

impl Servers {
    fn is_empty(&self) -> bool {
        self.imap.is_none() && self.smtp.is_none()
    }
}

/// RFC 3339 in UTC with seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(&Rfc3339).unwrap_or_default()
}

impl Report {
    pub fn new(
        target: &Target,
        started_at: SystemTime,
        duration: Duration,
        requirements: Vec<RequirementResult>,
    ) -> Report {
        Report {
            schema: SCHEMA.to_string(),
            mailbox: target.mailbox.clone(),
            profile: target.profile.name.clone(),
            verdict: Verdict::of(&requirements),
            started_at: rfc3339(started_at),
            duration_ms: duration.as_millis() as u64,
            requirements,
            servers: Servers {
                imap: Some(target.imap.authority()),
                smtp: target.smtp.as_ref().map(|e| e.authority()),
            },
            measures: Vec::new(),
        }
    }

    pub fn has_warnings(&self) -> bool {
        self.requirements.iter().any(|r| r.status == Status::Warn)
    }

    /// The Nagios plugin exit code: 0 compliant, 1 compliant with warnings, 2 non-compliant,
    /// 3 (UNKNOWN) incomplete.
    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            Verdict::NonCompliant => 2,
            Verdict::Incomplete => 3,
            Verdict::Compliant if self.has_warnings() => 1,
            Verdict::Compliant => 0,
        }
    }

    /// The requirements the probe could not verify.
    pub fn not_verified(&self) -> impl Iterator<Item = &RequirementResult> {
        self.requirements
            .iter()
            .filter(|r| r.skip_reason() == Some(SkipReason::NotVerified))
    }

    /// For an `incomplete` verdict, one line saying what could not be verified and why
    /// (`ID: <why>; ...`); `None` for any other verdict.
    pub fn incomplete_line(&self) -> Option<String> {
        if self.verdict != Verdict::Incomplete {
            return None;
        }
        // Requirements left out for one reason (a plugin that panicked) share one entry.
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for r in self.not_verified() {
            let why = one_line(&r.summary);
            match groups.iter_mut().find(|(w, _)| *w == why) {
                Some((_, ids)) => ids.push(&r.id),
                None => groups.push((why, vec![&r.id])),
            }
        }
        let items: Vec<String> = groups
            .iter()
            .map(|(why, ids)| format!("{}: {why}", ids.join(", ")))
            .collect();
        Some(format!("not verified: {}", items.join("; ")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    fn count(&self, s: Status) -> usize {
        self.requirements.iter().filter(|r| r.status == s).count()
    }

    /// One Nagios status line with perfdata.
    pub fn to_nagios(&self) -> String {
        let state = match self.exit_code() {
            0 => "OK",
            1 => "WARNING",
            2 => "CRITICAL",
            _ => "UNKNOWN",
        };
        let failing: Vec<&str> = self
            .requirements
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.id.as_str())
            .collect();
        let warning: Vec<&str> = self
            .requirements
            .iter()
            .filter(|r| r.status == Status::Warn)
            .map(|r| r.id.as_str())
            .collect();
        let mut detail = String::new();
        if !failing.is_empty() {
            let _ = write!(detail, "; failing: {}", failing.join(", "));
        }
        if let Some(line) = self.incomplete_line() {
            // `|` starts perfdata for Nagios: keep it out of the text.
            let _ = write!(detail, "; {}", line.replace('|', "/"));
        }
        if !warning.is_empty() {
            let _ = write!(detail, "; warnings: {}", warning.join(", "));
        }
        // `U` is the plugin guidelines' value for "could not be determined".
        let compliant = match self.verdict {
            Verdict::Compliant => "1",
            Verdict::NonCompliant => "0",
            Verdict::Incomplete => "U",
        };
        let mut perf = format!(
            "compliant={compliant} pass={} warn={} fail={} skip={} duration={:.3}s",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.duration_ms as f64 / 1000.0
        );
        // Thresholds are Nagios ranges (`N:` alerts below N), so graphers such as PNP4Nagios and
        // Grafana draw the same lines the verdict uses.
        // From the measurements the plugins declared: the report knows no requirement ID.
        for m in &self.measures {
            match m {
                Measurement::CertificateExpiry { requirement, .. } => {
                    if let Some(r) = self.requirements.iter().find(|r| &r.id == requirement)
                        && let Some(days) = r.evidence.get("days_left").and_then(|v| v.as_i64())
                    {
                        let warn = r
                            .evidence
                            .get("warn_days")
                            .and_then(|v| v.as_u64())
                            .map(|w| format!("{w}:"))
                            .unwrap_or_default();
                        let server = requirement.split('.').next().unwrap_or(requirement);
                        let _ = write!(perf, " {server}_cert_days={days};{warn};0:");
                    }
                }
                Measurement::ConcurrentConnections {
                    requirement,
                    achieved,
                } => {
                    let required = self
                        .requirements
                        .iter()
                        .find(|r| &r.id == requirement)
                        .and_then(|r| r.evidence.get("required").and_then(|v| v.as_u64()));
                    if let Some(req) = required {
                        let _ = write!(perf, " connections={achieved};;{req}:;0");
                    }
                }
                Measurement::RoundtripLatency {
                    requirement,
                    seconds,
                } => {
                    let warn = self
                        .requirements
                        .iter()
                        .find(|r| &r.id == requirement)
                        .and_then(|r| r.evidence.get("warn_seconds").and_then(|v| v.as_f64()))
                        .map(|w| format!("{w}"))
                        .unwrap_or_default();
                    let _ = write!(perf, " roundtrip={seconds:.3}s;{warn};;0");
                }
                Measurement::TlsVersion { .. } | Measurement::CertificateInfo { .. } => {}
            }
        }
        let mut out = format!(
            "MAILPROBE {state} - {} {}{detail} | {perf}",
            self.mailbox,
            self.verdict.as_str()
        );
        out.push_str(&self.nagios_long_output());
        out
    }

    /// The plugin guidelines' long output: after the status line, one line per failing, then
    /// per warning requirement, with its summary and remedy (each on one line, without `|`,
    /// which would start perfdata).
    pub fn nagios_long_output(&self) -> String {
        let mut out = String::new();
        for status in [Status::Fail, Status::Warn] {
            for r in self.requirements.iter().filter(|r| r.status == status) {
                let label = match status {
                    Status::Fail => "CRITICAL",
                    _ => "WARNING",
                };
                let mut line = format!("{label} {}: {}", r.id, one_line(&r.summary));
                if let Some(remedy) = &r.remedy {
                    let _ = write!(line, " - remedy: {}", one_line(remedy));
                }
                out.push('\n');
                out.push_str(&line.replace('|', "/"));
            }
        }
        out
    }

    /// The human report, grouped by server, with a remedy under each warning or failure.
    pub fn to_text(&self, colour: bool) -> String {
        let paint = |s: Status, text: &str| -> String {
            if !colour {
                return text.to_string();
            }
            let code = match s {
                Status::Pass => "32",
                Status::Warn => "33",
                Status::Fail => "31",
                Status::Skip => "90",
            };
            format!("\x1b[{code}m{text}\x1b[0m")
        };
        let mut out = String::new();
        let verdict = match self.verdict {
            Verdict::Compliant if self.has_warnings() => "COMPLIANT (with warnings)",
            Verdict::Compliant => "COMPLIANT",
            Verdict::NonCompliant => "NON-COMPLIANT",
            Verdict::Incomplete => "INCOMPLETE",
        };
        let vstatus = match self.exit_code() {
            0 => Status::Pass,
            1 => Status::Warn,
            2 => Status::Fail,
            _ => Status::Skip,
        };
        let _ = writeln!(
            out,
            "mailprobe: {} against profile {}: {}",
            self.mailbox,
            self.profile,
            paint(vstatus, verdict)
        );
        if let Some(line) = self.incomplete_line() {
            let _ = writeln!(out, "{line}");
        }
        let groups: [(&str, Option<Protocol>); 3] = [
            ("imap", Some(Protocol::Imap)),
            ("smtp", Some(Protocol::Smtp)),
            ("other", None),
        ];
        for (prefix, proto) in groups {
            let items: Vec<&RequirementResult> = self
                .requirements
                .iter()
                .filter(|r| match proto {
                    Some(_) => r.id.starts_with(&format!("{prefix}.")),
                    None => ![Protocol::Imap, Protocol::Smtp]
                        .iter()
                        .any(|p| r.id.starts_with(&format!("{}.", p.prefix()))),
                })
                .collect();
            if items.is_empty() {
                continue;
            }
            let heading = match proto {
                Some(Protocol::Imap) => format!(
                    "IMAP {}",
                    self.servers.imap.as_deref().unwrap_or("(server)")
                ),
                Some(Protocol::Smtp) => match &self.servers.smtp {
                    Some(s) => format!("SMTP {s}"),
                    None => "SMTP (not configured)".to_string(),
                },
                None => "Mailbox".to_string(),
            };
            let _ = writeln!(out, "\n{heading}");
            for r in items {
                let tag = format!("{:<4}", r.status.as_str().to_uppercase());
                let _ = writeln!(
                    out,
                    "  [{}] {:<26} {}",
                    paint(r.status, &tag),
                    r.id,
                    r.summary
                );
                if matches!(r.status, Status::Warn | Status::Fail)
                    && let Some(remedy) = &r.remedy
                {
                    let _ = writeln!(out, "         remedy: {remedy}");
                }
            }
        }
        let _ = writeln!(
            out,
            "\n{} pass, {} warn, {} fail, {} skip in {} ms",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.duration_ms
        );
        out
    }
}

/// Newlines and other control characters out of a summary, so a Nagios line stays one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(results: Vec<RequirementResult>) -> Report {
        Report {
            schema: SCHEMA.into(),
            mailbox: "alice@example.com".into(),
            profile: "hubspot".into(),
            verdict: Verdict::of(&results),
            started_at: rfc3339(SystemTime::UNIX_EPOCH),
            duration_ms: 412,
            requirements: results,
            servers: Servers {
                imap: Some("imap.example.com:993".into()),
                smtp: None,
            },
            measures: Vec::new(),
        }
    }

    #[test]
    fn exit_codes_follow_nagios() {
        let ok = report(vec![RequirementResult::pass("imap.reachable", "ok")]);
        assert_eq!(ok.exit_code(), 0);
        let warn = report(vec![RequirementResult::warn(
            "imap.tls_versions",
            "weak",
            "raise",
        )]);
        assert_eq!(warn.exit_code(), 1);
        let fail = report(vec![RequirementResult::fail(
            "imap.reachable",
            "refused",
            "open it",
        )]);
        assert_eq!(fail.exit_code(), 2);
        let gap = report(vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::not_verified("imap.login", "not verified: plugin imap timed out"),
        ]);
        assert_eq!(gap.verdict, Verdict::Incomplete);
        assert_eq!(gap.exit_code(), 3);
    }

    #[test]
    fn incomplete_says_what_was_not_verified_in_every_format() {
        let r = report(vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::warn("imap.tls_versions", "weak", "raise"),
            RequirementResult::not_verified(
                "imap.login",
                "not verified: plugin imap panicked: boom",
            ),
            RequirementResult::not_configured("smtp.login", "no --smtp"),
            RequirementResult::not_verified(
                "imap.folders",
                "not verified: plugin imap panicked: boom",
            ),
        ]);
        let text = r.to_text(false);
        assert!(text.contains(": INCOMPLETE\n"), "{text}");
        assert!(
            text.contains(
                "not verified: imap.login, imap.folders: not verified: plugin imap panicked: boom\n"
            ),
            "{text}"
        );
        let line = r.to_nagios();
        assert!(
            line.starts_with(
                "MAILPROBE UNKNOWN - alice@example.com incomplete; not verified: imap.login, imap.folders: not verified: plugin imap panicked: boom; "
            ),
            "{line}"
        );
        assert!(line.contains("compliant=U "), "{line}");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["verdict"], "incomplete");
        assert_eq!(v["requirements"][2]["evidence"]["reason"], "not_verified");
        assert_eq!(v["requirements"][3]["evidence"]["reason"], "not_configured");
    }

    #[test]
    fn json_has_the_spec_fields() {
        let r = report(vec![RequirementResult::pass("imap.reachable", "connected")]);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["schema"], "mailprobe.report/v1");
        assert_eq!(v["verdict"], "compliant");
        assert_eq!(v["started_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["requirements"][0]["remedy"], serde_json::Value::Null);
    }

    #[test]
    fn text_shows_remedies_under_failures_and_no_colour_off_terminal() {
        let r = report(vec![RequirementResult::fail(
            "imap.reachable",
            "connection refused",
            "open port 993",
        )]);
        let t = r.to_text(false);
        assert!(t.contains("NON-COMPLIANT"));
        assert!(t.contains("IMAP imap.example.com:993"));
        assert!(t.contains("remedy: open port 993"));
        assert!(!t.contains('\x1b'));
        assert!(r.to_text(true).contains('\x1b'));
    }

    #[test]
    fn nagios_line_has_state_and_perfdata() {
        let r = report(vec![RequirementResult::fail(
            "imap.login",
            "refused",
            "fix",
        )]);
        let line = r.to_nagios();
        assert!(
            line.starts_with(
                "MAILPROBE CRITICAL - alice@example.com non_compliant; failing: imap.login | "
            ),
            "{line}"
        );
        assert!(line.contains("compliant=0"));
    }

    #[test]
    fn nagios_long_output_lists_failures_then_warnings_with_remedies() {
        let r = report(vec![
            RequirementResult::warn("imap.tls_versions", "only TLS 1.0", "enable TLS 1.2"),
            RequirementResult::pass("imap.reachable", "connected"),
            RequirementResult::fail("imap.login", "refused\r\nby | server", "check the password"),
        ]);
        let text = r.to_nagios();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("MAILPROBE CRITICAL - "), "{text}");
        // One `|`, on the first line: the long output carries none that would start perfdata.
        assert_eq!(text.matches('|').count(), 1, "{text}");
        assert_eq!(
            lines[1],
            "CRITICAL imap.login: refused  by / server - remedy: check the password"
        );
        assert_eq!(
            lines[2],
            "WARNING imap.tls_versions: only TLS 1.0 - remedy: enable TLS 1.2"
        );
    }

    #[test]
    fn nagios_perfdata_has_duration_certificate_days_and_connections_with_ranges() {
        let mut r = report(vec![
            RequirementResult::pass("imap.certificate.expiry", "valid")
                .with("days_left", 364)
                .with("warn_days", 30),
            RequirementResult::warn("smtp.certificate.expiry", "soon", "renew")
                .with("days_left", 9)
                .with("warn_days", 30),
            RequirementResult::fail("connections.concurrent", "2 of 5", "raise the limit")
                .with("achieved", 2)
                .with("required", 5),
        ]);
        // What the runner derives from the plugins' declared measures.
        let expiry = |id: &str| Measurement::CertificateExpiry {
            requirement: id.into(),
            server: "mail.example.com".into(),
            port: 993,
            not_after_unix: 0,
        };
        r.measures = vec![
            expiry("imap.certificate.expiry"),
            expiry("smtp.certificate.expiry"),
            Measurement::ConcurrentConnections {
                requirement: "connections.concurrent".into(),
                achieved: 2.0,
            },
        ];
        let text = r.to_nagios();
        let line = text.lines().next().unwrap_or_default();
        let (status, perf) = line.split_once(" | ").expect("perfdata after ' | '");
        assert_eq!(
            status,
            "MAILPROBE CRITICAL - alice@example.com non_compliant; failing: connections.concurrent; \
             warnings: smtp.certificate.expiry"
        );
        assert_eq!(
            perf,
            "compliant=0 pass=1 warn=1 fail=1 skip=0 duration=0.412s \
             imap_cert_days=364;30:;0: smtp_cert_days=9;30:;0: connections=2;;5:;0"
        );
    }

    #[test]
    fn nagios_perfdata_has_the_roundtrip_latency_with_its_warn_threshold() {
        let mut r = report(vec![
            RequirementResult::pass("mail.roundtrip", "arrived")
                .with("latency_seconds", 1.25)
                .with("warn_seconds", 60),
        ]);
        r.measures = vec![Measurement::RoundtripLatency {
            requirement: "mail.roundtrip".into(),
            seconds: 1.25,
        }];
        let line = r.to_nagios();
        assert!(line.ends_with(" roundtrip=1.250s;60;;0"), "{line}");
    }
}
