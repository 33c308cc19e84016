//! Schedule arithmetic with a fixed clock: the send time stays at the configured local time
//! across daylight-saving changes, in zones north and south, and with a half-hour offset.

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use herald::schedule::parse_cron;
use herald::schedule::{SlotDecision, decide, latest_slot, next_slots};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn check(zone: &str, from: &str, expected: &[&str]) {
    let tz: Tz = zone.parse().unwrap();
    let cron = parse_cron("0 0 9 * * Mon").unwrap();
    let slots = next_slots(&cron, tz, utc(from), expected.len());
    let got: Vec<String> = slots.iter().map(|s| s.to_rfc3339()).collect();
    let want: Vec<String> = expected.iter().map(|s| utc(s).to_rfc3339()).collect();
    assert_eq!(got, want, "{zone}");
    for s in &slots {
        let local = s.with_timezone(&tz);
        assert_eq!((local.hour(), local.minute()), (9, 0), "{zone}: {local}");
    }
}

#[test]
fn berlin_sends_at_nine_local_across_both_changes() {
    check(
        "Europe/Berlin",
        "2026-03-20T00:00:00Z",
        &["2026-03-23T08:00:00Z", "2026-03-30T07:00:00Z"],
    );
    check(
        "Europe/Berlin",
        "2026-10-20T00:00:00Z",
        &["2026-10-26T08:00:00Z", "2026-11-02T08:00:00Z"],
    );
    check(
        "Europe/Berlin",
        "2026-10-13T00:00:00Z",
        &["2026-10-19T07:00:00Z", "2026-10-26T08:00:00Z"],
    );
}

#[test]
fn new_york_sends_at_nine_local_across_both_changes() {
    check(
        "America/New_York",
        "2026-03-01T00:00:00Z",
        &["2026-03-02T14:00:00Z", "2026-03-09T13:00:00Z"],
    );
    check(
        "America/New_York",
        "2026-10-25T00:00:00Z",
        &["2026-10-26T13:00:00Z", "2026-11-02T14:00:00Z"],
    );
}

#[test]
fn sydney_sends_at_nine_local_across_the_southern_changes() {
    check(
        "Australia/Sydney",
        "2026-03-28T00:00:00Z",
        &["2026-03-29T22:00:00Z", "2026-04-05T23:00:00Z"],
    );
    check(
        "Australia/Sydney",
        "2026-09-26T00:00:00Z",
        &["2026-09-27T23:00:00Z", "2026-10-04T22:00:00Z"],
    );
}

#[test]
fn kolkata_half_hour_offset_is_kept() {
    let tz: Tz = "Asia/Kolkata".parse().unwrap();
    let cron = parse_cron("0 30 9 * * *").unwrap();
    let slots = next_slots(&cron, tz, utc("2026-03-29T00:00:00Z"), 3);
    assert_eq!(slots[0], utc("2026-03-29T04:00:00Z"));
    for s in slots {
        let local = s.with_timezone(&tz);
        assert_eq!((local.hour(), local.minute()), (9, 30));
        assert_eq!((s.hour(), s.minute()), (4, 0));
    }
}

#[test]
fn a_slot_missed_while_down_is_caught_up_inside_the_window_only() {
    let tz: Tz = "Europe/Berlin".parse().unwrap();
    let cron = parse_cron("0 0 9 * * Mon").unwrap();
    let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let back_soon = slot + chrono::Duration::hours(5);
    assert_eq!(latest_slot(&cron, tz, back_soon), Some(slot));
    assert_eq!(
        decide(latest_slot(&cron, tz, back_soon), false, back_soon, 24),
        SlotDecision::Send(slot)
    );
    let back_late = slot + chrono::Duration::hours(30);
    assert_eq!(
        decide(latest_slot(&cron, tz, back_late), false, back_late, 24),
        SlotDecision::Missed(slot)
    );
}

#[tokio::test]
async fn herald_schedule_shows_a_slot_about_to_be_caught_up_or_reviewed_and_has_json() {
    let s = crate::harness::Sandbox::new();
    // A daily slot two minutes ago, and a daemon that had been running since an hour before.
    let now = herald::clock::Clock::now(&herald::clock::SystemClock);
    let due = now - chrono::Duration::minutes(2);
    let cron = format!(
        "0 {} {} * * *",
        chrono::Timelike::minute(&due),
        chrono::Timelike::hour(&due)
    );
    let store = s.store().await;
    store
        .first_daemon_start(now - chrono::Duration::hours(1))
        .await
        .unwrap();
    store.close().await;
    let config = |extra: &str| {
        s.write(
            "herald.toml",
            format!(
                "{}\n[schedule]\ncron = \"{cron}\"\ntimezone = \"UTC\"\n{extra}",
                crate::harness::CONFIG
            ),
        );
    };

    config("");
    let run = s.herald(&["schedule", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["pending"]["action"], "send", "{report}");
    assert_eq!(report["next"].as_array().unwrap().len(), 5);
    let text = s.herald(&["schedule"]);
    assert!(
        text.stdout
            .contains("is due: the daemon's next wake-up sends it"),
        "{text:?}"
    );

    config("review_hours = 1\neditors = [\"editor@example.com\"]\n");
    let report: serde_json::Value =
        serde_json::from_str(&s.herald(&["schedule", "--json"]).stdout).unwrap();
    assert_eq!(
        report["pending"]["action"], "catch_up_with_review",
        "{report}"
    );
    let goes_out: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(report["pending"]["goes_out"].clone()).unwrap();
    assert!(goes_out >= now + chrono::Duration::minutes(59), "{report}");
    // Reading the schedule changes nothing: no slot recorded, no start invented.
    assert_eq!(report["last"], serde_json::json!([]));
}
