//! Requirement results, statuses, the verdict, and the catalogue of known requirement IDs with
//! their prerequisites (used for skip propagation).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The outcome of one requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not evaluated; `evidence.reason` says why ([`SkipReason`]).
    Skip,
}

/// Why a requirement was not evaluated (`evidence.reason` of a `skip`). Only `not_verified`
/// affects the verdict: a compliant verdict must never rest on a check that did not run, while
/// a requirement the user left out, or one behind a failure, is no gap in the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A requirement it depends on did not pass; `evidence.prerequisite` is that requirement's ID.
    Prerequisite,
    /// The user left it out (no `--smtp`, `--only`).
    NotConfigured,
    /// The probe itself could not evaluate it: its own error, a deadline, the connection
    /// budget, a TLS dialect it cannot speak.
    NotVerified,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Prerequisite => "prerequisite",
            SkipReason::NotConfigured => "not_configured",
            SkipReason::NotVerified => "not_verified",
        }
    }

    pub fn parse(s: &str) -> Option<SkipReason> {
        match s {
            "prerequisite" => Some(SkipReason::Prerequisite),
            "not_configured" => Some(SkipReason::NotConfigured),
            "not_verified" => Some(SkipReason::NotVerified),
            _ => None,
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    /// The value of `mailprobe_requirement_status` (1 pass, 0.5 warn, 0 fail); skip has none.
    pub fn metric_value(self) -> Option<f64> {
        match self {
            Status::Pass => Some(1.0),
            Status::Warn => Some(0.5),
            Status::Fail => Some(0.0),
            Status::Skip => None,
        }
    }
}

/// One requirement's result, as it appears in the JSON report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequirementResult {
    pub id: String,
    pub status: Status,
    pub summary: String,
    #[serde(default)]
    pub evidence: Map<String, Value>,
    #[serde(default)]
    pub remedy: Option<String>,
}

impl RequirementResult {
    fn new(id: &str, status: Status, summary: impl Into<String>) -> Self {
        RequirementResult {
            id: id.to_string(),
            status,
            summary: summary.into(),
            evidence: Map::new(),
            remedy: None,
        }
    }
    pub fn pass(id: &str, summary: impl Into<String>) -> Self {
        Self::new(id, Status::Pass, summary)
    }
    pub fn warn(id: &str, summary: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(id, Status::Warn, summary).with_remedy(remedy)
    }
    pub fn fail(id: &str, summary: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, summary).with_remedy(remedy)
    }
    /// Not evaluated because the requirement `prerequisite` (an ID) failed or was itself skipped.
    pub fn skip(id: &str, prerequisite: &str, why: impl Into<String>) -> Self {
        Self::skipped(id, SkipReason::Prerequisite, why).with("prerequisite", prerequisite)
    }
    /// Not evaluated because the user left it out (no `--smtp`, `--only`).
    pub fn not_configured(id: &str, why: impl Into<String>) -> Self {
        Self::skipped(id, SkipReason::NotConfigured, why)
    }
    /// Not evaluated because the probe could not do it (its own error, a deadline, the
    /// connection budget, a TLS dialect it cannot speak). Makes the verdict `incomplete`.
    pub fn not_verified(id: &str, why: impl Into<String>) -> Self {
        Self::skipped(id, SkipReason::NotVerified, why)
    }
    fn skipped(id: &str, reason: SkipReason, why: impl Into<String>) -> Self {
        Self::new(id, Status::Skip, why).with("reason", reason.as_str())
    }
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }
    /// The requirement ID a `prerequisite` skip waits on.
    pub fn prerequisite(&self) -> Option<&str> {
        if self.skip_reason() != Some(SkipReason::Prerequisite) {
            return None;
        }
        self.evidence.get("prerequisite").and_then(Value::as_str)
    }
    /// Why a `skip` was not evaluated; `None` for any other status. A skip that gives no known
    /// reason (an old or foreign plugin) counts as `prerequisite` when it names one, else as
    /// `not_verified`: an unexplained gap must not pass for evidence.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        if self.status != Status::Skip {
            return None;
        }
        let named = self
            .evidence
            .get("reason")
            .and_then(Value::as_str)
            .and_then(SkipReason::parse);
        Some(
            named.unwrap_or(if self.evidence.contains_key("prerequisite") {
                SkipReason::Prerequisite
            } else {
                SkipReason::NotVerified
            }),
        )
    }
    /// Turns this result into a skip for `reason` (`not_verified` or `not_configured`), keeping
    /// its summary: used when the probe finds that a skip's stated cause does not hold.
    pub fn recast_skip(mut self, reason: SkipReason) -> Self {
        self.status = Status::Skip;
        if reason != SkipReason::Prerequisite {
            self.evidence.remove("prerequisite");
        }
        self.evidence
            .insert("reason".into(), Value::String(reason.as_str().into()));
        self.remedy = None;
        self
    }
}

