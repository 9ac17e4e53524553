//! An in-process Monday.com GraphQL API (`POST /v2`) for the `crm` step's
//! tests.
//!
//! Every document is parsed with `graphql-parser` and validated against
//! `monday-schema-2026-10.graphql` from `../shared/specs`: each selected
//! field must exist on its type, each argument on its field, objects need
//! a selection and scalars none, variables must have known types. A
//! document that fails gets Monday's answer (HTTP 200, `errors[]`) and the
//! problem is kept (`problems`). Requests must carry the token and
//! `API-Version: 2026-10`.
//!
//! It executes what the connector sends: `items_page_by_column_values`,
//! `create_item`, `change_multiple_column_values`, `create_update`,
//! `items(ids:) { updates }`, `boards { columns }` and
//! `complexity`, against boards set up by the test, and checks
//! `column_values` against the board (unknown column → `InvalidColumnIdException`,
//! a status/dropdown label the column lacks → `ColumnValueException`).
//! Concurrent mutations on one board are recorded as a problem. Fault
//! modes: HTTP statuses with `Retry-After`, `ComplexityException` inside an
//! HTTP 200, `delay` of mutation answers (the write happens before
//! the delay, like a server that did the work but is slow to say so), and
//! `land_creates_after` (the write happens after the delay, even when the
//! caller has gone: a request still in flight).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use graphql_parser::query as q;
use graphql_parser::schema as s;
use serde_json::{Map, Value as Json, json};

pub const TOKEN: &str = "monday-fake-token-0123456789";

/// A column: id, type, labels (status and dropdown).
#[derive(Debug, Clone)]
pub struct Column {
    pub id: String,
    pub ty: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub group: Option<String>,
    pub values: Map<String, Json>,
}

#[derive(Debug, Default)]
struct Board {
    columns: Vec<Column>,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// An HTTP status with an optional `Retry-After`.
    Status(u16, Option<u64>),
    /// `ComplexityException` inside an HTTP 200, "reset in N seconds".
    Complexity(u64),
}

#[derive(Debug, Default)]
struct Book {
    /// `create_item` performed only this long after it arrives (see
    /// [`FakeMonday::land_creates_after`]).
    create_lands_after_ms: u64,
    /// `create_item` requests received, landed or not.
    creates_received: u32,
    boards: BTreeMap<String, Board>,
    next_id: u64,
    documents: Vec<(String, Json)>,
    problems: Vec<String>,
    faults: Vec<Fault>,
    delay_ms: u64,
    in_flight: BTreeMap<String, u32>,
    /// Updates (comments) on items, oldest first.
    updates: Vec<Update>,
}

/// An update (comment) added to an item with `create_update`.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub id: String,
    pub item_id: String,
    pub body: String,
}

