//! Content negotiation on `/metrics`: the Prometheus text format 0.0.4 by default (what every
//! scraper and `promtool check metrics` read), OpenMetrics 1.0 when the scraper's `Accept`
//! prefers it (Prometheus itself asks for it first).
//!
//! The registry encodes OpenMetrics only; the text format is derived from it line by line. The
//! two differ, for what mailprobe exports, in three things: counters are named with `_total` in
//! `# HELP`/`# TYPE` (OpenMetrics names the family without it), there is no `# UNIT`, and no
//! `# EOF` terminator.

use std::collections::HashSet;

/// The Prometheus text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format a response is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The format an `Accept` header asks for: OpenMetrics when it weighs
/// `application/openmetrics-text` above `text/plain` (and any wildcard), else the text format.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut openmetrics: Option<f32> = None;
    let mut text: Option<f32> = None;
    // Bounded: a header of a thousand media ranges is not worth reading past the first few.
    for range in accept.split(',').take(32) {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let slot = match media.as_str() {
            "application/openmetrics-text" => &mut openmetrics,
            "text/plain" | "text/*" | "*/*" => &mut text,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    match (openmetrics, text) {
        (Some(om), t) if om > 0.0 && om >= t.unwrap_or(0.0) => Format::OpenMetrics,
        _ => Format::Text,
    }
}

/// The text format 0.0.4 of an OpenMetrics page that prometheus-client encoded.
pub fn to_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_format() {
        // Prometheus 2.x's scrape header.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0.2, text/plain;q=0.9")),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(negotiate(Some(";;;,,q=x")), Format::Text);
    }

    #[test]
    fn counters_get_their_total_name_and_the_terminator_goes() {
        let om = "# HELP mailprobe_checks Checks.\n# TYPE mailprobe_checks counter\nmailprobe_checks_total{verdict=\"compliant\"} 2\n# HELP mailprobe_compliant C.\n# TYPE mailprobe_compliant gauge\nmailprobe_compliant{mailbox=\"a\"} 1.0\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP mailprobe_checks_total Checks.\n# TYPE mailprobe_checks_total counter\nmailprobe_checks_total{verdict=\"compliant\"} 2\n# HELP mailprobe_compliant C.\n# TYPE mailprobe_compliant gauge\nmailprobe_compliant{mailbox=\"a\"} 1.0\n"
        );
    }
}
