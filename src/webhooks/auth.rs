//! Who sent a webhook: WAHA's HMAC signature and Green-API's token. Pure: the
//! caller passes the header values and the exact body bytes.
//!
//! Sources: WAHA signs each webhook with `X-Webhook-Hmac` = the hex digest of
//! HMAC-SHA512 over the exact body bytes, keyed with the webhook's
//! `hmac.key` (or `WHATSAPP_HOOK_HMAC_KEY`), and names the algorithm in
//! `X-Webhook-Hmac-Algorithm: sha512` (WAHA docs "Events → Webhooks →
//! HMAC authentication"; `WebhookSender.ts`). Green-API sends the instance's
//! `webhookUrlToken` in the `Authorization` header; its official webhook
//! server strips a `Bearer ` prefix before comparing
//! (green-api/whatsapp-api-webhook-server-golang `pkg/webhook.go`), so both
//! the bearer form and the raw token are accepted.
//!
//! Every comparison takes time independent of where the values differ: the
//! HMAC through [`Mac::verify_slice`], the token through
//! [`Secret::matches`]. Nothing here logs or returns a secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

use crate::config::Secret;

/// The only algorithm accepted in `X-Webhook-Hmac-Algorithm`.
pub const WAHA_ALGORITHM: &str = "sha512";

/// Why a request was not authenticated. `reason()` is a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `X-Webhook-Hmac` / `Authorization` header.
    Missing,
    /// `X-Webhook-Hmac-Algorithm` is not `sha512`.
    Algorithm,
    /// The signature is not hex of the right length.
    Malformed,
    /// The signature or token does not match.
    Mismatch,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Algorithm => "bad_algorithm",
            AuthError::Malformed => "bad_signature_format",
            AuthError::Mismatch => "bad_signature",
        }
    }

    /// Text for the response body (names no secret, no expected value).
    pub fn message(self, provider_kind: &str) -> String {
        match (self, provider_kind) {
            (AuthError::Missing, "waha") => "missing X-Webhook-Hmac header".into(),
            (AuthError::Missing, _) => "missing Authorization header".into(),
            (AuthError::Algorithm, _) => {
                format!("X-Webhook-Hmac-Algorithm must be {WAHA_ALGORITHM}")
            }
            (AuthError::Malformed, _) => "X-Webhook-Hmac is not a hex SHA-512 digest".into(),
            (AuthError::Mismatch, "waha") => "X-Webhook-Hmac does not match the body".into(),
            (AuthError::Mismatch, _) => "wrong webhook token".into(),
        }
    }
}

/// Checks a WAHA signature: `signature` is the `X-Webhook-Hmac` value,
/// `algorithm` the `X-Webhook-Hmac-Algorithm` value (absent means `sha512`,
/// the only one WAHA sends), `body` the exact bytes received.
pub fn verify_waha(
    key: &Secret,
    signature: Option<&str>,
    algorithm: Option<&str>,
    body: &[u8],
) -> Result<(), AuthError> {
    if let Some(alg) = algorithm
        && !alg.trim().eq_ignore_ascii_case(WAHA_ALGORITHM)
    {
        return Err(AuthError::Algorithm);
    }
    let signature = signature.ok_or(AuthError::Missing)?;
    let tag = decode_hex(signature.trim()).ok_or(AuthError::Malformed)?;
    if tag.len() != 64 {
        return Err(AuthError::Malformed);
    }
    let mut mac =
        Hmac::<Sha512>::new_from_slice(key.expose().as_bytes()).map_err(|_| AuthError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| AuthError::Mismatch)
}

