//! The OpenTelemetry resource: `service.name=mailprobe`, `service.version`, whatever
//! `OTEL_RESOURCE_ATTRIBUTES` says, the Kubernetes pod facts the downward API puts in the
//! environment, and a `service.instance.id` that tells the replicas and shards apart (a
//! collector's Prometheus exporters make the `instance` label of it: without it every shard
//! lands in one series group and a stuck one is invisible).

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

const INSTANCE_ID: &str = "service.instance.id";

/// The default `service.instance.id`: the pod name (or else the host name), followed by the
/// shard when `MAILPROBE_SHARD` names one, e.g. `mailprobe-2/shard-2-of-3`. None when
/// `OTEL_RESOURCE_ATTRIBUTES` sets it (the SDK applies that one) or no name is known.
pub fn instance_id(env: &dyn Environment) -> Option<String> {
    let set_by_user = env
        .var("OTEL_RESOURCE_ATTRIBUTES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, _)| k.trim() == INSTANCE_ID);
    if set_by_user {
        return None;
    }
    let var = |names: &[&str]| {
        names.iter().find_map(|n| {
            env.var(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
    };
    let base = var(&["K8S_POD_NAME", "POD_NAME", "HOSTNAME"]).or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
    })?;
    // The shard as the daemon reads it; a value it would refuse adds nothing here (the daemon
    // reports it and stops).
    let shard =
        var(&["MAILPROBE_SHARD"]).and_then(|s| s.parse::<mailprobe_runtime::shard::Shard>().ok());
    Some(match shard {
        Some(s) => format!("{base}/shard-{}-of-{}", s.index(), s.count()),
        None => base,
    })
}

/// The attributes mailprobe adds itself (the SDK adds `OTEL_RESOURCE_ATTRIBUTES` and the
/// `telemetry.sdk.*` ones).
pub fn own_attributes(version: &str, env: &dyn Environment) -> Vec<KeyValue> {
    let mut attrs = vec![KeyValue::new("service.version", version.to_string())];
    if let Some(id) = instance_id(env) {
        attrs.push(KeyValue::new(INSTANCE_ID, id));
    }
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

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn instance_of(vars: &[(&str, &str)]) -> Option<String> {
        let r = build("1.2.3", &env(vars));
        r.get(&opentelemetry::Key::from_static_str(INSTANCE_ID))
            .map(|v| v.to_string())
    }

    #[test]
    fn service_instance_id_is_the_pod_and_shard() {
        // A StatefulSet shard: the pod name, and the shard, whichever form MAILPROBE_SHARD has.
        assert_eq!(
            instance_of(&[("POD_NAME", "mailprobe-2"), ("MAILPROBE_SHARD", "2/3")]).as_deref(),
            Some("mailprobe-2/shard-2-of-3")
        );
        assert_eq!(
            instance_of(&[
                ("K8S_POD_NAME", "mailprobe-1"),
                ("MAILPROBE_SHARD", "mailprobe-1/3")
            ])
            .as_deref(),
            Some("mailprobe-1/shard-1-of-3")
        );
        // A sidecar: the pod name alone; outside Kubernetes: the host name.
        assert_eq!(
            instance_of(&[("POD_NAME", "crm-7d9f-x2x")]).as_deref(),
            Some("crm-7d9f-x2x")
        );
        assert_eq!(
            instance_of(&[("HOSTNAME", "probe-host"), ("MAILPROBE_SHARD", "0/2")]).as_deref(),
            Some("probe-host/shard-0-of-2")
        );
        // An unusable shard adds nothing (the daemon itself refuses it).
        assert_eq!(
            instance_of(&[("POD_NAME", "p"), ("MAILPROBE_SHARD", "x/0")]).as_deref(),
            Some("p")
        );
    }

    #[test]
    fn otel_resource_attributes_overrides_the_instance_id() {
        // The SDK applies OTEL_RESOURCE_ATTRIBUTES from the process environment; mailprobe must
        // then add no competing value of its own.
        let vars = env(&[
            ("POD_NAME", "mailprobe-0"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, service.instance.id=custom-id",
            ),
        ]);
        assert_eq!(instance_id(&vars), None);
        assert!(
            own_attributes("1.2.3", &vars)
                .iter()
                .all(|kv| kv.key.as_str() != INSTANCE_ID)
        );
        // Another attribute in OTEL_RESOURCE_ATTRIBUTES leaves the default in place.
        let vars = env(&[
            ("POD_NAME", "mailprobe-0"),
            ("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=mailprobe-0"),
        ]);
        assert_eq!(instance_id(&vars).as_deref(), Some("mailprobe-0"));
    }
}
