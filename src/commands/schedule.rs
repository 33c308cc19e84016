//! `herald schedule`: the next send times and the last slots.

use super::Context;
use crate::Exit;
use crate::schedule::next_slots;

pub(super) async fn run(ctx: &Context) -> anyhow::Result<Exit> {
    let s = &ctx.config.schedule;
    let now = ctx.clock.now();
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
    let store = ctx.store().await?;
    let slots = store.recent_slots(10).await?;
    store.close().await;
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