#[derive(Debug)]
pub struct FakeMonday {
    addr: SocketAddr,
    shared: Arc<Mutex<Book>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeMonday {
    pub async fn start() -> FakeMonday {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Book {
            next_id: 1000,
            ..Book::default()
        }));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeMonday { addr, shared, task }
    }

    /// `MONDAY_API_URL`: the full endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    /// Adds a board with these columns: `(id, type, labels)`.
    pub fn board(&self, id: &str, columns: &[(&str, &str, &[&str])]) {
        self.book().boards.insert(
            id.to_string(),
            Board {
                columns: columns
                    .iter()
                    .map(|(id, ty, labels)| Column {
                        id: id.to_string(),
                        ty: ty.to_string(),
                        labels: labels.iter().map(|l| l.to_string()).collect(),
                    })
                    .collect(),
                items: Vec::new(),
            },
        );
    }

    pub fn items(&self, board: &str) -> Vec<Item> {
        self.book()
            .boards
            .get(board)
            .map(|b| b.items.clone())
            .unwrap_or_default()
    }

    /// Puts an item on a board directly (an existing CRM record).
    pub fn add_item(&self, board: &str, name: &str, values: Json) -> String {
        let mut b = self.book();
        b.next_id += 1;
        let id = b.next_id.to_string();
        let item = Item {
            id: id.clone(),
            name: name.into(),
            group: None,
            values: values.as_object().cloned().unwrap_or_default(),
        };
        b.boards
            .entry(board.to_string())
            .or_default()
            .items
            .push(item);
        id
    }

    /// Every `(query, variables)` received.
    /// The updates on `item`, oldest first.
    pub fn updates(&self, item: &str) -> Vec<Update> {
        self.book()
            .updates
            .iter()
            .filter(|u| u.item_id == item)
            .cloned()
            .collect()
    }

    pub fn documents(&self) -> Vec<(String, Json)> {
        self.book().documents.clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.book().problems.clone()
    }

    /// Queues faults answered to the next requests, in order.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.book().faults.extend_from_slice(faults);
    }

    /// Performs each `create_item` only `ms` after it arrives, then
    /// answers, and lands it even when the client has gone by then (a
    /// request still in flight inside Monday when the caller died).
    pub fn land_creates_after(&self, ms: u64) {
        self.book().create_lands_after_ms = ms;
    }

    /// `create_item` requests received so far, landed or not.
    pub fn creates_received(&self) -> u32 {
        self.book().creates_received
    }

    /// Holds back the answer to every mutation by `ms`, after the write.
    pub fn delay(&self, ms: u64) {
        self.book().delay_ms = ms;
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.lock().expect("fake state")
    }
}

impl Drop for FakeMonday {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gql_error(code: &str, message: &str, data: Json) -> Response {
    axum::Json(json!({
        "errors": [{ "message": message, "locations": [], "path": [], "extensions": { "code": code, "status_code": 200, "error_data": data } }],
        "account_id": 1,
    }))
    .into_response()
}

async fn handle(
    State(shared): State<Arc<Mutex<Book>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let late = {
        let mut book = shared.lock().expect("fake state");
        let create = book.create_lands_after_ms > 0
            && serde_json::from_slice::<Json>(&body)
                .ok()
                .and_then(|b| b["query"].as_str().map(|q| q.contains("create_item")))
                .unwrap_or(false);
        if create {
            book.creates_received += 1;
        }
        create.then_some(book.create_lands_after_ms)
    };
    if let Some(ms) = late {
        // Landed by a task of its own: dropping this handler (the client
        // hung up) does not stop it.
        let (shared, headers, body) = (shared.clone(), headers.clone(), body.clone());
        let landed = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let mut book = shared.lock().expect("fake state");
            let (resp, board) = answer(&mut book, &headers, &body);
            if let Some(n) = board.and_then(|b| book.in_flight.get_mut(&b)) {
                *n -= 1;
            }
            resp
        });
        return landed
            .await
            .unwrap_or_else(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let (resp, delay, board) = {
        let mut book = shared.lock().expect("fake state");
        let resp = answer(&mut book, &headers, &body);
        (resp.0, book.delay_ms, resp.1)
    };
    // Released on drop too: a client that dies mid-call (the crash tests)
    // cancels this handler during the delay, and must not leave the board
    // counted as busy forever.
    let _held = board.map(|b| Held {
        shared: shared.clone(),
        board: b,
    });
    if delay > 0 && _held.is_some() {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    resp
}

/// A mutation in flight on a board, for the concurrency check.
struct Held {
    shared: Arc<Mutex<Book>>,
    board: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut book) = self.shared.lock()
            && let Some(n) = book.in_flight.get_mut(&self.board)
        {
            *n -= 1;
        }
    }
}

