//! `crm` with `monday: { update: … }`: add an update (a comment) to an
//! existing item found by a column value.
//!
//! ```yaml
//! - id: note
//!   crm:
//!     monday:
//!       board: "${env:MONDAY_BOARD_ID}"
//!       update:
//!         item_by: { column: email, value: "{{ input.email }}" }
//!         body: "Reply sent: {{ approved.reply }}"
//! ```
//!
//! One update = `items_page_by_column_values` (exactly one item must carry
//! the value), then `create_update`. The body ends with a hidden marker,
//! an HTML comment carrying the run's idempotency key
//! (`<!-- countersign:RUN:STEP -->`), so after a crash between
//! `effect.started` and `effect.completed` reconciliation reads the item's
//! `updates` and adopts the one carrying the marker instead of posting a
//! second. Writes share the per-board lock of the upsert.

use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::{Scope, Template, Vars};
use domain::run::StepOutcome;
use domain::workflow::{Control, Cx, StepDef};
use engine::{ActionField, ActionPreview, Labelled, Reconciled, Step, StepCx};
use serde_json::{Value as Json, json};

use super::{Api, Boards, DEFAULT_TIMEOUT_MS, client};
use crate::effect::{self, Unreachable};
use crate::error::Error;

/// Updates read back when reconciling (the marker sits on a recent one).
const RECONCILE_UPDATES: u32 = 100;

/// A compiled `crm.monday` body with `update`.
#[derive(Debug)]
pub struct UpdateSpec {
    pub path: String,
    pub board: Template,
    pub item_column: String,
    pub item_value: Template,
    pub body: Template,
    pub review_queue: String,
    pub timeout_ms: u64,
}

/// True when the `crm.monday` body asks for an update (has `update:`).
pub fn is_update(def: &StepDef) -> bool {
    let Ok(mut outer) = def.body.fields() else {
        return false;
    };
    outer
        .get("monday")
        .and_then(|m| m.fields().ok())
        .is_some_and(|mut f| f.get("update").is_some())
}

