//! Compliance transitions per mailbox: an alert fires after `alert_after` consecutive
//! non-compliant runs, and resolves on the first compliant run after that. One blip below
//! `alert_after` never fires, so it never resolves either.
//!
//! An `incomplete` run judges nothing: it neither counts towards nor breaks a run of
//! non-compliant results, and never fires or resolves the non-compliance alert. A separate
//! alert (`MailboxCheckIncomplete`) fires after `alert_after` incomplete runs in a row and
//! resolves on the first run that is judged again (compliant or non-compliant).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use mailprobe_core::Status;
use mailprobe_core::report::Report;
use mailprobe_core::requirement::Verdict;

/// A change of a mailbox's alerting state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The mailbox turned non-compliant (for `alert_after` runs in a row).
    Fired,
    /// It is compliant again.
    Resolved,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Fired => "firing",
            Transition::Resolved => "resolved",
        }
    }
}

/// A requirement that failed in the run, with what an administrator needs to act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing {
    pub id: String,
    pub summary: String,
    pub remedy: Option<String>,
}

/// A mailbox's alerting state after one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Compliance {
    pub mailbox: String,
    /// The alert is active (fired and not resolved).
    pub firing: bool,
    /// Set on the run that changed `firing`.
    pub transition: Option<Transition>,
    /// Non-compliant runs in a row, this one included.
    pub consecutive_failures: u32,
    /// When the active alert fired (kept while it is active, and on the resolving run).
    pub firing_since: Option<SystemTime>,
    /// The requirements that failed in this run.
    pub failing: Vec<Failing>,
    /// This run's verdict.
    pub verdict: Verdict,
    /// The incomplete alert is active.
    pub incomplete_firing: bool,
    /// Set on the run that changed `incomplete_firing`.
    pub incomplete_transition: Option<Transition>,
    /// Incomplete runs in a row, this one included.
    pub consecutive_incomplete: u32,
    /// When the active incomplete alert fired (kept on the resolving run).
    pub incomplete_since: Option<SystemTime>,
    /// The requirements this run could not verify, with why.
    pub not_verified: Vec<Failing>,
}

#[derive(Clone, Debug, Default)]
struct MailboxState {
    consecutive_failures: u32,
    firing_since: Option<SystemTime>,
    consecutive_incomplete: u32,
    incomplete_since: Option<SystemTime>,
}

/// Tracks every mailbox's state across runs.
#[derive(Debug)]
pub struct ComplianceTracker {
    alert_after: u32,
    states: Mutex<HashMap<String, MailboxState>>,
}

