//! The configuration reference, kept next to the structs it documents and printed by
//! `mailprobe config-reference` into `docs/configuration.md`. A test checks both ways: every
//! key here is one the parser accepts, and every key the parser accepts is here (serde lists
//! them when it refuses an unknown one).

use std::fmt::Write as _;

/// One documented key.
pub struct Key {
    pub key: &'static str,
    pub default: &'static str,
    pub bounds: &'static str,
    pub meaning: &'static str,
    /// A value that parses, for the completeness test.
    pub example: &'static str,
}

/// A table of keys: a section of the file.
pub struct Section {
    pub title: &'static str,
    /// Where it sits in the file (`""` for the top level).
    pub path: &'static str,
    pub keys: &'static [Key],
}

const fn key(
    key: &'static str,
    default: &'static str,
    bounds: &'static str,
    meaning: &'static str,
    example: &'static str,
) -> Key {
    Key {
        key,
        default,
        bounds,
        meaning,
        example,
    }
}

pub const SECTIONS: &[Section] = &[
    Section {
        title: "Top level",
        path: "",
        keys: &[
            key(
                "interval",
                "`5m`",
                "`1s` to `24h`",
                "how often each mailbox is checked; up to 10 % jitter is added",
                "5m",
            ),
            key(
                "timeout",
                "`30s`",
                "`1s` to `10m`",
                "deadline for one mailbox's whole check; every duration key also takes a bare number of seconds (`30`)",
                "30s",
            ),
            key(
                "concurrency",
                "`32`",
                "1 to 10000",
                "mailboxes checked at once",
                "32",
            ),
            key(
                "server_connections",
                "`8`",
                "2 to 100",
                "connections the probe may hold at once to one server address (per protocol), across all mailboxes and users; host names and ports of one address share it. Besides this cap, the probe never holds more connections for one user to one address than the profile's client does (3 IMAP, 2 SMTP): mailboxes of one user take turns, those of different users do not",
                "8",
            ),
            key(
                "ip_version",
                "`any`",
                "`4`, `6` or `any`",
                "which addresses of the servers' names are checked: with `any`, every address a name resolves to (at most 8, one after the other), and a requirement fails when it fails at any of them, naming the address; `4` or `6` checks only the addresses of that version. A mailbox's `connect_to` is its one address. `run` reads it at start: a reload that changes it says it takes effect at the next restart",
                "any",
            ),
            key(
                "cert_warn_days",
                "the profile's (30 for `hubspot`)",
                "0 to 3650",
                "a certificate that expires in fewer days is a warning (`*.certificate.expiry`); a mailbox's own key overrides it",
                "30",
            ),
            key(
                "cert_crit_days",
                "`0` (only an expired certificate fails)",
                "below `cert_warn_days`",
                "a certificate that expires in fewer days fails, as an expired one does; a mailbox's own key overrides it",
                "7",
            ),
            key(
                "listen",
                "`127.0.0.1:9925`",
                "an address and port",
                "`/metrics`, `/healthz`, `/readyz` and `/-/reload`",
                "127.0.0.1:9925",
            ),
            key("otlp", "none", "", "the OTLP exporter (below)", "{}"),
            key(
                "alerts",
                "none",
                "",
                "Alertmanager and the webhook (below)",
                "{}",
            ),
            key("plugins", "none", "", "dynamic check plugins (below)", "{}"),
            key(
                "profiles",
                "none",
                "each a `name` (not a built-in one), `extends: hubspot` and only the keys that differ; unknown keys and requirement IDs are errors",
                "profiles of your own, for another CRM or client: the client model (versions, suites, name rules, key sizes, signature algorithms, SASL), requirements, connection counts, unsupported software, certificate warning days; see docs/client-model.md",
                "[]",
            ),
            key(
                "cadence",
                "none (everything proved on every run)",
                "",
                "how long a proof of what rarely changes holds in `run` (below); `check` always proves everything",
                "{}",
            ),
            key(
                "mailboxes",
                "required",
                "at least one; unique names",
                "the mailboxes to check (below)",
                "[]",
            ),
        ],
    },
    Section {
        title: "`otlp`",
        path: "otlp",
        keys: &[
            key(
                "endpoint",
                "`OTEL_EXPORTER_OTLP_ENDPOINT`",
                "a URL",
                "the collector, e.g. `http://127.0.0.1:4317`",
                "http://127.0.0.1:4317",
            ),
            key(
                "protocol",
                "`grpc`",
                "`grpc` or `http/protobuf`",
                "the OTLP transport",
                "grpc",
            ),
            key(
                "headers",
                "none",
                "a map",
                "extra headers, e.g. an API key (never logged)",
                "{}",
            ),
            key(
                "export_interval",
                "`OTEL_METRIC_EXPORT_INTERVAL`, else `60s`",
                "a duration",
                "how often metrics are exported",
                "60s",
            ),
        ],
    },
    Section {
        title: "`alerts`",
        path: "alerts",
        keys: &[
            key(
                "alertmanager",
                "none",
                "a URL",
                "Alertmanager's base URL; alerts go to `/api/v2/alerts`",
                "http://127.0.0.1:9093",
            ),
            key(
                "webhook",
                "none",
                "a URL",
                "receives the JSON report of every transition",
                "http://127.0.0.1:8080/hook",
            ),
            key(
                "alert_after",
                "`1`",
                "1 to 1000",
                "consecutive failing (or incomplete) runs before an alert fires",
                "2",
            ),
        ],
    },
    Section {
        title: "`plugins`",
        path: "plugins",
        keys: &[
            key(
                "dir",
                "none",
                "a directory",
                "load every `*.so` of it as a dynamic check plugin",
                "/usr/lib/mailprobe/plugins",
            ),
            key(
                "isolation",
                "`in-process`",
                "`in-process` or `process`",
                "how plugins run; `process` runs each call in a child, so a crash fails only the plugin",
                "process",
            ),
            key(
                "settings",
                "none",
                "a map by plugin name",
                "per plugin: `isolation` and its own `config` (below)",
                "{}",
            ),
        ],
    },
    Section {
        title: "`plugins.settings.NAME`",
        path: "plugins.settings.example",
        keys: &[
            key(
                "isolation",
                "`plugins.isolation`",
                "`in-process` or `process`",
                "this plugin's isolation",
                "process",
            ),
            key(
                "config",
                "none",
                "any YAML value",
                "the plugin's own configuration",
                "{}",
            ),
        ],
    },
    Section {
        title: "`cadence`",
        path: "cadence",
        keys: &[
            key(
                "tls_versions",
                "`0` (every run)",
                "`0` to `7d`",
                "`*.tls_versions`: within this time of its last proof, the version probes are not run and the report repeats the proof with `proved_at` (RFC 3339). The probes run again at once when a run's own sessions see another leaf certificate or greeting than the proof's, when the mailbox's servers or profile change, when a prerequisite fails, or when the proof was not definitive; `mailprobe_proof_age_seconds` says how old each requirement's proof is",
                "6h",
            ),
            key(
                "certificate",
                "`0` (every run)",
                "`0` to `7d`",
                "`*.certificate.name`, `.trust`, `.expiry`, the same way (the chain is read from the run's own handshake, so this saves the probe's work, not the server's; keep it shorter than the warning window of `cert_warn_days`)",
                "1h",
            ),
            key(
                "connections",
                "`0` (every run)",
                "`0` to `7d`",
                "`connections.concurrent`, the same way: the extra IMAP and SMTP sessions are not opened within it",
                "6h",
            ),
        ],
    },
    Section {
        title: "`mailboxes[]`",
        path: "mailboxes[]",
        keys: &[
            key(
                "name",
                "required",
                "unique",
                "the `mailbox` label everywhere",
                "sales",
            ),
            key(
                "profile",
                "`hubspot`",
                "a built-in profile",
                "the requirements the mailbox is judged against",
                "hubspot",
            ),
            key(
                "imap",
                "required",
                "`HOST[:PORT]`",
                "the IMAP server (port 993 without one)",
                "mail.example.com:993",
            ),
            key(
                "imap_security",
                "`auto`",
                "`tls`, `starttls` or `auto`",
                "`auto`: well-known ports mean what they mean; on any other port the probe finds out",
                "auto",
            ),
            key(
                "smtp",
                "none",
                "`HOST[:PORT]`",
                "the SMTP server; without it the SMTP requirements are `not_configured`",
                "mail.example.com:587",
            ),
            key(
                "smtp_security",
                "`auto`",
                "`tls`, `starttls` or `auto`",
                "as for IMAP",
                "starttls",
            ),
            key("user", "required", "", "the login", "sales@example.com"),
            key(
                "password",
                "required",
                "`{ env: VAR }` or `{ file: PATH }`",
                "never written inline; a file readable by others gets a warning",
                "{ env: SALES_PASSWORD }",
            ),
            key(
                "connect_to",
                "none",
                "an address or name",
                "where to reach both hosts (SNI and name checks still use the host)",
                "127.0.0.1",
            ),
            key(
                "cert_warn_days",
                "the top-level `cert_warn_days`",
                "0 to 3650",
                "this mailbox's certificate warning threshold, in days",
                "21",
            ),
            key(
                "cert_crit_days",
                "the top-level `cert_crit_days`",
                "below the warning days",
                "this mailbox's certificate critical threshold, in days",
                "5",
            ),
            key(
                "source_address",
                "none (the kernel chooses)",
                "an IP address of the probe's machine",
                "connect from this local address, e.g. the one the mailbox's firewall allowlists; an address the machine does not have is refused at startup",
                "127.0.0.1",
            ),
            key(
                "ca_file",
                "none",
                "a PEM file",
                "extra trust anchors",
                "/etc/ssl/certs/ca-certificates.crt",
            ),
            key(
                "allow_insecure_cert",
                "`false`",
                "",
                "accept an untrusted certificate (then a warning, not a failure)",
                "false",
            ),
            key(
                "timeout",
                "the top-level `timeout`",
                "`1s` to `10m`",
                "this mailbox's deadline",
                "20s",
            ),
            key(
                "roundtrip",
                "`false`",
                "needs `smtp`",
                "the opt-in `mail.roundtrip` check: send a test message through `smtp` and wait for it in INBOX, then delete it (it writes to the mailbox)",
                "true",
            ),
            key(
                "roundtrip_to",
                "`user`, when it is an e-mail address",
                "an e-mail address; only with `roundtrip: true`",
                "where the test message goes: an address delivered to this mailbox's INBOX",
                "sales@example.com",
            ),
            key(
                "roundtrip_warn",
                "`60s`",
                "`1s` to `10m`; only with `roundtrip: true`",
                "a delivery slower than this is a warning",
                "60s",
            ),
        ],
    },
];