/// Parses `crm: { monday: { board, update: { item_by, body } } }`.
pub fn parse(def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<UpdateSpec> {
    let mut outer = cx.take(def.body.fields())?;
    let m = outer.get("monday")?;
    outer.finish(&mut cx.errors);
    let mut f = cx.take(m.fields())?;
    let board = cx
        .take(f.require("board"))
        .and_then(|n| cx.take(Template::compile(n, scope)));
    let upd = cx.take(f.require("update"))?;
    for other in ["upsert_by", "item_name", "columns", "key_column", "group"] {
        if let Some(n) = f.get(other) {
            cx.errors.push(n.error(format!(
                "`{other}` belongs to an upsert; with `update` the step only adds an update to an existing item"
            )));
        }
    }
    let review_queue = effect::review_queue(def, &mut f, cx);
    f.finish(&mut cx.errors);
    let mut u = cx.take(upd.fields())?;
    let item = cx.take(u.require("item_by")).and_then(|n| {
        let mut i = cx.take(n.fields())?;
        let col = cx
            .take(i.require("column"))
            .and_then(|c| cx.take(c.as_str()).map(str::to_string));
        let val = cx
            .take(i.require("value"))
            .and_then(|v| cx.take(Template::compile(v, scope)));
        i.finish(&mut cx.errors);
        Some((col?, val?))
    });
    let body = cx
        .take(u.require("body"))
        .and_then(|n| cx.take(Template::compile(n, scope)));
    u.finish(&mut cx.errors);
    let (item_column, item_value) = item?;
    Some(UpdateSpec {
        path: m.path.clone(),
        board: board?,
        item_column,
        item_value,
        body: body?,
        review_queue,
        timeout_ms: def.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
}

/// `countersign crm check` for an update step: the board exists and has
/// the `item_by` column.
pub async fn check(api: &Api, spec: &UpdateSpec) -> Result<Vec<super::check::Problem>, Error> {
    let as_upsert = super::Spec {
        path: spec.path.clone(),
        board: spec.board.clone(),
        group: None,
        upsert_column: spec.item_column.clone(),
        upsert_value: spec.item_value.clone(),
        item_name: spec.body.clone(),
        key_column: None,
        columns: Vec::new(),
        review_queue: spec.review_queue.clone(),
        timeout_ms: spec.timeout_ms,
    };
    let upsert_path = format!("{}.upsert_by.column", spec.path);
    Ok(super::check::check(api, &as_upsert)
        .await?
        .into_iter()
        .map(|mut p| {
            if p.path == upsert_path {
                p.path = format!("{}.update.item_by.column", spec.path);
            }
            p
        })
        .collect())
}

/// The hidden marker carrying the idempotency key.
pub fn marker(idem: &str) -> String {
    format!("<!-- countersign:{idem} -->")
}

pub(super) struct UpdateStep {
    pub spec: UpdateSpec,
    pub api: Option<Api>,
    pub boards: Arc<Boards>,
    pub unreachable: Unreachable,
}

struct Rendered {
    board: String,
    value: String,
    body: String,
}

impl UpdateStep {
    fn field(&self, f: &str) -> String {
        format!("{}.{f}", self.spec.path)
    }

    fn secrets(&self) -> Vec<String> {
        self.api.iter().map(|a| a.token().to_string()).collect()
    }

    fn render(&self, vars: &Vars) -> Result<Rendered, Error> {
        let perm = |f: &str, e: String| Error::permanent(self.field(f), e);
        let board = super::render_board(&self.spec.board, vars, &perm)?;
        let value = super::render_required(
            &self.spec.item_value,
            vars,
            "update.item_by.value",
            "the item's key",
            &perm,
        )?;
        let body = self
            .spec
            .body
            .render(vars)
            .map_err(|e| perm("update.body", e))?;
        if body.trim().is_empty() {
            return Err(perm("update.body", "the update body rendered empty".into()));
        }
        Ok(Rendered { board, value, body })
    }

    /// The one item carrying the value; `Err` when none or several do.
    async fn item(&self, api: &Api, r: &Rendered) -> Result<String, Error> {
        let data = api
            .graphql(
                client::LOOKUP,
                json!({ "board": r.board, "column": self.spec.item_column, "value": r.value }),
                self.spec.timeout_ms,
            )
            .await?;
        let items: Vec<String> = data["items_page_by_column_values"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["id"].as_str().map(str::to_string))
            .collect();
        match items.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::permanent(
                self.field("update.item_by"),
                format!(
                    "no item on board {} carries {:?} in column `{}`: an update needs an existing item",
                    r.board, r.value, self.spec.item_column
                ),
            )),
            many => Err(Error::permanent(
                self.field("update.item_by"),
                format!(
                    "several items on board {} carry {:?} in column `{}` (items {}); the key must be unique",
                    r.board,
                    r.value,
                    self.spec.item_column,
                    many.join(", ")
                ),
            )),
        }
    }

    /// The update as people see it.
    fn preview_of(&self, r: &Rendered) -> ActionPreview {
        ActionPreview::new(
            "monday",
            "create_update",
            format!(
                "Add an update to the Monday item with {} {}",
                self.spec.item_column, r.value
            ),
            vec![
                Labelled::text("body", "Update", r.body.clone()),
                Labelled::text(
                    "item",
                    "Item",
                    format!("{} = {}", self.spec.item_column, r.value),
                ),
                Labelled::text("board", "Board", r.board.clone()),
            ],
        )
    }

    fn output(r: &Rendered, item: &str, update: &str) -> Json {
        json!({ "performed": true, "board": r.board, "item_id": item, "update_id": update,
            "action": "update" })
    }
}

#[async_trait]
impl Step for UpdateStep {
    /// One `create_update` after `effect.started`, cut off at the step's
    /// timeout.
    fn call_window_ms(&self) -> Option<u64> {
        Some(self.spec.timeout_ms)
    }

    fn preview(&self, vars: &Vars) -> Option<Result<ActionPreview, String>> {
        self.preview_edited(vars, &serde_json::Map::new())
    }

    fn preview_edited(
        &self,
        vars: &Vars,
        edits: &serde_json::Map<String, Json>,
    ) -> Option<Result<ActionPreview, String>> {
        Some(
            self.render(vars)
                .map(|mut r| {
                    if let Some(b) = effect::approved_str(edits, "body") {
                        r.body = b;
                    }
                    self.preview_of(&r)
                })
                .map_err(|e| e.describe(&self.secrets())),
        )
    }

    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let secrets = self.secrets();
        // Unticked on the covering review: not performed, not even rendered.
        if let Some(skipped) = cx.unticked().await {
            return skipped;
        }
        let idem = cx.idempotency_key();
        if self.unreachable.take(&idem) {
            return effect::reconcile_failed("monday");
        }
        let mut r = match self.render(cx.vars) {
            Ok(r) => r,
            Err(e) => return e.into_outcome(&secrets),
        };
        let asked = self.preview_of(&r);
        let approved = match effect::approval(
            cx,
            &self.spec.review_queue,
            vec![ActionField::text("body", r.body.clone())],
            &asked,
        )
        .await
        {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        if let Some(b) = effect::approved_str(&approved, "body") {
            r.body = b;
        }
        let item_by = json!({ "column": self.spec.item_column, "value": r.value });
        let shown = self.preview_of(&r);
        if cx.step.control == Control::Suggest {
            return effect::suggest(
                cx,
                &shown,
                json!({ "board": r.board, "item_by": item_by, "body": r.body }),
            );
        }
        let Some(api) = &self.api else {
            return effect::outbox(
                cx,
                &shown,
                json!({ "board": r.board, "item_by": item_by }),
                json!({ "body": r.body }),
                "MONDAY_API_TOKEN is",
            );
        };
        let lock = self.boards.lock_for(&r.board);
        let _serial = lock.lock().await;
        let item = match self.item(api, &r).await {
            Ok(i) => i,
            Err(e) => {
                effect::call_failed(cx, &e);
                return e.into_outcome(&secrets);
            }
        };
        let body = format!("{}\n{}", r.body, marker(&idem));
        let vars = json!({ "item": item, "body": body });
        let digest = effect::digest(&[
            client::CREATE_UPDATE.as_bytes(),
            vars.to_string().as_bytes(),
        ]);
        if let Err(e) = cx.effect_started(&digest).await {
            return StepOutcome::Transient {
                error: format!("could not journal the effect: {e}"),
                retry_after_ms: None,
            };
        }
        match api
            .graphql(client::CREATE_UPDATE, vars, self.spec.timeout_ms)
            .await
        {
            Ok(data) => {
                let id = data["create_update"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                cx.effect_completed(Some(id.clone()));
                StepOutcome::Done {
                    output: Self::output(&r, &item, &id),
                }
            }
            Err(e) => {
                effect::call_failed(cx, &e);
                e.into_outcome(&secrets)
            }
        }
    }

    async fn reconcile(&self, cx: &mut StepCx<'_>) -> Reconciled {
        let Some(api) = &self.api else {
            return Reconciled::NotDone;
        };
        let idem = cx.idempotency_key();
        let Ok(r) = self.render(cx.vars) else {
            return Reconciled::NotDone;
        };
        let lock = self.boards.lock_for(&r.board);
        let _serial = lock.lock().await;
        let found = async {
            let item = self.item(api, &r).await?;
            let data = api
                .graphql(
                    client::ITEM_UPDATES,
                    json!({ "item": item, "limit": RECONCILE_UPDATES }),
                    self.spec.timeout_ms,
                )
                .await?;
            let mark = marker(&idem);
            let update = data["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|i| i["updates"].as_array().cloned().unwrap_or_default())
                .find(|u| u["body"].as_str().is_some_and(|b| b.contains(&mark)))
                .and_then(|u| u["id"].as_str().map(str::to_string));
            Ok::<_, Error>((item, update))
        }
        .await;
        match found {
            Ok((item, Some(id))) => {
                let mut output = Self::output(&r, &item, &id);
                output["reconciled"] = json!(true);
                Reconciled::Done {
                    external_id: Some(id),
                    output,
                }
            }
            Ok((_, None)) => Reconciled::NotDone,
            // Not being allowed to look is not "not posted": posting again
            // could duplicate the update after every crash.
            Err(e @ Error::Unauthorized { .. }) => Reconciled::Failed {
                error: format!(
                    "monday: cannot check whether the update for {idem} was already added, so it is not added again: {}; fix the cause, then retry the run",
                    e.describe(&self.secrets())
                ),
            },
            // No item (any more): the new attempt fails with the reason.
            Err(e) if e.is_permanent() => Reconciled::NotDone,
            Err(e) => {
                tracing::warn!(key = %idem, error = %e.describe(&self.secrets()), "monday: reconciling an update failed; retrying later");
                self.unreachable.mark(&idem);
                Reconciled::Unknown
            }
        }
    }
}
