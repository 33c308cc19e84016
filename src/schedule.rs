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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn monday_nine_in_berlin_stays_nine_across_dst() {
        let cron = crate::config::parse_cron("0 0 9 * * Mon").unwrap();
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
            next_slot(&cron, tz, first),
            Some(Utc.with_ymd_and_hms(2026, 10, 12, 7, 0, 0).unwrap())
        );
    }
}
