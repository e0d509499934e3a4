//! JWT access tokens: the rules, checked locally against an issuer's keys.
//!
//! Strict on purpose (each rule has a hostile test below):
//! - the algorithm comes from an allowlist (`RS256`, `ES256`); never `none`,
//!   never HMAC: keys are the issuer's public keys, so an `HS256` token
//!   "signed" with one is a forgery;
//! - `jku`, `x5u`, `x5c` and `jwk` headers are refused, never followed:
//!   keys come only from the issuer's configured JWKS;
//! - a `crit` header is refused (RFC 7515 §4.1.11: a token naming an
//!   extension the verifier does not understand is invalid, and toolgate
//!   understands none), and so is a malformed one; `b64` (RFC 7797, which
//!   changes what is signed) and `zip` (JWE only) are refused too;
//! - `exp`, `iss` and `aud` are required (not just checked when present);
//!   `iss` must match exactly, `aud` must include a configured audience;
//!   `exp` and `nbf` allow a bounded clock skew;
//! - an ID token presented as an access token is refused (it carries
//!   `nonce` or `at_hash`, or says `typ: id_token`).
//!
//! Signatures are checked with aws-lc-rs (already linked for TLS).

use std::time::Duration;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest token accepted (bytes); beyond it the token is refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT (three base64url parts expected)")]
    Malformed,
    #[error("token over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("algorithm `{0}` is not accepted")]
    Algorithm(String),
    #[error("header `{0}` is not accepted (keys come only from the issuer's JWKS)")]
    KeyHeader(&'static str),
    #[error("header `{0}` is not supported")]
    Unsupported(&'static str),
    #[error(
        "header `crit` names extension `{0}`, which toolgate does not understand (RFC 7515 §4.1.11)"
    )]
    CriticalExtension(String),
    #[error("header `crit` must be a non-empty array of extension header names: {0}")]
    MalformedCrit(&'static str),
    #[error("no key `{0}` in the issuer's key set")]
    UnknownKey(String),
    #[error("bad signature")]
    Signature,
    #[error("missing `{0}` claim")]
    Missing(&'static str),
    #[error("expired")]
    Expired,
    #[error("not valid yet (`nbf` in the future)")]
    NotYetValid,
    #[error("issuer `{0}` is not the configured one")]
    Issuer(String),
    #[error("audience does not include a configured one")]
    Audience,
    #[error("an ID token is not an access token")]
    IdToken,
    #[error("the ID token's `nonce` is not the one this sign-in sent")]
    Nonce,
}

/// One signature algorithm we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// A public key from a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    key: PublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed P-256 point (`04 ‖ x ‖ y`).
    P256(Vec<u8>),
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The signing keys of a JWKS document. Symmetric (`oct`) keys, encryption
/// keys and key types we don't verify are skipped, never trusted. Why a
/// document does not parse stays a string: it becomes the issuer's
/// `problem` text, for a person.
pub fn parse_jwks(json: &[u8]) -> Result<Vec<Jwk>, String> {
    let raw: RawJwks = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let b64 = |s: &Option<String>| s.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    Ok(raw
        .keys
        .into_iter()
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let key = match (k.kty.as_str(), k.crv.as_deref()) {
                ("RSA", _) => PublicKey::Rsa {
                    n: b64(&k.n)?,
                    e: b64(&k.e)?,
                },
                ("EC", Some("P-256")) => {
                    let (x, y) = (b64(&k.x)?, b64(&k.y)?);
                    if x.len() != 32 || y.len() != 32 {
                        return None;
                    }
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    PublicKey::P256(point)
                }
                _ => return None,
            };
            Some(Jwk { kid: k.kid, key })
        })
        .collect())
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Accepted `iss` values (exact match; Entra has one per tenant and
    /// token version).
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// What is expected: an access token (`None`; ID tokens are refused),
    /// or the ID token of a sign-in that sent this `nonce`.
    pub id_token_nonce: Option<String>,
}

/// The JOSE header parameters toolgate reads. Every other one is looked
/// at by [`refuse_header_parameters`] first, by presence (a `null` value
/// counts as present).
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

/// Header parameters registered by RFC 7515 and RFC 7516: `crit` may not
/// list them (§4.1.11).
const REGISTERED_HEADERS: [&str; 16] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc",
    "zip", "epk", "apu", "apv",
];

