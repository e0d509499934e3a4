//! Hex, SHA-256 and random identifiers: the digests every floor uses;
//! and the text form of a 32-byte key seed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Lowercase hex of `bytes`. Written here rather than taken from a crate:
/// eight lines, no parsing, nothing secret depends on its timing.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` random bytes from the OS, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex(&buf))
}

/// A 32-byte key seed given as 64 hex digits or base64 (whitespace
/// around it ignored): the text form of the audit signing key, checked by
/// config at load and turned into the key by `audit`.
pub fn key_seed(text: &str) -> Result<[u8; 32], &'static str> {
    let text = text.trim();
    decode_hex(text)
        .or_else(|| STANDARD.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(
            "an audit signing key is 32 random bytes as 64 hex digits (or base64), e.g. from `openssl rand -hex 32`",
        )
}

/// The bytes of an even number of hex digits (either case), or `None`.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
