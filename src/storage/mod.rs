//! The persistent store: one sqlx pool over SQLite (the default: a file in
//! the data directory, WAL) or PostgreSQL (when several replicas share
//! state), with the migrations in `migrations/` applied at open.
//!
//! The SQL is kept portable so one set of migrations and queries serves
//! both (sqlx's `Any` driver picks the backend from the URL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    /// A key file ([`key_file`]) holds fewer than 64 hex digits.
    #[error("{}: too short; delete it to make a new one", .0.display())]
    KeyTooShort(PathBuf),
    #[error("reading {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The OS gave no random bytes for a new key.
    #[error("{0}")]
    Random(#[from] getrandom::Error),
    #[error("writing {}: {source}", path.display())]
    WriteKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The folder of an owner-only file ([`owner_only`]) could not be made.
    #[error("{}: {source}", dir.display())]
    FileDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening {}: {source}", path.display())]
    OpenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Most connections the gateway holds to the database.
const MAX_CONNECTIONS: u32 = 8;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The SQLite database file, when the store is SQLite.
    sqlite_file: Option<std::path::PathBuf>,
}

impl Store {
    /// The store `[storage]` names (see [`Store::open`]).
    pub async fn open_configured(
        storage: &crate::config::StorageConfig,
    ) -> Result<Self, StoreError> {
        Self::open(
            storage.database_url.as_ref().map(|s| s.expose()),
            &storage.data_dir,
        )
        .await
    }

    /// Open `database_url`, or else the SQLite file `toolgate.db` in
    /// `data_dir` (created if missing), and apply migrations.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = match database_url {
            Some(url) => url.to_string(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    dir: data_dir.display().to_string(),
                    source,
                })?;
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("toolgate.db").display()
                )
            }
        };
        let sqlite_file = if url.starts_with("sqlite:") {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
                .map_err(|source| StoreError::Open {
                    url: redact_url(&url),
                    source,
                })?;
            Some(options.get_filename().to_path_buf())
        } else {
            None
        };
        let sqlite = sqlite_file.is_some();
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { MAX_CONNECTIONS })
            // An embedded SQLite connection cannot have gone away; pinging
            // it before each use only costs a round trip to its thread.
            .test_before_acquire(!sqlite)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers don't block the writer; a busy writer
                        // is waited for instead of failing at once.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open {
                url: redact_url(&url),
                source,
            })?;
        sqlx::migrate!("src/storage/migrations").run(&pool).await?;
        Ok(Self { pool, sqlite_file })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// SQLite (embedded), as opposed to PostgreSQL.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite_file.is_some()
    }

    /// The SQLite database file (`None` on PostgreSQL).
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref()
    }
}

/// A database URL fit for messages: any password replaced.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The secret in `path`: 32 random bytes as 64 hex digits, made on first
/// use (owner-only) and read afterwards. For keys a single instance keeps
/// beside its SQLite file (cookie signing, audit checkpoints); replicas
/// sharing PostgreSQL are given theirs in the config instead.
pub fn key_file(path: &Path) -> Result<String, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= 64 => return Ok(text.trim().to_string()),
        Ok(_) => return Err(StoreError::KeyTooShort(path.to_path_buf())),
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(StoreError::ReadKey {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(_) => {}
    }
    let key = crate::util::digest::random_hex(32)?;
    let mut file = owner_only(path, false)?;
    std::io::Write::write_all(&mut file, key.as_bytes()).map_err(|source| {
        StoreError::WriteKey {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(key)
}

/// A file only its owner may read (mode 0600), its folder made if missing:
/// a new one, or (`append`) one to append to.
pub fn owner_only(path: &Path, append: bool) -> Result<std::fs::File, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::FileDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    if append {
        options.append(true).create(true);
    } else {
        options.write(true).create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| StoreError::OpenFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://tg:s3cret@127.0.0.1:5432/tg"),
            "postgres://tg:***@127.0.0.1:5432/tg"
        );
        assert_eq!(
            redact_url("sqlite://data/toolgate.db"),
            "sqlite://data/toolgate.db"
        );
    }

    #[tokio::test]
    async fn opens_a_sqlite_file_in_the_data_dir_and_migrates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store = Store::open(None, &data).await.expect("opens");
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'",
        )
        .fetch_all(store.pool())
        .await
        .expect("query");
        assert_eq!(tables.len(), 1);
        assert!(data.join("toolgate.db").exists());
        // Opening again finds the migrations applied.
        Store::open(None, &data).await.expect("reopens");
    }
}
