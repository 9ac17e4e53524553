//! `slack`: post a message through `chat.postMessage` (bot token), or
//! through an incoming-webhook URL.
//!
//! ```yaml
//! - id: notify
//!   slack:
//!     channel: "#ops-intake"                # a name or a channel ID
//!     text: "New request from {{ input.name }}"
//!     blocks: [ { type: section, text: { type: mrkdwn, text: "*{{ input.name }}*" } } ]
//!     # or: template: messages/intake.slack.j2  (renders {"text", "blocks"} or a block list)
//! ```
//!
//! Exactly once: every message carries `metadata` `{event_type:
//! "countersign_effect", event_payload: {key: "run_id:step_id"}}`. After a
//! crash between `effect.started` and `effect.completed`, reconciliation
//! reads the channel's recent history (`conversations.history` with
//! `include_all_metadata`) and adopts the message carrying the key instead
//! of posting again. Incoming webhooks cannot be asked: at-least-once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::expr::{JsonTemplate, Scope, Template, Vars};
use domain::run::StepOutcome;
use domain::workflow::{Control, Cx, StepDef};
use engine::{ActionField, ActionPreview, Labelled, Reconciled, Step, StepCx, StepKind};
use serde_json::{Value as Json, json};

use crate::effect::{self, Unreachable};
use crate::error::{self, Error};

pub const DEFAULT_URL: &str = "https://slack.com/api";
/// The `metadata.event_type` our messages carry.
pub const EVENT_TYPE: &str = "countersign_effect";
const DEFAULT_TIMEOUT_MS: u64 = 15_000;
/// History pages read when reconciling (200 messages each).
const HISTORY_PAGES: usize = 5;
const MAX_BLOCKS: usize = 50;

/// `SLACK_API_URL` (ends in `/api`) and `SLACK_BOT_TOKEN`.
#[derive(Clone)]
pub struct Settings {
    pub url: String,
    pub token: String,
}

pub struct Kind {
    client: reqwest::Client,
    settings: Option<Settings>,
}

impl Kind {
    pub fn new(client: reqwest::Client, settings: Option<Settings>) -> Kind {
        Kind { client, settings }
    }
}

#[derive(Debug)]
enum Blocks {
    Inline(JsonTemplate),
    /// A template file rendering JSON: `{"text", "blocks"}` or a block list.
    File(Template),
}

#[derive(Debug)]
struct Spec {
    path: String,
    channel: Template,
    text: Option<Template>,
    blocks: Option<Blocks>,
    draft_channel: Option<Template>,
    webhook: Option<Template>,
    review_queue: String,
    timeout_ms: u64,
}

