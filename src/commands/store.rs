//! `herald store copy --to postgres://...`.

use crate::Exit;
use crate::app::App;
use crate::cli::StoreCommand;

pub(super) async fn run(app: &App, cmd: StoreCommand) -> anyhow::Result<Exit> {
    match cmd {
        StoreCommand::Copy(args) => {
            let copied = app.copy_store_to(&args.to).await?;
            let total: i64 = copied.iter().map(|(_, n)| n).sum();
            if args.json {
                let tables: serde_json::Map<String, serde_json::Value> = copied
                    .iter()
                    .map(|(t, n)| ((*t).to_owned(), (*n).into()))
                    .collect();
                crate::say!("{}", serde_json::json!({ "tables": tables, "rows": total }));
            } else {
                for (table, rows) in &copied {
                    crate::say!("{table:<20} {rows:>10}");
                }
                crate::say!(
                    "copied {total} rows into {}; every table's count checked. Point store.url (or HERALD_DATABASE_URL) at it",
                    crate::store::redact_url(&args.to)
                );
            }
            Ok(Exit::Success)
        }
    }
}
