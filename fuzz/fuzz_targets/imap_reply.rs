//! A whole IMAP command reply as the probe reads it (literals, untagged responses, the tagged
//! status), then everything the imap plugin extracts from it: capabilities, LIST, NAMESPACE,
//! ID and the server fingerprint.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailprobe_plugin_imap::{fingerprint, folders, wire::Wire};
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
        // Keeps the server half open for the command the client writes.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut server, &mut tokio::io::sink()).await;
        });
        let mut w = Wire::new(client);
        if let Ok(r) = w.command(r#"LIST "" "*""#, Duration::from_secs(1)).await {
            let caps = r.capabilities();
            let list: Vec<folders::Folder> =
                r.data("LIST").filter_map(folders::parse_list).collect();
            let ns = r
                .data("NAMESPACE")
                .find_map(folders::parse_namespace)
                .unwrap_or_default();
            let _ = folders::find_sent(&list, &ns);
            let _ = folders::others(&list, None);
            let id = r.data("ID").find_map(fingerprint::parse_id);
            let _ = fingerprint::identify(&fingerprint::Observed {
                greeting_text: r.tagged.text.clone(),
                capabilities: caps,
                id,
            });
        }
    });
});
