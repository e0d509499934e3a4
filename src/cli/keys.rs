//! `toolgate keys create|list|revoke`: manage API keys in the data store
//! (`toolgate::authenticate::api_keys`). A new key is printed alone on
//! stdout, for scripts; everything else people read goes to stderr.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use super::load;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// A unique name for the key (e.g. the agent or bot using it).
        #[arg(long)]
        name: String,
        /// A group the key's caller is in (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// How long the key stays valid: 30d, 12h, 90m (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List every key (never the keys themselves).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or name.
    Revoke { key: String },
}

pub async fn run(config: Option<&Path>, command: &KeysCommand) -> anyhow::Result<ExitCode> {
    use toolgate::authenticate::api_keys::{self, ApiKeys};
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = toolgate::storage::Store::open_configured(&config.storage).await?;
    let keys = ApiKeys::new(store, config.auth.api_key_cache_ttl);
    let when = |t: Option<i64>| t.map_or("-".to_string(), |t| t.to_string());
    match command {
        KeysCommand::Create {
            name,
            groups,
            expires,
        } => {
            let valid_for = expires
                .as_deref()
                .map(api_keys::parse_validity)
                .transpose()?;
            let (record, key) = keys
                .create(name, groups, valid_for, toolgate::audit::Who::operator())
                .await?;
            eprintln!(
                "created API key `{}` (id {}, groups [{}], expires {}). Store it now: it is not shown again.",
                record.name,
                record.id,
                record.groups.join(", "),
                when(record.expires_at)
            );
            // The key alone on stdout, for scripts.
            #[expect(clippy::print_stdout, reason = "the CLI prints the new key")]
            {
                println!("{key}");
            }
        }
        KeysCommand::List { json } => {
            let list = keys.list().await?;
            #[expect(clippy::print_stdout, reason = "the CLI prints the list")]
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("id\tname\tgroups\tcreated\texpires\trevoked\tlast_used");
                for k in list {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        k.id,
                        k.name,
                        k.groups.join(","),
                        k.created_at,
                        when(k.expires_at),
                        when(k.revoked_at),
                        when(k.last_used_at)
                    );
                }
            }
        }
        KeysCommand::Revoke { key } => {
            let record = keys.revoke(key, toolgate::audit::Who::operator()).await?;
            eprintln!(
                "revoked API key `{}` (id {}); gateways stop accepting it within auth.api_key_cache_ttl",
                record.name, record.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
