//! `email`: send a message through the Gmail API or SMTP, or record it in
//! the outbox when neither is configured (DESIGN §5).
//!
//! ```yaml
//! - id: reply
//!   email:
//!     to: "{{ input.email }}"               # one address per template; a list as a YAML list
//!     cc: [ "ops@example.com" ]             # optional
//!     reply_to: "support@example.com"       # optional
//!     subject: "Re: {{ input.subject }}"
//!     body: "Hello {{ input.name }}, …"     # text, and/or
//!     html: "<p>Hello {{ input.name }}</p>"
//! ```
//!
//! Content from data is contained: a template in `to`, `cc` or `reply_to`
//! must render exactly one address (`"a@x, b@y"` from input is refused;
//! only text written in the file may list several, comma-separated), line
//! breaks in addresses are refused and in the subject replaced by spaces,
//! and values inserted into `html:` are HTML-escaped unless the author
//! writes `|safe`.
//!
//! Every message carries `Message-ID: <sha256(run_id:step_id)[..32]@sender
//! domain>`. Gmail: exactly once — after a crash between `effect.started`
//! and `effect.completed`, reconciliation searches `rfc822msgid:` (drafts:
//! `drafts.list` with the same query) and adopts the message it finds.
//! `control: draft` creates a Gmail draft (SMTP has none, so the workflow
//! is refused at load). SMTP: at-least-once with the same Message-ID on
//! every attempt (nothing can be asked after a crash).

pub mod gmail;
pub mod mime;
pub mod smtp;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::{Scope, Template, Vars};
use domain::run::StepOutcome;
use domain::workflow::{Control, Cx, StepDef};
use engine::{ActionField, ActionPreview, Labelled, Reconciled, Step, StepCx, StepKind};
use lettre::message::Mailbox;
use serde_json::{Value as Json, json};

use crate::effect::{self, Unreachable};
use crate::error::Error;
use mime::Email;

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The `From` shown for outbox messages, which no one sends.
const OUTBOX_FROM: &str = "Countersign outbox <outbox@countersign.invalid>";

/// Where email effects go.
#[derive(Clone, Default)]
pub enum Transport {
    Gmail(gmail::Settings),
    Smtp(smtp::Settings),
    #[default]
    Outbox,
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Gmail(_) => "gmail",
            Transport::Smtp(_) => "smtp",
            Transport::Outbox => "outbox",
        }
    }
}

/// The transport, ready to use (or why it is not).
#[derive(Clone)]
enum Backend {
    Gmail(Arc<gmail::Gmail>, Mailbox),
    Smtp(smtp::Smtp),
    Outbox,
    /// A configuration problem, reported when a workflow uses `email`.
    Broken(String),
}

pub struct Kind {
    backend: Backend,
}

impl Kind {
    pub fn new(client: reqwest::Client, transport: Transport) -> Kind {
        let backend = match transport {
            Transport::Gmail(s) => match Mailbox::from_str(&s.sender) {
                Ok(from) => Backend::Gmail(Arc::new(gmail::Gmail::new(client, s)), from),
                Err(e) => Backend::Broken(format!(
                    "GMAIL_SENDER: {:?} is not an email address: {e}",
                    s.sender
                )),
            },
            Transport::Smtp(s) => match smtp::Smtp::new(s) {
                Ok(t) => Backend::Smtp(t),
                Err(e) => Backend::Broken(e),
            },
            Transport::Outbox => Backend::Outbox,
        };
        Kind { backend }
    }
}

/// An address field: one template or a YAML list of them. A template with
/// placeholders renders at most one address; only literal text written in
/// the file may be a comma-separated list.
#[derive(Debug)]
struct Addresses(Vec<Template>);

impl Addresses {
    fn render(&self, vars: &Vars) -> Result<Vec<Mailbox>, String> {
        let mut out = Vec::new();
        for t in &self.0 {
            let s = t.render(vars)?;
            if t.is_literal() {
                out.extend(mime::mailboxes(&s)?);
            } else if let Some(m) = mime::one_mailbox(&s)? {
                out.push(m);
            }
        }
        Ok(out)
    }
}

#[derive(Debug)]
struct Spec {
    path: String,
    to: Addresses,
    cc: Option<Addresses>,
    reply_to: Option<Template>,
    subject: Template,
    body: Option<Template>,
    html: Option<Template>,
    review_queue: String,
    timeout_ms: u64,
}

fn addresses(n: &domain::yaml::Node, scope: &Scope, cx: &mut Cx) -> Option<Addresses> {
    match n.as_seq() {
        Ok(items) => {
            let v: Vec<_> = items
                .iter()
                .filter_map(|i| cx.take(Template::compile(i, scope)))
                .collect();
            (v.len() == items.len()).then_some(Addresses(v))
        }
        Err(_) => cx
            .take(Template::compile(n, scope))
            .map(|t| Addresses(vec![t])),
    }
}

