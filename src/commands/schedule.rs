//! `herald schedule [--json]`: the next send times, what the next wake-up will do, and the
//! last slots.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Exit;
use crate::app::App;
use crate::schedule::{LatestAction, next_slots, plan_tick};
use crate::store::SlotRecord;

#[derive(Serialize)]
struct Report {
    cron: String,
    timezone: String,
    catch_up_hours: u32,
    review_hours: Option<u32>,
    next: Vec<DateTime<Utc>>,
    /// What the daemon's next wake-up does about a slot, if anything.
    pending: Option<Pending>,
    /// When the next slot's review window opens (with a review window configured).
    review_opens: Option<DateTime<Utc>>,
    last: Vec<SlotRecord>,
}

/// What the next wake-up does about a slot (JSON: `send`, `catch_up_with_review`, `review`,
/// `missed`, `too_late_for_review`).
#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Send,
    CatchUpWithReview,
    Review,
    Missed,
    TooLateForReview,
}

#[derive(Serialize)]
struct Pending {
    action: Action,
    slot: DateTime<Utc>,
    /// When the issue goes out, for an issue frozen for review.
    goes_out: Option<DateTime<Utc>>,
}

pub(super) async fn run(app: &App, json: bool) -> anyhow::Result<Exit> {
    let s = &app.config().schedule;
    let now = app.now();
    let next = next_slots(&s.cron, s.timezone, now, 5);
    let plan = plan_tick(app.schedule_state(now).await?, app.schedule_rules(), now);
    let pending = match plan.latest {
        Some(LatestAction::Send(slot)) => Some(Pending {
            action: Action::Send,
            slot,
            goes_out: Some(now),
        }),
        Some(LatestAction::Review { slot, goes_out }) => Some(Pending {
            action: Action::CatchUpWithReview,
            slot,
            goes_out: Some(goes_out),
        }),
        Some(LatestAction::Missed(slot)) => Some(Pending {
            action: Action::Missed,
            slot,
            goes_out: None,
        }),
        Some(LatestAction::TooLateForReview(slot)) => Some(Pending {
            action: Action::TooLateForReview,
            slot,
            goes_out: None,
        }),
        None => plan.review_next.map(|(slot, goes_out)| Pending {
            action: Action::Review,
            slot,
            goes_out: Some(goes_out),
        }),
    };
    let review_opens = s
        .review_hours
        .zip(next.first())
        .map(|(h, slot)| *slot - chrono::Duration::hours(i64::from(h)));
    let last = app.recent_slots(10).await?;
    let report = Report {
        cron: s.cron_expression.clone(),
        timezone: s.timezone.to_string(),
        catch_up_hours: s.catch_up_hours,
        review_hours: s.review_hours,
        next,
        pending,
        review_opens,
        last,
    };
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Exit::Success);
    }
    let local = |t: &DateTime<Utc>| {
        t.with_timezone(&s.timezone)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string()
    };
    crate::say!("schedule: `{}` in {}", report.cron, s.timezone);
    crate::say!(
        "catch-up window: {} h{}",
        s.catch_up_hours,
        s.review_hours.map_or(String::new(), |h| format!(
            "; review window: {h} h before each slot"
        ))
    );
    crate::say!("next send times:");
    for slot in &report.next {
        crate::say!(
            "  {}   ({})",
            local(slot),
            slot.format("%Y-%m-%d %H:%M UTC")
        );
    }
    if let Some(p) = &report.pending {
        let what = match p.action {
            Action::Send => "is due: the daemon's next wake-up sends it".to_owned(),
            Action::CatchUpWithReview => format!(
                "is to be caught up: the next wake-up freezes it for review, and it goes out {}",
                p.goes_out.as_ref().map(local).unwrap_or_default()
            ),
            Action::Review => format!(
                "is in its review window: the next wake-up freezes it and sends the editors a review copy; it goes out {}",
                p.goes_out.as_ref().map(local).unwrap_or_default()
            ),
            Action::Missed => {
                "passed longer ago than catch_up_hours: it will be recorded as missed".to_owned()
            }
            Action::TooLateForReview => {
                "is too late for a whole review window inside catch_up_hours: it will be skipped"
                    .to_owned()
            }
        };
        crate::say!("next wake-up: the slot {} {what}", local(&p.slot));
    } else if let Some(opens) = &report.review_opens {
        crate::say!("next review copy: {}", local(opens));
    }
    if report.last.is_empty() {
        crate::say!("no slot has been acted on yet");
    } else {
        crate::say!("last slots:");
        for r in &report.last {
            crate::say!(
                "  {}   {:<9} {}{}",
                local(&r.due_at),
                r.outcome,
                r.issue_number
                    .map_or(String::new(), |n| format!("issue #{n} ")),
                r.detail
            );
        }
    }
    Ok(Exit::Success)
}
