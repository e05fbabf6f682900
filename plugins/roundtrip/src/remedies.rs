//! What an administrator should change, for each way the round trip fails.

use mailprobe_mailwire::smtp::SmtpReply;

pub const NOT_ARRIVED: &str = "The SMTP server accepted the message but it did not reach INBOX in time: look for its Message-ID in the mail queue (Postfix: postqueue -p; Exchange: Get-Message) and the delivery log, and check filters or rules that move, hold or discard mail sent by the mailbox to itself (spam filter, Sieve, transport rules). If delivery is just slow, raise the check's timeout.";
pub const SLOW: &str = "Delivery to the mailbox is slower than roundtrip_warn: check the mail queue and the content filters on the way (spam/virus scanning, greylisting, a busy delivery agent), or raise roundtrip_warn if this delay is expected.";
pub const SUBMISSION_BROKEN: &str = "The SMTP session broke while the message was handed over: check the SMTP server's log for the reason (a crash of smtpd or a content filter, a size or rate limit).";

/// The remedy for a refusal of `command` (`MAIL`, `RCPT`, `DATA` or `.`) with `reply`.
pub fn refused(command: &str, reply: &SmtpReply) -> String {
    let temporary = (400..500).contains(&reply.code);
    let what = match command {
        "MAIL" => {
            "Let the account send with its own address as sender (Postfix: smtpd_sender_login_maps with reject_sender_login_mismatch must map the address to the login; Exchange: the mailbox needs Send As its own address)."
        }
        "RCPT" => {
            "Let the account send to the test address (roundtrip_to): it must be a mailbox this server delivers to or relays to for authenticated users (Postfix: permit_sasl_authenticated in smtpd_relay_restrictions; the address in virtual_mailbox_maps or local recipients)."
        }
        _ => {
            "The server refused the message's content: check its content and size filters and the log entry for the reply above."
        }
    };
    if temporary {
        format!(
            "The refusal is temporary ({}): check the server's queue, limits and greylisting. If it persists: {what}",
            reply.code
        )
    } else {
        what.to_string()
    }
}
