//! `toolgate audit verify|prune|export`: the operator's side of the audit
//! trail in the data store. Verifying, pruning and querying live in
//! `toolgate::audit`; this file resolves keys and files from the
//! configuration and prints the outcome.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{load, println_stdout};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, the signed checkpoints and (with
    /// --checkpoints) an exported checkpoint file; name the first bad
    /// record; exit 1 on any problem.
    Verify {
        /// An exported checkpoint file (JSON lines) kept outside the
        /// database: proves records cut off the end. Default: the
        /// configured `audit.checkpoint_file`, if it exists.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The checkpoint signer's public key (hex). Default: derived from
        /// the configured signing key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Delete records older than a duration, behind a signed checkpoint at
    /// the last one deleted (what remains still verifies); the deletion is
    /// recorded.
    Prune {
        /// Records older than this go (e.g. 90d).
        #[arg(long)]
        older_than: String,
    },
    /// Print records as JSON lines, oldest first.
    Export {
        /// From this time (RFC 3339, Unix seconds, or a duration ago: 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Until this time, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Output format (only `jsonl`).
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

pub async fn run(config: Option<&Path>, command: &AuditCommand) -> anyhow::Result<ExitCode> {
    use toolgate::audit::{SigningKey, query, verify};
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = toolgate::storage::Store::open_configured(&config.storage).await?;
    match command {
        AuditCommand::Verify {
            checkpoints,
            public_key,
        } => {
            let public_key = match public_key {
                Some(key) => key.trim().to_lowercase(),
                None => {
                    let key_file = config.storage.data_dir.join("audit.key");
                    if config.audit.signing_key.is_none() && !key_file.exists() {
                        anyhow::bail!(
                            "no audit signing key: neither [audit] signing_key nor {} is there; give the signer's public key with --public-key",
                            key_file.display()
                        );
                    }
                    SigningKey::load(config.audit.signing_key.as_ref(), &config.storage.data_dir)
                        .map_err(anyhow::Error::msg)?
                        .public_hex()
                }
            };
            let exported = checkpoints.clone().or_else(|| {
                let file = &config.audit.checkpoint_file;
                file.exists().then(|| file.clone())
            });
            let v = verify::verify(store.pool(), &public_key, exported.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            let range = match (v.first_seq, v.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..={b}"),
                _ => "no records".into(),
            };
            println_stdout(&format!(
                "{} records ({range}), {} stored checkpoints, {} exported checkpoints{}",
                v.records,
                v.checkpoints,
                v.exported,
                exported
                    .as_ref()
                    .map(|f| format!(" ({})", f.display()))
                    .unwrap_or_default()
            ));
            if let Some((from, to)) = v.unsigned {
                let after = match v.last_signed {
                    Some(seq) => format!("after the last signed checkpoint (seq {seq})"),
                    None => "no checkpoint has been signed yet".into(),
                };
                println_stdout(&format!(
                    "note: records {from}..={to} are not yet covered by a signed checkpoint ({after}): they chain, but whoever can write the store could have rewritten or cut them unnoticed; the next checkpoint (every checkpoint_interval, and at shutdown) covers them"
                ));
            }
            if v.ok() {
                println_stdout("audit trail verified: no problems");
                return Ok(ExitCode::SUCCESS);
            }
            for p in &v.problems {
                println_stdout(&format!("problem: {}", p.message));
            }
            if v.more > 0 {
                println_stdout(&format!("… and {} more problems", v.more));
            }
            if let Some(first) = v.first_bad() {
                println_stdout(&format!("first bad seq: {first}"));
            }
            Ok(ExitCode::FAILURE)
        }
        AuditCommand::Prune { older_than } => {
            let before = query::parse_time(older_than, toolgate::audit::now_ms())
                .map_err(anyhow::Error::msg)?;
            let key = SigningKey::load(config.audit.signing_key.as_ref(), &config.storage.data_dir)
                .map_err(anyhow::Error::msg)?;
            // What a configured receiver has not taken yet is kept.
            let mut hold = Vec::new();
            if config.audit.forward.is_some() {
                hold.push(toolgate::audit::forward::Feed::all_records().cursor);
            }
            if config.approvals.webhook.is_some() {
                hold.push(toolgate::approvals::WEBHOOK_CURSOR);
            }
            match toolgate::audit::retention::prune(
                &store,
                &key,
                &config.audit.checkpoint_file,
                before,
                &hold,
                toolgate::audit::Who::operator(),
            )
            .await
            .map_err(anyhow::Error::msg)?
            {
                Some(p) => {
                    println_stdout(&format!(
                        "pruned {} records through seq {} behind a signed checkpoint (appended to {})",
                        p.records,
                        p.through_seq,
                        config.audit.checkpoint_file.display()
                    ));
                    if p.held_back > 0 {
                        println_stdout(&format!(
                            "kept {} older records a forwarding receiver has not taken yet",
                            p.held_back
                        ));
                    }
                }
                None => println_stdout("nothing to prune (nothing that old, or not yet forwarded)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            since,
            until,
            format,
        } => {
            if format != "jsonl" {
                anyhow::bail!("--format {format}: only jsonl is supported");
            }
            let now = toolgate::audit::now_ms();
            let time = |t: &Option<String>| {
                t.as_deref()
                    .map(|t| query::parse_time(t, now))
                    .transpose()
                    .map_err(anyhow::Error::msg)
            };
            let filter = query::Filter {
                since_ms: time(since)?,
                until_ms: time(until)?,
                ..Default::default()
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let count = query::export(store.pool(), &filter, &mut out)
                .await
                .map_err(anyhow::Error::msg)?;
            std::io::Write::flush(&mut out)?;
            eprintln!("exported {count} records");
            Ok(ExitCode::SUCCESS)
        }
    }
}