fn parse(def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Spec> {
    let mut f = cx.take(def.body.fields())?;
    let to = match f.get("to") {
        Some(n) => addresses(n, scope, cx),
        None => {
            cx.errors
                .push(def.body.error("missing required field `to`"));
            None
        }
    };
    let cc = f.get("cc").and_then(|n| addresses(n, scope, cx));
    let reply_to = f
        .get("reply_to")
        .and_then(|n| cx.take(Template::compile(n, scope)));
    let subject = match f.get("subject") {
        Some(n) => cx.take(Template::compile(n, scope)),
        None => {
            cx.errors
                .push(def.body.error("missing required field `subject`"));
            None
        }
    };
    let body_node = f.get("body");
    let html_node = f.get("html");
    let has_body = body_node.is_some() || html_node.is_some();
    let body = body_node.and_then(|n| cx.take(Template::compile(n, scope)));
    let html = html_node.and_then(|n| cx.take(Template::compile(n, scope)));
    let review_queue = effect::review_queue(def, &mut f, cx);
    f.finish(&mut cx.errors);
    if !has_body {
        cx.errors.push(
            def.body
                .error("an email needs `body` (text), `html`, or both"),
        );
    }
    Some(Spec {
        path: def.body.path.clone(),
        to: to?,
        cc,
        reply_to,
        subject: subject?,
        body,
        html,
        review_queue,
        timeout_ms: def.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
}

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "email"
    }

    fn honours_control(&self) -> bool {
        true
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let spec = parse(def, scope, cx)?;
        match &self.backend {
            Backend::Gmail(g, _) => cx.secrets.extend(g.settings().secrets()),
            Backend::Smtp(s) => cx.secrets.extend(s.settings().secrets()),
            Backend::Broken(why) => {
                cx.errors.push(def.body.error(why.clone()));
                return None;
            }
            Backend::Outbox => {}
        }
        if def.control == Control::Draft && matches!(self.backend, Backend::Smtp(_)) {
            cx.errors.push(def.body.error(
                "`control: draft` creates a Gmail draft, and SMTP has no drafts: configure the Gmail API (GMAIL_*) or use `control: suggest`",
            ));
            return None;
        }
        Some(Arc::new(EmailStep {
            spec,
            control: def.control,
            backend: self.backend.clone(),
            unreachable: Unreachable::default(),
        }) as Arc<dyn Step>)
    }
}

struct EmailStep {
    spec: Spec,
    /// The step's control level (`draft` creates a Gmail draft).
    control: Control,
    backend: Backend,
    unreachable: Unreachable,
}

impl EmailStep {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.spec.path)
    }

    fn secrets(&self) -> Vec<String> {
        match &self.backend {
            Backend::Gmail(g, _) => g.secrets(),
            Backend::Smtp(s) => s.settings().secrets(),
            Backend::Outbox | Backend::Broken(_) => Vec::new(),
        }
    }

    fn from(&self) -> Mailbox {
        match &self.backend {
            Backend::Gmail(_, from) => from.clone(),
            Backend::Smtp(s) => s.settings().from.clone(),
            Backend::Outbox | Backend::Broken(_) => {
                Mailbox::from_str(OUTBOX_FROM).expect("a valid outbox address")
            }
        }
    }

    fn render(&self, vars: &Vars, key: &str) -> Result<Email, Error> {
        let perm = |field: &str, e: String| Error::permanent(self.field(field), e);
        let to = self.spec.to.render(vars).map_err(|e| perm("to", e))?;
        if to.is_empty() {
            return Err(perm("to", "no recipient: `to` rendered empty".into()));
        }
        let cc = match &self.spec.cc {
            Some(c) => c.render(vars).map_err(|e| perm("cc", e))?,
            None => Vec::new(),
        };
        let reply_to = match &self.spec.reply_to {
            Some(t) => {
                let s = t.render(vars).map_err(|e| perm("reply_to", e))?;
                mime::one_mailbox(&s).map_err(|e| perm("reply_to", e))?
            }
            None => None,
        };
        let subject = self
            .spec
            .subject
            .render(vars)
            .map_err(|e| perm("subject", e))?;
        // Header injection: a rendered subject is one line.
        let subject = subject.replace(['\r', '\n'], " ");
        let text = self
            .spec
            .body
            .as_ref()
            .map(|t| t.render(vars))
            .transpose()
            .map_err(|e| perm("body", e))?;
        let html = self
            .spec
            .html
            .as_ref()
            .map(|t| t.render_html(vars))
            .transpose()
            .map_err(|e| perm("html", e))?;
        let from = self.from();
        Ok(Email {
            message_id: mime::message_id(key, &from),
            from,
            to,
            cc,
            reply_to,
            subject,
            text,
            html,
        })
    }

    /// The vendor operation under `control`.
    fn action(&self, control: Control) -> &'static str {
        match (&self.backend, control == Control::Draft) {
            (Backend::Smtp(_), _) => "smtp.send",
            (_, true) => "drafts.create",
            (_, false) => "messages.send",
        }
    }

    /// The email as people see it: To, Cc, Reply-To, Subject, Body, HTML.
    fn preview_of(&self, email: &Email, control: Control) -> ActionPreview {
        let list = |v: &[Mailbox]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let addresses = |name: &str, label: &str, v: &[Mailbox]| Labelled {
            name: name.into(),
            label: label.into(),
            value: json!(list(v)),
            text: list(v).join(", "),
        };
        let mut values = vec![addresses("to", "To", &email.to)];
        if !email.cc.is_empty() {
            values.push(addresses("cc", "Cc", &email.cc));
        }
        if let Some(r) = &email.reply_to {
            values.push(Labelled::text("reply_to", "Reply-To", r.to_string()));
        }
        values.push(Labelled::text("subject", "Subject", email.subject.clone()));
        if let Some(t) = &email.text {
            values.push(Labelled::text("body", "Body", t.clone()));
        }
        if let Some(h) = &email.html {
            values.push(Labelled::text("html", "HTML", h.clone()));
        }
        let to: Vec<String> = email.to.iter().map(|m| m.email.to_string()).collect();
        let what = if control == Control::Draft {
            "Email draft"
        } else {
            "Email"
        };
        ActionPreview::new(
            "email",
            self.action(control),
            format!("{what} to {} — {}", to.join(", "), email.subject),
            values,
        )
    }

    fn output(
        &self,
        email: &Email,
        control: Control,
        via: &str,
        sent: Option<&gmail::Sent>,
    ) -> Json {
        let p = email.preview();
        let mut out = json!({
            "performed": true,
            "via": via,
            "control": control.as_str(),
            "message_id": email.message_id,
            "to": p["to"],
            "cc": p["cc"],
            "subject": email.subject,
        });
        if let Some(s) = sent {
            out["id"] = json!(s.id);
            out["thread_id"] = json!(s.thread_id);
            if let Some(d) = &s.draft_id {
                out["draft_id"] = json!(d);
            }
        }
        out
    }

    fn named(&self, e: Error) -> Error {
        match e {
            Error::Permanent { field, message } if field == "email" => Error::Permanent {
                field: self.spec.path.clone(),
                message,
            },
            e => e,
        }
    }
}

