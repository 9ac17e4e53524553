//! The `heuristic` provider: deterministic, offline, and honest about it.
//!
//! It fills the output fields by convention rather than understanding:
//! enum fields by keyword lists (from the workflow's `heuristic.words`, or
//! built-in lists for common values such as `spam`, `billing`, `urgent`),
//! `*summary*` fields with the first sentences of the text, `*reply*`/
//! `*draft*` fields with a templated reply, `*confidence*` with a low
//! number (0.3 unless configured), `*review*` booleans with `true`. It
//! records which keywords decided each value. Its answers are validated
//! like any model's.

use std::collections::BTreeMap;

use async_trait::async_trait;
use domain::expr::Vars;
use serde_json::{Map, Value as Json, json};

use crate::provider::{Completion, Error, LlmProvider, Request};
use crate::schema::Field;

/// The model name recorded for heuristic answers.
pub const MODEL: &str = "keywords-v1";

/// The default reply draft.
pub const DEFAULT_REPLY: &str = "{% if input.name %}Hello {{ input.name }},{% else %}Hello,{% endif %}\n\nThank you for contacting us. We have received your message and a member of our team will get back to you shortly.\n\nBest regards";

/// The author's tuning of the heuristic (`llm.heuristic`).
#[derive(Debug, Clone)]
pub struct Spec {
    /// Template of the text to classify; default: the input's message-like
    /// fields.
    pub text: Option<String>,
    /// Per field: value → keywords. Replaces the built-in lists for that field.
    pub words: BTreeMap<String, Vec<(String, Vec<String>)>>,
    /// Template of reply drafts.
    pub reply: String,
    /// The confidence it reports (clamped to the field's range).
    pub confidence: f64,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            text: None,
            words: BTreeMap::new(),
            reply: DEFAULT_REPLY.to_string(),
            confidence: 0.3,
        }
    }
}

/// What the heuristic works from: the step's output contract and the text.
#[derive(Debug)]
pub struct Task<'a> {
    pub fields: &'a [Field],
    pub spec: &'a Spec,
    pub vars: &'a Vars,
    /// The text to classify (already rendered).
    pub text: String,
}

/// Built-in keyword lists by enum value name.
fn default_words(value: &str) -> &'static [&'static str] {
    match value {
        "spam" => &[
            "unsubscribe",
            "viagra",
            "casino",
            "lottery",
            "winner",
            "bitcoin",
            "crypto",
            "backlinks",
            "seo services",
            "guest post",
            "click here",
            "make money",
            "limited time offer",
        ],
        "billing" => &[
            "invoice",
            "invoices",
            "billing",
            "billed",
            "charged",
            "charge",
            "refund",
            "payment",
            "paid",
            "receipt",
            "overcharged",
            "credit card",
            "subscription",
        ],
        "complaint" => &[
            "complaint",
            "complain",
            "disappointed",
            "unacceptable",
            "terrible",
            "worst",
            "angry",
            "furious",
            "lawyer",
            "legal action",
            "poor service",
            "not happy",
            "bad experience",
        ],
        "support_request" | "support" => &[
            "help",
            "error",
            "bug",
            "broken",
            "crash",
            "crashes",
            "not working",
            "doesn't work",
            "does not work",
            "issue",
            "problem",
            "cannot",
            "can't",
            "login",
            "log in",
            "password",
            "how do i",
            "how to",
        ],
        "sales_lead" | "sales" => &[
            "pricing",
            "price",
            "prices",
            "quote",
            "demo",
            "purchase",
            "buy",
            "interested in",
            "license",
            "licence",
            "licenses",
            "trial",
            "proposal",
            "seats",
            "enterprise plan",
        ],
        "partnership" => &[
            "partner",
            "partners",
            "partnership",
            "collaboration",
            "collaborate",
            "reseller",
            "affiliate",
            "co-marketing",
            "joint venture",
        ],
        "urgent" => &[
            "urgent",
            "urgently",
            "asap",
            "immediately",
            "emergency",
            "right now",
            "critical",
            "outage",
            "lawyer",
            "legal action",
        ],
        "high" => &[
            "important",
            "as soon as possible",
            "today",
            "deadline",
            "escalate",
            "serious",
            "unacceptable",
            "frustrated",
        ],
        "low" => &[
            "no rush",
            "whenever",
            "just curious",
            "when you have time",
            "low priority",
            "fyi",
        ],
        _ => &[],
    }
}

/// Values chosen when no keyword matched, in order of preference.
const NEUTRAL: &[&str] = &["other", "medium", "normal", "unknown", "general"];

/// The heuristic provider. It needs no key and never fails transiently.
#[derive(Debug, Default)]
pub struct Heuristic;

#[async_trait]
impl LlmProvider for Heuristic {
    fn name(&self) -> &str {
        "heuristic"
    }

    fn needs_model(&self) -> bool {
        false
    }

    fn repairs(&self) -> bool {
        false
    }

    fn priced(&self) -> bool {
        false
    }