fn parse(def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Spec> {
    let mut f = cx.take(def.body.fields())?;
    let webhook = f.get("webhook").and_then(|n| {
        if !n.from_env {
            cx.errors.push(
                n.error("an incoming-webhook URL is a secret: write `${env:SLACK_WEBHOOK_URL}`"),
            );
        }
        cx.secret_if_env(n);
        cx.take(Template::compile(n, scope))
    });
    let channel = match (f.get("channel"), &webhook) {
        (Some(n), _) => cx.take(Template::compile(n, scope)),
        (None, Some(_)) => Some(Template::literal("")),
        (None, None) => {
            cx.errors
                .push(def.body.error("missing required field `channel`"));
            None
        }
    };
    let text = f
        .get("text")
        .and_then(|n| cx.take(Template::compile(n, scope)));
    let inline = f
        .get("blocks")
        .map(|n| Blocks::Inline(JsonTemplate::compile(n, scope, &mut cx.errors)));
    let file = f.get("template").and_then(|n| {
        let path = cx.take(n.as_str())?.to_string();
        let src = cx.include(n, &path);
        let src = cx.take(src)?;
        cx.take(Template::compile_str(n, src, scope))
            .map(Blocks::File)
    });
    if inline.is_some() && file.is_some() {
        cx.errors
            .push(def.body.error("give `blocks` or `template`, not both"));
    }
    let blocks = inline.or(file);
    if text.is_none() && blocks.is_none() {
        cx.errors.push(
            def.body
                .error("a Slack message needs `text`, `blocks` or `template`"),
        );
    }
    let draft_channel = f
        .get("draft_channel")
        .and_then(|n| cx.take(Template::compile(n, scope)));
    if def.control == Control::Draft && draft_channel.is_none() {
        cx.errors.push(def.body.error(
            "`control: draft` posts the message to a reviewer's channel first: add `draft_channel`",
        ));
    }
    let review_queue = effect::review_queue(def, &mut f, cx);
    f.finish(&mut cx.errors);
    Some(Spec {
        path: def.body.path.clone(),
        review_queue,
        channel: channel?,
        text,
        blocks,
        draft_channel,
        webhook,
        timeout_ms: def.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
}

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn honours_control(&self) -> bool {
        true
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let spec = parse(def, scope, cx)?;
        if let Some(s) = &self.settings {
            cx.secrets.push(s.token.clone());
        }
        Some(Arc::new(SlackStep {
            spec,
            control: def.control,
            api: self.settings.clone().map(|s| Api {
                client: self.client.clone(),
                settings: s,
            }),
            client: self.client.clone(),
            unreachable: Unreachable::default(),
        }) as Arc<dyn Step>)
    }
}

/// A Web API client over the shared HTTP client.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    settings: Settings,
}

impl Api {
    pub fn new(client: reqwest::Client, settings: Settings) -> Api {
        Api { client, settings }
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.settings.token.clone()]
    }

    /// POSTs a JSON body to a Web API method and checks `ok`.
    pub async fn post(&self, method: &str, body: &Json, timeout_ms: u64) -> Result<Json, Error> {
        engine::trace::call(
            "slack",
            method,
            self.post_once(method, body, timeout_ms),
            error::outcome,
        )
        .await
    }

    async fn post_once(&self, method: &str, body: &Json, timeout_ms: u64) -> Result<Json, Error> {
        let resp = self
            .client
            .post(format!("{}/{method}", self.settings.url))
            .bearer_auth(&self.settings.token)
            .header("Content-Type", "application/json; charset=utf-8")
            .timeout(Duration::from_millis(timeout_ms))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| error::transport(&e))?;
        self.answer(method, resp).await
    }

    /// GETs a read method with query parameters and checks `ok`.
    pub async fn get(
        &self,
        method: &str,
        params: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<Json, Error> {
        engine::trace::call(
            "slack",
            method,
            self.get_once(method, params, timeout_ms),
            error::outcome,
        )
        .await
    }

    async fn get_once(
        &self,
        method: &str,
        params: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<Json, Error> {
        let mut url = reqwest::Url::parse(&format!("{}/{method}", self.settings.url))
            .map_err(|e| Error::permanent("SLACK_API_URL", e.to_string()))?;
        url.query_pairs_mut().extend_pairs(params);
        let resp = self
            .client
            .get(url)
            .bearer_auth(&self.settings.token)
            .timeout(Duration::from_millis(timeout_ms))
            .send()
            .await
            .map_err(|e| error::transport(&e))?;
        self.answer(method, resp).await
    }

    async fn answer(&self, method: &str, resp: reqwest::Response) -> Result<Json, Error> {
        let status = resp.status();
        let retry_after_ms = error::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| error::transport(&e))?;
        if status.as_u16() == 429 {
            return Err(Error::RateLimited {
                retry_after_ms,
                message: format!("Slack {method} answered 429"),
            });
        }
        if status.is_server_error() {
            return Err(Error::Transient(format!(
                "Slack {method} answered {status}: {}",
                error::snippet(&bytes, 200)
            )));
        }
        let body: Json = serde_json::from_slice(&bytes).map_err(|_| {
            Error::Transient(format!(
                "Slack {method} answered {status} with a body that is not JSON: {}",
                error::snippet(&bytes, 200)
            ))
        })?;
        if body["ok"] == json!(true) {
            return Ok(body);
        }
        let code = body["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_string();
        let detail = match body["response_metadata"]["messages"].as_array() {
            Some(m) if !m.is_empty() => format!(
                "{code} ({})",
                m.iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            // `missing_scope` names the scope the token lacks.
            _ => match body["needed"].as_str() {
                Some(needed) => format!("{code} (needed: {needed})"),
                None => code.clone(),
            },
        };
        let message =
            domain::workflow::redact(&self.secrets(), &format!("Slack {method}: {detail}"));
        Err(classify(&code, retry_after_ms, message))
    }
}

/// Maps a Slack `error` code to what the caller can do about it.
fn classify(code: &str, retry_after_ms: Option<u64>, message: String) -> Error {
    match code {
        "rate_limited" | "ratelimited" => Error::RateLimited {
            retry_after_ms,
            message,
        },
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Error::Transient(message)
        }
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired"
        | "missing_scope" | "no_permission" => Error::Unauthorized {
            field: "SLACK_BOT_TOKEN".into(),
            message,
        },
        "channel_not_found" | "not_in_channel" | "is_archived" | "restricted_action" => {
            Error::permanent("channel", message)
        }
        "invalid_blocks" | "invalid_blocks_format" | "too_many_blocks" => {
            Error::permanent("blocks", message)
        }
        "msg_too_long" | "no_text" => Error::permanent("text", message),
        "invalid_metadata_format" | "invalid_metadata_schema" | "metadata_too_large" => {
            Error::permanent("metadata", message)
        }
        _ => Error::permanent("slack", message),
    }
}

struct SlackStep {
    spec: Spec,
    /// The step's control level (`draft` posts to the draft channel).
    control: Control,
    api: Option<Api>,
    client: reqwest::Client,
    unreachable: Unreachable,
}

/// A message ready to send.
struct Message {
    channel: String,
    text: String,
    blocks: Option<Json>,
}

impl SlackStep {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.spec.path)
    }

    fn secrets(&self) -> Vec<String> {
        self.api.as_ref().map(Api::secrets).unwrap_or_default()
    }

    fn render(&self, vars: &Vars, control: Control) -> Result<Message, Error> {
        let perm = |field: &str, e: String| Error::permanent(self.field(field), e);
        let mut text = match &self.spec.text {
            Some(t) => Some(t.render(vars).map_err(|e| perm("text", e))?),
            None => None,
        };
        let blocks = match &self.spec.blocks {
            None => None,
            Some(Blocks::Inline(t)) => Some(t.render(vars).map_err(|e| perm("blocks", e))?),
            Some(Blocks::File(t)) => {
                let s = t.render(vars).map_err(|e| perm("template", e))?;
                let v: Json = serde_json::from_str(&s).map_err(|e| {
                    perm("template", format!("the template did not render JSON: {e}"))
                })?;
                match v {
                    Json::Object(mut m) => {
                        if text.is_none() {
                            text = m.get("text").and_then(Json::as_str).map(str::to_string);
                        }
                        m.remove("blocks")
                    }
                    list @ Json::Array(_) => Some(list),
                    _ => {
                        return Err(perm(
                            "template",
                            "the template must render {\"text\", \"blocks\"} or a list of blocks"
                                .into(),
                        ));
                    }
                }
            }
        };
        if let Some(b) = &blocks {
            check_blocks(b).map_err(|e| perm("blocks", e))?;
        }
        let text = match text {
            Some(t) => t,
            None => blocks.as_ref().and_then(fallback_text).ok_or_else(|| {
                perm(
                    "text",
                    "no `text`, and no section text in the blocks to fall back on".into(),
                )
            })?,
        };
        let mut channel = self
            .spec
            .channel
            .render(vars)
            .map_err(|e| perm("channel", e))?;
        let mut text = text;
        if control == Control::Draft {
            let target = channel.clone();
            channel = self
                .spec
                .draft_channel
                .as_ref()
                .map(|t| t.render(vars))
                .transpose()
                .map_err(|e| perm("draft_channel", e))?
                .unwrap_or_default();
            text = format!("[draft for {target}] {text}");
        }
        if channel.trim().is_empty() && self.spec.webhook.is_none() {
            return Err(perm("channel", "the channel rendered empty".into()));
        }
        Ok(Message {
            channel,
            text,
            blocks,
        })
    }

    async fn post_webhook(&self, url: &str, msg: &Message) -> Result<(), Error> {
        engine::trace::call(
            "slack",
            "incoming_webhook",
            self.post_webhook_once(url, msg),
            error::outcome,
        )
        .await
    }

    async fn post_webhook_once(&self, url: &str, msg: &Message) -> Result<(), Error> {
        let mut body = json!({ "text": msg.text });
        if let Some(b) = &msg.blocks {
            body["blocks"] = b.clone();
        }
        let resp = self
            .client
            .post(url)
            .timeout(Duration::from_millis(self.spec.timeout_ms))
            .json(&body)
            .send()
            .await
            .map_err(|e| error::transport(&e))?;
        let status = resp.status();
        let retry_after_ms = error::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| error::transport(&e))?;
        let text = error::snippet(&bytes, 200);
        match status.as_u16() {
            200..=299 => Ok(()),
            429 => Err(Error::RateLimited {
                retry_after_ms,
                message: "Slack incoming webhook answered 429".into(),
            }),
            500..=599 => Err(Error::Transient(format!(
                "Slack incoming webhook answered {status}: {text}"
            ))),
            _ => Err(Error::permanent(
                self.field("webhook"),
                format!("Slack incoming webhook answered {status}: {text}"),
            )),
        }
    }
}