#[async_trait]
impl Step for EmailStep {
    /// Gmail: an access token and the send, each tried twice when the
    /// token is refused (four timeouts); SMTP: one timed send.
    fn call_window_ms(&self) -> Option<u64> {
        Some(match self.backend {
            Backend::Gmail(..) => self.spec.timeout_ms.saturating_mul(4),
            _ => self.spec.timeout_ms,
        })
    }

    fn preview(&self, vars: &Vars) -> Option<Result<ActionPreview, String>> {
        self.preview_edited(vars, &serde_json::Map::new())
    }

    fn preview_edited(
        &self,
        vars: &Vars,
        edits: &serde_json::Map<String, Json>,
    ) -> Option<Result<ActionPreview, String>> {
        // The Message-ID is not shown, so the run's key is not needed.
        Some(
            self.render(vars, "")
                .map(|mut m| {
                    apply_approved(&mut m, edits);
                    self.preview_of(&m, self.control)
                })
                .map_err(|e| self.named(e).describe(&self.secrets())),
        )
    }

    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let key = cx.idempotency_key();
        // Unticked on the covering review: not performed, not even rendered.
        if let Some(skipped) = cx.unticked().await {
            return skipped;
        }
        if self.unreachable.take(&key) {
            return effect::reconcile_failed("email");
        }
        let secrets = self.secrets();
        let mut email = match self.render(cx.vars, &key) {
            Ok(m) => m,
            Err(e) => return e.into_outcome(&secrets),
        };
        // `control: review`: the exact email is approved (subject and body
        // maybe edited) before anything is sent.
        let mut fields = vec![ActionField::text("subject", email.subject.clone())];
        if let Some(t) = &email.text {
            fields.push(ActionField::text("body", t.clone()));
        }
        if let Some(h) = &email.html {
            fields.push(ActionField::text("html", h.clone()));
        }
        let asked = self.preview_of(&email, cx.step.control);
        let approved = match effect::approval(cx, &self.spec.review_queue, fields, &asked).await {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        apply_approved(&mut email, &approved);
        let control = cx.step.control;
        let draft = control == Control::Draft;
        let preview = email.preview();
        let action = self.action(control);
        let shown = self.preview_of(&email, control);
        if control == Control::Suggest {
            return effect::suggest(cx, &shown, preview);
        }
        let built = match email.build() {
            Ok(m) => m,
            Err(e) => return Error::permanent(self.spec.path.clone(), e).into_outcome(&secrets),
        };
        let digest = effect::digest(&[action.as_bytes(), preview.to_string().as_bytes()]);
        match &self.backend {
            Backend::Outbox | Backend::Broken(_) => effect::outbox(
                cx,
                &shown,
                json!({ "to": preview["to"], "cc": preview["cc"] }),
                json!({
                    "subject": preview["subject"],
                    "body": preview["body"],
                    "html": preview["html"],
                    "reply_to": preview["reply_to"],
                    "message_id": preview["message_id"],
                }),
                "GMAIL_CLIENT_ID, GMAIL_CLIENT_SECRET, GMAIL_REFRESH_TOKEN, GMAIL_SENDER (or SMTP_URL) are",
            ),
            Backend::Gmail(g, _) => {
                let raw = built.formatted();
                if let Err(e) = cx.effect_started(&digest).await {
                    return journal_failed(e);
                }
                match g.send(&raw, draft, self.spec.timeout_ms).await {
                    Ok(sent) => {
                        cx.effect_completed(Some(sent.id.clone()));
                        StepOutcome::Done {
                            output: self.output(&email, control, "gmail", Some(&sent)),
                        }
                    }
                    Err(e) => {
                        effect::call_failed(cx, &e);
                        self.named(e).into_outcome(&g.secrets())
                    }
                }
            }
            Backend::Smtp(s) => {
                if let Err(e) = cx.effect_started(&digest).await {
                    return journal_failed(e);
                }
                match s.send(built, self.spec.timeout_ms).await {
                    Ok(_) => {
                        cx.effect_completed(Some(email.message_id.clone()));
                        StepOutcome::Done {
                            output: self.output(&email, control, "smtp", None),
                        }
                    }
                    Err(e) => {
                        effect::call_failed(cx, &e);
                        self.named(e).into_outcome(&secrets)
                    }
                }
            }
        }
    }