/// The answer, and the board a mutation held (for the concurrency check).
fn answer(book: &mut Book, headers: &HeaderMap, body: &[u8]) -> (Response, Option<String>) {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if !book.faults.is_empty() {
        let f = book.faults.remove(0);
        return (
            match f {
                Fault::Status(status, retry) => {
                    let mut r = (
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        axum::Json(
                            json!({ "error_message": "fake failure", "status_code": status }),
                        ),
                    )
                        .into_response();
                    if let Some(s) = retry {
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(s));
                    }
                    r
                }
                Fault::Complexity(secs) => gql_error(
                    "ComplexityException",
                    &format!(
                        "Complexity budget exhausted, query cost 30001 budget remaining 19986 out of 1000000 reset in {secs} seconds"
                    ),
                    json!({}),
                ),
            },
            None,
        );
    }
    if h("authorization") != TOKEN {
        return (
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "errors": [{ "message": "Not Authenticated" }] })),
            )
                .into_response(),
            None,
        );
    }
    if h("api-version") != "2026-10" {
        book.problems.push(format!(
            "API-Version header is {:?}, not 2026-10",
            h("api-version")
        ));
    }
    if !h("content-type").starts_with("application/json") {
        book.problems
            .push("Content-Type is not application/json".into());
    }
    let req: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    let query = req["query"].as_str().unwrap_or("").to_string();
    let vars = req["variables"].clone();
    book.documents.push((query.clone(), vars.clone()));
    let problems = validate(&query);
    if !problems.is_empty() {
        book.problems.extend(problems.iter().cloned());
        return (
            gql_error("GraphQLValidationFailed", &problems.join("; "), json!({})),
            None,
        );
    }
    let doc = q::parse_query::<String>(&query).expect("validated");
    let mut data = Map::new();
    let mut held = None;
    for def in &doc.definitions {
        let q::Definition::Operation(op) = def else {
            continue;
        };
        let set = match op {
            q::OperationDefinition::Query(x) => &x.selection_set,
            q::OperationDefinition::Mutation(x) => &x.selection_set,
            q::OperationDefinition::SelectionSet(x) => x,
            q::OperationDefinition::Subscription(x) => &x.selection_set,
        };
        for sel in &set.items {
            let q::Selection::Field(f) = sel else {
                continue;
            };
            let args: Map<String, Json> = f
                .arguments
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v, &vars)))
                .collect();
            if f.name.starts_with("create_") || f.name.starts_with("change_") {
                let b = args.get("board_id").map(scalar).unwrap_or_default();
                let n = book.in_flight.entry(b.clone()).or_insert(0);
                *n += 1;
                if *n > 1 {
                    book.problems
                        .push(format!("concurrent mutations on board {b}"));
                }
                held = Some(b);
            }
            match exec(book, &f.name, &args) {
                Ok(v) => {
                    data.insert(f.alias.clone().unwrap_or(f.name.clone()), v);
                }
                Err(r) => {
                    if let Some(b) = &held {
                        *book.in_flight.entry(b.clone()).or_insert(1) -= 1;
                    }
                    return (r, None);
                }
            }
        }
    }
    (
        axum::Json(json!({ "data": data, "account_id": 1 })).into_response(),
        held,
    )
}

fn scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn to_json(v: &q::Value<String>, vars: &Json) -> Json {
    match v {
        q::Value::Variable(n) => vars.get(n).cloned().unwrap_or(Json::Null),
        q::Value::Int(i) => json!(i.as_i64()),
        q::Value::Float(f) => json!(f),
        q::Value::String(s) => json!(s),
        q::Value::Boolean(b) => json!(b),
        q::Value::Null => Json::Null,
        q::Value::Enum(e) => json!(e),
        q::Value::List(l) => Json::Array(l.iter().map(|x| to_json(x, vars)).collect()),
        q::Value::Object(o) => Json::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), to_json(x, vars)))
                .collect(),
        ),
    }
}

