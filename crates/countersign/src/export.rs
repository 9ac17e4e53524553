//! `countersign export`: audit events across runs by time, as JSON lines or
//! CSV, with their chain hashes. Pages through the store by cursor and
//! writes each page as it comes, so memory stays constant however many
//! events the range holds.

use std::io::{BufWriter, Write};
use std::path::Path;

use server::export::{CSV_HEADER, csv_row, jsonl_line, parse_time};
use store::EventRange;

use store_sqlite::Role;

use crate::commands::open_store;
use crate::{DbArgs, Failure};

/// Events read from the store per page.
const PAGE: usize = 2000;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// What to export and where.
pub struct Request<'a> {
    pub since: &'a str,
    pub until: Option<&'a str>,
    pub workflow: Option<&'a str>,
    pub format: Format,
    pub out: Option<&'a Path>,
}

pub async fn run(db: &DbArgs, req: Request<'_>) -> Result<(), Failure> {
    let now = engine::now_ms();
    let since_ms =
        parse_time(req.since, now).map_err(|e| Failure::usage(format!("--since: {e}")))?;
    let until_ms = match req.until {
        Some(u) => parse_time(u, now).map_err(|e| Failure::usage(format!("--until: {e}")))?,
        None => now.saturating_add(1),
    };
    if until_ms <= since_ms {
        return Err(Failure::usage(
            "--until: must be later than --since (the range is [since, until))",
        ));
    }
    let store = open_store(db, Role::Admin).await?;
    let out: Box<dyn Write> = match req.out {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|e| {
            Failure::usage(format!("--out: cannot create {}: {e}", path.display()))
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let write_err = |e: std::io::Error| Failure {
        code: 1,
        message: format!("writing the export: {e}"),
    };
    if req.format == Format::Csv {
        out.write_all(CSV_HEADER.as_bytes()).map_err(write_err)?;
    }
    let mut range = EventRange {
        since_ms,
        until_ms,
        workflow: req.workflow.map(str::to_string),
        queues: None,
        after: None,
        limit: PAGE,
    };
    let mut count: u64 = 0;
    loop {
        let page = store
            .events_between(&range)
            .await
            .map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        for e in &page {
            let text = match req.format {
                Format::Jsonl => jsonl_line(e),
                Format::Csv => csv_row(e),
            };
            out.write_all(text.as_bytes()).map_err(write_err)?;
        }
        count += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == PAGE => range.after = Some(last.cursor()),
            _ => break,
        }
    }
    out.flush().map_err(write_err)?;
    tracing::info!(events = count, "export written");
    Ok(())
}