/// Refuses header parameters that would fetch keys, change what is
/// signed, or name extensions toolgate does not implement.
fn refuse_header_parameters(header: &Map<String, Value>) -> Result<(), JwtError> {
    for name in ["jku", "x5u", "x5c", "jwk"] {
        if header.contains_key(name) {
            return Err(JwtError::KeyHeader(name));
        }
    }
    if let Some(crit) = header.get("crit") {
        let Value::Array(names) = crit else {
            return Err(JwtError::MalformedCrit("not an array"));
        };
        if names.is_empty() {
            return Err(JwtError::MalformedCrit("empty"));
        }
        let mut seen: Vec<&str> = Vec::with_capacity(names.len());
        for name in names {
            let Value::String(name) = name else {
                return Err(JwtError::MalformedCrit("a name that is not a string"));
            };
            if name.is_empty() {
                return Err(JwtError::MalformedCrit("an empty name"));
            }
            if REGISTERED_HEADERS.contains(&name.as_str()) {
                return Err(JwtError::MalformedCrit(
                    "it lists a header defined by the JWS/JWE specifications",
                ));
            }
            if seen.contains(&name.as_str()) {
                return Err(JwtError::MalformedCrit("a name listed twice"));
            }
            if !header.contains_key(name) {
                return Err(JwtError::MalformedCrit(
                    "it lists a header the token does not carry",
                ));
            }
            seen.push(name);
        }
        // Well-formed, but toolgate implements no extension.
        return Err(JwtError::CriticalExtension(
            seen.first().copied().unwrap_or_default().to_string(),
        ));
    }
    for name in ["b64", "zip"] {
        if header.contains_key(name) {
            return Err(JwtError::Unsupported(name));
        }
    }
    Ok(())
}

/// The verified claims of `token`, or the first rule it breaks.
pub fn verify(
    token: &str,
    keys: &[Jwk],
    rules: &Rules,
    now: i64,
) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtError::Malformed)
    };
    let header_json = decode(h)?;
    let parameters: Map<String, Value> =
        serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
    refuse_header_parameters(&parameters)?;
    // Parsed again as a struct: serde refuses a duplicated `alg`, `kid` or
    // `typ` there, where the map above would keep the last one silently.
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
    let alg = Alg::parse(&header.alg)
        .filter(|a| rules.algorithms.contains(a))
        .ok_or_else(|| JwtError::Algorithm(header.alg.clone()))?;
    let key = match &header.kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid.as_str())),
        // No kid: only unambiguous with a single key.
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or_else(|| JwtError::UnknownKey(header.kid.clone().unwrap_or_default()))?;
    let signature = decode(s)?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    check_signature(alg, &key.key, signed, &signature)?;

    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(p)?).map_err(|_| JwtError::Malformed)?;
    let looks_like_id_token = header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("id_token"))
        || claims.contains_key("nonce")
        || claims.contains_key("at_hash");
    match &rules.id_token_nonce {
        None if looks_like_id_token => return Err(JwtError::IdToken),
        Some(nonce) if claims.get("nonce").and_then(Value::as_str) != Some(nonce.as_str()) => {
            return Err(JwtError::Nonce);
        }
        _ => {}
    }
    let leeway = rules.leeway.as_secs() as i64;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(JwtError::Missing("exp"))?;
    if exp + leeway <= now {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or(JwtError::Malformed)?;
        if nbf - leeway > now {
            return Err(JwtError::NotYetValid);
        }
    }
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(JwtError::Missing("iss"))?;
    if !rules.issuers.iter().any(|i| i == iss) {
        return Err(JwtError::Issuer(iss.to_string()));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Err(JwtError::Missing("aud")),
    };
    if !audiences
        .iter()
        .any(|a| rules.audiences.iter().any(|r| r == a))
    {
        return Err(JwtError::Audience);
    }
    Ok(claims)
}

fn check_signature(
    alg: Alg,
    key: &PublicKey,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), JwtError> {
    match (alg, key) {
        (Alg::Rs256, PublicKey::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, signature)
            .map_err(|_| JwtError::Signature),
        (Alg::Es256, PublicKey::P256(point)) => {
            let algorithm: &dyn VerificationAlgorithm = &signature::ECDSA_P256_SHA256_FIXED;
            UnparsedPublicKey::new(algorithm, point)
                .verify(signed, signature)
                .map_err(|_| JwtError::Signature)
        }
        // The key's type does not match the token's algorithm.
        _ => Err(JwtError::Signature),
    }
}