const INTRO: &str = "# Configuration

<!-- Generated by `mailprobe config-reference`; a test fails when this file differs from what the
code declares, or when the parser accepts a key this file does not list. Do not edit by hand. -->

`mailprobe run --config FILE` and `mailprobe validate --config FILE` read one YAML file;
`mailprobe check --config FILE` checks its mailboxes once. Unknown keys are errors that name the
key, the file and the line. Where the file is silent about telemetry, the standard
`OTEL_EXPORTER_OTLP_*` and `OTEL_RESOURCE_ATTRIBUTES` variables apply. Durations are written as
`30s`, `5m`, `1h30m`.

`validate` checks everything it can without the secrets: a password variable or file that does
not exist here is a warning, so a CI pipeline can validate the file. In `run`, a mailbox whose
entry is invalid or whose secret is missing is reported `incomplete` with the reason while the
others are checked. A file that cannot be loaded at all (missing, unreadable, invalid as a
whole) never stops `run` either: it reports it (`mailprobe_config_valid 0`, the log), checks
what it last loaded (nothing at start-up), and loads the file once it is fixed. `SIGHUP` or
`POST /-/reload` (with `--web.enable-lifecycle`) re-reads the file without a restart (see
[operating.md](operating.md)).
";

const EXAMPLE: &str = "## Example