/// A mailbox's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Compliant,
    NonCompliant,
    /// Nothing failed, but a requirement in scope could not be verified by the probe.
    Incomplete,
}

impl Verdict {
    /// Every verdict, in the order metrics list them.
    pub const ALL: [Verdict; 3] = [
        Verdict::Compliant,
        Verdict::NonCompliant,
        Verdict::Incomplete,
    ];

    /// `non_compliant` when any requirement fails; else `incomplete` when any is `not_verified`;
    /// else `compliant`.
    pub fn of(results: &[RequirementResult]) -> Verdict {
        if results.iter().any(|r| r.status == Status::Fail) {
            Verdict::NonCompliant
        } else if results
            .iter()
            .any(|r| r.skip_reason() == Some(SkipReason::NotVerified))
        {
            Verdict::Incomplete
        } else {
            Verdict::Compliant
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::NonCompliant => "non_compliant",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// A known requirement: its ID, what it checks, and what must hold before it can be evaluated.
#[derive(Clone, Copy, Debug)]
pub struct RequirementInfo {
    pub id: &'static str,
    pub description: &'static str,
    pub prerequisites: &'static [&'static str],
}

macro_rules! per_protocol {
    ($p:literal) => {
        [
            RequirementInfo {
                id: concat!($p, ".reachable"),
                description: "TCP connect to the port succeeds",
                prerequisites: &[],
            },
            RequirementInfo {
                id: concat!($p, ".encryption"),
                description: "implicit TLS, or STARTTLS advertised and the upgrade succeeds",
                prerequisites: &[concat!($p, ".reachable")],
            },
            RequirementInfo {
                id: concat!($p, ".tls_versions"),
                description: "the server accepts a TLS version the profile's client speaks",
                prerequisites: &[concat!($p, ".reachable")],
            },
            RequirementInfo {
                id: concat!($p, ".certificate.name"),
                description: "the certificate's Common Name matches the server's host name",
                prerequisites: &[concat!($p, ".reachable")],
            },
            RequirementInfo {
                id: concat!($p, ".certificate.trust"),
                description: "the certificate chain verifies to a trusted root",
                prerequisites: &[concat!($p, ".reachable")],
            },
            RequirementInfo {
                id: concat!($p, ".certificate.expiry"),
                description: "the certificate is valid for more than warn_days",
                prerequisites: &[concat!($p, ".reachable")],
            },
            RequirementInfo {
                id: concat!($p, ".login"),
                description: "the user logs in with username and password, over TLS only",
                prerequisites: &[concat!($p, ".encryption")],
            },
        ]
    };
}

const IMAP: [RequirementInfo; 7] = per_protocol!("imap");
const SMTP: [RequirementInfo; 7] = per_protocol!("smtp");

/// Every requirement ID mailprobe's built-in plugins know.
pub static CATALOG: &[RequirementInfo] = &[
    IMAP[0],
    IMAP[1],
    IMAP[2],
    IMAP[3],
    IMAP[4],
    IMAP[5],
    RequirementInfo {
        id: "imap.server_software",
        description: "the IMAP server is not Courier-IMAP",
        prerequisites: &["imap.reachable"],
    },
    IMAP[6],
    RequirementInfo {
        id: "imap.folders",
        description: "INBOX and a Sent folder can be selected",
        prerequisites: &["imap.login"],
    },
    SMTP[0],
    SMTP[1],
    SMTP[2],
    SMTP[3],
    SMTP[4],
    SMTP[5],
    SMTP[6],
    RequirementInfo {
        id: "connections.concurrent",
        description: "the server allows the CRM's concurrent IMAP and SMTP sessions",
        prerequisites: &["imap.login", "smtp.login"],
    },
];

/// The catalogue entry of a requirement, if it is a built-in one.
pub fn info(id: &str) -> Option<&'static RequirementInfo> {
    CATALOG.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_is_non_compliant_only_on_fail() {
        let mut rs = vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::warn("imap.tls_versions", "weak", "raise it"),
            RequirementResult::skip("imap.folders", "imap.login", "login failed"),
        ];
        assert_eq!(Verdict::of(&rs), Verdict::Compliant);
        rs.push(RequirementResult::fail(
            "imap.login",
            "refused",
            "fix the password",
        ));
        assert_eq!(Verdict::of(&rs), Verdict::NonCompliant);
    }

