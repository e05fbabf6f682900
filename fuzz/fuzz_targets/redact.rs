//! The redactor's promise for any text and any password: the output never holds the password
//! nor a control character, and never exceeds its length bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailprobe_core::redact::{MAX_TEXT, Redactor};

fuzz_target!(|data: &[u8]| {
    // First byte: password length; then the password; the rest is the server's text, with the
    // password spliced in.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 32).min(rest.len());
    let (pw, text) = rest.split_at(n);
    let pw = String::from_utf8_lossy(pw);
    if pw.chars().count() < 4 {
        return;
    }
    let text = String::from_utf8_lossy(text);
    let half = text.len() / 2;
    let cut = (0..=half)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let text = format!("{}{pw}{}", &text[..cut], &text[cut..]);
    let out = Redactor::new(&pw).clean(&text);
    assert!(!out.contains(&*pw), "password survived");
    assert!(
        !out.chars().any(char::is_control),
        "control character survived"
    );
    assert!(out.chars().count() <= MAX_TEXT);
});
