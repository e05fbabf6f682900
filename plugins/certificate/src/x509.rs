//! Pure certificate analysis: parsing, host-name matching, chain trust and
//! expiry. Nothing here touches the network; the probe feeds it the DER
//! certificates a server presented.
//!
//! Trust is deliberately evaluated separately from names and dates so that a
//! report can say "trusted, but expired" or "trusted, but for another name"
//! rather than collapsing everything into the first error webpki hits.
//!
//! One file per concern: `parse` turns DER into [`CertInfo`], `name` matches host names
//! (RFC 6125), `trust` verifies the chain, `expiry` finds what expires first; `der` holds the
//! raw-DER and signature helpers that parsing and trust share.

mod der;
mod expiry;
mod name;
mod parse;
mod trust;

pub use expiry::earliest_expiry;
pub use name::{NameMatch, host_matches, match_name, match_name_with};
pub use parse::{CertError, CertInfo, parse_certificate};
pub use trust::{MAX_CHAIN, TrustOutcome, verify_trust, verify_trust_with};

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    };
    use rustls::RootCertStore;
    use rustls_pki_types::CertificateDer;
    use time::macros::datetime;

    const RSA_FIXTURE: &[u8] = include_bytes!("../tests/fixtures/rsa2048-selfsigned.der");

    struct Ca {
        der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn dn(cn: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn root_ca(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(cn);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn intermediate_ca(cn: &str, parent: &Ca) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(cn);
        let cert = params.signed_by(&key, &parent.issuer).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_params(cn: &str, sans: &[&str]) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = dn(cn);
        params
    }

    fn leaf_signed_by(params: &CertificateParams, ca: &Ca) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    }

    fn roots_with(certs: &[&[u8]]) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for der in certs {
            roots.add(CertificateDer::from(der.to_vec())).unwrap();
        }
        roots
    }

    #[test]
    fn ca_and_leaf_trusted_when_ca_is_a_root() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        let roots = roots_with(&[&ca.der]);
        assert_eq!(
            verify_trust(std::slice::from_ref(&leaf), &roots),
            TrustOutcome::Trusted
        );
        // Sending the root too is redundant but harmless.
        assert_eq!(
            verify_trust(&[leaf.clone(), ca.der.clone()], &roots),
            TrustOutcome::Trusted
        );

        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(info.subject, "CN=mail.lab.test");
        assert_eq!(info.subject_cn.as_deref(), Some("mail.lab.test"));
        assert_eq!(info.san_dns, vec!["mail.lab.test".to_owned()]);
        assert_eq!(info.issuer_cn.as_deref(), Some("Lab Root CA"));
        assert_eq!(info.key_type, "EC");
        assert_eq!(info.key_bits, Some(256));
        assert_eq!(info.ec_curve.as_deref(), Some("P-256"));
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        assert!(!info.self_signed);
        assert!(!info.is_ca);
        assert!(!info.serial.is_empty());
        assert_eq!(match_name(&info, "mail.lab.test"), NameMatch::CommonName);

        let ca_info = parse_certificate(&ca.der).unwrap();
        assert!(ca_info.is_ca);
        assert!(ca_info.self_signed);
    }

    #[test]
    fn ca_not_in_roots_unknown_issuer_or_incomplete() {
        let ca = root_ca("Private Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        let other = root_ca("Some Other Root");
        let roots = roots_with(&[&other.der]);

        // Root sent along: the chain is complete, only trust is missing.
        assert_eq!(
            verify_trust(&[leaf.clone(), ca.der.clone()], &roots),
            TrustOutcome::UnknownIssuer {
                issuer: "CN=Private Root CA".into()
            }
        );
        // Leaf alone from an unknown CA: nothing to link to.
        assert_eq!(
            verify_trust(std::slice::from_ref(&leaf), &roots),
            TrustOutcome::IncompleteChain {
                missing_issuer: "CN=Private Root CA".into()
            }
        );
        // Empty root store behaves the same.
        assert_eq!(
            verify_trust(&[leaf, ca.der.clone()], &RootCertStore::empty()),
            TrustOutcome::UnknownIssuer {
                issuer: "CN=Private Root CA".into()
            }
        );
    }

    #[test]
    fn same_name_different_key_root_is_invalid_signature() {
        // webpki finds the anchor by name and reports the failed signature
        // check; it cannot know a different, untrusted CA shares the name.
        let real = root_ca("Lab Root CA");
        let impostor = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &impostor);
        let roots = roots_with(&[&real.der]);
        let outcome = verify_trust(&[leaf], &roots);
        assert!(
            matches!(&outcome, TrustOutcome::Invalid { reason } if reason.contains("signature")),
            "{outcome:?}"
        );
    }

    #[test]
    fn omitted_intermediate_is_incomplete_chain() {
        let root = root_ca("Lab Root CA");
        let inter = intermediate_ca("Lab Issuing CA 1", &root);
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &inter);
        let roots = roots_with(&[&root.der]);

        assert_eq!(
            verify_trust(&[leaf.clone(), inter.der.clone()], &roots),
            TrustOutcome::Trusted
        );
        assert_eq!(
            verify_trust(std::slice::from_ref(&leaf), &roots),
            TrustOutcome::IncompleteChain {
                missing_issuer: "CN=Lab Issuing CA 1".into()
            }
        );
        // Intermediate sent but its root is unknown and not sent.
        assert_eq!(
            verify_trust(&[leaf, inter.der.clone()], &RootCertStore::empty()),
            TrustOutcome::IncompleteChain {
                missing_issuer: "CN=Lab Root CA".into()
            }
        );
    }

    #[test]
    fn self_signed_leaf() {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params("mail.lab.test", &["mail.lab.test"])
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let info = parse_certificate(&der).unwrap();
        assert!(info.self_signed);
        let other = root_ca("Lab Root CA");
        assert_eq!(
            verify_trust(std::slice::from_ref(&der), &roots_with(&[&other.der])),
            TrustOutcome::SelfSigned
        );
        // Pinned: the self-signed leaf itself is the anchor.
        assert_eq!(
            verify_trust(std::slice::from_ref(&der), &roots_with(&[&der])),
            TrustOutcome::Trusted
        );
    }

    #[test]
    fn self_issued_but_not_self_signed_is_not_self_signed() {
        // Same name as its issuer, but signed by another key.
        let ca = root_ca("mail.lab.test");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(info.subject, info.issuer);
        assert!(!info.self_signed);
        assert_ne!(
            verify_trust(&[leaf], &RootCertStore::empty()),
            TrustOutcome::SelfSigned
        );
    }

    #[test]
    fn expired_leaf_is_still_trusted_and_reported_by_expiry() {
        let ca = root_ca("Lab Root CA");
        let mut params = leaf_params("mail.lab.test", &["mail.lab.test"]);
        params.not_before = datetime!(2020-01-01 0:00 UTC);
        params.not_after = datetime!(2021-01-01 0:00 UTC);
        let leaf = leaf_signed_by(&params, &ca);
        let roots = roots_with(&[&ca.der]);
        assert_eq!(
            verify_trust(&[leaf.clone(), ca.der.clone()], &roots),
            TrustOutcome::Trusted
        );
        let chain = [
            parse_certificate(&leaf).unwrap(),
            parse_certificate(&ca.der).unwrap(),
        ];
        assert_eq!(
            earliest_expiry(&chain),
            Some((0, datetime!(2021-01-01 0:00 UTC)))
        );
        assert_eq!(earliest_expiry(&[]), None);
    }

    #[test]
    fn expired_intermediate_still_trusted_and_blamed_by_expiry() {
        let root = root_ca("Lab Root CA");
        let key = KeyPair::generate().unwrap();
        let mut inter_params = ca_params("Lab Issuing CA 1");
        inter_params.not_before = datetime!(2019-01-01 0:00 UTC);
        inter_params.not_after = datetime!(2022-01-01 0:00 UTC);
        let inter_der = inter_params
            .signed_by(&key, &root.issuer)
            .unwrap()
            .der()
            .to_vec();
        let inter = Ca {
            der: inter_der,
            issuer: Issuer::new(inter_params, key),
        };
        let mut params = leaf_params("mail.lab.test", &["mail.lab.test"]);
        params.not_before = datetime!(2020-01-01 0:00 UTC);
        params.not_after = datetime!(2030-01-01 0:00 UTC);
        let leaf = leaf_signed_by(&params, &inter);
        assert_eq!(
            verify_trust(
                &[leaf.clone(), inter.der.clone()],
                &roots_with(&[&root.der])
            ),
            TrustOutcome::Trusted
        );
        let chain = [
            parse_certificate(&leaf).unwrap(),
            parse_certificate(&inter.der).unwrap(),
        ];
        assert_eq!(
            earliest_expiry(&chain),
            Some((1, datetime!(2022-01-01 0:00 UTC)))
        );
    }

    #[test]
    fn non_ca_issuer_is_invalid() {
        let root = root_ca("Lab Root CA");
        // An end-entity cert (no cA) used to sign another cert.
        let key = KeyPair::generate().unwrap();
        let mut params = leaf_params("Not A CA", &["notaca.lab.test"]);
        params.is_ca = IsCa::ExplicitNoCa;
        let not_ca_der = params.signed_by(&key, &root.issuer).unwrap().der().to_vec();
        let not_ca = Ca {
            der: not_ca_der,
            issuer: Issuer::new(params, key),
        };
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &not_ca);
        let outcome = verify_trust(&[leaf, not_ca.der.clone()], &roots_with(&[&root.der]));
        assert!(
            matches!(outcome, TrustOutcome::Invalid { .. }),
            "{outcome:?}"
        );
    }

    #[test]
    fn garbage_and_empty_chains() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(b"\x30\x03\x02\x01\x01").is_err());
        assert!(parse_certificate(&[0xff; 64]).is_err());
        let err = parse_certificate(b"not a certificate at all").unwrap_err();
        assert!(!err.to_string().is_empty());

        let ca = root_ca("Lab Root CA");
        let mut trailing = ca.der.clone();
        trailing.push(0);
        assert_eq!(
            parse_certificate(&trailing),
            Err(CertError::TrailingData(1))
        );
        // Truncation anywhere must be an error, not a panic.
        for len in 0..ca.der.len() {
            assert!(parse_certificate(&ca.der[..len]).is_err());
        }

        let roots = roots_with(&[&ca.der]);
        assert!(matches!(
            verify_trust(&[], &roots),
            TrustOutcome::Invalid { .. }
        ));
        assert!(matches!(
            verify_trust(&[b"garbage".to_vec()], &roots),
            TrustOutcome::Invalid { .. }
        ));
        // A garbage "intermediate" does not stop a good chain.
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        assert_eq!(
            verify_trust(&[leaf, b"garbage".to_vec()], &roots),
            TrustOutcome::Trusted
        );
    }

    #[test]
    fn wildcard_cn() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("*.lab.test", &["*.lab.test"]), &ca);
        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(match_name(&info, "mail.lab.test"), NameMatch::CommonName);
        assert_eq!(match_name(&info, "MAIL.lab.test."), NameMatch::CommonName);
        assert_eq!(match_name(&info, "a.b.lab.test"), NameMatch::NoMatch);
        assert_eq!(match_name(&info, "lab.test"), NameMatch::NoMatch);
    }

    #[test]
    fn san_only_and_no_match() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(
            &leaf_params("Lab Mail Server", &["mail.lab.test", "192.0.2.10"]),
            &ca,
        );
        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("Lab Mail Server"));
        assert_eq!(info.san_ip, vec!["192.0.2.10".to_owned()]);
        assert_eq!(match_name(&info, "mail.lab.test"), NameMatch::SanOnly);
        assert_eq!(match_name(&info, "192.0.2.10"), NameMatch::SanOnly);
        assert_eq!(match_name(&info, "imap.lab.test"), NameMatch::NoMatch);
        assert_eq!(match_name(&info, "192.0.2.11"), NameMatch::NoMatch);
        assert_eq!(match_name(&info, ""), NameMatch::NoMatch);
    }

    #[test]
    fn key_types() {
        let rsa = parse_certificate(RSA_FIXTURE).unwrap();
        assert_eq!(rsa.key_type, "RSA");
        assert_eq!(rsa.key_bits, Some(2048));
        assert_eq!(rsa.ec_curve, None);
        assert_eq!(rsa.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(rsa.subject_cn.as_deref(), Some("rsa.lab.test"));
        // openssl req -x509 marks it cA=TRUE; it is still self-signed.
        assert!(rsa.is_ca);
        assert!(rsa.self_signed);
        assert_eq!(
            verify_trust(&[RSA_FIXTURE.to_vec()], &RootCertStore::empty()),
            TrustOutcome::SelfSigned
        );
        assert_eq!(
            verify_trust(&[RSA_FIXTURE.to_vec()], &roots_with(&[RSA_FIXTURE])),
            TrustOutcome::Trusted
        );

        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let ed = parse_certificate(
            leaf_params("ed.lab.test", &[])
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(ed.key_type, "Ed25519");
        assert_eq!(ed.key_bits, Some(256));
        assert_eq!(ed.signature_algorithm, "ed25519");
        assert!(ed.self_signed);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let p384 = parse_certificate(
            leaf_params("p384.lab.test", &[])
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(p384.key_type, "EC");
        assert_eq!(p384.key_bits, Some(384));
        assert_eq!(p384.ec_curve.as_deref(), Some("P-384"));
        assert_eq!(p384.signature_algorithm, "ecdsa-with-SHA384");
        assert!(p384.self_signed);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p256 = parse_certificate(
            leaf_params("p256.lab.test", &[])
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(p256.ec_curve.as_deref(), Some("P-256"));
    }

    #[test]
    fn host_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("mail.example.com", "mail.example.com", true),
            ("MAIL.Example.COM", "mail.example.com", true),
            ("mail.example.com", "MAIL.EXAMPLE.COM", true),
            ("mail.example.com.", "mail.example.com", true),
            ("mail.example.com", "mail.example.com.", true),
            ("mail.example.com", "imap.example.com", false),
            ("mail.example.com", "example.com", false),
            ("*.example.com", "mail.example.com", true),
            ("*.example.com", "MAIL.EXAMPLE.COM.", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*", "example", false),
            ("*", "mail.example.com", false),
            ("*.com", "example.com", false),
            ("*.", "example.", false),
            ("f*.example.com", "foo.example.com", false),
            ("*o.example.com", "foo.example.com", false),
            ("mail.*.com", "mail.example.com", false),
            ("*.*.example.com", "a.b.example.com", false),
            ("*.*.example.com", "a.example.com", false),
            ("*.example.com", "*.example.com", false),
            ("xn--bcher-kva.example", "xn--bcher-kva.example", true),
            (
                "*.xn--bcher-kva.example",
                "mail.xn--bcher-kva.example",
                true,
            ),
            ("*.example.com", "xn--bcher-kva.example.com", true),
            ("192.0.2.1", "192.0.2.1", false),
            ("*.2.0.192", "1.2.0.192", false),
            ("*.0.2.1", "192.0.2.1", false),
            ("::1", "::1", false),
            ("example.com", "[::1]", false),
            ("", "", false),
            ("example.com", "", false),
            ("mail..example.com", "mail..example.com", false),
        ];
        for (pattern, host, expected) in cases {
            assert_eq!(
                host_matches(pattern, host),
                *expected,
                "host_matches({pattern:?}, {host:?})"
            );
        }
    }

    #[test]
    fn earliest_expiry_ties_prefer_leaf() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        // rcgen's default not_after is the same for both.
        let chain = [
            parse_certificate(&leaf).unwrap(),
            parse_certificate(&ca.der).unwrap(),
        ];
        assert_eq!(chain[0].not_after, chain[1].not_after);
        assert_eq!(earliest_expiry(&chain).map(|(i, _)| i), Some(0));
    }

    #[test]
    fn a_chain_of_200_certificates_or_a_cycle_is_bounded() {
        let ca = root_ca("Lab Root CA");
        let inter = intermediate_ca("Lab Intermediate", &ca);
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &inter);
        let roots = roots_with(&[&ca.der]);
        // 200 certificates: the intermediate, then 198 copies of an unrelated one.
        let other = root_ca("Someone Else");
        let mut chain = vec![leaf.clone(), inter.der.clone()];
        chain.extend(std::iter::repeat_n(other.der.clone(), 198));
        assert_eq!(verify_trust(&chain, &roots), TrustOutcome::Trusted);

        // A cycle: A issued by B, B issued by A, neither trusted.
        let key_a = KeyPair::generate().unwrap();
        let key_b = KeyPair::generate().unwrap();
        let issuer_b = Issuer::new(
            ca_params("Cycle B"),
            KeyPair::from_pem(&key_b.serialize_pem()).unwrap(),
        );
        let issuer_a = Issuer::new(
            ca_params("Cycle A"),
            KeyPair::from_pem(&key_a.serialize_pem()).unwrap(),
        );
        let a = ca_params("Cycle A")
            .signed_by(&key_a, &issuer_b)
            .unwrap()
            .der()
            .to_vec();
        let b = ca_params("Cycle B")
            .signed_by(&key_b, &issuer_a)
            .unwrap()
            .der()
            .to_vec();
        let cyclic_leaf = leaf_params("mail.lab.test", &["mail.lab.test"])
            .signed_by(&KeyPair::generate().unwrap(), &issuer_a)
            .unwrap()
            .der()
            .to_vec();
        let mut chain = vec![cyclic_leaf];
        for _ in 0..100 {
            chain.push(a.clone());
            chain.push(b.clone());
        }
        let outcome = verify_trust(&chain, &roots);
        assert!(
            matches!(
                outcome,
                TrustOutcome::IncompleteChain { .. } | TrustOutcome::UnknownIssuer { .. }
            ),
            "{outcome:?}"
        );
    }
}