    async fn complete(&self, req: &Request<'_>) -> Result<Completion, Error> {
        let (answer, matched) = fill(req.task);
        Ok(Completion {
            content: Some(answer.to_string()),
            refusal: None,
            finish_reason: Some("stop".into()),
            usage: None,
            model: Some(MODEL.into()),
            raw: json!({ "answer": answer, "matched_keywords": matched, "text_chars": req.task.text.chars().count() }),
            http_status: None,
            request_id: None,
            limits: BTreeMap::new(),
        })
    }
}

/// Fills every field; returns the answer and, per enum field, the keywords
/// that decided it.
pub fn fill(task: &Task<'_>) -> (Json, Json) {
    let lower = task.text.to_lowercase();
    let mut out = Map::new();
    let mut matched = Map::new();
    for f in task.fields {
        let (v, why) = value_for(&f.name, &f.local, f.optional, task, &lower);
        if let Some(why) = why {
            matched.insert(f.name.clone(), why);
        }
        out.insert(f.name.clone(), v);
    }
    (Json::Object(out), Json::Object(matched))
}

fn value_for(
    name: &str,
    schema: &Json,
    optional: bool,
    task: &Task<'_>,
    lower: &str,
) -> (Json, Option<Json>) {
    let n = name.to_ascii_lowercase();
    if let Some(Json::Array(values)) = schema.get("enum") {
        let (v, why) = classify(name, values, task, lower);
        return (v, Some(why));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => vec![],
    };
    let has = |t: &str| types.contains(&t);
    if has("string") {
        let max = schema
            .get("maxLength")
            .and_then(Json::as_u64)
            .map(|m| m as usize);
        let text = if n.contains("summary") {
            Some(summarize(&task.text, max.unwrap_or(300).min(300)))
        } else if n.contains("reply") || n.contains("draft") || n.contains("response") {
            crate::prompt::render_plain(&task.spec.reply, task.vars).ok()
        } else if n.contains("next") || n.contains("action") || n.contains("recommend") {
            Some(
                "Review this request by hand: it was triaged by keyword rules, not by a model."
                    .into(),
            )
        } else {
            None
        };
        return match text {
            Some(t) => (Json::String(clip_chars(&t, max)), None),
            None if optional => (Json::Null, None),
            None => (Json::String(String::new()), None),
        };
    }
    if has("boolean") {
        return (Json::Bool(n.contains("review")), None);
    }
    if has("number") || has("integer") {
        let lo = schema.get("minimum").and_then(Json::as_f64);
        let hi = schema.get("maximum").and_then(Json::as_f64);
        if n.contains("confidence") {
            let mut c = task.spec.confidence;
            if let Some(lo) = lo {
                c = c.max(lo);
            }
            if let Some(hi) = hi {
                c = c.min(hi);
            }
            return (json!(c), None);
        }
        if optional {
            return (Json::Null, None);
        }
        return (json!(lo.unwrap_or(0.0)), None);
    }
    if has("array") {
        return (if optional { Json::Null } else { json!([]) }, None);
    }
    if has("object") {
        if optional {
            return (Json::Null, None);
        }
        let mut m = Map::new();
        if let Some(Json::Object(props)) = schema.get("properties") {
            for (k, s) in props {
                let nullable =
                    matches!(s.get("type"), Some(Json::Array(ts)) if ts.contains(&json!("null")));
                m.insert(k.clone(), value_for(k, s, nullable, task, lower).0);
            }
        }
        return (Json::Object(m), None);
    }
    (Json::Null, None)
}

