//! Schedule arithmetic: when issues are due, in the newsletter's time zone.
//!
//! Pure: the current time is a parameter. Due times are computed with croner on local time in
//! the configured IANA zone (chrono-tz), so a send stays at the configured local time across
//! daylight-saving changes.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The first slot strictly after `after`, or `None` when the expression never matches again.
pub fn next_slot(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The next `n` slots after `after`.
pub fn next_slots(
    cron: &croner::Cron,
    tz: Tz,
    after: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut slots = Vec::with_capacity(n);
    let mut at = after;
    while slots.len() < n {
        match next_slot(cron, tz, at) {
            Some(t) => {
                slots.push(t);
                at = t;
            }
            None => break,
        }
    }
    slots
}

/// The most recent slot at or before `now`.
pub fn latest_slot(cron: &croner::Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The unique key of a slot: its UTC time in RFC 3339 (`2026-11-30T08:00:00Z`).
pub fn slot_key(slot: DateTime<Utc>) -> String {
    slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The slot a key names (the inverse of [`slot_key`]).
pub fn parse_slot_key(key: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(key)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A slot noticed this late is still sent even when `catch_up_hours` is 0: the daemon wakes
/// once a minute, so "on time" means within a few minutes.
pub const MIN_CATCH_UP: chrono::Duration = chrono::Duration::minutes(15);

/// What to do about the most recent slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotDecision {
    /// No slot yet, or it was already handled.
    Nothing,
    /// Send the issue for this slot now (on time, or caught up after a restart).
    Send(DateTime<Utc>),
    /// The slot passed longer ago than `catch_up_hours`: record it as missed, send nothing.
    Missed(DateTime<Utc>),
}

/// Decides about the most recent slot: sent when it is at most `catch_up_hours` (and at
/// least [`MIN_CATCH_UP`]) old and not yet handled, recorded as missed when older. Only the
/// latest slot counts: a daemon that was down for weeks sends one issue, not one per week.
pub fn decide(
    latest: Option<DateTime<Utc>>,
    handled: bool,
    now: DateTime<Utc>,
    catch_up_hours: u32,
) -> SlotDecision {
    let Some(slot) = latest else {
        return SlotDecision::Nothing;
    };
    if handled || slot > now {
        return SlotDecision::Nothing;
    }
    let window = chrono::Duration::hours(i64::from(catch_up_hours)).max(MIN_CATCH_UP);
    if now - slot <= window {
        SlotDecision::Send(slot)
    } else {
        SlotDecision::Missed(slot)
    }
}

/// Whether a slot was already served or came before Herald ran: at or before the daemon's
/// first start on this database, or at or before the last issue made (a manual `herald send`
/// after the slot's time served it). Such a slot is never caught up.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use herald_core::schedule::served_or_before_start;
/// let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
/// let hour = chrono::Duration::hours(1);
/// // A fresh installation started after yesterday's slot: nothing to catch up.
/// assert!(served_or_before_start(slot, slot + hour, None));
/// // Started before the slot, down at the slot, no issue since: catch up.
/// assert!(!served_or_before_start(slot, slot - hour, None));
/// // An operator sent an issue by hand after the slot: it served the slot.
/// assert!(served_or_before_start(slot, slot - hour, Some(slot + hour)));
/// ```
pub fn served_or_before_start(
    slot: DateTime<Utc>,
    first_start: DateTime<Utc>,
    last_issue_at: Option<DateTime<Utc>>,
) -> bool {
    slot <= first_start || last_issue_at.is_some_and(|t| t >= slot)
}

/// Whether the review window of `next` has opened: `review_hours` before the slot.
pub fn review_open(next: DateTime<Utc>, review_hours: u32, now: DateTime<Utc>) -> bool {
    now < next && now >= next - chrono::Duration::hours(i64::from(review_hours))
}

/// When an issue frozen for review at `now` may go out: at its slot, but never sooner than
/// `review_hours` after the editors got the review copy; `None` when that is later than the
/// slot's catch-up window (the slot is then skipped, not sent late without review).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use herald_core::schedule::reviewed_send_time;
/// let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
/// let h = |n| chrono::Duration::hours(n);
/// // Frozen when the window opened: out at the slot.
/// assert_eq!(reviewed_send_time(slot, slot - h(24), 24, 24), Some(slot));
/// // Caught up five hours late: a fresh 2-hour review window, still inside catch-up.
/// assert_eq!(reviewed_send_time(slot, slot + h(5), 2, 24), Some(slot + h(7)));
/// // Caught up too late for a whole review window: skipped.
/// assert_eq!(reviewed_send_time(slot, slot + h(20), 24, 24), None);
/// ```
pub fn reviewed_send_time(
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
    review_hours: u32,
    catch_up_hours: u32,
) -> Option<DateTime<Utc>> {
    let goes_out = slot.max(now + chrono::Duration::hours(i64::from(review_hours)));
    let window = chrono::Duration::hours(i64::from(catch_up_hours)).max(MIN_CATCH_UP);
    (goes_out <= slot + window).then_some(goes_out)
}

/// What the schedule knows at one wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleState {
    /// The most recent slot at or before now.
    pub latest: Option<DateTime<Utc>>,
    /// Whether it was acted on already, or served, or came before Herald ran
    /// ([`served_or_before_start`]).
    pub latest_handled: bool,
    /// The next slot after now.
    pub next: Option<DateTime<Utc>>,
    /// Whether the next slot was acted on already (frozen for review).
    pub next_recorded: bool,
}

/// The schedule's settings that decide a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleRules {
    pub catch_up_hours: u32,
    pub review_hours: Option<u32>,
    /// How often the daemon wakes: the review window opens one wake-up early, so that the
    /// review copy goes out at least `review_hours` before the slot.
    pub poll: chrono::Duration,
}

/// What to do about the latest slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestAction {
    /// Send its issue now.
    Send(DateTime<Utc>),
    /// Caught up with a review window configured: freeze it for review, out at `goes_out`.
    Review {
        slot: DateTime<Utc>,
        goes_out: DateTime<Utc>,
    },
    /// Noticed later than `catch_up_hours`: record it as missed.
    Missed(DateTime<Utc>),
    /// Caught up, but a whole review window would end after `catch_up_hours`: skip it rather
    /// than send it unreviewed.
    TooLateForReview(DateTime<Utc>),
}