fn text_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        v => v["text"]
            .as_str()
            .or(v["label"].as_str())
            .or(v["email"].as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

#[allow(clippy::result_large_err)] // a test fake: the error is the answer
fn exec(book: &mut Book, field: &str, args: &Map<String, Json>) -> Result<Json, Response> {
    let board_id = args.get("board_id").map(scalar).unwrap_or_default();
    match field {
        "complexity" => Ok(
            json!({ "before": 1_000_000, "query": 10, "after": 999_990, "reset_in_x_seconds": 60 }),
        ),
        "boards" => {
            let ids: Vec<String> = args
                .get("ids")
                .and_then(Json::as_array)
                .map(|a| a.iter().map(scalar).collect())
                .unwrap_or_default();
            Ok(Json::Array(
                ids.iter()
                    .filter_map(|id| {
                        let b = book.boards.get(id)?;
                        Some(json!({ "id": id, "name": format!("Board {id}"), "columns": b.columns.iter().map(|c| json!({
                            "id": c.id, "title": c.id, "type": c.ty,
                            "settings": { "labels": c.labels.iter().enumerate().map(|(i, l)| json!({ "id": i, "label": l })).collect::<Vec<_>>() },
                        })).collect::<Vec<_>>() }))
                    })
                    .collect(),
            ))
        }
        "items_page_by_column_values" => {
            let Some(b) = book.boards.get(&board_id) else {
                return Err(gql_error(
                    "InvalidBoardIdException",
                    &format!("Board {board_id} not found"),
                    json!({ "board_id": board_id }),
                ));
            };
            let filters = args
                .get("columns")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            let limit = args.get("limit").and_then(Json::as_u64).unwrap_or(25) as usize;
            let items: Vec<Json> = b
                .items
                .iter()
                .filter(|it| {
                    filters.iter().all(|f| {
                        let col = f["column_id"].as_str().unwrap_or("");
                        let text = it.values.get(col).map(text_of).unwrap_or_default();
                        f["column_values"]
                            .as_array()
                            .is_some_and(|vs| vs.iter().any(|v| v.as_str() == Some(text.as_str())))
                    })
                })
                .take(limit)
                .map(|it| json!({ "id": it.id, "name": it.name }))
                .collect();
            Ok(json!({ "cursor": null, "items": items }))
        }
        "create_item" | "change_multiple_column_values" => {
            let values: Map<String, Json> = match args.get("column_values") {
                Some(Json::String(s)) => match serde_json::from_str(s) {
                    Ok(Json::Object(m)) => m,
                    _ => {
                        return Err(gql_error(
                            "ColumnValueException",
                            "column_values is not a JSON object string",
                            json!({}),
                        ));
                    }
                },
                None | Some(Json::Null) => Map::new(),
                Some(_) => {
                    return Err(gql_error(
                        "ColumnValueException",
                        "column_values must be a JSON-encoded string",
                        json!({}),
                    ));
                }
            };
            let Some(b) = book.boards.get(&board_id) else {
                return Err(gql_error(
                    "InvalidBoardIdException",
                    &format!("Board {board_id} not found"),
                    json!({ "board_id": board_id }),
                ));
            };
            for (col, v) in &values {
                let Some(c) = b.columns.iter().find(|c| &c.id == col) else {
                    return Err(gql_error(
                        "InvalidColumnIdException",
                        &format!("This column ID doesn't exist for the board: {col}"),
                        json!({ "column_id": col }),
                    ));
                };
                let bad = |why: &str| {
                    gql_error(
                        "ColumnValueException",
                        why,
                        json!({ "column_id": col, "column_type": c.ty }),
                    )
                };
                match c.ty.as_str() {
                    "status" => {
                        let l = v["label"].as_str().unwrap_or("");
                        if !c.labels.iter().any(|x| x == l) {
                            return Err(bad(&format!(
                                "This status label doesn't exist, possible statuses are: {}",
                                c.labels.join(", ")
                            )));
                        }
                    }
                    "dropdown" => {
                        for l in v["labels"].as_array().into_iter().flatten() {
                            if !c.labels.iter().any(|x| Some(x.as_str()) == l.as_str()) {
                                return Err(bad(&format!("The dropdown label {l} does not exist")));
                            }
                        }
                    }
                    "email" if !(v["email"].is_string() && v["text"].is_string()) => {
                        return Err(bad("email needs {email, text}"));
                    }
                    "long_text" if !v["text"].is_string() => {
                        return Err(bad("long_text needs {text}"));
                    }
                    "date" if !v["date"].is_string() => return Err(bad("date needs {date}")),
                    "text" | "numbers" if !v.is_string() => {
                        return Err(bad("text and numbers take a string"));
                    }
                    "people" if !v["personsAndTeams"].is_array() => {
                        return Err(bad("people needs {personsAndTeams}"));
                    }
                    _ => {}
                }
            }
            if field == "create_item" {
                book.next_id += 1;
                let id = book.next_id.to_string();
                let b = book.boards.get_mut(&board_id).expect("checked");
                b.items.push(Item {
                    id: id.clone(),
                    name: args.get("item_name").map(scalar).unwrap_or_default(),
                    group: args
                        .get("group_id")
                        .and_then(Json::as_str)
                        .map(str::to_string),
                    values,
                });
                Ok(json!({ "id": id }))
            } else {
                let item = args.get("item_id").map(scalar).unwrap_or_default();
                let b = book.boards.get_mut(&board_id).expect("checked");
                let Some(it) = b.items.iter_mut().find(|i| i.id == item) else {
                    return Err(gql_error(
                        "InvalidItemIdException",
                        &format!("Item {item} not found"),
                        json!({}),
                    ));
                };
                it.values.extend(values);
                Ok(json!({ "id": item }))
            }
        }
        "create_update" => {
            let item = args.get("item_id").map(scalar).unwrap_or_default();
            let exists = book
                .boards
                .values()
                .any(|b| b.items.iter().any(|i| i.id == item));
            if !exists {
                return Err(gql_error(
                    "InvalidItemIdException",
                    &format!("Item {item} not found"),
                    json!({ "item_id": item }),
                ));
            }
            let Some(body) = args.get("body").and_then(Json::as_str) else {
                return Err(gql_error(
                    "InvalidArgumentException",
                    "body must be a string",
                    json!({}),
                ));
            };
            book.next_id += 1;
            let id = book.next_id.to_string();
            book.updates.push(Update {
                id: id.clone(),
                item_id: item,
                body: body.to_string(),
            });
            Ok(json!({ "id": id }))
        }
        "items" => {
            let ids: Vec<String> = match args.get("ids") {
                Some(Json::Array(a)) => a.iter().map(scalar).collect(),
                Some(v) => vec![scalar(v)],
                None => Vec::new(),
            };
            let limit = args.get("limit").and_then(Json::as_u64).unwrap_or(25) as usize;
            let mut out = Vec::new();
            for b in book.boards.values() {
                for it in b.items.iter().filter(|i| ids.contains(&i.id)) {
                    // Newest first, as Monday lists them; `limit` of the
                    // nested `updates(limit:)` is not read by this fake.
                    let updates: Vec<Json> = book
                        .updates
                        .iter()
                        .rev()
                        .filter(|u| u.item_id == it.id)
                        .map(|u| json!({ "id": u.id, "body": u.body }))
                        .collect();
                    out.push(json!({ "id": it.id, "name": it.name, "updates": updates }));
                }
            }
            out.truncate(limit);
            Ok(Json::Array(out))
        }
        other => Err(gql_error(
            "UnsupportedByFake",
            &format!("the fake does not execute {other}"),
            json!({}),
        )),
    }
}

// ---------------------------------------------------------------- validation

/// Fields (with argument names and type) of every object, interface and
/// input type in the SDL.
struct Schema {
    /// type → field → (argument names, named type)
    types: BTreeMap<String, BTreeMap<String, (Vec<String>, String)>>,
    /// Scalars and enums (leaf types).
    leaves: Vec<String>,
    inputs: Vec<String>,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let path = crate::fake_slack::specs_dir().join("monday-schema-2026-10.graphql");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc =
        s::parse_schema::<String>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut types = BTreeMap::new();
    let mut leaves: Vec<String> = ["String", "Int", "Float", "Boolean", "ID"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    let mut inputs = Vec::new();
    let fields = |fs: &[s::Field<String>]| -> BTreeMap<String, (Vec<String>, String)> {
        fs.iter()
            .map(|f| {
                (
                    f.name.clone(),
                    (
                        f.arguments.iter().map(|a| a.name.clone()).collect(),
                        named(&f.field_type),
                    ),
                )
            })
            .collect()
    };
    for d in &doc.definitions {
        if let s::Definition::TypeDefinition(t) = d {
            match t {
                s::TypeDefinition::Object(o) => {
                    types.insert(o.name.clone(), fields(&o.fields));
                }
                s::TypeDefinition::Interface(i) => {
                    types.insert(i.name.clone(), fields(&i.fields));
                }
                s::TypeDefinition::Scalar(x) => leaves.push(x.name.clone()),
                s::TypeDefinition::Enum(x) => leaves.push(x.name.clone()),
                s::TypeDefinition::InputObject(x) => inputs.push(x.name.clone()),
                s::TypeDefinition::Union(x) => {
                    types.insert(x.name.clone(), BTreeMap::new());
                }
            }
        }
    }
    Schema {
        types,
        leaves,
        inputs,
    }
});

fn named(t: &s::Type<String>) -> String {
    match t {
        s::Type::NamedType(n) => n.clone(),
        s::Type::ListType(i) | s::Type::NonNullType(i) => named(i),
    }
}

fn named_q(t: &q::Type<String>) -> String {
    match t {
        q::Type::NamedType(n) => n.clone(),
        q::Type::ListType(i) | q::Type::NonNullType(i) => named_q(i),
    }
}

/// Problems of `query` against the Monday SDL; empty when it is valid.
pub fn validate(query: &str) -> Vec<String> {
    let doc = match q::parse_query::<String>(query) {
        Ok(d) => d,
        Err(e) => return vec![format!("syntax: {e}")],
    };
    let schema = &*SCHEMA;
    let mut out = Vec::new();
    for d in &doc.definitions {
        let q::Definition::Operation(op) = d else {
            out.push("fragments are not used by the connector".into());
            continue;
        };
        let (root, set, vars) = match op {
            q::OperationDefinition::Query(x) => {
                ("Query", &x.selection_set, &x.variable_definitions)
            }
            q::OperationDefinition::Mutation(x) => {
                ("Mutation", &x.selection_set, &x.variable_definitions)
            }
            q::OperationDefinition::SelectionSet(x) => ("Query", x, &Vec::new()),
            q::OperationDefinition::Subscription(x) => {
                ("Subscription", &x.selection_set, &x.variable_definitions)
            }
        };
        for v in vars {
            let t = named_q(&v.var_type);
            if !schema.leaves.contains(&t) && !schema.inputs.contains(&t) {
                out.push(format!("variable ${} has unknown input type {t}", v.name));
            }
        }
        walk(schema, root, set, &mut out);
    }
    out
}

fn walk(schema: &Schema, ty: &str, set: &q::SelectionSet<String>, out: &mut Vec<String>) {
    let Some(fields) = schema.types.get(ty) else {
        out.push(format!("type {ty} has no fields to select"));
        return;
    };
    for sel in &set.items {
        match sel {
            q::Selection::Field(f) => {
                if f.name == "__typename" {
                    continue;
                }
                let Some((args, of)) = fields.get(&f.name) else {
                    out.push(format!("field `{}` does not exist on type {ty}", f.name));
                    continue;
                };
                for (a, _) in &f.arguments {
                    if !args.contains(a) {
                        out.push(format!("argument `{a}` does not exist on {ty}.{}", f.name));
                    }
                }
                let leaf = schema.leaves.contains(of);
                match (leaf, f.selection_set.items.is_empty()) {
                    (true, false) => {
                        out.push(format!("{ty}.{} is a {of}: it takes no selection", f.name))
                    }
                    (false, true) => {
                        out.push(format!("{ty}.{} is a {of}: select its fields", f.name))
                    }
                    (false, false) => walk(schema, of, &f.selection_set, out),
                    (true, true) => {}
                }
            }
            q::Selection::InlineFragment(i) => {
                let t = match &i.type_condition {
                    Some(q::TypeCondition::On(t)) => t.clone(),
                    None => ty.to_string(),
                };
                walk(schema, &t, &i.selection_set, out);
            }
            q::Selection::FragmentSpread(_) => {
                out.push("fragment spreads are not supported by the fake".into())
            }
        }
    }
}
