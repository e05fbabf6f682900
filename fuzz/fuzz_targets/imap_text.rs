//! The IMAP text parsers one response line at a time: LIST/XLIST entries, NAMESPACE, ID,
//! status lines, capability lists and modified UTF-7 folder names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailprobe_plugin_imap::{fingerprint, folders, wire::StatusLine};

fuzz_target!(|data: &[u8]| {
    // The probe turns server bytes into text with the same lossy decoding.
    let line = String::from_utf8_lossy(data);
    if let Some(f) = folders::parse_list(&line) {
        let ns = folders::parse_namespace(&line).unwrap_or_default();
        let _ = folders::find_sent(std::slice::from_ref(&f), &ns);
    }
    let _ = folders::decode_mutf7(&line);
    let _ = fingerprint::parse_id(&line);
    if let Some(s) = StatusLine::parse(&line, &line) {
        let _ = s.capabilities();
    }
});