/// Picks the enum value with the most keyword hits; ties go to the value
/// listed first; no hit picks a neutral value (`other`, `medium`, …).
fn classify(field: &str, values: &[Json], task: &Task<'_>, lower: &str) -> (Json, Json) {
    let custom = task.spec.words.get(field);
    let mut best: Option<(usize, &Json, Vec<String>)> = None;
    for v in values {
        let Some(name) = v.as_str() else { continue };
        let words: Vec<&str> = match custom {
            Some(list) => list
                .iter()
                .find(|(val, _)| val == name)
                .map(|(_, ws)| ws.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            None => default_words(name).to_vec(),
        };
        let hits: Vec<String> = words
            .iter()
            .filter(|w| contains_word(lower, &w.to_lowercase()))
            .map(|w| w.to_string())
            .collect();
        if !hits.is_empty() && best.as_ref().is_none_or(|(n, _, _)| hits.len() > *n) {
            best = Some((hits.len(), v, hits));
        }
    }
    match best {
        Some((_, v, hits)) => (v.clone(), json!({ "value": v, "keywords": hits })),
        None => {
            let fallback = NEUTRAL
                .iter()
                .find_map(|n| values.iter().find(|v| v.as_str() == Some(n)))
                .or_else(|| values.iter().find(|v| !v.is_null()))
                .cloned()
                .unwrap_or(Json::Null);
            (
                fallback.clone(),
                json!({ "value": fallback, "keywords": [], "default": true }),
            )
        }
    }
}

/// True when `word` occurs in `text` with non-alphanumeric characters (or
/// the ends) on both sides.
fn contains_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let mut start = 0;
    while let Some(i) = text[start..].find(word) {
        let at = start + i;
        let end = at + word.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if boundary(before) && boundary(after) {
            return true;
        }
        start = at + text[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The first sentences of `text`, at most `max` characters.
pub fn summarize(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out = String::new();
    for sentence in flat.split_inclusive(['.', '!', '?']) {
        if out.chars().count() + sentence.chars().count() > max {
            break;
        }
        out.push_str(sentence);
    }
    let out = out.trim().to_string();
    if !out.is_empty() {
        return out;
    }
    // One long sentence: cut at a word boundary.
    let budget = max.saturating_sub(1);
    let mut cut = String::new();
    for w in flat.split(' ') {
        if cut.chars().count() + w.chars().count() + 1 > budget {
            break;
        }
        if !cut.is_empty() {
            cut.push(' ');
        }
        cut.push_str(w);
    }
    if cut.is_empty() {
        cut = flat.chars().take(budget).collect();
    }
    cut.push('…');
    cut
}

fn clip_chars(s: &str, max: Option<usize>) -> String {
    match max {
        Some(m) if s.chars().count() > m => s.chars().take(m).collect(),
        _ => s.to_string(),
    }
}

/// The default text to classify: the input's message-like fields, or all
/// of its strings.
pub fn default_text(input: &Json) -> String {
    let Json::Object(m) = input else {
        return input.as_str().unwrap_or_default().to_string();
    };
    let preferred: Vec<&str> = [
        "subject",
        "title",
        "message",
        "body",
        "text",
        "content",
        "description",
    ]
    .iter()
    .filter_map(|k| m.get(*k).and_then(Json::as_str))
    .collect();
    if !preferred.is_empty() {
        return preferred.join("\n");
    }
    m.values()
        .filter_map(Json::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::expr::value_from_json;

    fn fields() -> Vec<Field> {
        let f = |name: &str, local: Json| Field {
            name: name.into(),
            optional: false,
            local,
        };
        vec![
            f("summary", json!({"type": "string", "maxLength": 600})),
            f(
                "intent",
                json!({"type": "string", "enum": ["support_request", "sales_lead", "billing", "complaint", "partnership", "spam", "other"]}),
            ),
            f(
                "priority",
                json!({"type": "string", "enum": ["low", "medium", "high", "urgent"]}),
            ),
            f("recommended_next_step", json!({"type": "string"})),
            f("customer_reply_draft", json!({"type": "string"})),
            f("crm_update_required", json!({"type": "boolean"})),
            f("human_review_required", json!({"type": "boolean"})),
            f(
                "confidence",
                json!({"type": "number", "minimum": 0, "maximum": 1}),
            ),
        ]
    }

    fn run(message: &str, spec: &Spec) -> (Json, Json) {
        let fields = fields();
        let mut vars = Vars::new();
        let input = json!({"name": "Ada", "message": message});
        vars.insert("input".into(), value_from_json(&input));
        let task = Task {
            fields: &fields,
            spec,
            vars: &vars,
            text: default_text(&input),
        };
        fill(&task)
    }

    #[test]
    fn classifies_by_keywords_and_is_honest() {
        let (a, why) = run(
            "Our invoice is wrong, please call me urgently. Thanks!",
            &Spec::default(),
        );
        assert_eq!(
            (a["intent"].as_str(), a["priority"].as_str()),
            (Some("billing"), Some("urgent"))
        );
        assert_eq!(a["confidence"], 0.3);
        assert_eq!(a["human_review_required"], true);
        assert_eq!(a["crm_update_required"], false);
        assert_eq!(
            a["summary"],
            "Our invoice is wrong, please call me urgently. Thanks!"
        );
        assert!(
            a["customer_reply_draft"]
                .as_str()
                .unwrap()
                .starts_with("Hello Ada,")
        );
        assert_eq!(why["intent"]["keywords"], json!(["invoice"]));

        let (a, _) = run("unsubscribe", &Spec::default());
        assert_eq!(
            (a["intent"].as_str(), a["priority"].as_str()),
            (Some("spam"), Some("medium"))
        );
        let (a, _) = run("Hello there", &Spec::default());
        assert_eq!(a["intent"], "other", "no keyword: a neutral value");
        let (a, _) = run("The download page", &Spec::default());
        assert_eq!(
            a["priority"], "medium",
            "`down` inside a word does not count"
        );
    }

    #[test]
    fn workflow_word_lists_replace_the_defaults() {
        let mut spec = Spec::default();
        spec.words.insert(
            "intent".into(),
            vec![("partnership".into(), vec!["reseller".into()])],
        );
        let (a, _) = run(
            "We want to become a reseller; our invoice is attached",
            &spec,
        );
        assert_eq!(a["intent"], "partnership");
    }

    #[test]
    fn summaries_are_extractive_and_bounded() {
        assert_eq!(summarize("One.  Two!\nThree?", 100), "One. Two! Three?");
        assert_eq!(
            summarize("First sentence here. Second sentence is longer.", 25),
            "First sentence here."
        );
        assert_eq!(
            summarize("averyveryverylongword and more words", 12),
            "averyveryve…"
        );
        assert_eq!(
            summarize("one two three four five six", 15),
            "one two three…"
        );
    }
}
