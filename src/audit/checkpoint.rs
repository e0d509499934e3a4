//! Signed checkpoints: "the chain had reached `seq` with `record_hash`",
//! signed with an Ed25519 key that is never stored in the database.
//!
//! Each checkpoint is written to the store (`audit_checkpoints`) and
//! appended as one JSON line to a file outside it (`audit.checkpoint_file`).
//! Whoever edits the database cannot forge one, and a copy of the file
//! proves records that were cut off the end of the chain.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyPool;

use super::{AuditError, canonical};
use crate::util::digest::{decode_hex, hex, key_seed};

/// The key that signs checkpoints, and the key of argument hashes
/// derived from it ([`SigningKey::args_mac_hex`]).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    args_key: hmac::Key,
}

/// HKDF salt and info of the argument hash key: the derived key is never
/// the signing seed itself, nor any other key derived from it.
const ARGS_KEY_SALT: &[u8] = b"toolgate audit";
const ARGS_KEY_INFO: &[u8] = b"args_hash hmac-sha256 v1";

impl SigningKey {
    /// From a 32-byte seed given as 64 hex digits or base64.
    pub fn from_text(text: &str) -> Result<SigningKey, AuditError> {
        let seed = key_seed(text).map_err(AuditError::KeySeed)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)?;
        // Argument hashes are keyed by the signing key (HKDF-SHA256 of its
        // seed) rather than by a key of their own: it is already outside
        // the database, every replica already shares it (approvals are
        // bound to the hash on any replica), and the command line loads it
        // the same way; a new key would be one more secret to distribute.
        let args_key = hkdf::Salt::new(hkdf::HKDF_SHA256, ARGS_KEY_SALT)
            .extract(&seed)
            .expand(&[ARGS_KEY_INFO], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(|_| AuditError::ArgsKey)?;
        Ok(SigningKey { pair, args_key })
    }

    /// The configured key, or the one in `data_dir/audit.key` (made on
    /// first use, owner-only).
    pub fn load(
        configured: Option<&crate::config::Secret>,
        data_dir: &Path,
    ) -> Result<SigningKey, AuditError> {
        match configured {
            Some(secret) => SigningKey::from_text(secret.expose()),
            None => {
                let text = crate::storage::key_file(&data_dir.join("audit.key"))?;
                SigningKey::from_text(&text)
            }
        }
    }

    /// The public key, hex: what verifiers are given.
    pub fn public_hex(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// HMAC-SHA256 of `message` (hex) under the key derived for
    /// argument hashes: whoever reads the audit cannot test guesses of a
    /// masked argument against it without this key.
    pub fn args_mac_hex(&self, message: &[u8]) -> String {
        hex(hmac::sign(&self.args_key, message).as_ref())
    }

    fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(message).as_ref())
    }

    /// A signature over `message` for another use than checkpoints:
    /// `purpose` keeps the two from ever standing for each other.
    pub fn sign_for(&self, purpose: &str, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&for_purpose(purpose, message))
            .as_ref()
            .to_vec()
    }

    /// Whether `signature` is [`Self::sign_for`]'s for `purpose` and
    /// `message`.
    pub fn verify_for(&self, purpose: &str, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(&for_purpose(purpose, message), signature)
            .is_ok()
    }
}

/// What [`SigningKey::sign_for`] signs: `purpose`, a zero byte, `message`.
fn for_purpose(purpose: &str, message: &[u8]) -> Vec<u8> {
    [purpose.as_bytes(), &[0], message].concat()
}

/// One signed checkpoint, as stored and exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub record_hash: String,
    pub at_ms: i64,
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    /// Base64 Ed25519 signature over [`Checkpoint::body`].
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: canonical JSON of everything but the signature.
    pub fn body(&self) -> String {
        canonical(&json!({
            "seq": self.seq,
            "record_hash": self.record_hash,
            "at_ms": self.at_ms,
            "public_key": self.public_key,
        }))
    }

    pub fn new(seq: i64, record_hash: String, key: &SigningKey) -> Checkpoint {
        let mut c = Checkpoint {
            seq,
            record_hash,
            at_ms: super::now_ms(),
            public_key: key.public_hex(),
            signature: String::new(),
        };
        c.signature = key.sign(c.body().as_bytes());
        c
    }

    /// Whether `public_key_hex` signed it (and it is the key it names).
    pub fn signed_by(&self, public_key_hex: &str) -> bool {
        if !self.public_key.eq_ignore_ascii_case(public_key_hex) {
            return false;
        }
        let (Some(key), Ok(signature)) =
            (decode_hex(public_key_hex), STANDARD.decode(&self.signature))
        else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, key)
            .verify(self.body().as_bytes(), &signature)
            .is_ok()
    }
}

