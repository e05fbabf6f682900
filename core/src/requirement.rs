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
    /// Not evaluated because a prerequisite failed or is absent; the result names it.
    Skip,
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
    /// Not evaluated because `prerequisite` failed (or was itself skipped).
    pub fn skip(id: &str, prerequisite: &str, why: impl Into<String>) -> Self {
        let mut r = Self::new(id, Status::Skip, why);
        r.evidence.insert(
            "prerequisite".into(),
            Value::String(prerequisite.to_string()),
        );
        r
    }
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }
    pub fn prerequisite(&self) -> Option<&str> {
        self.evidence.get("prerequisite").and_then(Value::as_str)
    }
}

/// A mailbox's verdict: compliant when no requirement fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Compliant,
    NonCompliant,
}

impl Verdict {
    pub fn of(results: &[RequirementResult]) -> Verdict {
        if results.iter().any(|r| r.status == Status::Fail) {
            Verdict::NonCompliant
        } else {
            Verdict::Compliant
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::NonCompliant => "non_compliant",
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
    fn skip_names_its_prerequisite() {
        let r = RequirementResult::skip("imap.folders", "imap.login", "not evaluated");
        assert_eq!(r.prerequisite(), Some("imap.login"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "skip");
        assert_eq!(json["evidence"]["prerequisite"], "imap.login");
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