/// The hex HMAC-SHA512 of `body` under `key`: what WAHA puts in
/// `X-Webhook-Hmac` (used by the simulator).
pub fn sign_waha(key: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha512>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a Green-API `Authorization` value: `Bearer <token>` (scheme
/// case-insensitive) or the raw token.
pub fn verify_green_api(token: &Secret, authorization: Option<&str>) -> Result<(), AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let presented = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    if token.matches(presented) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    /// The body of the vector, byte for byte.
    const BODY: &str = r#"{"id":"evt_01jz0000000000000000000000","timestamp":1764633600000,"event":"message.ack","session":"default","payload":{"id":"true_11111111111@c.us_3EB0AAAA","ack":1,"ackName":"SERVER"}}"#;
    const KEY: &str = "wa-watchdog-test-key";
    /// Computed outside Rust:
    /// `printf '%s' "$BODY" | openssl dgst -sha512 -hmac 'wa-watchdog-test-key'`
    /// (OpenSSL 3.0, with BODY the constant above).
    const OPENSSL_DIGEST: &str = "e938fc61a98c7d189777c9fbb2ff8a96c59be80a4835c51431531d3e6456dc92a6e56edd03612eafd80475321fd21e5e74eef8d02c6aa2a5dc4c345582452bde";

    /// name, key, signature, algorithm, body, expected.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a [u8],
        Result<(), AuthError>,
    );

    fn key(k: &str) -> Secret {
        Secret::new(k, SecretSource::Inline)
    }

    #[test]
    fn openssl_vector_is_accepted_and_reproduced() {
        assert_eq!(BODY.len(), 184);
        assert_eq!(sign_waha(KEY, BODY.as_bytes()), OPENSSL_DIGEST);
        assert_eq!(
            verify_waha(
                &key(KEY),
                Some(OPENSSL_DIGEST),
                Some("sha512"),
                BODY.as_bytes()
            ),
            Ok(())
        );
        // Upper-case hex and an absent algorithm header are WAHA's digest too.
        assert_eq!(
            verify_waha(
                &key(KEY),
                Some(&OPENSSL_DIGEST.to_uppercase()),
                None,
                BODY.as_bytes()
            ),
            Ok(())
        );
    }

    #[test]
    fn rfc4231_case_2_is_accepted() {
        // RFC 4231 test case 2 (key "Jefe"), HMAC-SHA-512; also
        // `printf 'what do ya want for nothing?' | openssl dgst -sha512 -hmac Jefe`.
        let digest = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
        assert_eq!(
            verify_waha(
                &key("Jefe"),
                Some(digest),
                Some("sha512"),
                b"what do ya want for nothing?"
            ),
            Ok(())
        );
    }

    #[test]
    fn waha_signature_cases() {
        let mut flipped_body = BODY.as_bytes().to_vec();
        flipped_body[40] ^= 0x01;
        let mut flipped_sig = OPENSSL_DIGEST.to_string();
        flipped_sig.replace_range(0..1, "f");
        let short = &OPENSSL_DIGEST[..64];
        let cases: Vec<Case<'_>> = vec![
            (
                "flipped body byte",
                KEY,
                Some(OPENSSL_DIGEST),
                Some("sha512"),
                &flipped_body,
                Err(AuthError::Mismatch),
            ),
            (
                "flipped signature",
                KEY,
                Some(&flipped_sig),
                Some("sha512"),
                BODY.as_bytes(),
                Err(AuthError::Mismatch),
            ),
            (
                "wrong key",
                "other-key",
                Some(OPENSSL_DIGEST),
                Some("sha512"),
                BODY.as_bytes(),
                Err(AuthError::Mismatch),
            ),
            (
                "missing header",
                KEY,
                None,
                Some("sha512"),
                BODY.as_bytes(),
                Err(AuthError::Missing),
            ),
            (
                "sha256 algorithm",
                KEY,
                Some(OPENSSL_DIGEST),
                Some("sha256"),
                BODY.as_bytes(),
                Err(AuthError::Algorithm),
            ),
            (
                "empty algorithm",
                KEY,
                Some(OPENSSL_DIGEST),
                Some(""),
                BODY.as_bytes(),
                Err(AuthError::Algorithm),
            ),
            (
                "not hex",
                KEY,
                Some("zz"),
                Some("sha512"),
                BODY.as_bytes(),
                Err(AuthError::Malformed),
            ),
            (
                "odd length",
                KEY,
                Some("abc"),
                Some("sha512"),
                BODY.as_bytes(),
                Err(AuthError::Malformed),
            ),
            (
                "truncated digest",
                KEY,
                Some(short),
                Some("sha512"),
                BODY.as_bytes(),
                Err(AuthError::Malformed),
            ),
            (
                "empty body",
                KEY,
                Some(OPENSSL_DIGEST),
                Some("sha512"),
                b"",
                Err(AuthError::Mismatch),
            ),
        ];
        for (name, k, sig, alg, body, want) in cases {
            assert_eq!(verify_waha(&key(k), sig, alg, body), want, "{name}");
        }
    }

    #[test]
    fn green_api_token_cases() {
        let token = key("tok-123");
        let cases = [
            (Some("Bearer tok-123"), Ok(())),
            (Some("bearer tok-123"), Ok(())),
            (Some("tok-123"), Ok(())),
            (Some("  Bearer   tok-123  "), Ok(())),
            (Some("Bearer tok-124"), Err(AuthError::Mismatch)),
            (Some("tok-12"), Err(AuthError::Mismatch)),
            (Some("Basic tok-123"), Err(AuthError::Mismatch)),
            (Some("Bearer "), Err(AuthError::Mismatch)),
            (Some(""), Err(AuthError::Missing)),
            (None, Err(AuthError::Missing)),
        ];
        for (header, want) in cases {
            assert_eq!(verify_green_api(&token, header), want, "{header:?}");
        }
    }

    #[test]
    fn messages_name_no_secret() {
        for e in [
            AuthError::Missing,
            AuthError::Algorithm,
            AuthError::Malformed,
            AuthError::Mismatch,
        ] {
            for kind in ["waha", "green-api"] {
                let m = e.message(kind);
                assert!(!m.contains(KEY) && !m.contains("tok-123"), "{m}");
            }
        }
    }
}