/// Sign the chain's head (if it moved past the last checkpoint), store it
/// and append it to `file`. Returns the new checkpoint, if one was made.
pub async fn write(
    pool: &AnyPool,
    key: &SigningKey,
    file: &Path,
) -> Result<Option<Checkpoint>, AuditError> {
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, record_hash FROM audit_head WHERE chain = 'main'")
            .fetch_one(pool)
            .await?;
    let (last,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM audit_checkpoints")
        .fetch_one(pool)
        .await?;
    if seq == 0 || last.is_some_and(|s| s >= seq) {
        return Ok(None);
    }
    let checkpoint = Checkpoint::new(seq, hash, key);
    store(pool, &checkpoint).await?;
    export(file, &checkpoint)?;
    Ok(Some(checkpoint))
}

/// Sign a checkpoint at `seq` (an existing record), unless there is one;
/// store and export it.
pub async fn at(
    pool: &AnyPool,
    key: &SigningKey,
    file: &Path,
    seq: i64,
) -> Result<Checkpoint, AuditError> {
    let existing: Option<CheckpointRow> = sqlx::query_as(
        "SELECT seq, record_hash, at_ms, body, signature FROM audit_checkpoints WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = existing {
        return Ok(from_row(row));
    }
    let (hash,): (String,) = sqlx::query_as("SELECT record_hash FROM audit_records WHERE seq = $1")
        .bind(seq)
        .fetch_one(pool)
        .await
        .map_err(|source| AuditError::ReadRecord { seq, source })?;
    let checkpoint = Checkpoint::new(seq, hash, key);
    store(pool, &checkpoint).await?;
    export(file, &checkpoint)?;
    Ok(checkpoint)
}

/// Put a checkpoint in the store.
pub async fn store(pool: &AnyPool, c: &Checkpoint) -> Result<(), AuditError> {
    sqlx::query(
        // Replicas (and a prune) may sign the same seq at once: either
        // signature vouches for it.
        "INSERT INTO audit_checkpoints (seq, record_hash, at_ms, body, signature) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind(c.seq)
    .bind(&c.record_hash)
    .bind(c.at_ms)
    .bind(c.body())
    .bind(&c.signature)
    .execute(pool)
    .await
    ?;
    Ok(())
}

/// Append a checkpoint to the export file (created owner-only).
pub fn export(file: &Path, c: &Checkpoint) -> Result<(), AuditError> {
    let mut f = crate::storage::owner_only(file, true)?;
    let line = serde_json::to_string(c)?;
    writeln!(f, "{line}")
        .and_then(|()| f.sync_data())
        .map_err(|source| AuditError::WriteFile {
            path: file.to_path_buf(),
            source,
        })
}

/// Every checkpoint in the store, oldest first.
pub async fn stored(pool: &AnyPool) -> Result<Vec<Checkpoint>, AuditError> {
    let rows: Vec<CheckpointRow> = sqlx::query_as(
        "SELECT seq, record_hash, at_ms, body, signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// A stored checkpoint's columns.
type CheckpointRow = (i64, String, i64, String, String);

fn from_row((seq, record_hash, at_ms, body, signature): CheckpointRow) -> Checkpoint {
    let public_key = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["public_key"].as_str().map(str::to_string))
        .unwrap_or_default();
    Checkpoint {
        seq,
        record_hash,
        at_ms,
        public_key,
        signature,
    }
}

/// The checkpoints of an exported file, with the line of each problem.
pub fn read_file(file: &Path) -> Result<Vec<Checkpoint>, AuditError> {
    let text = std::fs::read_to_string(file).map_err(|source| AuditError::ReadFile {
        path: file.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| AuditError::NotACheckpoint {
                path: file.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_only_under_their_key() {
        let key = SigningKey::from_text(&"11".repeat(32)).expect("hex key");
        let other = SigningKey::from_text(&STANDARD.encode([7u8; 32])).expect("base64 key");
        let c = Checkpoint::new(5, "ab".repeat(32), &key);
        assert!(c.signed_by(&key.public_hex()));
        assert!(!c.signed_by(&other.public_hex()));
        let mut moved = c.clone();
        moved.seq = 4;
        assert!(!moved.signed_by(&key.public_hex()), "edited after signing");
        assert!(SigningKey::from_text("short").is_err());
    }
}