/// What one wake-up does: first the latest slot, then (unless that sends or freezes an
/// issue) the next slot's review window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickPlan {
    pub latest: Option<LatestAction>,
    /// The next slot, whose review window is open: freeze it for review, out at the second
    /// value.
    pub review_next: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Decides a wake-up: the one place where the schedule's rules (catch-up window, review
/// window, served slots) meet.
pub fn plan_tick(state: ScheduleState, rules: ScheduleRules, now: DateTime<Utc>) -> TickPlan {
    let latest = match decide(
        state.latest,
        state.latest_handled,
        now,
        rules.catch_up_hours,
    ) {
        SlotDecision::Send(slot) => Some(match rules.review_hours {
            None => LatestAction::Send(slot),
            Some(hours) => match reviewed_send_time(slot, now, hours, rules.catch_up_hours) {
                Some(goes_out) => LatestAction::Review { slot, goes_out },
                None => LatestAction::TooLateForReview(slot),
            },
        }),
        SlotDecision::Missed(slot) => Some(LatestAction::Missed(slot)),
        SlotDecision::Nothing => None,
    };
    let busy = matches!(
        latest,
        Some(LatestAction::Send(_) | LatestAction::Review { .. })
    );
    let review_next = match (rules.review_hours, state.next) {
        (Some(hours), Some(next))
            if !busy && !state.next_recorded && review_open(next, hours, now + rules.poll) =>
        {
            let goes_out = reviewed_send_time(next, now, hours, rules.catch_up_hours)
                .unwrap_or(next + chrono::Duration::hours(i64::from(hours)));
            Some((next, goes_out))
        }
        _ => None,
    };
    TickPlan {
        latest,
        review_next,
    }
}

/// Parses a six-field cron expression (seconds first), as `[schedule] cron` takes.
///
/// # Errors
/// The parser's explanation when the expression is not valid.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expression)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn monday_nine_in_berlin_stays_nine_across_dst() {
        let cron = parse_cron("0 0 9 * * Mon").unwrap();
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-10-25 is the last Sunday of October: CEST ends.
        let before = Utc.with_ymd_and_hms(2026, 10, 20, 0, 0, 0).unwrap();
        let slots = next_slots(&cron, tz, before, 2);
        assert_eq!(
            slots[0],
            Utc.with_ymd_and_hms(2026, 10, 26, 8, 0, 0).unwrap()
        );
        assert_eq!(
            slots[1],
            Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap()
        );
        let first = Utc.with_ymd_and_hms(2026, 10, 12, 0, 0, 0).unwrap();
        assert_eq!(
            latest_slot(&cron, tz, slots[0]),
            Some(slots[0]),
            "inclusive"
        );
        assert_eq!(slot_key(slots[0]), "2026-10-26T08:00:00Z");
        assert_eq!(
            next_slot(&cron, tz, first),
            Some(Utc.with_ymd_and_hms(2026, 10, 12, 7, 0, 0).unwrap())
        );
    }

    #[test]
    fn catch_up_sends_recent_slots_and_skips_old_ones() {
        let slot = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let h = |n| slot + chrono::Duration::hours(n);
        assert_eq!(
            decide(Some(slot), false, h(23), 24),
            SlotDecision::Send(slot)
        );
        assert_eq!(
            decide(Some(slot), false, h(25), 24),
            SlotDecision::Missed(slot)
        );
        assert_eq!(decide(Some(slot), true, h(1), 24), SlotDecision::Nothing);
        assert_eq!(
            decide(Some(slot), false, slot + chrono::Duration::minutes(2), 0),
            SlotDecision::Send(slot)
        );
        assert_eq!(decide(None, false, h(1), 24), SlotDecision::Nothing);
        assert!(review_open(slot, 24, h(-23)));
        assert!(!review_open(slot, 24, h(-25)));
        assert!(!review_open(slot, 24, h(1)));
    }
}
