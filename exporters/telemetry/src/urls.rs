//! Receiver URLs as they may appear in a log: a webhook or collector URL can carry credentials
//! (`https://user:token@host/`, `?token=...`), which must never be written out; and a report or
//! credentials sent in clear to another machine deserve a warning.

/// `url` as it may appear in a log: its scheme, host and port only. User information, the path
/// (Slack and Discord webhooks carry their token in it) and the query (`?api_key=`) never show.
pub fn shown(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match scheme {
        Some(s) => format!("{s}://{host}"),
        // Without a scheme there is no telling what is host and what is secret.
        None => "(a URL without a scheme)".to_string(),
    }
}

/// `text` (an error message from an HTTP or gRPC client) with every URL in it cut down to
/// [`shown`]: client errors may quote the URL they failed on, credentials and all.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme: the letters right before `://`.
        let before = &rest[..i];
        let scheme_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |j| j + 1);
        out.push_str(&before[..scheme_start]);
        let url_and_more = &rest[scheme_start..];
        let end = url_and_more
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(url_and_more.len());
        out.push_str(&shown(&url_and_more[..end]));
        rest = &url_and_more[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `url` sends in clear (`http://`) to a host that is not this machine.
pub fn plain_to_another_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            shown("https://user:s3cret@hooks.example.com/x/y?token=abc"),
            "https://hooks.example.com"
        );
        assert_eq!(shown("http://127.0.0.1:9093"), "http://127.0.0.1:9093");
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/tok3n"),
            "https://hooks.slack.com"
        );
        assert!(!shown("https://a:p%40ss@h/?k=v").contains("p%40ss"));
        assert!(!shown("collector:4317?api_key=k3y").contains("k3y"));
        assert_eq!(
            scrub("error sending request for url (http://u:pw@h:1/p?k=v): refused"),
            "error sending request for url (http://h:1): refused"
        );
        assert_eq!(scrub("no url here"), "no url here");
    }

    #[test]
    fn clear_text_to_another_host_is_told() {
        assert!(plain_to_another_host("http://hooks.example.com/x"));
        assert!(plain_to_another_host("http://10.0.0.5:9093"));
        assert!(!plain_to_another_host("http://127.0.0.1:9093"));
        assert!(!plain_to_another_host("http://localhost:4317"));
        assert!(!plain_to_another_host("http://[::1]:4318/v1"));
        assert!(!plain_to_another_host("https://hooks.example.com/x"));
    }
}
