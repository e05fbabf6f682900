//! Receiver URLs as they may appear in a log: a webhook or collector URL can carry credentials
//! (`https://user:token@host/`, `?token=...`), which must never be written out; and a report or
//! credentials sent in clear to another machine deserve a warning.

/// `url` without its user information and query string, for logs.
pub fn shown(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?…"),
        None => path.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
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
            "https://hooks.example.com/x/y?…"
        );
        assert_eq!(shown("http://127.0.0.1:9093"), "http://127.0.0.1:9093");
        assert!(!shown("https://a:p%40ss@h/?k=v").contains("p%40ss"));
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
