//! The database enforces the invariants that protect subscribers.

use chrono::{TimeZone, Utc};
use herald::store::Store;

use crate::harness::{Db, Sandbox};

async fn seeded(s: &Sandbox) -> Db {
    let store = Store::open(&s.db_url()).await.unwrap();
    store.close().await;
    let db = s.db().await;
    db.execute(
        "INSERT INTO subscribers (id, email, email_key, name, status, source, created_at, updated_at)
         VALUES (1, 'a@example.com', 'a@example.com', 'A', 'confirmed', 'test',
                 '2026-11-02T09:00:00+00:00', '2026-11-02T09:00:00+00:00')",
    )
    .await
    .unwrap();
    for (id, number, slug) in [(1, 1, "chatbot"), (2, 2, "agi")] {
        db.execute(&format!(
            "INSERT INTO issues (id, number, cycle, term_slug, subject, preheader, html, text, created_at)
             VALUES ({id}, {number}, 1, '{slug}', 's', 'p', '<p>h</p>', 't', '2026-11-02T09:00:00+00:00')"
        ))
        .await
        .unwrap();
    }
    db
}

fn is_constraint(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation() || e.message().contains("ABORT") || e.message().contains("final") || e.message().contains("frozen"))
}

#[tokio::test]
async fn the_database_rejects_a_second_ledger_row_for_one_recipient() {
    let s = Sandbox::new();
    let db = seeded(&s).await;
    let insert = "INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at) VALUES (1, 1, 'pending', '2026-11-02T09:00:00Z')";
    db.execute(insert).await.unwrap();
    let err = db.execute(insert).await.unwrap_err();
    assert!(is_constraint(&err), "{err}");
    assert_eq!(db.i64("SELECT COUNT(*) FROM deliveries").await, 1);
}

#[tokio::test]
async fn the_database_rejects_sending_a_term_twice_in_one_cycle() {
    let s = Sandbox::new();
    let db = seeded(&s).await;
    let insert = |issue: i64, cycle: i64| {
        format!(
            "INSERT INTO terms_sent (issue_id, cycle, slug, sent_at) VALUES ({issue}, {cycle}, 'chatbot', '2026-11-02T09:00:00Z')"
        )
    };
    db.execute(&insert(1, 1)).await.unwrap();
    let err = db.execute(&insert(2, 1)).await.unwrap_err();
    assert!(is_constraint(&err), "{err}");
    // The same term in the next cycle is fine.
    db.execute(&insert(2, 2)).await.unwrap();
}

#[tokio::test]
async fn a_sent_delivery_cannot_be_made_sendable_again_and_a_frozen_issue_cannot_change() {
    let s = Sandbox::new();
    let db = seeded(&s).await;
    db.execute("INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at) VALUES (1, 1, 'sent', '2026-11-02T09:00:00Z')")
        .await
        .unwrap();
    for status in ["pending", "sending", "failed"] {
        let err = db
            .execute(&format!(
                "UPDATE deliveries SET status = '{status}' WHERE issue_id = 1"
            ))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("a sent delivery is final")
                || message.contains("only a pending delivery can be claimed"),
            "{err}"
        );
    }
    let err = db
        .execute("UPDATE issues SET html = 'changed' WHERE id = 1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a frozen issue cannot be changed"),
        "{err}"
    );
    let err = db
        .execute("INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at) VALUES (2, 1, 'maybe', '2026-11-02T09:00:00Z')")
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("check"), "{err}");
}

