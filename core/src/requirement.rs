//! Requirement results, statuses, the verdict, and what plugins declare about the requirements
//! they report (prerequisites for skip propagation, the server each is about, measurements).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::NetError;
use crate::model::{Endpoint, Protocol, Target};

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
///
/// What the probe acts on is typed: why a skip was not evaluated ([`Self::skip_reason`]), the
/// requirement it waits on ([`Self::prerequisite`]) and the stable type of the error that
/// decided it ([`Self::error_type`]). They are written into the JSON report's `evidence` under
/// `reason`, `prerequisite` and `error_type` (as always), and read back from there.
#[derive(Clone, Debug, PartialEq)]
pub struct RequirementResult {
    pub id: String,
    pub status: Status,
    pub summary: String,
    /// What the plugin found, for people and dashboards; nothing in the probe reads it.
    pub evidence: Map<String, Value>,
    pub remedy: Option<String>,
    /// What the probe acts on (boxed: a result stays small enough to be a `Result`'s error).
    pub(crate) typed: Box<Typed>,
}

/// The typed fields of a [`RequirementResult`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Typed {
    /// Why a `skip` was not evaluated (`evidence.reason`).
    pub(crate) reason: Option<SkipReason>,
    /// The requirement a `prerequisite` skip waits on (`evidence.prerequisite`).
    pub(crate) waits_on: Option<String>,
    /// The stable type of the error that decided the result (`evidence.error_type`).
    pub(crate) error_type: Option<String>,
}

/// [`RequirementResult`] as the JSON report has it: the typed fields inside `evidence`.
#[derive(Serialize, Deserialize)]
struct ResultJson {
    id: String,
    status: Status,
    summary: String,
    #[serde(default)]
    evidence: Map<String, Value>,
    #[serde(default)]
    remedy: Option<String>,
}

const REASON: &str = "reason";
const PREREQUISITE: &str = "prerequisite";
const ERROR_TYPE: &str = "error_type";

impl Serialize for RequirementResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut evidence = self.evidence.clone();
        if let Some(r) = self.typed.reason {
            evidence.insert(REASON.into(), r.as_str().into());
        }
        if let Some(p) = &self.typed.waits_on {
            evidence.insert(PREREQUISITE.into(), p.clone().into());
        }
        if let Some(t) = &self.typed.error_type {
            evidence.insert(ERROR_TYPE.into(), t.clone().into());
        }
        ResultJson {
            id: self.id.clone(),
            status: self.status,
            summary: self.summary.clone(),
            evidence,
            remedy: self.remedy.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RequirementResult {
    /// Lifts `reason` (of a skip, when it is one this probe knows), `prerequisite` and
    /// `error_type` (when they are strings) out of `evidence`: a dynamic plugin's result and a
    /// stored report read back as the probe's own.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut j = ResultJson::deserialize(deserializer)?;
        let mut take = |key: &str, keep: &dyn Fn(&str) -> bool| match j.evidence.get(key) {
            Some(Value::String(v)) if keep(v) => j.evidence.remove(key).and_then(|v| match v {
                Value::String(v) => Some(v),
                _ => None,
            }),
            _ => None,
        };
        let is_skip = j.status == Status::Skip;
        let reason = take(REASON, &|v| is_skip && SkipReason::parse(v).is_some())
            .and_then(|v| SkipReason::parse(&v));
        let waits_on = take(PREREQUISITE, &|_| true);
        let error_type = take(ERROR_TYPE, &|_| true);
        Ok(RequirementResult {
            id: j.id,
            status: j.status,
            summary: j.summary,
            evidence: j.evidence,
            remedy: j.remedy,
            typed: Box::new(Typed {
                reason,
                waits_on,
                error_type,
            }),
        })
    }
}

