//! Action previews: what a side-effecting step will do, as data.
//!
//! One type serves every place an action is shown before (or instead of)
//! being performed: the task page's "what happens after approval", the
//! task of a `control: review` action, a `control: suggest` step's output
//! and a covering review's approval (`review: { covers: [...] }`), which
//! is bound to the preview's [`ActionPreview::digest`]. A connector builds
//! its preview from the same rendered request it performs, so what a
//! reviewer saw is what executes.
//!
//! API boundary: plain data over `serde_json`, no engine internals, so the
//! type can move into a `step-api` crate with the `Step` trait.

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// What one action will do: a human title and the ordered values it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionPreview {
    /// `monday`, `slack`, `email`, `http`.
    pub connector: String,
    /// The vendor operation: `upsert`, `chat.postMessage`, `messages.send`, `POST`.
    pub action: String,
    /// What it does, for people: "Email to a@b.com — Re: your request".
    pub title: String,
    /// The values sent, in the order a person reads them.
    pub values: Vec<Labelled>,
    /// SHA-256 (hex) over connector, action, title and every value: equal
    /// digests mean the same action with the same values.
    pub digest: String,
}

/// One value of an action: a CRM column after its label map, an email's `To`.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// Machine name: a column ID, `to`, `subject`, `text`.
    pub name: String,
    /// Human label: "Category", "To", "Subject".
    pub label: String,
    /// The value as sent (a Monday status is `{"label": "Sales"}`).
    pub value: Json,
    /// The value as a person reads it (`Sales`).
    pub text: String,
}

impl Labelled {
    /// A text value shown as it is sent.
    pub fn text(name: &str, label: &str, text: impl Into<String>) -> Labelled {
        let text = text.into();
        Labelled {
            name: name.into(),
            label: label.into(),
            value: Json::String(text.clone()),
            text,
        }
    }
}

impl ActionPreview {
    /// A preview with its digest computed.
    pub fn new(
        connector: impl Into<String>,
        action: impl Into<String>,
        title: impl Into<String>,
        values: Vec<Labelled>,
    ) -> ActionPreview {
        let mut p = ActionPreview {
            connector: connector.into(),
            action: action.into(),
            title: title.into(),
            values,
            digest: String::new(),
        };
        p.digest = p.compute_digest();
        p
    }

    fn compute_digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.connector, &self.action, &self.title] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        for v in &self.values {
            h.update(v.name.as_bytes());
            h.update(b"\0");
            h.update(v.value.to_string().as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The value named `name`, if the action sends one.
    pub fn get(&self, name: &str) -> Option<&Labelled> {
        self.values.iter().find(|v| v.name == name)
    }

    /// `{connector, action, title, values: [{name, label, value, text}], digest}`.
    pub fn to_json(&self) -> Json {
        json!({
            "connector": self.connector,
            "action": self.action,
            "title": self.title,
            "values": self.values.iter().map(|v| json!({
                "name": v.name, "label": v.label, "value": v.value, "text": v.text,
            })).collect::<Vec<_>>(),
            "digest": self.digest,
        })
    }

    /// The preview with `redact` applied to its title and values (the
    /// workflow's secrets); the digest stays that of the real action.
    pub fn redacted(&self, redact: &dyn Fn(&str) -> String) -> ActionPreview {
        ActionPreview {
            connector: self.connector.clone(),
            action: self.action.clone(),
            title: redact(&self.title),
            values: self
                .values
                .iter()
                .map(|v| Labelled {
                    name: v.name.clone(),
                    label: v.label.clone(),
                    value: serde_json::from_str(&redact(&v.value.to_string()))
                        .unwrap_or(Json::Null),
                    text: redact(&v.text),
                })
                .collect(),
            digest: self.digest.clone(),
        }
    }
}

/// A column or field name made readable: `next_step` → "Next step".
pub fn readable(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let mut c = spaced.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_changes_with_any_value_and_not_with_redaction() {
        let a = ActionPreview::new(
            "slack",
            "chat.postMessage",
            "Slack message to #ops",
            vec![
                Labelled::text("channel", "Channel", "#ops"),
                Labelled::text("text", "Text", "hello"),
            ],
        );
        let same = ActionPreview::new(
            "slack",
            "chat.postMessage",
            "Slack message to #ops",
            a.values.clone(),
        );
        assert_eq!(a.digest, same.digest);
        let mut values = a.values.clone();
        values[1] = Labelled::text("text", "Text", "hello!");
        let other =
            ActionPreview::new("slack", "chat.postMessage", "Slack message to #ops", values);
        assert_ne!(a.digest, other.digest);
        let r = a.redacted(&|s: &str| s.replace("hello", "[redacted]"));
        assert_eq!(r.digest, a.digest);
        assert_eq!(r.values[1].text, "[redacted]");
        assert_eq!(r.values[1].value, json!("[redacted]"));
        assert_eq!(a.to_json()["values"][0]["label"], json!("Channel"));
        assert_eq!(readable("next_step"), "Next step");
    }
}