    async fn reconcile(&self, cx: &mut StepCx<'_>) -> Reconciled {
        // SMTP cannot be asked: resend under the same Message-ID.
        let Backend::Gmail(g, _) = &self.backend else {
            return Reconciled::Unknown;
        };
        let key = cx.idempotency_key();
        let control = cx.step.control;
        let Ok(mut email) = self.render(cx.vars, &key) else {
            return Reconciled::NotDone;
        };
        if (control == Control::Review || cx.raised().is_some())
            && let Some(approved) = cx.approved_action().await
        {
            apply_approved(&mut email, &approved);
        }
        match g
            .find(
                &email.message_id,
                control == Control::Draft,
                self.spec.timeout_ms,
            )
            .await
        {
            Ok(Some(sent)) => {
                let mut output = self.output(&email, control, "gmail", Some(&sent));
                output["reconciled"] = json!(true);
                Reconciled::Done {
                    external_id: Some(sent.id),
                    output,
                }
            }
            Ok(None) => Reconciled::NotDone,
            // Not being allowed to look is not "not sent": sending again
            // could duplicate the email after every crash.
            Err(e) if e.is_permanent() => Reconciled::Failed {
                error: format!(
                    "email: cannot check whether the message for {key} was already {}, so it is not sent again: {}; fix the cause, then retry the run",
                    if control == Control::Draft {
                        "drafted"
                    } else {
                        "sent"
                    },
                    self.named(e).describe(&g.secrets())
                ),
            },
            Err(e) => {
                tracing::warn!(key = %key, error = %e.describe(&g.secrets()), "email: reconciliation failed; retrying later");
                self.unreachable.mark(&key);
                Reconciled::Unknown
            }
        }
    }
}

/// Applies a reviewer's edits (`control: review`) to the rendered email.
fn apply_approved(email: &mut Email, approved: &serde_json::Map<String, Json>) {
    if let Some(s) = effect::approved_str(approved, "subject") {
        email.subject = s;
    }
    if email.text.is_some()
        && let Some(t) = effect::approved_str(approved, "body")
    {
        email.text = Some(t);
    }
    if email.html.is_some()
        && let Some(h) = effect::approved_str(approved, "html")
    {
        email.html = Some(h);
    }
}

fn journal_failed(e: String) -> StepOutcome {
    StepOutcome::Transient {
        error: format!("could not journal the effect: {e}"),
        retry_after_ms: None,
    }
}
