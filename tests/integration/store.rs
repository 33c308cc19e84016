//! The database enforces the invariants that protect subscribers.

use chrono::{TimeZone, Utc};
use herald::store::Store;
use sqlx::sqlite::SqlitePoolOptions;

use crate::harness::Sandbox;

async fn seeded(s: &Sandbox) -> sqlx::SqlitePool {
    let store = Store::open(&s.db_url()).await.unwrap();
    store.close().await;
    let pool = SqlitePoolOptions::new().connect(&s.db_url()).await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    sqlx::query(
        "INSERT INTO subscribers (id, email, email_key, name, status, source, created_at, updated_at)
         VALUES (1, 'a@example.com', 'a@example.com', 'A', 'confirmed', 'test', ?1, ?1)",
    )
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    for (id, number, slug) in [(1, 1, "chatbot"), (2, 2, "agi")] {
        sqlx::query(
            "INSERT INTO issues (id, number, cycle, term_slug, subject, preheader, html, text, created_at)
             VALUES (?1, ?2, 1, ?3, 's', 'p', '<p>h</p>', 't', ?4)",
        )
        .bind(id)
        .bind(number)
        .bind(slug)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool
}

fn is_constraint(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation() || e.message().contains("ABORT") || e.message().contains("final") || e.message().contains("frozen"))
}

#[tokio::test]
async fn the_database_rejects_a_second_ledger_row_for_one_recipient() {
    let s = Sandbox::new();
    let pool = seeded(&s).await;
    let insert = "INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at) VALUES (1, 1, 'pending', '2026-11-02T09:00:00Z')";
    sqlx::query(insert).execute(&pool).await.unwrap();
    let err = sqlx::query(insert).execute(&pool).await.unwrap_err();
    assert!(is_constraint(&err), "{err}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn the_database_rejects_sending_a_term_twice_in_one_cycle() {
    let s = Sandbox::new();
    let pool = seeded(&s).await;
    let insert = "INSERT INTO terms_sent (issue_id, cycle, slug, sent_at) VALUES (?1, ?2, 'chatbot', '2026-11-02T09:00:00Z')";
    sqlx::query(insert)
        .bind(1)
        .bind(1)
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query(insert)
        .bind(2)
        .bind(1)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_constraint(&err), "{err}");
    // The same term in the next cycle is fine.
    sqlx::query(insert)
        .bind(2)
        .bind(2)
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sent_delivery_cannot_be_made_sendable_again_and_a_frozen_issue_cannot_change() {
    let s = Sandbox::new();
    let pool = seeded(&s).await;
    sqlx::query("INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at) VALUES (1, 1, 'sent', '2026-11-02T09:00:00Z')")
        .execute(&pool)
        .await
        .unwrap();
    for status in ["pending", "sending", "failed"] {
        let err = sqlx::query("UPDATE deliveries SET status = ? WHERE issue_id = 1")
            .bind(status)
            .execute(&pool)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("a sent delivery is final")
                || message.contains("only a pending delivery can be claimed"),
            "{err}"
        );
    }
    let err = sqlx::query("UPDATE issues SET html = 'changed' WHERE id = 1")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a frozen issue cannot be changed"),
        "{err}"
    );
    let err = sqlx::query("INSERT INTO deliveries (issue_id, subscriber_id, status, updated_at) VALUES (2, 1, 'maybe', 'x')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CHECK"), "{err}");
}

#[tokio::test]
async fn the_store_uses_wal_and_addresses_are_unique_ignoring_case() {
    let s = Sandbox::new();
    let pool = seeded(&s).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let err = sqlx::query(
        "INSERT INTO subscribers (email, email_key, status, source, created_at, updated_at)
         VALUES ('A@example.com', 'a@example.com', 'confirmed', 'test', 'x', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(is_constraint(&err), "{err}");
}

/// An installation upgraded from a Herald that stored addresses as typed: a Unicode domain
/// becomes its IDNA form at start-up, so the same mailbox typed either way is one subscriber;
/// a pair that is already two rows is left alone (and reported), never merged blindly.
#[tokio::test]
async fn addresses_stored_before_normalisation_are_normalised_when_the_store_opens() {
    let s = Sandbox::new();
    let pool = seeded(&s).await;
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