impl ComplianceTracker {
    /// `alert_after`: consecutive non-compliant runs before an alert fires (at least 1).
    pub fn new(alert_after: u32) -> Self {
        ComplianceTracker {
            alert_after: alert_after.max(1),
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a mailbox that is no longer configured: added back later, it starts afresh.
    pub fn forget(&self, mailbox: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.remove(mailbox);
    }

    /// Takes one run's report (at time `now`) and returns the mailbox's state after it.
    pub fn observe(&self, report: &Report, now: SystemTime) -> Compliance {
        let failing: Vec<Failing> = report
            .requirements
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| Failing {
                id: r.id.clone(),
                summary: r.summary.clone(),
                remedy: r.remedy.clone(),
            })
            .collect();
        let not_verified: Vec<Failing> = report
            .not_verified()
            .map(|r| Failing {
                id: r.id.clone(),
                summary: r.summary.clone(),
                remedy: None,
            })
            .collect();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let st = states.entry(report.mailbox.clone()).or_default();
        let mut transition = None;
        let mut incomplete_transition = None;
        let since;
        let incomplete_since;
        match report.verdict {
            Verdict::NonCompliant => {
                st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                if st.firing_since.is_none() && st.consecutive_failures >= self.alert_after {
                    st.firing_since = Some(now);
                    transition = Some(Transition::Fired);
                }
                since = st.firing_since;
            }
            Verdict::Compliant => {
                st.consecutive_failures = 0;
                since = st.firing_since.take();
                if since.is_some() {
                    transition = Some(Transition::Resolved);
                }
            }
            // No judgement: the non-compliance state stays as it was.
            Verdict::Incomplete => since = st.firing_since,
        }
        if report.verdict == Verdict::Incomplete {
            st.consecutive_incomplete = st.consecutive_incomplete.saturating_add(1);
            if st.incomplete_since.is_none() && st.consecutive_incomplete >= self.alert_after {
                st.incomplete_since = Some(now);
                incomplete_transition = Some(Transition::Fired);
            }
            incomplete_since = st.incomplete_since;
        } else {
            st.consecutive_incomplete = 0;
            incomplete_since = st.incomplete_since.take();
            if incomplete_since.is_some() {
                incomplete_transition = Some(Transition::Resolved);
            }
        }
        Compliance {
            mailbox: report.mailbox.clone(),
            firing: st.firing_since.is_some(),
            transition,
            consecutive_failures: st.consecutive_failures,
            firing_since: since,
            failing,
            verdict: report.verdict,
            incomplete_firing: st.incomplete_since.is_some(),
            incomplete_transition,
            consecutive_incomplete: st.consecutive_incomplete,
            incomplete_since,
            not_verified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::RequirementResult;
    use mailprobe_core::report::Servers;

    fn report(ok: bool) -> Report {
        judged(if ok { 'c' } else { 'n' })
    }

    /// A report with the verdict `c`ompliant, `n`on-compliant or `i`ncomplete.
    fn judged(v: char) -> Report {
        let r = match v {
            'c' => RequirementResult::pass("imap.login", "ok"),
            'n' => RequirementResult::fail("imap.login", "refused", "check the password"),
            _ => RequirementResult::not_verified("imap.login", "plugin imap panicked"),
        };
        Report {
            schema: "mailprobe.report/v1".into(),
            mailbox: "m".into(),
            profile: "hubspot".into(),
            verdict: Verdict::of(std::slice::from_ref(&r)),
            started_at: String::new(),
            duration_ms: 1,
            requirements: vec![r],
            servers: Servers::default(),
            measures: Vec::new(),
        }
    }

    #[test]
    fn fires_after_alert_after_runs_and_resolves_once() {
        let t = ComplianceTracker::new(2);
        let now = SystemTime::now();
        let seq: Vec<_> = [true, false, true, false, false, false, true, true]
            .into_iter()
            .map(|ok| t.observe(&report(ok), now).transition)
            .collect();
        use Transition::*;
        assert_eq!(
            seq,
            vec![
                None,
                None,
                None,
                None,
                Some(Fired),
                None,
                Some(Resolved),
                None
            ]
        );
    }

    #[test]
    fn incomplete_runs_never_fire_or_resolve_non_compliance_but_fire_their_own_alert() {
        let t = ComplianceTracker::new(2);
        let now = SystemTime::now();
        let seq: Vec<_> = "nninincciiic"
            .chars()
            .map(|v| {
                let c = t.observe(&judged(v), now);
                (c.transition, c.incomplete_transition, c.firing)
            })
            .collect();
        use Transition::*;
        assert_eq!(
            seq,
            vec![
                (None, None, false),
                (Some(Fired), None, true),
                (None, None, true),            // i: still firing, not resolved
                (None, None, true),            // n
                (None, None, true),            // i
                (None, None, true),            // n
                (Some(Resolved), None, false), // c
                (None, None, false),           // c
                (None, None, false),           // i: one is below alert_after
                (None, Some(Fired), false),    // i
                (None, None, false),           // i
                (None, Some(Resolved), false), // c: judged again
            ]
        );
        // An incomplete run between two failing ones does not break the streak.
        let t = ComplianceTracker::new(2);
        assert_eq!(t.observe(&judged('n'), now).transition, None);
        let c = t.observe(&judged('i'), now);
        assert_eq!(c.not_verified[0].id, "imap.login");
        assert_eq!(t.observe(&judged('n'), now).transition, Some(Fired));
    }

    #[test]
    fn a_forgotten_mailbox_starts_afresh() {
        let t = ComplianceTracker::new(1);
        let now = SystemTime::now();
        assert_eq!(
            t.observe(&report(false), now).transition,
            Some(Transition::Fired)
        );
        t.forget("m");
        // Back after a reload: its old alert is not resolved by it, nor fired twice.
        assert_eq!(t.observe(&report(true), now).transition, None);
        assert_eq!(
            t.observe(&report(false), now).transition,
            Some(Transition::Fired)
        );
    }

    #[test]
    fn carries_the_failing_requirements_and_remedies() {
        let t = ComplianceTracker::new(1);
        let c = t.observe(&report(false), SystemTime::now());
        assert!(c.firing);
        assert_eq!(c.failing[0].id, "imap.login");
        assert_eq!(c.failing[0].remedy.as_deref(), Some("check the password"));
    }
}
