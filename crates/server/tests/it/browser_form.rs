//! The hosted form in headless Chromium: the file's field order, messages
//! in words next to the field, the honeypot out of sight, axe-core clean,
//! at 1366×768 and on a phone.

use std::sync::Arc;

use engine::{Catalog, Engine, StepKinds};
use serde_json::json;
use store::Store;

use crate::browser::{Driver, axe_source, browser_for, save, serve};

/// The reference workflow's input, with a rule as the only step.
const FORM: &str = r#"
name: inbound-request
trigger:
  form: { title: "Contact us" }
input:
  schema:
    type: object
    required: [name, email, message]
    additionalProperties: false
    properties:
      name:    { type: string, title: Your name, minLength: 1, maxLength: 200 }
      email:   { type: string, title: Email, format: email, maxLength: 320, description: "We answer here." }
      company: { type: string, title: Company, maxLength: 200 }
      message: { type: string, title: How can we help?, minLength: 1, maxLength: 20000 }
      message_id: { type: string, maxLength: 200 }
  idempotency_field: message_id
steps:
  - id: note
    rules:
      - when: "false"
        then: { finish: never }
"#;

async fn start() -> (String, Arc<dyn Store>) {
    let store: Arc<dyn Store> =
        Arc::new(store_sqlite::SqliteStore::open_memory().expect("open store"));
    let catalog = Arc::new(Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        Arc::new(|_: &str| None),
        store.clone(),
    ));
    catalog
        .load_source(FORM, "inbound-request.yaml")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::start(store.clone(), catalog, engine::Config::default());
    (serve(engine).await, store)
}

async fn runs(store: &Arc<dyn Store>) -> usize {
    store
        .list_runs(&store::RunFilter {
            limit: 100,
            ..store::RunFilter::default()
        })
        .await
        .expect("runs")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_form_in_headless_chromium() {
    let Some((chromium, chromedriver)) = browser_for("the_hosted_form_in_headless_chromium") else {
        return;
    };
    let axe = axe_source();
    let (base, store) = start().await;
    let mut d = Driver::start(&chromium, &chromedriver).await;
    d.viewport(1366, 768).await;
    d.goto(&format!("{base}/forms/inbound-request")).await;
    let labels = d
        .exec("return Array.from(document.querySelectorAll('form .form-field label')).map(l => l.textContent.replace(/\\s+/g, ' ').trim());")
        .await;
    assert_eq!(
        labels,
        json!([
            "Your name * (required)",
            "Email * (required)",
            "Company",
            "How can we help? * (required)"
        ]),
        "the file's order; the idempotency field hidden"
    );
    let hp = d
        .exec("const r = document.getElementById('cs_website').getBoundingClientRect(); return r.right <= 0 || r.width <= 1;")
        .await;
    assert_eq!(hp, json!(true), "the honeypot is out of sight");
    if let Some(axe) = &axe {
        d.assert_accessible(axe, "the form").await;
    }
    save(&d.screenshot().await, "form.png");

    // A wrong address: the message in words, next to the field.
    d.type_into("#name", "Ada Lovelace").await;
    d.type_into("#email", "not-an-email").await;
    d.type_into("#message", "Our invoice is wrong.").await;
    // Chromium's own check would stop a type=email field first: submit
    // without it, as a script-less client would.
    d.exec("document.querySelector('form.public-form').noValidate = true;")
        .await;
    d.click("form.public-form button[type=submit]").await;
    let page = d.wait_text("Please enter an email address").await;
    assert!(
        page.contains("Please enter an email address, like name@example.com."),
        "{page}"
    );
    assert!(!page.contains("is not a \"email\""), "{page}");
    let next_to = d
        .exec("const e = document.getElementById('email-err'); const f = document.getElementById('email'); return !!e && f.getAttribute('aria-describedby').includes('email-err') && e.previousElementSibling === f;")
        .await;
    assert_eq!(next_to, json!(true));
    if let Some(axe) = &axe {
        d.assert_accessible(axe, "the form with an error").await;
    }
    assert_eq!(runs(&store).await, 0);

    // On a phone.
    d.viewport(390, 844).await;
    d.goto(&format!("{base}/forms/inbound-request")).await;
    d.assert_fits_a_phone("the form").await;
    d.viewport(390, 844).await;
    save(&d.screenshot().await, "form-phone.png");
    d.viewport(1366, 768).await;

    // A bot fills every field it finds, the honeypot too: thanks, nothing kept.
    d.goto(&format!("{base}/forms/inbound-request")).await;
    d.exec("for (const [id, v] of [['name', 'Bot'], ['email', 'bot@example.com'], ['message', 'Buy now'], ['cs_website', 'http://spam.example']]) document.getElementById(id).value = v; document.querySelector('form.public-form').submit();")
        .await;
    d.wait_text("Thank you").await;
    assert_eq!(runs(&store).await, 0);

    // A person: thanks with a reference, one run.
    d.goto(&format!("{base}/forms/inbound-request")).await;
    d.type_into("#name", "Ada Lovelace").await;
    d.type_into("#email", "ada@example.com").await;
    d.type_into("#message", "Our invoice is wrong.").await;
    d.click("form.public-form button[type=submit]").await;
    let page = d.wait_text("Your reference").await;
    assert_eq!(runs(&store).await, 1, "{page}");
    save(&d.screenshot().await, "form-thanks.png");
    d.quit().await;
}