#[tokio::test]
async fn the_store_uses_wal_and_addresses_are_unique_ignoring_case() {
    let s = Sandbox::new();
    let db = seeded(&s).await;
    if let Db::Sqlite(pool) = &db {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
    let err = db
        .execute(
            "INSERT INTO subscribers (email, email_key, status, source, created_at, updated_at)
             VALUES ('A@example.com', 'a@example.com', 'confirmed', 'test',
                     '2026-11-02T09:00:00Z', '2026-11-02T09:00:00Z')",
        )
        .await
        .unwrap_err();
    assert!(is_constraint(&err), "{err}");
}

/// An installation upgraded from a Herald that stored addresses as typed: a Unicode domain
/// becomes its IDNA form at start-up, so the same mailbox typed either way is one subscriber;
/// a pair that is already two rows is left alone (and reported), never merged blindly.
#[tokio::test]
async fn addresses_stored_before_normalisation_are_normalised_when_the_store_opens() {
    if crate::harness::sqlite_only("an address stored before normalisation") {
        return;
    }
    let s = Sandbox::new();
    let Db::Sqlite(pool) = seeded(&s).await else {
        unreachable!("SQLite")
    };
    // A database an older Herald wrote: it never normalised, so it has no record of it.
    sqlx::query("DELETE FROM daemon_state WHERE key = 'addresses_normalised'")
        .execute(&pool)
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    for (id, email) in [
        (10, "User@München.de"),
        (11, "b@bücher.de"),
        (12, "b@xn--bcher-kva.de"),
    ] {
        sqlx::query(
            "INSERT INTO subscribers (id, email, email_key, name, status, source, created_at, updated_at)
             VALUES (?1, ?2, lower(?2), '', 'confirmed', 'import:old.csv', ?3, ?3)",
        )
        .bind(id)
        .bind(email)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = Store::open(&s.db_url()).await.unwrap();
    let punycode = herald::domain::EmailAddress::parse("user@xn--mnchen-3ya.de").unwrap();
    let found = store
        .subscriber(&punycode)
        .await
        .unwrap()
        .expect("found by its IDNA form");
    assert_eq!(found.id, 10);
    let typed = herald::domain::EmailAddress::parse("USER@münchen.de").unwrap();
    assert_eq!(
        store.subscriber(&typed).await.unwrap().map(|r| r.id),
        Some(10)
    );
    // A second request for the same mailbox adds no one.
    let before = store.subscribers(None).await.unwrap().len();
    store
        .request_subscription(
            &typed,
            &herald::domain::SubscriberName::clean(""),
            &herald::domain::SubscriberName::clean(""),
            now,
        )
        .await
        .unwrap();
    assert_eq!(store.subscribers(None).await.unwrap().len(), before);
    // The pair that was already two rows stays two rows, both readable.
    let ids: Vec<i64> = store
        .subscribers(None)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.email.as_str().ends_with("xn--bcher-kva.de"))
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [11, 12]);
}

/// The store writes every statement with numbered placeholders (`$1`, `$2`) for both
/// databases, and relies on each binding them by their number: out of order, repeated, one
/// used only in a `WHERE` and, on SQLite (whose delivery step is several statements sent as
/// one query), across the statements of one query.
#[tokio::test]
async fn numbered_placeholders_bind_by_number_out_of_order_and_repeated() {
    let s = Sandbox::new();
    Store::open(&s.db_url()).await.unwrap().close().await;
    let sql = "SELECT CAST($3 AS TEXT), CAST($1 AS BIGINT) + 1,
                      CAST($3 AS TEXT) || CAST($2 AS TEXT)
               WHERE CAST($2 AS TEXT) = 'b'";
    type Row = (String, i64, String);
    let expected: Row = ("c".to_owned(), 42, "cb".to_owned());
    match s.db().await {
        Db::Sqlite(pool) => {
            let row: Row = sqlx::query_as(sql)
                .bind(41_i64)
                .bind("b")
                .bind("c")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(row, expected);
            let rows = sqlx::query(
                "SELECT CAST($2 AS TEXT) AS x; SELECT CAST($1 AS TEXT) AS x, CAST($2 AS TEXT) AS y",
            )
            .bind("a")
            .bind("b")
            .fetch_all(&pool)
            .await
            .unwrap();
            let values: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    use sqlx::Row as _;
                    (0..r.len()).map(|i| r.get::<String, _>(i)).collect()
                })
                .collect();
            assert_eq!(values, [vec!["b"], vec!["a", "b"]]);
        }
        Db::Postgres(pool) => {
            let row: Row = sqlx::query_as(sql)
                .bind(41_i64)
                .bind("b")
                .bind("c")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(row, expected);
        }
    }
}
