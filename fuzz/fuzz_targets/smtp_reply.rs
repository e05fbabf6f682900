//! SMTP replies as the probe reads them (multi-line, bounded), then the EHLO extension and
//! AUTH mechanism parsing and the redacted reply text.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailprobe_plugin_smtp::client::{Ehlo, SmtpClient, scrubbed_reply};
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, mut server) = tokio::io::duplex(data.len() + 64);
        let _ = server.write_all(data).await;
        let _ = server.shutdown().await;
        let mut c = SmtpClient::new(client);
        while let Ok(r) = c.reply(Duration::from_secs(1)).await {
            let e = Ehlo::from_reply(&r);
            let _ = (e.offers_auth(), e.auth_mechanisms());
            let text = scrubbed_reply(&r, "pw-1234");
            assert!(!text.contains("pw-1234"));
        }
    });
});
