//! `herald queue add | remove | list`: terms an editor wants featured next.

use anyhow::bail;
use serde::Serialize;

use crate::Exit;
use crate::app::App;
use crate::app::editorial::Queued;
use crate::cli::QueueCommand;

#[derive(Serialize)]
struct QueueEntry<'a> {
    position: usize,
    slug: &'a str,
    term: &'a str,
    source: &'static str,
}

pub(super) async fn run(app: &App, cmd: QueueCommand) -> anyhow::Result<Exit> {
    let glossary = app.glossary()?;
    match cmd {
        QueueCommand::Add { slug, next_cycle } => {
            if glossary.find(&slug).is_none() {
                bail!("no term `{slug}` in the glossary (try `herald glossary list`)");
            }
            match app.queue_term(&glossary, &slug, next_cycle).await? {
                Queued::Added(slug) => {
                    let name = glossary.get(&slug).map_or("", |t| t.term.as_str());
                    crate::say!("queued {slug} ({name})");
                }
                Queued::NextCycle(slug) => {
                    crate::say!("queued {slug} first for the next cycle (it was sent in this one)");
                }
                Queued::InConfig(slug) => {
                    crate::say!("{slug} is already queued by [schedule] queue")
                }
                Queued::AlreadyQueued(slug) => crate::say!("{slug} is already queued"),
            }
        }
        QueueCommand::Remove { slug } => {
            let slug = glossary
                .find(&slug)
                .map_or(slug.clone(), |t| t.slug.to_string());
            let Ok(parsed) = crate::domain::Slug::parse(&slug) else {
                bail!("`{slug}` is not a slug");
            };
            if !app.dequeue_term(&parsed).await? {
                bail!(
                    "`{slug}` is not in the queue (entries from [schedule] queue are removed in herald.toml)"
                );
            }
            crate::say!("removed {slug} from the queue");
        }
        QueueCommand::List(flag) => {
            let added = app.queued_terms().await?;
            let config_queue = &app.config().schedule.queue;
            let entries: Vec<QueueEntry> = config_queue
                .iter()
                .map(|s| (s, "config"))
                .chain(
                    added
                        .iter()
                        .filter(|s| !config_queue.contains(s))
                        .map(|s| (s, "cli")),
                )
                .enumerate()
                .map(|(i, (slug, source))| QueueEntry {
                    position: i + 1,
                    slug: slug.as_str(),
                    term: glossary
                        .get(slug)
                        .map_or("(not in the glossary)", |t| t.term.as_str()),
                    source,
                })
                .collect();
            if flag.json {
                crate::say!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                crate::say!("the queue is empty: the rotation picks the next term");
            } else {
                for e in &entries {
                    crate::say!("{:>3}. {} ({}) [{}]", e.position, e.slug, e.term, e.source);
                }
            }
        }
    }
    Ok(Exit::Success)
}
