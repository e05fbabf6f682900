//! A server's first TLS flight (records, ServerHello, HelloRetryRequest, Certificate, alerts)
//! as the raw version prober parses it, whole and as every prefix that may have arrived.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailprobe_tlswire::hello::parse_server_flight;

fuzz_target!(|data: &[u8]| {
    let _ = parse_server_flight(data);
    for end in (0..data.len()).step_by(5) {
        let _ = parse_server_flight(&data[..end]);
    }
});
