//! Expiry across the chain: an intermediate that expires before the leaf breaks the chain
//! first, so the check needs the earliest date, not only the leaf's.

use time::OffsetDateTime;

use super::CertInfo;

/// The earliest `not_after` in `chain` (leaf included) and its index; the
/// lowest index wins ties, so the leaf is blamed before its issuers.
pub fn earliest_expiry(chain: &[CertInfo]) -> Option<(usize, OffsetDateTime)> {
    chain
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.not_after))
        .min_by_key(|(i, t)| (*t, *i))
}
