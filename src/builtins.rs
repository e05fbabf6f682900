//! The built-in plugins, in run order (a plugin after those it depends on).

use std::sync::Arc;

use mailprobe_core::Registry;

pub fn registry() -> Result<Registry, String> {
    let mut r = Registry::new();
    r.register(Arc::new(mailprobe_plugin_reachability::Reachability))
        .map_err(|e| e.to_string())?;
    // After the imap and smtp plugins, whose TLS handshakes tls and certificate reuse.
    r.register(Arc::new(mailprobe_plugin_tls::Tls))
        .map_err(|e| e.to_string())?;
    r.register(Arc::new(mailprobe_plugin_certificate::Certificate))
        .map_err(|e| e.to_string())?;
    Ok(r)
}
