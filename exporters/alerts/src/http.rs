//! A small JSON POST client: hyper with rustls (ring) and the system roots, http and https.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct JsonClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl JsonClient {
    pub fn new(timeout: Duration) -> Self {
        let connector = mailprobe_telemetry::http::https_connector();
        JsonClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// POSTs `body` as JSON; Ok for a 2xx answer, else what went wrong.
    pub async fn post(
        &self,
        uri: &Uri,
        body: Vec<u8>,
        headers: &[(&'static str, &str)],
    ) -> Result<(), String> {
        let mut req = Request::post(uri.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("mailprobe/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let send = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                msg
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                    .trim()
                    .to_string();
                Err(format!("HTTP {status}: {text}"))
            }
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}
