//! The OpenTelemetry resource: `service.name=mailprobe`, `service.version`, whatever
//! `OTEL_RESOURCE_ATTRIBUTES` says, and the Kubernetes pod facts the downward API puts in the
//! environment.

use mailprobe_core::secret::Environment;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

/// Downward-API variables (set them in the pod spec with `fieldRef`) and the resource
/// attributes they become. The first variable set wins; the `POD_*` names are those of
/// `deploy/kubernetes`. `OTEL_RESOURCE_ATTRIBUTES` works too (the SDK reads it).
pub const K8S_VARS: &[(&[&str], &str)] = &[
    (&["K8S_POD_NAME", "POD_NAME"], "k8s.pod.name"),
    (&["K8S_POD_UID", "POD_UID"], "k8s.pod.uid"),
    (
        &["K8S_NAMESPACE_NAME", "POD_NAMESPACE"],
        "k8s.namespace.name",
    ),
    (&["K8S_NODE_NAME", "NODE_NAME"], "k8s.node.name"),
];

/// The attributes mailprobe adds itself (the SDK adds `OTEL_RESOURCE_ATTRIBUTES` and the
/// `telemetry.sdk.*` ones).
pub fn own_attributes(version: &str, env: &dyn Environment) -> Vec<KeyValue> {
    let mut attrs = vec![KeyValue::new("service.version", version.to_string())];
    for (vars, key) in K8S_VARS {
        if let Some(v) = vars
            .iter()
            .find_map(|var| env.var(var).filter(|v| !v.trim().is_empty()))
        {
            attrs.push(KeyValue::new(*key, v));
        }
    }
    attrs
}

/// The resource of every signal. `service.name` is always `mailprobe`.
pub fn build(version: &str, env: &dyn Environment) -> Resource {
    Resource::builder()
        .with_attributes(own_attributes(version, env))
        .with_service_name("mailprobe")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn kubernetes_variables_become_attributes() {
        let env: HashMap<String, String> = [
            ("K8S_POD_NAME".to_string(), "mailprobe-7d9f".to_string()),
            ("POD_NAMESPACE".to_string(), "monitoring".to_string()),
        ]
        .into();
        let r = build("1.2.3", &env);
        let get = |k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("mailprobe"));
        assert_eq!(get("service.version").as_deref(), Some("1.2.3"));
        assert_eq!(get("k8s.pod.name").as_deref(), Some("mailprobe-7d9f"));
        assert_eq!(get("k8s.namespace.name").as_deref(), Some("monitoring"));
        assert_eq!(get("k8s.node.name"), None);
    }
}
