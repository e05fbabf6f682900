//! Unit tests of the host: overrun counting, manifest checks, applying a plugin's answer.

use super::*;

#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<(String, u32, bool)>>);

impl HealthSink for Heard {
    fn loaded(&self, _plugin: &str) {}
    fn overrun(&self, plugin: &str, overruns: u32, disabled: bool) {
        self.0
            .lock()
            .unwrap()
            .push((plugin.to_string(), overruns, disabled));
    }
}

#[test]
fn an_unfinished_call_counts_as_an_overrun_and_the_third_disables() {
    let overruns = Arc::new(AtomicU32::new(0));
    let heard = Arc::new(Heard::default());
    let guard = |finished| OverrunGuard {
        overruns: Arc::clone(&overruns),
        finished,
        plugin: "p".into(),
        health: Some(HealthHook(heard.clone())),
    };
    drop(guard(true));
    assert_eq!(overruns.load(Ordering::Relaxed), 0);
    drop(guard(false));
    drop(guard(false));
    assert_eq!(overruns.load(Ordering::Relaxed), 2);
    drop(guard(false));
    assert_eq!(
        *heard.0.lock().unwrap(),
        vec![
            ("p".to_string(), 1, false),
            ("p".to_string(), 2, false),
            ("p".to_string(), 3, true)
        ]
    );
}

fn manifest(name: &str, ids: &[&str]) -> Manifest {
    Manifest {
        name: name.into(),
        version: "1".into(),
        requirements: ids.iter().map(|i| Requirement::new(*i, "d")).collect(),
        path: PathBuf::from("/p/libx.so"),
    }
}

#[test]
fn builtin_requirement_ids_are_refused_naming_the_file() {
    let builtins = Catalog::new(vec![(
        RequirementSpec::new("imap.login", "d"),
        Origin::Builtin,
    )]);
    let m = manifest("x", &["x.ok", "imap.login"]);
    let ids: Vec<String> = m.requirements.iter().map(|r| r.id.clone()).collect();
    let e = refuse_builtin_ids(&builtins, &ids, &m.path).unwrap_err();
    assert!(matches!(e, LoadError::BuiltinClash { .. }));
    let s = e.to_string();
    assert!(s.contains("/p/libx.so") && s.contains("imap.login"), "{s}");
}

#[test]
fn names_and_ids_are_checked() {
    assert!(validate(&manifest("pop3", &["pop3.login"])).is_ok());
    assert!(validate(&manifest("Pop 3", &["pop3.login"])).is_err());
    assert!(validate(&manifest("pop3", &[])).is_err());
    assert!(validate(&manifest("pop3", &["pop3.login", "pop3.login"])).is_err());
    assert!(validate(&manifest("pop3", &["pop3..x."])).is_err());
}

#[test]
fn apply_keeps_declared_results_and_files_steps_and_facts_under_the_plugin() {
    use mailprobe_core::net::Budgets;
    use mailprobe_core::tls::Trust;
    use mailprobe_core::{Profile, Protocol, Secret, Target};

    let target = Target {
        mailbox: "m".into(),
        profile: Arc::new(Profile::builtin("hubspot").unwrap()),
        imap: mailprobe_core::model::endpoint(Protocol::Imap, "h", None).unwrap(),
        smtp: None,
        user: "u".into(),
        password: Secret::new("pw"),
        ca_file: None,
        allow_insecure_cert: false,
        timeout: std::time::Duration::from_secs(5),
        roundtrip: None,
    };
    let trust = Trust::load(None).unwrap();
    let mut cx = RunContext::new(Arc::new(target), trust, Arc::new(Budgets::new(2)));
    let plugin = DynamicPlugin {
        manifest: manifest("x", &["x.ok"]),
        config: Value::Null,
        runner: Runner::Process {
            exe: PathBuf::from("/nonexistent"),
        },
        overruns: Arc::default(),
        health: None,
    };
    let context = plugin.context(&cx);
    assert_eq!(context.password, "pw");
    assert!(!format!("{context:?}").contains("pw\""), "{context:?}");

    let text = serde_json::json!({
        "results": [
            {"id": "x.ok", "status": "pass", "summary": "fine"},
            {"id": "imap.login", "status": "pass", "summary": "forged"}
        ],
        "steps": [{
            "plugin": "someone-else", "name": "connect", "protocol": null,
            "attributes": {}, "start": 0, "duration": {"secs": 0, "nanos": 5},
            "error_type": null, "error": null
        }],
        "facts": {"k": 1},
        "error": "half done"
    })
    .to_string();
    let e = plugin.apply(&mut cx, &text).unwrap_err();
    assert_eq!(e, PluginError::Crashed("half done".into()));
    assert_eq!(cx.results().len(), 1);
    assert_eq!(cx.results()[0].id, "x.ok");
    assert_eq!(cx.steps()[0].plugin, "x");
    assert_eq!(cx.facts.get::<DynamicFacts>().unwrap().0["x"]["k"], 1);
    assert!(plugin.apply(&mut cx, "not json").is_err());
}

#[test]
fn a_missing_directory_is_named() {
    let e = libraries(Path::new("/nonexistent/plugins")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/plugins"), "{e}");
}