pub mod test_issuer {
    //! A test issuer with its own keys: for the hostile cases here and the
    //! integration tests (a fake IdP serving its JWKS). Not used by the
    //! gateway itself.
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};

    use super::*;

    pub struct TestIssuer {
        pub rsa: RsaKeyPair,
        pub ec: EcdsaKeyPair,
        /// The RSA key's `kid` (`rsa-1` unless rotated).
        pub rsa_kid: String,
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    impl Default for TestIssuer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TestIssuer {
        pub fn new() -> Self {
            Self::with_rsa_kid("rsa-1")
        }

        /// Fresh keys, the RSA one under `kid` (a rotation).
        pub fn with_rsa_kid(kid: &str) -> Self {
            let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa key");
            let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("ec key");
            Self {
                rsa,
                ec,
                rsa_kid: kid.to_string(),
            }
        }

        /// The JWKS document: kid `rsa-1` and `ec-1`.
        pub fn jwks(&self) -> String {
            let rsa = self.rsa.public_key();
            let (n, e) = rsa_components(rsa.as_ref());
            let point = self.ec.public_key().as_ref().to_vec();
            serde_json::json!({"keys": [
                {"kty": "RSA", "kid": self.rsa_kid, "use": "sig", "alg": "RS256", "n": b64(&n), "e": b64(&e)},
                {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])},
                {"kty": "oct", "kid": "hmac", "k": b64(b"secret")}
            ]})
            .to_string()
        }

        /// Sign `claims` with `header` (RS256 with rsa-1 unless the header
        /// says ES256).
        pub fn sign(&self, header: Value, claims: Value) -> String {
            let signed = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let rng = SystemRandom::new();
            let signature = if header["alg"] == "ES256" {
                self.ec
                    .sign(&rng, signed.as_bytes())
                    .expect("sign")
                    .as_ref()
                    .to_vec()
            } else {
                let mut sig = vec![0; self.rsa.public_modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        signed.as_bytes(),
                        &mut sig,
                    )
                    .expect("sign");
                sig
            };
            format!("{signed}.{}", b64(&signature))
        }

        /// The RSA public key as DER (for the HMAC-confusion forgery).
        pub fn rsa_public_der(&self) -> Vec<u8> {
            self.rsa
                .public_key()
                .as_der()
                .expect("der")
                .as_ref()
                .to_vec()
        }
    }

    /// (n, e) from a PKCS#1 RSAPublicKey DER: SEQUENCE { INTEGER n, INTEGER e }.
    fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn read(der: &[u8], at: &mut usize) -> Vec<u8> {
            let tag_len = |der: &[u8], at: &mut usize| -> usize {
                *at += 1; // tag
                let first = der[*at] as usize;
                *at += 1;
                if first < 0x80 {
                    first
                } else {
                    let n = first & 0x7f;
                    let mut len = 0;
                    for _ in 0..n {
                        len = (len << 8) | der[*at] as usize;
                        *at += 1;
                    }
                    len
                }
            };
            let len = tag_len(der, at);
            let value = der[*at..*at + len].to_vec();
            *at += len;
            value
        }
        let mut at = 0;
        // Enter the SEQUENCE.
        at += 1;
        let first = der[at] as usize;
        at += 1 + if first < 0x80 { 0 } else { first & 0x7f };
        let mut n = read(der, &mut at);
        let e = read(der, &mut at);
        while n.first() == Some(&0) {
            n.remove(0);
        }
        (n, e)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_issuer::TestIssuer;
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://idp.test/oauth2/default";

    fn rules() -> Rules {
        Rules {
            issuers: vec![ISS.into()],
            audiences: vec!["api://toolgate".into()],
            algorithms: vec![Alg::Rs256, Alg::Es256],
            leeway: Duration::from_secs(60),
            id_token_nonce: None,
        }
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": "api://toolgate", "sub": "alice", "exp": NOW + 300, "iat": NOW})
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(key);
        } else {
            claims[key] = value;
        }
        claims
    }

    #[test]
    fn hostile_tokens_are_refused_and_good_ones_pass() {
        let idp = TestIssuer::new();
        let keys = parse_jwks(idp.jwks().as_bytes()).expect("jwks");
        assert_eq!(keys.len(), 2, "the oct key is never a verification key");
        let rs = json!({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"});
        let check = |header: &Value, claims: Value| {
            verify(&idp.sign(header.clone(), claims), &keys, &rules(), NOW)
        };

        assert_eq!(check(&rs, claims()).expect("valid")["sub"], "alice");
        let es = json!({"alg": "ES256", "kid": "ec-1"});
        assert!(check(&es, claims()).is_ok());
        // An array audience including ours.
        assert!(
            check(
                &rs,
                with(claims(), "aud", json!(["other", "api://toolgate"]))
            )
            .is_ok()
        );

        type Verdict = Result<Map<String, Value>, JwtError>;
        let cases: Vec<(&str, Verdict)> = vec![
            (
                "wrong aud",
                check(&rs, with(claims(), "aud", json!("api://other"))),
            ),
            (
                "missing aud",
                check(&rs, with(claims(), "aud", Value::Null)),
            ),
            (
                "missing iss",
                check(&rs, with(claims(), "iss", Value::Null)),
            ),
            (
                "other iss",
                check(&rs, with(claims(), "iss", json!("https://idp.test"))),
            ),
            (
                "missing exp",
                check(&rs, with(claims(), "exp", Value::Null)),
            ),
            (
                "expired beyond skew",
                check(&rs, with(claims(), "exp", json!(NOW - 61))),
            ),
            (
                "nbf beyond skew",
                check(&rs, with(claims(), "nbf", json!(NOW + 61))),
            ),
            (
                "unknown kid",
                check(&json!({"alg": "RS256", "kid": "rsa-9"}), claims()),
            ),
            (
                "jku",
                check(
                    &json!({"alg": "RS256", "kid": "rsa-1", "jku": "https://evil.test/jwks"}),
                    claims(),
                ),
            ),
            (
                "x5u",
                check(
                    &json!({"alg": "RS256", "kid": "rsa-1", "x5u": "https://evil.test/cert"}),
                    claims(),
                ),
            ),
            (
                "id token (nonce)",
                check(&rs, with(claims(), "nonce", json!("n"))),
            ),
            (
                "id token (typ)",
                check(
                    &json!({"alg": "RS256", "kid": "rsa-1", "typ": "id_token"}),
                    claims(),
                ),
            ),
            (
                "ES256 header on the RSA key",
                check(&json!({"alg": "ES256", "kid": "rsa-1"}), claims()),
            ),
        ];
        let expected = [
            JwtError::Audience,
            JwtError::Missing("aud"),
            JwtError::Missing("iss"),
            JwtError::Issuer("https://idp.test".into()),
            JwtError::Missing("exp"),
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::UnknownKey("rsa-9".into()),
            JwtError::KeyHeader("jku"),
            JwtError::KeyHeader("x5u"),
            JwtError::IdToken,
            JwtError::IdToken,
            JwtError::Signature,
        ];
        for ((name, got), want) in cases.into_iter().zip(expected) {
            assert_eq!(got.err(), Some(want), "{name}");
        }
        // Inside the skew: still fine.
        assert!(check(&rs, with(claims(), "exp", json!(NOW - 30))).is_ok());
        assert!(check(&rs, with(claims(), "nbf", json!(NOW + 30))).is_ok());
    }

    #[test]
    fn unsigned_and_hmac_forgeries_are_refused() {
        let idp = TestIssuer::new();
        let keys = parse_jwks(idp.jwks().as_bytes()).expect("jwks");
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        // alg: none, empty signature.
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(
            verify(&none, &keys, &rules(), NOW).err(),
            Some(JwtError::Algorithm("none".into()))
        );
        // HS256 "signed" with the RSA public key as the HMAC secret.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"rsa-1"}"#);
        let signed = format!("{header}.{body}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &idp.rsa_public_der());
        let tag = aws_lc_rs::hmac::sign(&key, signed.as_bytes());
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(
            verify(&forged, &keys, &rules(), NOW).err(),
            Some(JwtError::Algorithm("HS256".into()))
        );
        // A tampered payload breaks the signature.
        let good = idp.sign(json!({"alg": "RS256", "kid": "rsa-1"}), claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("root")).to_string());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &keys, &rules(), NOW).err(),
            Some(JwtError::Signature)
        );
        // Oversized and malformed tokens are refused unread.
        assert_eq!(
            verify(&"a".repeat(MAX_TOKEN_BYTES + 1), &keys, &rules(), NOW).err(),
            Some(JwtError::TooLarge)
        );
        assert_eq!(
            verify("a.b", &keys, &rules(), NOW).err(),
            Some(JwtError::Malformed)
        );
    }

    #[test]
    fn critical_and_unsupported_header_parameters_are_refused() {
        let idp = TestIssuer::new();
        let keys = parse_jwks(idp.jwks().as_bytes()).expect("jwks");
        let check = |extra: Value| {
            let mut header = json!({"alg": "RS256", "kid": "rsa-1"});
            for (k, v) in extra.as_object().expect("object") {
                header[k] = v.clone();
            }
            verify(&idp.sign(header, claims()), &keys, &rules(), NOW).err()
        };
        let cases: Vec<(Value, JwtError)> = vec![
            // Well-formed, naming extensions toolgate does not implement.
            (
                json!({"crit": ["exp"], "exp": 1}),
                JwtError::CriticalExtension("exp".into()),
            ),
            (
                json!({"crit": ["b64"], "b64": false}),
                JwtError::CriticalExtension("b64".into()),
            ),
            (
                json!({"crit": ["http://x.test/ext", "y"], "http://x.test/ext": true, "y": 1}),
                JwtError::CriticalExtension("http://x.test/ext".into()),
            ),
            // Malformed `crit`.
            (
                json!({"crit": "exp", "exp": 1}),
                JwtError::MalformedCrit("not an array"),
            ),
            (
                json!({"crit": null}),
                JwtError::MalformedCrit("not an array"),
            ),
            (
                json!({"crit": {"exp": 1}}),
                JwtError::MalformedCrit("not an array"),
            ),
            (json!({"crit": []}), JwtError::MalformedCrit("empty")),
            (
                json!({"crit": [1]}),
                JwtError::MalformedCrit("a name that is not a string"),
            ),
            (
                json!({"crit": [""]}),
                JwtError::MalformedCrit("an empty name"),
            ),
            (
                json!({"crit": ["alg"]}),
                JwtError::MalformedCrit("it lists a header defined by the JWS/JWE specifications"),
            ),
            (
                json!({"crit": ["kid"]}),
                JwtError::MalformedCrit("it lists a header defined by the JWS/JWE specifications"),
            ),
            (
                json!({"crit": ["e", "e"], "e": 1}),
                JwtError::MalformedCrit("a name listed twice"),
            ),
            (
                json!({"crit": ["absent"]}),
                JwtError::MalformedCrit("it lists a header the token does not carry"),
            ),
            // Parameters that change what is signed, or belong to JWE.
            (json!({"b64": false}), JwtError::Unsupported("b64")),
            (json!({"b64": true}), JwtError::Unsupported("b64")),
            (json!({"zip": "DEF"}), JwtError::Unsupported("zip")),
            // Key-carrying headers, even when null.
            (json!({"x5c": ["MIIB"]}), JwtError::KeyHeader("x5c")),
            (json!({"jwk": null}), JwtError::KeyHeader("jwk")),
            (json!({"jku": null}), JwtError::KeyHeader("jku")),
        ];
        for (extra, want) in cases {
            assert_eq!(check(extra.clone()), Some(want), "{extra}");
        }
        // Harmless unregistered parameters and `x5t` hints still pass.
        assert_eq!(check(json!({"x5t": "abc", "note": "hi"})), None);
        // A duplicated `alg` is refused, not resolved to one of the two.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-1","alg":"RS256"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let good = idp.sign(json!({"alg": "RS256", "kid": "rsa-1"}), claims());
        let signature = good.rsplit('.').next().expect("signature");
        assert_eq!(
            verify(
                &format!("{header}.{body}.{signature}"),
                &keys,
                &rules(),
                NOW
            )
            .err(),
            Some(JwtError::Malformed)
        );
    }

    #[test]
    fn id_tokens_need_the_sign_ins_nonce() {
        let idp = TestIssuer::new();
        let keys = parse_jwks(idp.jwks().as_bytes()).expect("jwks");
        let rs = json!({"alg": "RS256", "kid": "rsa-1"});
        let sign_in = Rules {
            id_token_nonce: Some("n-123".into()),
            ..rules()
        };
        let id_token = |nonce: Value| idp.sign(rs.clone(), with(claims(), "nonce", nonce));
        assert!(verify(&id_token(json!("n-123")), &keys, &sign_in, NOW).is_ok());
        for nonce in [json!("n-999"), Value::Null] {
            assert_eq!(
                verify(&id_token(nonce), &keys, &sign_in, NOW).err(),
                Some(JwtError::Nonce)
            );
        }
        // Other issuers' ID tokens still fail on `iss`.
        let other = idp.sign(
            rs.clone(),
            with(
                with(claims(), "nonce", json!("n-123")),
                "iss",
                json!("https://elsewhere"),
            ),
        );
        assert!(matches!(
            verify(&other, &keys, &sign_in, NOW),
            Err(JwtError::Issuer(_))
        ));
    }
}
