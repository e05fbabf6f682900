//! Certificate analysis: DER parsing, the host-name match, expiry, and chain verification of a
//! chain made of the input (twice, as a chain that names itself as issuer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailprobe_plugin_certificate::x509;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = x509::parse_certificate(data) {
        let _ = x509::match_name(&info, "mail.lab.test");
        let _ = x509::earliest_expiry(std::slice::from_ref(&info));
    }
    let roots = rustls::RootCertStore::empty();
    let _ = x509::verify_trust(&[data.to_vec(), data.to_vec()], &roots);
});
