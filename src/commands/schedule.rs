//! `herald schedule`: the next send times and the last slots.

use crate::Exit;
use crate::app::App;
use crate::schedule::next_slots;

pub(super) async fn run(app: &App) -> anyhow::Result<Exit> {
    let s = &app.config.schedule;
    let now = app.clock.now();
    println!("schedule: `{}` in {}", s.cron_expression, s.timezone);
    println!(
        "catch-up window: {} h{}",
        s.catch_up_hours,
        s.review_hours.map_or(String::new(), |h| format!(
            "; review window: {h} h before each slot"
        ))
    );
    println!("next send times:");
    for slot in next_slots(&s.cron, s.timezone, now, 5) {
        println!(
            "  {}   ({})",
            slot.with_timezone(&s.timezone)
                .format("%a %Y-%m-%d %H:%M %Z"),
            slot.format("%Y-%m-%d %H:%M UTC")
        );
    }
    let slots = app.store.recent_slots(10).await?;
    if slots.is_empty() {
        println!("no slot has been acted on yet");
    } else {
        println!("last slots:");
        for r in slots {
            println!(
                "  {}   {:<9} {}{}",
                r.due_at
                    .with_timezone(&s.timezone)
                    .format("%a %Y-%m-%d %H:%M %Z"),
                r.outcome,
                r.issue_number
                    .map_or(String::new(), |n| format!("issue #{n} ")),
                r.detail
            );
        }
    }
    Ok(Exit::Success)
}
