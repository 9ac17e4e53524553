//! `countersign calibration`: how often people approve the AI's drafts
//! unchanged, per workflow, version, review step and field, as a table or
//! as the JSON `GET /api/v1/calibration` answers.
#![allow(clippy::print_stdout)]

use engine::calibration::Scope;
use server::calibration::{check_by, parse_since, report, table, unknown_by};
use store_sqlite::Role;

use crate::commands::open_store;
use crate::{DbArgs, Failure};

/// What to measure and how to print it.
pub struct Request<'a> {
    pub workflow: Option<&'a str>,
    pub since: Option<&'a str>,
    pub by: Option<&'a str>,
    pub json: bool,
}

pub async fn run(db: &DbArgs, req: Request<'_>) -> Result<(), Failure> {
    let since_ms = req
        .since
        .map(|s| {
            parse_since(s, engine::now_ms()).map_err(|e| Failure::usage(format!("--since: {e}")))
        })
        .transpose()?;
    if let Some(by) = req.by {
        check_by(by).map_err(|e| Failure::usage(format!("--by: {e}")))?;
    }
    let scope = Scope {
        workflow: req.workflow.map(str::to_string),
        since_ms,
        queues: None,
        by: req.by.map(str::to_string),
    };
    let store = open_store(db, Role::Admin).await?;
    let measured = engine::calibration::measure(store.as_ref(), &scope)
        .await
        .map_err(|e| anyhow::anyhow!("reading reviews: {e}"))?;
    if let Some(by) = req.by
        && measured.unknown_slice()
    {
        return Err(Failure::usage(format!(
            "--by: {}",
            unknown_by(by, &measured)
        )));
    }
    let r = report(&scope, &measured);
    if req.json {
        let text = serde_json::to_string_pretty(&r)
            .map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
        println!("{text}");
    } else {
        print!("{}", table(&r));
    }
    Ok(())
}
