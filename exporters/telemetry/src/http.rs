//! The HTTP(S) connector every exporter that talks HTTP uses (OTLP over http/protobuf,
//! Alertmanager, the webhook): rustls on ring with the system's roots.

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// A connector for `http://` and `https://` URLs. Without system roots, `https` receivers fail
/// to verify while `http` ones still work.
pub fn https_connector() -> HttpsConnector<HttpConnector> {
    match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .build(),
    }
}