impl RequirementResult {
    fn new(id: &str, status: Status, summary: impl Into<String>) -> Self {
        RequirementResult {
            id: id.to_string(),
            status,
            summary: summary.into(),
            evidence: Map::new(),
            remedy: None,
            typed: Box::default(),
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
        let mut r = Self::skipped(id, SkipReason::Prerequisite, why);
        r.typed.waits_on = Some(prerequisite.to_string());
        r
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
        let mut r = Self::new(id, Status::Skip, why);
        r.typed.reason = Some(reason);
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
    /// Records an error on the result: its message (`error`) and its stable type
    /// (`error_type`, as on the step's span).
    pub fn with_error(mut self, e: &NetError) -> Self {
        self.typed.error_type = Some(e.error_type().to_string());
        self.with("error", e.to_string())
    }
    /// As [`RequirementResult::with_error`], for an error seen through a [`NetErrorView`].
    pub fn with_error_view(mut self, e: &crate::context::NetErrorView) -> Self {
        self.typed.error_type = Some(e.error_type.clone());
        self.with("error", e.message.clone())
    }
    /// The stable type of the error that decided this result (see [`Self::with_error`]).
    pub fn error_type(&self) -> Option<&str> {
        self.typed.error_type.as_deref()
    }
    /// The requirement ID a `prerequisite` skip waits on.
    pub fn prerequisite(&self) -> Option<&str> {
        if self.skip_reason() != Some(SkipReason::Prerequisite) {
            return None;
        }
        self.typed.waits_on.as_deref()
    }
    /// Why a `skip` was not evaluated; `None` for any other status. A skip that gives no known
    /// reason (an old or foreign plugin) counts as `prerequisite` when it names one, else as
    /// `not_verified`: an unexplained gap must not pass for evidence.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        if self.status != Status::Skip {
            return None;
        }
        Some(
            self.typed
                .reason
                .unwrap_or(if self.typed.waits_on.is_some() {
                    SkipReason::Prerequisite
                } else {
                    SkipReason::NotVerified
                }),
        )
    }
    /// A skip that names no reason (a foreign or older plugin's) gets the one it is read as
    /// ([`Self::skip_reason`]), so every skip in the report says why.
    pub fn name_skip_reason(&mut self) {
        if self.typed.reason.is_none() {
            self.typed.reason = self.skip_reason();
        }
    }
    /// Turns this result into a skip for `reason` (`not_verified` or `not_configured`), keeping
    /// its summary: used when the probe finds that a skip's stated cause does not hold.
    pub fn recast_skip(mut self, reason: SkipReason) -> Self {
        self.status = Status::Skip;
        if reason != SkipReason::Prerequisite {
            self.typed.waits_on = None;
        }
        self.typed.reason = Some(reason);
        self.remedy = None;
        self
    }
    /// Passes the typed fields' texts through `clean` (the redactor): a dynamic plugin's
    /// `error_type` or `prerequisite` is foreign text like its evidence.
    pub fn clean_typed(&mut self, clean: impl Fn(&str) -> String) {
        let typed = &mut *self.typed;
        for text in [&mut typed.waits_on, &mut typed.error_type]
            .into_iter()
            .flatten()
        {
            *text = clean(text);
        }
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

/// What a plugin declares about one requirement it reports: what it checks, what must hold
/// before it can be evaluated, which server it is about, and which of its evidence keys carry
/// a measurement the exporters turn into metrics. The catalogue of a process is built from
/// these declarations (the registry builds it); nothing in the core names a
/// requirement ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementSpec {
    pub id: String,
    pub description: String,
    /// Requirement IDs that must pass (or warn) first; when one fails or is skipped, this one
    /// is skipped naming it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<String>,
    /// The server this requirement is about. When the target has no such server (no `--smtp`),
    /// the requirement is skipped as not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Protocol>,
    /// Evidence keys whose values the exporters publish as metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<Measure>,
    /// When it passes, warns and fails, for the reference documentation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub passes: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub warns: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fails: String,
    /// The evidence keys tools may rely on, with what each holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<(String, String)>,
}

impl RequirementSpec {
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> Self {
        RequirementSpec {
            id: id.into(),
            description: description.into(),
            prerequisites: Vec::new(),
            server: None,
            measures: Vec::new(),
            passes: String::new(),
            warns: String::new(),
            fails: String::new(),
            evidence: Vec::new(),
        }
    }
    /// When it passes (for the reference documentation).
    pub fn passes(mut self, text: impl Into<String>) -> Self {
        self.passes = text.into();
        self
    }
    /// When it warns.
    pub fn warns(mut self, text: impl Into<String>) -> Self {
        self.warns = text.into();
        self
    }
    /// When it fails.
    pub fn fails(mut self, text: impl Into<String>) -> Self {
        self.fails = text.into();
        self
    }
    /// An evidence key tools may rely on, and what it holds.
    pub fn evidence(mut self, key: &str, meaning: &str) -> Self {
        self.evidence.push((key.to_string(), meaning.to_string()));
        self
    }
    /// The requirements that must hold first.
    pub fn after<S: AsRef<str>>(mut self, prerequisites: &[S]) -> Self {
        self.prerequisites
            .extend(prerequisites.iter().map(|p| p.as_ref().to_string()));
        self
    }
    /// The server the requirement is about.
    pub fn on(mut self, server: Protocol) -> Self {
        self.server = Some(server);
        self
    }
    /// An evidence key that carries a measurement.
    pub fn measures(mut self, measure: Measure) -> Self {
        self.measures.push(measure);
        self
    }
}

/// An evidence key with a meaning the exporters know, declared by the plugin that fills it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measure {
    /// An RFC 3339 timestamp: a certificate's notAfter
    /// (`mailprobe_cert_expiry_timestamp_seconds{server,port}`).
    CertificateExpiry { key: String },
    /// A map of TLS version name to accepted (`true`/`false`, `null` when unknown)
    /// (`mailprobe_tls_version_accepted{server,port,version}`).
    TlsVersions { key: String },
    /// A count of sessions held at once (`mailprobe_concurrent_connections_achieved`).
    ConcurrentConnections { key: String },
    /// Seconds a test message took from submission to the mailbox
    /// (`mailprobe_roundtrip_seconds`); taken only from a result that passed or warned.
    RoundtripLatency { key: String },
    /// The evidence keys of a leaf certificate's identity, each a string
    /// (`mailprobe_cert_info{server,port,subject,issuer,serial,fingerprint_sha256}`).
    CertificateInfo {
        subject: String,
        issuer: String,
        serial: String,
        fingerprint_sha256: String,
    },
}

