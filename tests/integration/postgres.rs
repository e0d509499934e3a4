//! The store on a real PostgreSQL (tests/common/postgres.rs: a throwaway
//! cluster on 127.0.0.1, one database per test): migrations apply and are
//! found applied; while the database is down the store fails (it does not
//! hang or fall back), and it recovers when the database is back.

use std::time::Duration;

use sqlx::AnyPool;
use toolgate::storage::Store;

use crate::common::postgres::PgServer;

/// Longer than the store's pool acquire timeout: a failure must come, not a hang.
const LIMIT: Duration = Duration::from_secs(30);

/// Names of the public tables called `name` (0 or 1 of them).
async fn tables_named(pool: &AnyPool, name: &str) -> Vec<(String,)> {
    // `table_name` is a `sql_identifier`, which the Any driver can't decode.
    sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name = $1",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn applied_migrations(pool: &AnyPool) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn the_store_opens_and_migrates_on_postgres() {
    let Some(pg) = PgServer::start().await else {
        return;
    };
    let url = pg.create_database("store_migrates").await;
    let data = tempfile::tempdir().unwrap();

    let store = Store::open(Some(&url), data.path()).await.unwrap();
    assert_eq!(
        tables_named(store.pool(), "api_keys").await,
        vec![("api_keys".to_string(),)]
    );
    let applied = applied_migrations(store.pool()).await;
    assert!(applied >= 1, "no migration recorded");

    // Opening again finds the migrations applied and applies none twice.
    let again = Store::open(Some(&url), data.path()).await.unwrap();
    assert_eq!(applied_migrations(again.pool()).await, applied);
    // The database URL wins: no SQLite file appears in the data directory.
    assert!(!data.path().join("toolgate.db").exists());
}

#[tokio::test]
async fn the_store_fails_while_postgres_is_down_and_recovers_after() {
    let Some(pg) = PgServer::start().await else {
        return;
    };
    let url = pg.create_database("store_recovers").await;
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(Some(&url), data.path()).await.unwrap();
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_sha256, groups_json, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind("k1")
    .bind("ci")
    .bind("0".repeat(64))
    .bind("[]")
    .bind(1_i64)
    .execute(store.pool())
    .await
    .unwrap();

    pg.stop().await;
    let query = sqlx::query_as::<_, (String,)>("SELECT name FROM api_keys").fetch_all(store.pool());
    let down = tokio::time::timeout(LIMIT, query)
        .await
        .expect("a query while the database is down must fail, not hang");
    assert!(down.is_err(), "a query succeeded on a stopped database");
    let reopen = tokio::time::timeout(LIMIT, Store::open(Some(&url), data.path()))
        .await
        .expect("opening a stopped database must fail, not hang");
    assert!(reopen.is_err(), "the store opened on a stopped database");

    pg.restart().await;
    // The open store's pool reconnects by itself, and the data survived.
    let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM api_keys")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(names, vec![("ci".to_string(),)]);
    let reopened = Store::open(Some(&url), data.path()).await.unwrap();
    assert_eq!(tables_named(reopened.pool(), "api_keys").await.len(), 1);
}