    #[test]
    fn not_verified_makes_the_verdict_incomplete_unless_something_fails() {
        let mut rs = vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::not_configured("smtp.login", "no --smtp"),
        ];
        assert_eq!(Verdict::of(&rs), Verdict::Compliant);
        rs.push(RequirementResult::not_verified(
            "imap.login",
            "plugin timed out",
        ));
        assert_eq!(Verdict::of(&rs), Verdict::Incomplete);
        rs.push(RequirementResult::fail(
            "imap.folders",
            "no Sent",
            "add one",
        ));
        assert_eq!(Verdict::of(&rs), Verdict::NonCompliant);
    }

    #[test]
    fn skip_reasons_are_typed_and_in_evidence() {
        let r = RequirementResult::not_configured("smtp.login", "no --smtp");
        assert_eq!(r.skip_reason(), Some(SkipReason::NotConfigured));
        assert_eq!(r.evidence["reason"], "not_configured");
        assert_eq!(r.prerequisite(), None);
        let r = RequirementResult::not_verified("imap.login", "deadline");
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        assert_eq!(
            RequirementResult::pass("imap.login", "ok").skip_reason(),
            None
        );
        // A foreign skip without a reason: a named prerequisite, else a gap.
        let mut r = RequirementResult::skip("imap.folders", "imap.login", "x");
        r.evidence.remove("reason");
        assert_eq!(r.skip_reason(), Some(SkipReason::Prerequisite));
        r.evidence.remove("prerequisite");
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        let r = RequirementResult::skip("imap.folders", "imap.login", "x")
            .recast_skip(SkipReason::NotVerified);
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        assert!(!r.evidence.contains_key("prerequisite"));
    }

    #[test]
    fn skip_names_its_prerequisite() {
        let r = RequirementResult::skip("imap.folders", "imap.login", "not evaluated");
        assert_eq!(r.prerequisite(), Some("imap.login"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "skip");
        assert_eq!(json["evidence"]["prerequisite"], "imap.login");
        assert_eq!(json["evidence"]["reason"], "prerequisite");
    }

    #[test]
    fn catalogue_ids_are_unique_and_prerequisites_known() {
        for (i, r) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[i + 1..].iter().all(|o| o.id != r.id),
                "{} twice",
                r.id
            );
            for p in r.prerequisites {
                assert!(info(p).is_some(), "{} needs unknown {p}", r.id);
            }
        }
    }
}