/// A value taken from a report's evidence as a declared [`Measure`] said, with the server it is
/// about; what the exporters publish.
#[derive(Clone, Debug, PartialEq)]
pub enum Measurement {
    CertificateExpiry {
        /// The requirement whose evidence it comes from.
        requirement: String,
        server: String,
        port: u16,
        not_after_unix: i64,
    },
    TlsVersion {
        server: String,
        port: u16,
        version: String,
        accepted: bool,
    },
    ConcurrentConnections {
        requirement: String,
        achieved: f64,
    },
    RoundtripLatency {
        requirement: String,
        seconds: f64,
    },
    CertificateInfo {
        requirement: String,
        server: String,
        port: u16,
        subject: String,
        issuer: String,
        serial: String,
        fingerprint_sha256: String,
    },
}

/// Where a declared requirement comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Dynamic,
}

/// Every requirement the plugins of a run declare.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    entries: Vec<(RequirementSpec, Origin)>,
}

impl Catalog {
    pub fn new(entries: Vec<(RequirementSpec, Origin)>) -> Self {
        Catalog { entries }
    }
    pub fn get(&self, id: &str) -> Option<&RequirementSpec> {
        self.entries
            .iter()
            .find(|(s, _)| s.id == id)
            .map(|(s, _)| s)
    }
    pub fn origin(&self, id: &str) -> Option<Origin> {
        self.entries
            .iter()
            .find(|(s, _)| s.id == id)
            .map(|(_, o)| *o)
    }
    pub fn specs(&self) -> impl Iterator<Item = &RequirementSpec> {
        self.entries.iter().map(|(s, _)| s)
    }
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// The measurements the declared [`Measure`]s find in `results`, labelled with the server
    /// each requirement is about.
    pub fn measurements(&self, target: &Target, results: &[RequirementResult]) -> Vec<Measurement> {
        let mut out = Vec::new();
        for r in results {
            let Some(spec) = self.get(&r.id) else {
                continue;
            };
            let server = spec.server.and_then(|p| target.endpoint(p));
            for m in &spec.measures {
                measure(m, r, server, &mut out);
            }
        }
        out
    }
}

