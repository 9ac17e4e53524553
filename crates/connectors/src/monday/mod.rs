//! `crm` with `monday:`: upsert an item on a Monday.com board by a key
//! column, with every other column mapped explicitly, or (with `update:`,
//! see [`update`]) add an update to an existing item.
//!
//! ```yaml
//! - id: crm
//!   crm:
//!     monday:
//!       board: "${env:MONDAY_BOARD_ID}"
//!       upsert_by: { column: email, value: "{{ input.email }}" }
//!       item_name: "{{ input.name }}"
//!       key_column: countersign_key      # optional hidden text column
//!       columns:
//!         category: { status: "{{ triage.intent }}", map: { billing: Billing } }
//! ```
//!
//! One upsert = `items_page_by_column_values` (the key), then
//! `create_item` or `change_multiple_column_values`. Writes to one board
//! are serialised within the process (Monday warns that concurrent
//! mutations on a board can corrupt data, and lookup-then-write is not
//! atomic). Exactly one item per upsert key: a resumed attempt looks the
//! key up again before it writes, so a create that happened before a crash
//! becomes an update of the same item, never a second item. With
//! `key_column`, the run's idempotency key is written there too and
//! reconciliation adopts the item carrying it without writing again.

pub mod check;
pub mod client;
pub mod columns;
pub mod update;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::expr::{Scope, Template, Vars};
use domain::run::StepOutcome;
use domain::workflow::{Control, Cx, StepDef};
use engine::preview::readable;
use engine::{ActionField, ActionPreview, Labelled, Reconciled, Step, StepCx, StepKind};
use serde_json::{Map, Value as Json, json};

pub use client::{API_VERSION, Api, DEFAULT_URL, Settings};

use crate::effect::{self, Unreachable};
use crate::error::Error;
use columns::Mapping;

