//! The built-in plugins, in run order (a plugin after those it depends on).

use std::path::Path;
use std::sync::Arc;

use mailprobe_core::Registry;
use mailprobe_plugin_host::LoadOptions;

pub fn registry() -> Result<Registry, String> {
    let mut r = Registry::new();
    r.register(Arc::new(mailprobe_plugin_reachability::Reachability))
        .map_err(|e| e.to_string())?;
    r.register(Arc::new(mailprobe_plugin_imap::Imap))
        .map_err(|e| e.to_string())?;
    r.register(Arc::new(mailprobe_plugin_smtp::Smtp))
        .map_err(|e| e.to_string())?;
    // After the imap and smtp plugins, whose TLS handshakes tls and certificate reuse.
    r.register(Arc::new(mailprobe_plugin_tls::Tls))
        .map_err(|e| e.to_string())?;
    r.register(Arc::new(mailprobe_plugin_certificate::Certificate))
        .map_err(|e| e.to_string())?;
    r.register(Arc::new(mailprobe_plugin_connlimit::ConnLimit))
        .map_err(|e| e.to_string())?;
    Ok(r)
}

/// The built-ins, then the dynamic plugins of `dir` (every `*.so` in it), which run after them.
pub fn registry_with_dynamic(dir: Option<&Path>, opts: &LoadOptions) -> Result<Registry, String> {
    let mut r = registry()?;
    if let Some(dir) = dir {
        mailprobe_plugin_host::register_dir(&mut r, dir, opts).map_err(|e| e.to_string())?;
    }
    Ok(r)
}

/// The built-ins and the dynamic plugins of a configuration file's `plugins` section.
pub fn registry_for_config(config: &mailprobe_core::config::Config) -> Result<Registry, String> {
    let Some(p) = &config.plugins else {
        return registry();
    };
    if p.dir.is_none() && !p.settings.is_empty() {
        return Err("plugins.settings is given but plugins.dir is not; add plugins.dir".into());
    }
    registry_with_dynamic(p.dir.as_deref(), &LoadOptions::from(p))
        .map_err(|e| format!("plugins: {e}"))
}