```yaml
interval: 5m
timeout: 30s
listen: 127.0.0.1:9925
otlp:
  endpoint: http://127.0.0.1:4317
  protocol: grpc
alerts:
  alertmanager: http://127.0.0.1:9093
  alert_after: 2
mailboxes:
  - name: sales
    imap: mail.example.com:993
    smtp: mail.example.com:587
    user: sales@example.com
    password: { env: SALES_PASSWORD }
```
";

/// `docs/configuration.md`.
pub fn markdown() -> String {
    let mut out = String::from(INTRO);
    for s in SECTIONS {
        let _ = writeln!(out, "\n## {}\n", s.title);
        let _ = writeln!(out, "| key | default | bounds | meaning |");
        let _ = writeln!(out, "|---|---|---|---|");
        for k in s.keys {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                k.key, k.default, k.bounds, k.meaning
            );
        }
    }
    out.push('\n');
    out.push_str(EXAMPLE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A file with one mailbox, where `section`'s keys all take their example values.
    fn file_with(section: &Section, extra: Option<&str>) -> String {
        let mut keys: Vec<(String, String)> = section
            .keys
            .iter()
            .map(|k| (k.key.to_string(), k.example.to_string()))
            .collect();
        if let Some(x) = extra {
            keys.push((x.to_string(), "1".to_string()));
        }
        let body = |indent: &str| {
            keys.iter()
                .map(|(k, v)| format!("{indent}{k}: {v}\n"))
                .collect::<String>()
        };
        let mailbox = "  - name: m\n    imap: h:993\n    user: u\n    password: { env: X }\n";
        match section.path {
            "" => {
                let mut b = body("");
                b = b.replace("mailboxes: []\n", &format!("mailboxes:\n{mailbox}"));
                b
            }
            "mailboxes[]" => format!("mailboxes:\n  - {}", body("    ").trim_start()),
            "plugins.settings.example" => format!(
                "plugins:\n  dir: /tmp\n  settings:\n    example:\n{}mailboxes:\n{mailbox}",
                body("      ")
            ),
            p => format!("{p}:\n{}mailboxes:\n{mailbox}", body("  ")),
        }
    }

    #[test]
    fn every_documented_key_parses_with_its_example() {
        for s in SECTIONS {
            let text = file_with(s, None);
            if let Err(e) = Config::parse(&text, "c.yaml") {
                panic!("{}: {e}\n{text}", s.title);
            }
        }
    }

    #[test]
    fn every_key_the_parser_accepts_is_documented() {
        for s in SECTIONS {
            let text = file_with(s, Some("not_a_key"));
            let e = Config::parse(&text, "c.yaml").unwrap_err().to_string();
            // serde names the keys it accepts: "expected one of `a`, `b`" or "expected `a` or `b`".
            let Some(list) = e.split("expected ").nth(1) else {
                panic!("{}: no list of keys in {e:?}", s.title);
            };
            let list = list.split(';').next().unwrap_or(list);
            let accepted: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
            for a in &accepted {
                assert!(
                    s.keys.iter().any(|k| k.key == *a),
                    "{}: the parser accepts `{a}`, which docs/configuration.md does not list",
                    s.title
                );
            }
            assert_eq!(accepted.len(), s.keys.len(), "{}: {accepted:?}", s.title);
        }
    }
}