const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// One lock per board id, shared by every `crm` step of the process.
#[derive(Default)]
pub struct Boards {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Boards {
    pub fn lock_for(&self, board: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("board locks")
            .entry(board.to_string())
            .or_default()
            .clone()
    }
}

pub struct Kind {
    api: Option<Api>,
    boards: Arc<Boards>,
}

impl Kind {
    pub fn new(client: reqwest::Client, settings: Option<Settings>) -> Kind {
        Kind {
            api: settings.map(|s| Api::new(client, s)),
            boards: Arc::default(),
        }
    }
}

/// A compiled `crm.monday` body.
#[derive(Debug)]
pub struct Spec {
    pub path: String,
    pub board: Template,
    pub group: Option<Template>,
    pub upsert_column: String,
    pub upsert_value: Template,
    pub item_name: Template,
    pub key_column: Option<String>,
    pub columns: Vec<Mapping>,
    /// The queue of `control: review` tasks.
    pub review_queue: String,
    pub timeout_ms: u64,
}

/// Parses `crm: { monday: {…} }`.
pub fn parse(def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Spec> {
    let mut outer = cx.take(def.body.fields())?;
    let Some(m) = outer.get("monday") else {
        cx.errors.push(
            def.body
                .error("missing required field `monday` (the only CRM connector so far)"),
        );
        outer.finish(&mut cx.errors);
        return None;
    };
    outer.finish(&mut cx.errors);
    let mut f = cx.take(m.fields())?;
    let board = cx
        .take(f.require("board"))
        .and_then(|n| cx.take(Template::compile(n, scope)));
    let group = f
        .get("group")
        .and_then(|n| cx.take(Template::compile(n, scope)));
    let upsert = cx.take(f.require("upsert_by")).and_then(|n| {
        let mut u = cx.take(n.fields())?;
        let col = cx
            .take(u.require("column"))
            .and_then(|c| cx.take(c.as_str()).map(str::to_string));
        let val = cx
            .take(u.require("value"))
            .and_then(|v| cx.take(Template::compile(v, scope)));
        u.finish(&mut cx.errors);
        Some((col?, val?))
    });
    let item_name = cx
        .take(f.require("item_name"))
        .and_then(|n| cx.take(Template::compile(n, scope)));
    let key_column = f
        .get("key_column")
        .and_then(|n| cx.take(n.as_str()).map(str::to_string));
    let columns = f
        .get("columns")
        .map(|n| columns::parse(n, scope, cx))
        .unwrap_or_default();
    if let Some((col, _)) = &upsert
        && !columns.iter().any(|c| &c.column == col)
    {
        // The key is written with the other columns so a created item can be found again.
        cx.errors.push(m.error(format!(
            "`upsert_by.column` is `{col}`, but `columns` does not map `{col}`: map it (e.g. `{col}: {{ email: \"{{{{ input.email }}}}\" }}`) so a created item carries its key"
        )));
    }
    let review_queue = effect::review_queue(def, &mut f, cx);
    f.finish(&mut cx.errors);
    let (upsert_column, upsert_value) = upsert?;
    Some(Spec {
        path: m.path.clone(),
        board: board?,
        group,
        upsert_column,
        upsert_value,
        item_name: item_name?,
        key_column,
        columns,
        review_queue,
        timeout_ms: def.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
}

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "crm"
    }

    fn honours_control(&self) -> bool {
        true
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let mut ok = true;
        if def.control == Control::Draft {
            cx.errors.push(def.body.error(
                "`control: draft` is not supported by the Monday connector yet; use `control: suggest` to record the upsert without writing",
            ));
            ok = false;
        }
        if update::is_update(def) {
            let spec = update::parse(def, scope, cx)?;
            if let Some(api) = &self.api {
                cx.secrets.push(api.token().to_string());
            }
            return ok.then(|| {
                Arc::new(update::UpdateStep {
                    spec,
                    api: self.api.clone(),
                    boards: self.boards.clone(),
                    unreachable: Unreachable::default(),
                }) as Arc<dyn Step>
            });
        }
        let spec = parse(def, scope, cx)?;
        if let Some(api) = &self.api {
            cx.secrets.push(api.token().to_string());
        }
        ok.then(|| {
            Arc::new(CrmStep {
                spec,
                api: self.api.clone(),
                boards: self.boards.clone(),
                unreachable: Unreachable::default(),
            }) as Arc<dyn Step>
        })
    }
}

struct CrmStep {
    spec: Spec,
    api: Option<Api>,
    boards: Arc<Boards>,
    unreachable: Unreachable,
}

/// An upsert ready to send.
#[derive(Debug)]
struct Upsert {
    board: String,
    group: Option<String>,
    key: String,
    name: String,
    values: Map<String, Json>,
}

impl CrmStep {
    fn field(&self, f: &str) -> String {
        format!("{}.{f}", self.spec.path)
    }

    fn secrets(&self) -> Vec<String> {
        self.api.iter().map(|a| a.token().to_string()).collect()
    }

    fn render(&self, vars: &Vars, idem: &str) -> Result<Upsert, Error> {
        let s = &self.spec;
        let perm = |f: &str, e: String| Error::permanent(self.field(f), e);
        let board = render_board(&s.board, vars, &perm)?;
        let key = render_required(
            &s.upsert_value,
            vars,
            "upsert_by.value",
            "the upsert key",
            &perm,
        )?;
        let name = render_required(&s.item_name, vars, "item_name", "the item name", &perm)?;
        let group = match &s.group {
            Some(g) => Some(g.render(vars).map_err(|e| perm("group", e))?),
            None => None,
        };
        let mut values = Map::new();
        for c in &s.columns {
            // The message names the column's YAML path already.
            if let Some(v) = c
                .encode(vars)
                .map_err(|e| Error::permanent(c.path.clone(), e))?
            {
                values.insert(c.column.clone(), v);
            }
        }
        if let Some(k) = &s.key_column {
            values.insert(k.clone(), json!(idem));
        }
        Ok(Upsert {
            board,
            group,
            key,
            name,
            values,
        })
    }

    /// The upsert as people see it: the item name, then every mapped
    /// column in the workflow's order with its value after the label map
    /// (the hidden key column left out), the group and the board.
    fn preview_of(&self, up: &Upsert) -> ActionPreview {
        let mut values = vec![Labelled::text("item_name", "Item name", up.name.clone())];
        for c in &self.spec.columns {
            if Some(&c.column) == self.spec.key_column.as_ref() {
                continue;
            }
            if let Some(v) = up.values.get(&c.column) {
                values.push(Labelled {
                    name: c.column.clone(),
                    label: readable(&c.column),
                    text: columns::display(v),
                    value: v.clone(),
                });
            }
        }
        if let Some(g) = &up.group {
            values.push(Labelled::text("group", "Group", g.clone()));
        }
        values.push(Labelled::text("board", "Board", up.board.clone()));
        ActionPreview::new(
            "monday",
            "upsert",
            format!("Update Monday item '{}'", up.name),
            values,
        )
    }

    fn named(&self, e: Error) -> Error {
        match e {
            Error::Permanent { field, message } if field == "monday" => Error::Permanent {
                field: self.spec.path.clone(),
                message,
            },
            Error::Permanent { field, message } if !field.starts_with("steps") => {
                Error::Permanent {
                    field: self.field(&field),
                    message,
                }
            }
            e => e,
        }
    }

    async fn lookup(
        &self,
        api: &Api,
        board: &str,
        column: &str,
        value: &str,
    ) -> Result<Vec<Json>, Error> {
        let data = api
            .graphql(
                client::LOOKUP,
                json!({ "board": board, "column": column, "value": value }),
                self.spec.timeout_ms,
            )
            .await?;
        Ok(data["items_page_by_column_values"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

#[async_trait]
impl Step for CrmStep {
    /// One GraphQL mutation after `effect.started`, cut off at the
    /// step's timeout.
    fn call_window_ms(&self) -> Option<u64> {
        Some(self.spec.timeout_ms)
    }

    fn preview(&self, vars: &Vars) -> Option<Result<ActionPreview, String>> {
        self.preview_edited(vars, &Map::new())
    }

    fn preview_edited(
        &self,
        vars: &Vars,
        edits: &Map<String, Json>,
    ) -> Option<Result<ActionPreview, String>> {
        // The hidden key column is not shown, so the run's key is not needed.
        Some(
            self.render(vars, "")
                .map(|mut up| {
                    apply_approved(&mut up, edits);
                    self.preview_of(&up)
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
        let mut up = match self.render(cx.vars, &idem) {
            Ok(u) => u,
            Err(e) => return e.into_outcome(&secrets),
        };
        // `control: review`: the exact column values are approved (maybe
        // edited) before anything is written. The upsert key and the hidden
        // key column are not editable: they identify the item.
        let mut fields = vec![ActionField::text("item_name", up.name.clone())];
        for (col, v) in &up.values {
            if col == &self.spec.upsert_column || Some(col) == self.spec.key_column.as_ref() {
                continue;
            }
            fields.push(ActionField {
                name: col.clone(),
                draft: v.clone(),
                schema: v.is_string().then(|| json!({ "type": "string" })),
            });
        }
        let asked = self.preview_of(&up);
        let approved = match effect::approval(cx, &self.spec.review_queue, fields, &asked).await {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        apply_approved(&mut up, &approved);
        let shown = self.preview_of(&up);
        let upsert_by = json!({ "column": self.spec.upsert_column, "value": up.key });
        if cx.step.control == Control::Suggest {
            let suggestion = json!({ "board": up.board, "upsert_by": upsert_by, "item_name": up.name, "group": up.group, "column_values": up.values });
            return effect::suggest(cx, &shown, suggestion);
        }
        let Some(api) = &self.api else {
            return effect::outbox(
                cx,
                &shown,
                json!({ "board": up.board, "upsert_by": upsert_by }),
                json!({ "item_name": up.name, "group": up.group, "column_values": up.values }),
                "MONDAY_API_TOKEN is",
            );
        };
        let lock = self.boards.lock_for(&up.board);
        let _serial = lock.lock().await;
        let found = match self
            .lookup(api, &up.board, &self.spec.upsert_column, &up.key)
            .await
        {
            Ok(items) => items,
            Err(e) => return self.named(e).into_outcome(&secrets),
        };
        if found.len() > 1 {
            cx.effect_failed();
            return Error::permanent(
                self.field("upsert_by"),
                format!(
                    "{} items on board {} carry {:?} in column `{}`; the upsert key must be unique (items {})",
                    found.len(),
                    up.board,
                    up.key,
                    self.spec.upsert_column,
                    found.iter().filter_map(|i| i["id"].as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
            .into_outcome(&secrets);
        }
        let values = Json::Object(up.values.clone()).to_string();
        let (doc, vars, action) = match found.first().and_then(|i| i["id"].as_str()) {
            Some(item) => (
                client::CHANGE_VALUES,
                json!({ "board": up.board, "item": item, "values": values }),
                "updated",
            ),
            None => (
                client::CREATE_ITEM,
                json!({ "board": up.board, "group": up.group, "name": up.name, "values": values }),
                "created",
            ),
        };
        let digest = effect::digest(&[doc.as_bytes(), vars.to_string().as_bytes()]);
        if let Err(e) = cx.effect_started(&digest).await {
            return StepOutcome::Transient {
                error: format!("could not journal the effect: {e}"),
                retry_after_ms: None,
            };
        }
        match api.graphql(doc, vars, self.spec.timeout_ms).await {
            Ok(data) => {
                let field = if action == "created" {
                    "create_item"
                } else {
                    "change_multiple_column_values"
                };
                let id = data[field]["id"].as_str().unwrap_or_default().to_string();
                cx.effect_completed(Some(id.clone()));
                StepOutcome::Done {
                    output: json!({ "performed": true, "board": up.board, "item_id": id, "action": action, "upsert_key": up.key }),
                }
            }
            Err(e) => {
                effect::call_failed(cx, &e);
                self.named(e).into_outcome(&secrets)
            }
        }
    }

    async fn reconcile(&self, cx: &mut StepCx<'_>) -> Reconciled {
        let (Some(api), Some(kc)) = (&self.api, &self.spec.key_column) else {
            // Without a key column the upsert itself is the reconciliation:
            // the new attempt looks the key up before it writes.
            return Reconciled::NotDone;
        };
        let idem = cx.idempotency_key();
        let up = match self.render(cx.vars, &idem) {
            Ok(u) => u,
            Err(_) => return Reconciled::NotDone,
        };
        let lock = self.boards.lock_for(&up.board);
        let _serial = lock.lock().await;
        match self.lookup(api, &up.board, kc, &idem).await {
            Ok(items) => match items.first().and_then(|i| i["id"].as_str()) {
                Some(id) => Reconciled::Done {
                    external_id: Some(id.to_string()),
                    output: json!({ "performed": true, "board": up.board, "item_id": id, "action": "reconciled", "upsert_key": up.key, "reconciled": true }),
                },
                None => Reconciled::NotDone,
            },
            Err(e) => {
                tracing::warn!(key = %idem, error = %e.describe(&self.secrets()), "monday: reconciliation failed; retrying later");
                self.unreachable.mark(&idem);
                Reconciled::Unknown
            }
        }
    }
}

/// Applies a reviewer's edits (`control: review`) to the rendered upsert:
/// the item name and mapped column values (never a column not mapped).
fn apply_approved(up: &mut Upsert, approved: &Map<String, Json>) {
    for (name, v) in approved {
        if name == "item_name" {
            if let Some(s) = v.as_str() {
                up.name = s.to_string();
            }
        } else if up.values.contains_key(name) {
            up.values.insert(name.clone(), v.clone());
        }
    }
}

/// Renders the board ID; it must be a number.
pub(super) fn render_board(
    t: &Template,
    vars: &Vars,
    perm: &dyn Fn(&str, String) -> Error,
) -> Result<String, Error> {
    let board = t
        .render(vars)
        .map_err(|e| perm("board", e))?
        .trim()
        .to_string();
    if board.is_empty() || !board.chars().all(|c| c.is_ascii_digit()) {
        return Err(perm(
            "board",
            format!("the board ID must be a number, got {board:?}"),
        ));
    }
    Ok(board)
}

/// Renders a template that must not come out empty (trimmed), naming the
/// field to fix when it does.
pub(super) fn render_required(
    t: &Template,
    vars: &Vars,
    field: &str,
    what: &str,
    perm: &dyn Fn(&str, String) -> Error,
) -> Result<String, Error> {
    let v = t
        .render(vars)
        .map_err(|e| perm(field, e))?
        .trim()
        .to_string();
    if v.is_empty() {
        return Err(perm(field, format!("{what} rendered empty")));
    }
    Ok(v)
}