fn measure(
    m: &Measure,
    r: &RequirementResult,
    server: Option<&Endpoint>,
    out: &mut Vec<Measurement>,
) {
    match (m, server) {
        (Measure::CertificateExpiry { key }, Some(ep)) => {
            let not_after = r
                .evidence
                .get(key)
                .and_then(Value::as_str)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            if let Some(t) = not_after {
                out.push(Measurement::CertificateExpiry {
                    requirement: r.id.clone(),
                    server: ep.host.clone(),
                    port: ep.port,
                    not_after_unix: t.unix_timestamp(),
                });
            }
        }
        (
            Measure::CertificateInfo {
                subject,
                issuer,
                serial,
                fingerprint_sha256,
            },
            Some(ep),
        ) => {
            let text = |key: &str| r.evidence.get(key).and_then(Value::as_str);
            // All four, or no series: a partial identity would be a different series each run.
            if let (Some(subject), Some(issuer), Some(serial), Some(fingerprint)) = (
                text(subject),
                text(issuer),
                text(serial),
                text(fingerprint_sha256),
            ) {
                out.push(Measurement::CertificateInfo {
                    requirement: r.id.clone(),
                    server: ep.host.clone(),
                    port: ep.port,
                    subject: subject.to_string(),
                    issuer: issuer.to_string(),
                    serial: serial.to_string(),
                    fingerprint_sha256: fingerprint.to_string(),
                });
            }
        }
        (Measure::TlsVersions { key }, Some(ep)) if r.status != Status::Skip => {
            if let Some(Value::Object(versions)) = r.evidence.get(key) {
                for (version, accepted) in versions {
                    if let Some(b) = accepted.as_bool() {
                        out.push(Measurement::TlsVersion {
                            server: ep.host.clone(),
                            port: ep.port,
                            version: version.clone(),
                            accepted: b,
                        });
                    }
                }
            }
        }
        (Measure::ConcurrentConnections { key }, _) => {
            if let Some(n) = r.evidence.get(key).and_then(Value::as_f64) {
                out.push(Measurement::ConcurrentConnections {
                    requirement: r.id.clone(),
                    achieved: n,
                });
            }
        }
        (Measure::RoundtripLatency { key }, _)
            if matches!(r.status, Status::Pass | Status::Warn) =>
        {
            if let Some(seconds) = r.evidence.get(key).and_then(Value::as_f64) {
                out.push(Measurement::RoundtripLatency {
                    requirement: r.id.clone(),
                    seconds,
                });
            }
        }
        _ => {}
    }
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
        let json = |r: &RequirementResult| serde_json::to_value(r).unwrap();
        let r = RequirementResult::not_configured("smtp.login", "no --smtp");
        assert_eq!(r.skip_reason(), Some(SkipReason::NotConfigured));
        assert_eq!(json(&r)["evidence"]["reason"], "not_configured");
        assert_eq!(r.prerequisite(), None);
        let r = RequirementResult::not_verified("imap.login", "deadline");
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        assert_eq!(
            RequirementResult::pass("imap.login", "ok").skip_reason(),
            None
        );
        // A foreign skip without a reason: a named prerequisite, else a gap.
        let foreign = |evidence: serde_json::Value| -> RequirementResult {
            serde_json::from_value(serde_json::json!({
                "id": "imap.folders", "status": "skip", "summary": "x", "evidence": evidence
            }))
            .unwrap()
        };
        let r = foreign(serde_json::json!({"prerequisite": "imap.login"}));
        assert_eq!(r.skip_reason(), Some(SkipReason::Prerequisite));
        assert_eq!(r.prerequisite(), Some("imap.login"));
        let mut r = foreign(serde_json::json!({}));
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        r.name_skip_reason();
        assert_eq!(json(&r)["evidence"]["reason"], "not_verified");
        let r = RequirementResult::skip("imap.folders", "imap.login", "x")
            .recast_skip(SkipReason::NotVerified);
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        assert!(json(&r)["evidence"].get("prerequisite").is_none());
    }

    #[test]
    fn typed_fields_round_trip_through_the_json_evidence() {
        let e = NetError::Timeout {
            waiting_for: "the greeting".into(),
            after: std::time::Duration::from_secs(1),
        };
        for r in [
            RequirementResult::skip("imap.folders", "imap.login", "x").with("count", 3),
            RequirementResult::fail("imap.reachable", "no", "fix").with_error(&e),
            // A `reason` that is not a skip's stays evidence (the certificate's trust reason).
            RequirementResult::fail("imap.certificate.trust", "no", "fix")
                .with("reason", "self_signed"),
        ] {
            let text = serde_json::to_string(&r).unwrap();
            let back: RequirementResult = serde_json::from_str(&text).unwrap();
            assert_eq!(back, r, "{text}");
            assert!(!back.evidence.contains_key("error_type"), "{text}");
            assert!(!back.evidence.contains_key("prerequisite"), "{text}");
        }
        let r = RequirementResult::fail("imap.reachable", "no", "fix").with_error(&e);
        assert_eq!(r.error_type(), Some(e.error_type()));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["evidence"]["error_type"], e.error_type());
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
    fn declared_measures_become_measurements() {
        let spec = |id: &str, m: Measure| {
            (
                RequirementSpec::new(id, "d").on(Protocol::Imap).measures(m),
                Origin::Builtin,
            )
        };
        let catalog = Catalog::new(vec![
            spec(
                "x.expiry",
                Measure::CertificateExpiry {
                    key: "not_after".into(),
                },
            ),
            spec(
                "x.versions",
                Measure::TlsVersions {
                    key: "versions".into(),
                },
            ),
            (
                RequirementSpec::new("x.sessions", "d").measures(Measure::ConcurrentConnections {
                    key: "achieved".into(),
                }),
                Origin::Builtin,
            ),
            (
                RequirementSpec::new("x.trip", "d").measures(Measure::RoundtripLatency {
                    key: "latency_seconds".into(),
                }),
                Origin::Builtin,
            ),
            (
                RequirementSpec::new("x.lost", "d").measures(Measure::RoundtripLatency {
                    key: "latency_seconds".into(),
                }),
                Origin::Builtin,
            ),
        ]);
        let target = crate::model::tests::target();
        let results = vec![
            RequirementResult::pass("x.expiry", "ok").with("not_after", "2027-01-01T00:00:00Z"),
            // Not declared: its evidence means nothing to the exporters.
            RequirementResult::pass("y.other", "ok").with("not_after", "2027-01-01T00:00:00Z"),
            RequirementResult::warn("x.versions", "weak", "r").with(
                "versions",
                serde_json::json!({"SSLv3": false, "TLSv1.0": true, "TLSv1.3": null}),
            ),
            RequirementResult::fail("x.sessions", "refused", "r").with("achieved", 3),
            RequirementResult::warn("x.trip", "slow", "r").with("latency_seconds", 75.5),
            // A message that never arrived has no latency to publish.
            RequirementResult::fail("x.lost", "lost", "r").with("latency_seconds", 9.0),
        ];
        let (host, port) = (target.imap.host.clone(), target.imap.port);
        assert_eq!(
            catalog.measurements(&target, &results),
            vec![
                Measurement::CertificateExpiry {
                    requirement: "x.expiry".into(),
                    server: host.clone(),
                    port,
                    not_after_unix: 1_798_761_600,
                },
                Measurement::TlsVersion {
                    server: host.clone(),
                    port,
                    version: "SSLv3".into(),
                    accepted: false,
                },
                Measurement::TlsVersion {
                    server: host,
                    port,
                    version: "TLSv1.0".into(),
                    accepted: true,
                },
                Measurement::ConcurrentConnections {
                    requirement: "x.sessions".into(),
                    achieved: 3.0,
                },
                Measurement::RoundtripLatency {
                    requirement: "x.trip".into(),
                    seconds: 75.5,
                },
            ]
        );
    }

    #[test]
    fn a_certificate_identity_needs_all_four_keys() {
        let keys = Measure::CertificateInfo {
            subject: "subject".into(),
            issuer: "issuer".into(),
            serial: "serial".into(),
            fingerprint_sha256: "fingerprint_sha256".into(),
        };
        let catalog = Catalog::new(vec![(
            RequirementSpec::new("x.expiry", "d")
                .on(Protocol::Imap)
                .measures(keys),
            Origin::Builtin,
        )]);
        let target = crate::model::tests::target();
        let full = RequirementResult::pass("x.expiry", "ok")
            .with("subject", "CN=a")
            .with("issuer", "CN=ca")
            .with("serial", "01")
            .with("fingerprint_sha256", "ab");
        assert_eq!(
            catalog.measurements(&target, std::slice::from_ref(&full)),
            vec![Measurement::CertificateInfo {
                requirement: "x.expiry".into(),
                server: target.imap.host.clone(),
                port: target.imap.port,
                subject: "CN=a".into(),
                issuer: "CN=ca".into(),
                serial: "01".into(),
                fingerprint_sha256: "ab".into(),
            }]
        );
        let mut partial = full;
        partial.evidence.remove("serial");
        assert!(catalog.measurements(&target, &[partial]).is_empty());
    }
}
