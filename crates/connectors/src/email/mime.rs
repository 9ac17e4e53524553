//! The RFC 5322 message both transports send: built with lettre's message
//! builder (UTF-8 headers as RFC 2047 encoded words, `MIME-Version`,
//! `multipart/alternative` when there is both text and HTML) under a
//! `Message-ID` derived from the idempotency key.

use std::str::FromStr;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// A rendered email, before it is encoded.
#[derive(Debug, Clone)]
pub struct Email {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// With angle brackets: `<hex@domain>`.
    pub message_id: String,
}

/// `<first 32 hex digits of sha256(key)@domain>`: the same key always gives
/// the same id, so a resent message can be recognised (Gmail's
/// `rfc822msgid:` search, a recipient's duplicate filter).
pub fn message_id(key: &str, from: &Mailbox) -> String {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let domain = from.email.domain();
    let domain = if domain.is_empty() {
        "countersign.invalid"
    } else {
        domain
    };
    format!("<{}@{domain}>", &hash[..32])
}

/// Parses a comma-separated list of addresses (`a@b.c`, `Name <a@b.c>`).
pub fn mailboxes(list: &str) -> Result<Vec<Mailbox>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Mailbox::from_str(s).map_err(|e| format!("{s:?} is not an email address: {e}")))
        .collect()
}

/// Exactly one address (`a@b.c` or `Name <a@b.c>`) from a template's
/// output; `None` when it rendered empty. A list, or a line break (header
/// injection), is refused: several recipients come from a YAML list.
pub fn one_mailbox(s: &str) -> Result<Option<Mailbox>, String> {
    if s.contains(['\r', '\n']) {
        return Err("an address from a template contains a line break".into());
    }
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let m = Mailbox::from_str(s).map_err(|e| {
        format!(
            "{s:?} is not exactly one email address ({e}); list several recipients as a YAML list"
        )
    })?;
    // The parser stops at the first address: make sure nothing follows it.
    if m.to_string().matches('@').count() != s.matches('@').count() {
        return Err(format!(
            "{s:?} is not exactly one email address; list several recipients as a YAML list"
        ));
    }
    Ok(Some(m))
}

impl Email {
    /// What the step shows (outputs, outbox, suggestions, digests).
    pub fn preview(&self) -> Json {
        let list = |v: &[Mailbox]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        json!({
            "from": self.from.to_string(),
            "to": list(&self.to),
            "cc": list(&self.cc),
            "reply_to": self.reply_to.as_ref().map(ToString::to_string),
            "subject": self.subject,
            "body": self.text,
            "html": self.html,
            "message_id": self.message_id,
        })
    }

    /// The message, ready for SMTP or to be encoded for the Gmail API.
    pub fn build(&self) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone()));
        for m in &self.to {
            b = b.to(m.clone());
        }
        for m in &self.cc {
            b = b.cc(m.clone());
        }
        if let Some(r) = &self.reply_to {
            b = b.reply_to(r.clone());
        }
        let built = match (&self.text, &self.html) {
            (Some(t), Some(h)) => {
                b.multipart(MultiPart::alternative_plain_html(t.clone(), h.clone()))
            }
            (None, Some(h)) => b.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(h.clone()),
            ),
            (Some(t), None) => b.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(t.clone()),
            ),
            (None, None) => return Err("the message has neither `body` nor `html`".into()),
        };
        built.map_err(|e| e.to_string())
    }
}
