//! `/api/v1/mailboxes` and `/api/v1/mailboxes/NAME`: the status page as JSON. A mailbox's
//! report is the JSON report (`mailprobe.report/v1`) unchanged.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailprobe_core::requirement::Status;
use serde_json::{Value, json};

use super::html::timestamp;
use super::{MailboxStatus, PageState};

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
    )
        .into_response()
}

fn problem_list(status: &MailboxStatus, wanted: Status) -> Value {
    let Some(report) = &status.report else {
        return json!([]);
    };
    report
        .requirements
        .iter()
        .filter(|r| r.status == wanted)
        .map(|r| json!({"id": r.id, "summary": r.summary, "remedy": r.remedy}))
        .collect()
}

fn summary(name: &str, status: &MailboxStatus) -> Value {
    let report = status.report.as_deref();
    json!({
        "mailbox": name,
        "verdict": report.map(|r| r.verdict.as_str()),
        "profile": report.map(|r| r.profile.as_str()),
        "last_check": status.finished_unix.map(timestamp),
        "failing": problem_list(status, Status::Fail),
        "warning": problem_list(status, Status::Warn),
        "not_verified": report.map(|r| r.not_verified().map(|x| json!({"id": x.id, "summary": x.summary})).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

fn config(state: &PageState) -> Value {
    json!({
        "last_load_successful": state.reloads.successful(),
        "last_success": timestamp(state.reloads.last_success()),
        "error": state.reloads.last_error(),
    })
}

pub(super) async fn list(State(state): State<PageState>) -> Response {
    let mailboxes: Vec<Value> = state
        .board
        .snapshot()
        .iter()
        .map(|(name, s)| summary(name, s))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "version": state.build.version,
            "config": config(&state),
            "mailboxes": mailboxes,
        }),
    )
}

pub(super) async fn one(State(state): State<PageState>, Path(name): Path<String>) -> Response {
    match state.board.get(&name) {
        Some(status) => {
            let mut v = summary(&name, &status);
            v["report"] = status
                .report
                .as_deref()
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or(Value::Null);
            v["transcript"] = status
                .transcript
                .as_deref()
                .map_or(Value::Null, |t| Value::String(t.to_string()));
            json_response(StatusCode::OK, &v)
        }
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no mailbox named {name:?} is configured")}),
        ),
    }
}
