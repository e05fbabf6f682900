//! The status page: what an IT administrator without Grafana looks at. `/` lists every
//! mailbox with its verdict, the requirements that fail or warn with their remedies, and when
//! it was last checked; `/mailboxes/NAME` shows one mailbox's latest report and its last run's
//! protocol transcript; `/api/v1/mailboxes[/NAME]` is the same as JSON.
//!
//! Server-rendered HTML with no script: every string that comes from a server or a report
//! (greetings, certificate subjects, summaries) goes through [`html::escape`].

mod api;
pub(crate) mod html;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mailprobe_core::report::Report;

use crate::{BuildInfo, ReloadState};

/// One mailbox as the page shows it.
#[derive(Clone, Debug)]
pub struct MailboxStatus {
    /// The latest report; `None` until the mailbox's first check finished.
    pub report: Option<Arc<Report>>,
    /// Unix time the latest check finished.
    pub finished_unix: Option<f64>,
    /// The protocol transcript of the latest run, where the daemon keeps one.
    pub transcript: Option<Arc<str>>,
}

/// The latest report of every configured mailbox, fed by the daemon after each run.
#[derive(Debug, Default)]
pub struct StatusBoard {
    mailboxes: RwLock<BTreeMap<String, MailboxStatus>>,
}

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// A configured mailbox, shown as "not checked yet" until its first report.
    pub fn register(&self, mailbox: &str) {
        let mut map = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
        map.entry(mailbox.to_string())
            .or_insert_with(|| MailboxStatus {
                report: None,
                finished_unix: None,
                transcript: None,
            });
    }

    /// A finished run: its report, when it finished, and its transcript if one was kept.
    pub fn record(&self, report: &Report, finished_unix: f64, transcript: Option<Arc<str>>) {
        let status = MailboxStatus {
            report: Some(Arc::new(report.clone())),
            finished_unix: Some(finished_unix),
            transcript,
        };
        let mut map = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
        map.insert(report.mailbox.clone(), status);
    }

    /// A mailbox that a reload removed.
    pub fn forget(&self, mailbox: &str) {
        let mut map = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
        map.remove(mailbox);
    }

    /// Every mailbox, in name order.
    pub fn snapshot(&self) -> Vec<(String, MailboxStatus)> {
        let map = self.mailboxes.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// One mailbox; its transcript, when the board was given none, from the daemon's bounded
    /// store of last transcripts.
    pub fn get(&self, mailbox: &str) -> Option<MailboxStatus> {
        let map = self.mailboxes.read().unwrap_or_else(|e| e.into_inner());
        let mut status = map.get(mailbox).cloned()?;
        drop(map);
        if status.transcript.is_none() && status.report.is_some() {
            status.transcript =
                mailprobe_runtime::transcripts::TranscriptStore::shared().get(mailbox);
        }
        Some(status)
    }
}

/// What the page handlers read.
#[derive(Clone)]
pub(crate) struct PageState {
    pub board: Arc<StatusBoard>,
    pub reloads: Arc<ReloadState>,
    pub build: BuildInfo,
}

/// The page's routes, to be merged into the admin router (so that the admin server's TLS,
/// authentication and limits apply to them as to `/metrics`).
pub(crate) fn routes(state: PageState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/mailboxes/{name}", get(mailbox_page))
        .route("/api/v1/mailboxes", get(api::list))
        .route("/api/v1/mailboxes/{name}", get(api::one))
        .with_state(state)
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // No script, style only from the page itself: a string that escaped escaping
            // still could not run.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(state): State<PageState>) -> Response {
    let page = html::index(
        &state.board.snapshot(),
        &state.reloads,
        &state.build,
        now_unix(),
    );
    html_response(StatusCode::OK, page)
}

async fn mailbox_page(State(state): State<PageState>, Path(name): Path<String>) -> Response {
    match state.board.get(&name) {
        Some(status) => html_response(
            StatusCode::OK,
            html::mailbox(&name, &status, &state.build, now_unix()),
        ),
        None => html_response(StatusCode::NOT_FOUND, html::not_found(&name, &state.build)),
    }
}

#[cfg(test)]
mod tests;