/// Block Kit shape checks Slack would otherwise refuse with `invalid_blocks`.
fn check_blocks(b: &Json) -> Result<(), String> {
    let list = b.as_array().ok_or("blocks must be a list")?;
    if list.len() > MAX_BLOCKS {
        return Err(format!(
            "{} blocks; Slack allows at most {MAX_BLOCKS}",
            list.len()
        ));
    }
    for (i, blk) in list.iter().enumerate() {
        if blk.get("type").and_then(Json::as_str).is_none() {
            return Err(format!("block {i} has no `type`"));
        }
        if let Some(t) = blk["text"]["text"].as_str()
            && blk["type"] == "section"
            && t.chars().count() > 3000
        {
            return Err(format!(
                "block {i}: section text is longer than 3,000 characters"
            ));
        }
    }
    Ok(())
}

/// The first section's text: Slack wants a `text` fallback for notifications.
fn fallback_text(b: &Json) -> Option<String> {
    b.as_array()?
        .iter()
        .find_map(|blk| blk["text"]["text"].as_str().map(str::to_string))
}

/// Whether `s` looks like a conversation ID rather than a `#name`.
fn is_channel_id(s: &str) -> bool {
    s.len() >= 9
        && s.starts_with(['C', 'G', 'D'])
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl Api {
    /// A channel ID for `#name` (or `name`) via `conversations.list`.
    pub async fn channel_id(&self, channel: &str, timeout_ms: u64) -> Result<String, Error> {
        if is_channel_id(channel) {
            return Ok(channel.to_string());
        }
        let name = channel.trim_start_matches('#');
        let mut cursor = String::new();
        for _ in 0..20 {
            let mut params = vec![
                ("limit", "200"),
                ("exclude_archived", "true"),
                ("types", "public_channel,private_channel"),
            ];
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let page = self.get("conversations.list", &params, timeout_ms).await?;
            if let Some(c) = page["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
            {
                return Ok(c["id"].as_str().unwrap_or_default().to_string());
            }
            match page["response_metadata"]["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = c.to_string(),
                _ => break,
            }
        }
        Err(Error::permanent(
            "channel",
            format!("no channel named {channel:?}"),
        ))
    }

    /// The message in `channel_id`'s recent history whose metadata carries `key`.
    pub async fn find_by_key(
        &self,
        channel_id: &str,
        key: &str,
        timeout_ms: u64,
    ) -> Result<Option<Json>, Error> {
        let mut cursor = String::new();
        for _ in 0..HISTORY_PAGES {
            let mut params = vec![
                ("channel", channel_id),
                ("limit", "200"),
                ("include_all_metadata", "true"),
            ];
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let page = self
                .get("conversations.history", &params, timeout_ms)
                .await?;
            if let Some(m) = page["messages"].as_array().into_iter().flatten().find(|m| {
                m["metadata"]["event_type"] == EVENT_TYPE
                    && m["metadata"]["event_payload"]["key"] == key
            }) {
                return Ok(Some(m.clone()));
            }
            match page["response_metadata"]["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = c.to_string(),
                _ => break,
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Step for SlackStep {
    /// One request after `effect.started` (`chat.postMessage` or the
    /// webhook), cut off at the step's timeout.
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
            self.render(vars, self.control)
                .map(|mut m| {
                    if let Some(t) = effect::approved_str(edits, "text") {
                        m.text = t;
                    }
                    self.preview_of(&m)
                })
                .map_err(|e| self.named(e).describe(&self.secrets())),
        )
    }

    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let secrets = self.secrets();
        let key = cx.idempotency_key();
        // Unticked on the covering review: not performed, not even rendered.
        if let Some(skipped) = cx.unticked().await {
            return skipped;
        }
        if self.unreachable.take(&key) {
            return effect::reconcile_failed("slack");
        }
        let mut msg = match self.render(cx.vars, cx.step.control) {
            Ok(m) => m,
            Err(e) => return e.into_outcome(&secrets),
        };
        // `control: review`: the exact text is approved (and maybe edited)
        // before anything is posted.
        let asked = self.preview_of(&msg);
        let approved = match effect::approval(
            cx,
            &self.spec.review_queue,
            vec![ActionField::text("text", msg.text.clone())],
            &asked,
        )
        .await
        {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        if let Some(t) = effect::approved_str(&approved, "text") {
            msg.text = t;
        }
        let preview = json!({ "channel": msg.channel, "text": msg.text, "blocks": msg.blocks });
        let shown = self.preview_of(&msg);
        if cx.step.control == Control::Suggest {
            return effect::suggest(cx, &shown, preview);
        }
        if let Some(hook) = &self.spec.webhook {
            let url = match hook.render(cx.vars) {
                Ok(u) => u,
                Err(e) => return Error::permanent(self.field("webhook"), e).into_outcome(&secrets),
            };
            let digest = effect::digest(&[b"webhook", preview.to_string().as_bytes()]);
            if let Err(e) = cx.effect_started(&digest).await {
                return journal_failed(e);
            }
            return match self.post_webhook(&url, &msg).await {
                Ok(()) => {
                    cx.effect_completed(None);
                    StepOutcome::Done {
                        output: json!({ "performed": true, "via": "incoming_webhook", "text": msg.text }),
                    }
                }
                Err(e) => {
                    effect::call_failed(cx, &e);
                    e.into_outcome(&[url])
                }
            };
        }
        let Some(api) = &self.api else {
            return effect::outbox(
                cx,
                &shown,
                json!({ "channel": msg.channel }),
                json!({ "text": msg.text, "blocks": msg.blocks }),
                "SLACK_BOT_TOKEN is",
            );
        };
        let mut body = json!({
            "channel": msg.channel,
            "text": msg.text,
            "metadata": { "event_type": EVENT_TYPE, "event_payload": { "key": key } },
        });
        if let Some(b) = &msg.blocks {
            body["blocks"] = b.clone();
        }
        let digest = effect::digest(&[b"chat.postMessage", body.to_string().as_bytes()]);
        if let Err(e) = cx.effect_started(&digest).await {
            return journal_failed(e);
        }
        match api
            .post("chat.postMessage", &body, self.spec.timeout_ms)
            .await
        {
            Ok(r) => {
                let channel = r["channel"].as_str().unwrap_or_default().to_string();
                let ts = r["ts"].as_str().unwrap_or_default().to_string();
                cx.effect_completed(Some(format!("{channel}:{ts}")));
                StepOutcome::Done {
                    output: json!({ "performed": true, "channel": channel, "ts": ts, "control": cx.step.control.as_str() }),
                }
            }
            Err(e) => {
                effect::call_failed(cx, &e);
                self.named(e).into_outcome(&secrets)
            }
        }
    }

    async fn reconcile(&self, cx: &mut StepCx<'_>) -> Reconciled {
        let (Some(api), None) = (&self.api, &self.spec.webhook) else {
            // An incoming webhook cannot be asked: resend under the same key.
            return Reconciled::Unknown;
        };
        let key = cx.idempotency_key();
        let channel = match self.render(cx.vars, cx.step.control) {
            Ok(m) => m.channel,
            Err(_) => return Reconciled::NotDone,
        };
        let found = async {
            let id = api.channel_id(&channel, self.spec.timeout_ms).await?;
            Ok::<_, Error>(
                api.find_by_key(&id, &key, self.spec.timeout_ms)
                    .await?
                    .map(|m| (id, m)),
            )
        }
        .await;
        match found {
            Ok(Some((id, m))) => {
                let ts = m["ts"].as_str().unwrap_or_default().to_string();
                Reconciled::Done {
                    external_id: Some(format!("{id}:{ts}")),
                    output: json!({ "performed": true, "channel": id, "ts": ts, "control": cx.step.control.as_str(), "reconciled": true }),
                }
            }
            Ok(None) => Reconciled::NotDone,
            // Not being allowed to look is not "not posted": posting again
            // could duplicate the message after every crash.
            Err(e) if e.is_permanent() => Reconciled::Failed {
                error: format!(
                    "slack: cannot check whether the message for {key} was already posted, so it is not posted again: {}; fix the cause, then retry the run",
                    self.named(e).describe(&self.secrets())
                ),
            },
            Err(e) => {
                tracing::warn!(key = %key, error = %e.describe(&self.secrets()), "slack: reconciliation failed; retrying later");
                self.unreachable.mark(&key);
                Reconciled::Unknown
            }
        }
    }
}

impl SlackStep {
    /// The message as people see it: where it goes and its text (and
    /// blocks, when it has any).
    fn preview_of(&self, msg: &Message) -> ActionPreview {
        let (title, mut values) = if self.spec.webhook.is_some() {
            (
                "Slack message through the incoming webhook".to_string(),
                Vec::new(),
            )
        } else {
            (
                format!("Slack message to {}", msg.channel),
                vec![Labelled::text("channel", "Channel", msg.channel.clone())],
            )
        };
        values.push(Labelled::text("text", "Text", msg.text.clone()));
        if let Some(b) = &msg.blocks {
            values.push(Labelled {
                name: "blocks".into(),
                label: "Blocks".into(),
                value: b.clone(),
                text: b.to_string(),
            });
        }
        ActionPreview::new("slack", "chat.postMessage", title, values)
    }

    /// Prefixes a field-scoped error with this step's YAML path.
    fn named(&self, e: Error) -> Error {
        match e {
            Error::Permanent { field, message } if field == "slack" => Error::Permanent {
                field: self.spec.path.clone(),
                message,
            },
            Error::Permanent { field, message } if !field.contains('.') => Error::Permanent {
                field: self.field(&field),
                message,
            },
            e => e,
        }
    }
}

fn journal_failed(e: String) -> StepOutcome {
    StepOutcome::Transient {
        error: format!("could not journal the effect: {e}"),
        retry_after_ms: None,
    }
}
