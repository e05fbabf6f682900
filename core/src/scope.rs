//! What the code of one run reads from wherever it runs, without a parameter threaded through
//! every plugin and protocol engine: which IP version its names resolve to, and the transcript
//! it records into. The runner sets the scope around the run; code outside a run (a unit test,
//! a dynamic plugin's own process) sees the defaults: any IP version, no transcript.

use std::future::Future;
use std::sync::Arc;

use crate::net::IpVersion;
use crate::transcript::Transcript;

/// The settings of one run that every layer may need.
#[derive(Clone, Debug, Default)]
pub struct RunScope {
    pub ip_version: IpVersion,
    pub transcript: Option<Arc<Transcript>>,
}

tokio::task_local! {
    static SCOPE: RunScope;
}

/// Runs `fut` within `scope`.
pub async fn within<F: Future>(scope: RunScope, fut: F) -> F::Output {
    SCOPE.scope(scope, fut).await
}

/// The IP version of the current run (any outside a run).
pub fn ip_version() -> IpVersion {
    SCOPE.try_with(|s| s.ip_version).unwrap_or_default()
}

/// The transcript of the current run, if it keeps one.
pub fn transcript() -> Option<Arc<Transcript>> {
    SCOPE.try_with(|s| s.transcript.clone()).ok().flatten()
}

/// Records an event in the current run's transcript, if it keeps one; the text is built only
/// then.
pub fn note(text: impl FnOnce() -> String) {
    if let Some(t) = transcript() {
        t.note(&text());
    }
}
