//! The `email` step against the fake Gmail API and the fake SMTP server.

use connectors::email::{Transport, gmail, mime, smtp};
use domain::event::kind;
use lettre::message::Mailbox;
use serde_json::json;
use store::RunStatus;
use test_kit::fake_gmail::{self, FakeGmail};
use test_kit::fake_smtp::{self, FakeSmtp};
use test_kit::fixture::{TIMEOUT, TempDir, events_of, eventually};

use crate::*;

fn gmail_settings(fake: &FakeGmail) -> gmail::Settings {
    gmail::Settings {
        api_url: fake.api_url(),
        token_url: fake.token_url(),
        client_id: fake_gmail::CLIENT_ID.into(),
        client_secret: fake_gmail::CLIENT_SECRET.into(),
        refresh_token: fake_gmail::REFRESH_TOKEN.into(),
        sender: format!("Ops <{}>", fake_gmail::SENDER),
    }
}

fn gmail_config(s: gmail::Settings) -> connectors::Config {
    connectors::Config {
        email: Transport::Gmail(s),
        ..Default::default()
    }
}

fn smtp_config(url: &str) -> connectors::Config {
    connectors::Config {
        email: Transport::Smtp(smtp::Settings::parse(url).expect("a valid SMTP_URL")),
        ..Default::default()
    }
}

const WF: &str = r#"
name: mail
steps:
  - id: reply
    retry: { max_attempts: 3, initial: 10ms, max: 50ms, jitter: none }
    timeout: 1s
    email:
      to: "{{ input.name }} <{{ input.email }}>"
      cc: [ "audit@example.com" ]
      reply_to: "support@example.com"
      subject: "Grüße, {{ input.name }} — résumé reçu"
      body: "Hello {{ input.name }}, we got your request."
      html: "<p>Hello <b>{{ input.name }}</b></p>"
"#;

fn input() -> serde_json::Value {
    json!({ "name": "Zoë", "email": "zoe@example.org" })
}

fn expected_id(run_id: &str, from: &str) -> String {
    mime::message_id(
        &format!("{run_id}:reply"),
        &from.parse::<Mailbox>().expect("an address"),
    )
}

#[tokio::test]
async fn gmail_sends_once_with_utf8_headers_and_a_deterministic_message_id() {
    let fake = FakeGmail::start().await;
    let (engine, store) = engine(WF, gmail_config(gmail_settings(&fake))).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.problems(), Vec::<String>::new());
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.subject, "Grüße, Zoë — résumé reçu");
    assert!(
        m.headers["subject"].starts_with("=?utf-8?"),
        "{:?}",
        m.headers
    );
    assert!(
        m.headers["to"].contains("zoe@example.org"),
        "{:?}",
        m.headers
    );
    assert!(m.headers["cc"].contains("audit@example.com"));
    assert!(m.headers["reply-to"].contains("support@example.com"));
    assert!(
        m.headers["content-type"].starts_with("multipart/alternative"),
        "{:?}",
        m.headers
    );
    let id = expected_id(&r.id, fake_gmail::SENDER);
    assert!(id.ends_with("@example.com>"), "{id}");
    assert_eq!(m.message_id, id);
    let out = &outputs(&store, &r.id).await["reply"];
    assert_eq!(
        (
            out["performed"].clone(),
            out["message_id"].clone(),
            out["id"].clone()
        ),
        (json!(true), json!(id), json!(m.id))
    );
    let done = events_of(&store, &r.id, kind::EFFECT_COMPLETED).await;
    assert_eq!(done[0]["external_id"], json!(m.id));
    // A second run reuses the cached access token.
    let r2 = run(&engine, &store, input()).await;
    assert_eq!(r2.status, RunStatus::Completed);
    assert_eq!(fake.sent().len(), 2);
    assert_eq!(fake.tokens_issued(), 1);
    assert_ne!(fake.sent()[1].message_id, id, "one Message-ID per key");
}

#[tokio::test]
async fn gmail_draft_control_creates_a_draft() {
    let fake = FakeGmail::start().await;
    let yaml = WF.replace("    email:\n", "    control: draft\n    email:\n");
    let (engine, store) = engine(&yaml, gmail_config(gmail_settings(&fake))).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.problems(), Vec::<String>::new());
    assert!(fake.sent().is_empty());
    let drafts = fake.drafts();
    assert_eq!(drafts.len(), 1);
    let out = &outputs(&store, &r.id).await["reply"];
    assert_eq!(out["draft_id"], json!(drafts[0].draft_id.clone().unwrap()));
}

#[tokio::test]
async fn gmail_rate_limits_and_server_errors_are_retried() {
    let fake = FakeGmail::start().await;
    fake.fail_next(1, 429, Some(1));
    let (engine, store) = engine(WF, gmail_config(gmail_settings(&fake))).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let sched = events_of(&store, &r.id, kind::STEP_RETRY_SCHEDULED).await;
    assert_eq!(sched[0]["retry_after_ms"], json!(1000), "{sched:?}");
    fake.fail_next(2, 503, None);
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    fake.fail_next(1, 403, None);
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.sent().len(), 3);
}

#[tokio::test]
async fn gmail_refreshes_a_revoked_access_token() {
    let fake = FakeGmail::start().await;
    let (engine, store) = engine(WF, gmail_config(gmail_settings(&fake))).await;
    assert_eq!(
        run(&engine, &store, input()).await.status,
        RunStatus::Completed
    );
    fake.expire_tokens();
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(fake.sent().len(), 2);
}

#[tokio::test]
async fn a_refused_refresh_token_fails_naming_it_and_no_secret_leaks() {
    let fake = FakeGmail::start().await;
    let mut s = gmail_settings(&fake);
    s.refresh_token = "1//wrong-refresh-token-5555".into();
    let (engine, store) = engine(WF, gmail_config(s)).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.clone().unwrap_or_default();
    assert!(
        err.contains("GMAIL_REFRESH_TOKEN") && err.contains("invalid_grant"),
        "{err}"
    );
    let all = everything(&store, &r.id).await;
    for secret in ["1//wrong-refresh-token-5555", fake_gmail::CLIENT_SECRET] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    // A wrong client secret names the client settings.
    let mut s = gmail_settings(&fake);
    s.client_secret = "GOCSPX-wrong-secret".into();
    let (engine, store) = crate::engine(WF, gmail_config(s)).await;
    let r = run(&engine, &store, input()).await;
    let err = r.error.clone().unwrap_or_default();
    assert!(
        err.contains("GMAIL_CLIENT_SECRET") && err.contains("invalid_client"),
        "{err}"
    );
    assert!(
        !everything(&store, &r.id)
            .await
            .contains("GOCSPX-wrong-secret")
    );
}

#[tokio::test]
async fn gmail_outputs_and_events_carry_no_credentials() {
    let fake = FakeGmail::start().await;
    let (engine, store) = engine(WF, gmail_config(gmail_settings(&fake))).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    let all = everything(&store, &r.id).await;
    for secret in [
        fake_gmail::CLIENT_SECRET,
        fake_gmail::REFRESH_TOKEN,
        "ya29.fake-access",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

#[tokio::test]
async fn a_crash_mid_send_is_reconciled_by_message_id() {
    let fake = FakeGmail::start().await;
    fake.delay(60_000);
    let dir = TempDir::new("gmail-crash");
    let db = dir.path().join("cs.db");
    let config = gmail_config(gmail_settings(&fake));
    let (run_id, kill) = doomed(db.clone(), WF.to_string(), config.clone(), input()).await;
    let id = expected_id(&run_id, fake_gmail::SENDER);
    eventually("the message is sent", TIMEOUT, || {
        fake.count_message_id(&id) == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    let store = reopen(&db);
    let _engine = engine_on(store.clone(), WF, config).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.count_message_id(&id), 1, "exactly one email");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[0]["result"], json!("found"), "{rec:?}");
    assert_eq!(
        outputs(&store, &run_id).await["reply"]["reconciled"],
        json!(true)
    );
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.starts_with("GET /gmail/v1/users/me/messages?q=rfc822msgid")),
        "{:?}",
        fake.calls()
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_search_refused_for_good_fails_the_step_and_never_sends_again() {
    let fake = FakeGmail::start().await;
    fake.delay(60_000);
    let dir = TempDir::new("gmail-scope");
    let db = dir.path().join("cs.db");
    let config = gmail_config(gmail_settings(&fake));
    let (run_id, kill) = doomed(db.clone(), WF.to_string(), config.clone(), input()).await;
    let id = expected_id(&run_id, fake_gmail::SENDER);
    eventually("the message is sent", TIMEOUT, || {
        fake.count_message_id(&id) == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    fake.refuse_search(true);

    let store = reopen(&db);
    let engine = engine_on(store.clone(), WF, config).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let error = r.error.clone().unwrap_or_default();
    for part in [
        "not sent again",
        "insufficient authentication scopes",
        "retry the run",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error:?}");
    }
    assert!(!error.contains(fake_gmail::REFRESH_TOKEN), "{error}");
    assert_eq!(fake.count_message_id(&id), 1, "no second email");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["result"], json!("failed"), "{rec:?}");

    fake.refuse_search(false);
    let retried = engine.retry(&run_id, "operator").await.expect("retry");
    assert!(matches!(retried, store::OpResult::Done(_)), "{retried:?}");
    let r = test_kit::fixture::wait_status(
        &store,
        &run_id,
        |r| r.status == RunStatus::Completed,
        TIMEOUT,
    )
    .await;
    assert_eq!(r.error, None, "{r:#?}");
    assert_eq!(fake.count_message_id(&id), 1, "exactly one email");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec.len(), 2, "{rec:?}");
    assert_eq!(rec[1]["result"], json!("found"), "{rec:?}");
    assert_eq!(
        outputs(&store, &run_id).await["reply"]["reconciled"],
        json!(true)
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn smtp_sends_with_auth_the_envelope_and_utf8_headers() {
    let fake = FakeSmtp::start().await;
    let (engine, store) = engine(WF, smtp_config(&fake.url())).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.problems(), Vec::<String>::new());
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.authenticated.as_deref(), Some(fake_smtp::USER));
    assert_eq!(m.mail_from, fake_smtp::USER);
    let mut rcpt = m.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, vec!["audit@example.com", "zoe@example.org"]);
    let subject = m.header("subject").unwrap();
    assert!(
        subject.is_ascii() && subject.starts_with("=?utf-8?"),
        "{subject}"
    );
    assert_eq!(
        test_kit::fake_gmail::decode_words(&subject).unwrap(),
        "Grüße, Zoë — résumé reçu"
    );
    assert_eq!(m.header("mime-version").as_deref(), Some("1.0"));
    let id = expected_id(&r.id, fake_smtp::USER);
    assert_eq!(m.header("message-id"), Some(id.clone()));
    let out = &outputs(&store, &r.id).await["reply"];
    assert_eq!(
        (out["via"].clone(), out["message_id"].clone()),
        (json!("smtp"), json!(id))
    );
}

#[tokio::test]
async fn smtp_refused_login_fails_and_the_password_never_leaks() {
    let fake = FakeSmtp::start().await;
    let wrong = "wrong-pass-7777";
    let (engine, store) = engine(WF, smtp_config(&fake.url_with(fake_smtp::USER, wrong))).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let err = r.error.clone().unwrap_or_default();
    assert!(err.contains("SMTP_URL") && err.contains("535"), "{err}");
    let all = everything(&store, &r.id).await;
    assert!(!all.contains(wrong), "the password leaked:\n{all}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn smtp_temporary_failures_are_retried_and_permanent_ones_are_not() {
    let fake = FakeSmtp::start().await;
    fake.fail_next_data(1, "451 4.3.0 try again later");
    let (engine, store) = engine(WF, smtp_config(&fake.url())).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.received().len(), 1);
    fake.fail_next_data(1, "550 5.1.1 no such user");
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("steps[0].email") && err.contains("550"),
        "{err}"
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn smtp_after_a_crash_resends_under_the_same_message_id() {
    let fake = FakeSmtp::start().await;
    fake.delay(60_000);
    let dir = TempDir::new("smtp-crash");
    let db = dir.path().join("cs.db");
    let config = smtp_config(&fake.url());
    let (run_id, kill) = doomed(db.clone(), WF.to_string(), config.clone(), input()).await;
    let id = expected_id(&run_id, fake_smtp::USER);
    eventually("the message is accepted", TIMEOUT, || {
        fake.count_message_id(&id) == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    let store = reopen(&db);
    let _engine = engine_on(store.clone(), WF, config).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    // At-least-once, documented: SMTP cannot be asked, so the message goes
    // again, and the same Message-ID lets the recipient's side dedupe it.
    assert_eq!(fake.count_message_id(&id), 2);
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[0]["result"], json!("unknown"), "{rec:?}");
}

#[tokio::test]
async fn without_credentials_the_email_goes_to_the_outbox() {
    let (engine, store) = engine(WF, connectors::Config::default()).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let out = &outputs(&store, &r.id).await["reply"];
    assert_eq!(out["outbox"], json!(true));
    assert_eq!(
        out["to"],
        json!({ "to": ["Zoë <zoe@example.org>"], "cc": ["audit@example.com"] })
    );
    assert_eq!(out["payload"]["subject"], json!("Grüße, Zoë — résumé reçu"));
    assert!(out["note"].as_str().unwrap().starts_with("OUTBOX"));
    assert_eq!(events_of(&store, &r.id, "outbox.recorded").await.len(), 1);
    assert!(
        events_of(&store, &r.id, kind::EFFECT_STARTED)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn suggest_records_and_never_sends() {
    let fake = FakeGmail::start().await;
    let yaml = WF.replace("    email:\n", "    control: suggest\n    email:\n");
    let (engine, store) = engine(&yaml, gmail_config(gmail_settings(&fake))).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert_eq!(events_of(&store, &r.id, "effect.suggested").await.len(), 1);
    assert_eq!(
        outputs(&store, &r.id).await["reply"]["performed"],
        json!(false)
    );
}

#[tokio::test]
async fn review_queue_without_review_drafts_over_smtp_and_bad_bodies_are_refused_at_load() {
    let yaml = WF.replace("    email:\n", "    control: review\n    email:\n");
    assert_eq!(load_errors(&yaml, connectors::Config::default()), "");
    let yaml = WF.replace("    email:\n", "    email:\n      review_queue: support\n");
    let e = load_errors(&yaml, connectors::Config::default());
    assert!(
        e.contains("review_queue only applies with `control: review`")
            && e.contains("steps[0].email"),
        "{e}"
    );
    let e = load_errors(
        "name: x\nsteps:\n  - id: s\n    email: { to: a@b.c, subjekt: hi }\n",
        connectors::Config::default(),
    );
    assert!(
        e.contains("unknown field `subjekt`")
            && e.contains("`subject`")
            && e.contains("needs `body`"),
        "{e}"
    );
    let yaml = WF.replace("    email:\n", "    control: draft\n    email:\n");
    let e = load_errors(
        &yaml,
        smtp_config("smtp://u%40x.org:p@127.0.0.1:1?tls=none"),
    );
    assert!(e.contains("SMTP has no drafts"), "{e}");
}

#[tokio::test]
async fn smtp_urls_parse_with_safe_defaults() {
    let s = smtp::Settings::parse("smtp://me%40example.com:app+pass@smtp.gmail.com").unwrap();
    assert_eq!(
        (s.host.as_str(), s.port, s.security),
        ("smtp.gmail.com", 587, smtp::Security::StartTls)
    );
    assert_eq!(s.password.as_deref(), Some("app+pass"));
    assert_eq!(s.from.email.to_string(), "me@example.com");
    assert!(!format!("{s:?}").contains("app+pass"));
    let s = smtp::Settings::parse("smtps://me%40example.com:pw@smtp.gmail.com").unwrap();
    assert_eq!((s.port, s.security), (465, smtp::Security::Implicit));
    let s = smtp::Settings::parse("smtp://127.0.0.1:2525?tls=none&from=a@b.c").unwrap();
    assert_eq!((s.port, s.security), (2525, smtp::Security::None));
    let e = smtp::Settings::parse("smtp://user:s3cret-pw@host").unwrap_err();
    assert!(e.contains("SMTP_URL") && e.contains("from"), "{e}");
    assert!(!e.contains("s3cret-pw"));
    let e = smtp::Settings::parse("smtps://a%40b.c:pw@host?tls=none").unwrap_err();
    assert!(e.contains("tls=none"), "{e}");
    let e = smtp::Settings::parse("http://host").unwrap_err();
    assert!(e.contains("smtp://"), "{e}");
    // The TLS transports build without touching the network.
    for url in [
        "smtp://me%40example.com:pw@smtp.gmail.com",
        "smtps://me%40example.com:pw@smtp.gmail.com",
    ] {
        assert_eq!(load_errors(WF, smtp_config(url)), "", "{url}");
    }
    let bad_sender = gmail::Settings {
        api_url: "http://127.0.0.1:1".into(),
        token_url: "http://127.0.0.1:1/token".into(),
        client_id: "id".into(),
        client_secret: "secret".into(),
        refresh_token: "refresh".into(),
        sender: "not an address".into(),
    };
    let e = load_errors(WF, gmail_config(bad_sender));
    assert!(e.contains("GMAIL_SENDER"), "{e}");
}

/// Content from a request cannot inject HTML, recipients or headers
/// (issue 12, item 5): the outbox shows what would have been sent.
const FROM_INPUT: &str = r#"
name: mail
steps:
  - id: reply
    retry: { max_attempts: 1 }
    email:
      to: "{{ input.name }} <{{ input.email }}>"
      cc: [ "{{ input.cc }}", "audit@example.com, legal@example.com" ]
      subject: "Re: {{ input.subject }}"
      html: "<p>Hello {{ input.name }}</p>{{ input.footer|safe }}"
"#;

fn from_input(name: &str, email: &str) -> serde_json::Value {
    json!({
        "name": name,
        "email": email,
        "cc": "cc@example.com",
        "subject": "hi\r\nBcc: evil@example.net",
        "footer": "<hr>",
    })
}

#[tokio::test]
async fn html_values_are_escaped_unless_marked_safe() {
    let wf = FROM_INPUT.replace(
        "<p>Hello {{ input.name }}</p>",
        "<p>Hello {{ input.note }}</p>",
    );
    let (engine, store) = engine(&wf, connectors::Config::default()).await;
    let mut input = from_input("Zoë", "zoe@example.org");
    input["note"] = json!("<a href=\"https://evil.example\">claim</a>");
    let r = run(&engine, &store, input).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let out = &outputs(&store, &r.id).await["reply"];
    let html = out["payload"]["html"].as_str().unwrap();
    assert!(!html.contains("<a "), "{html}");
    assert!(html.starts_with("<p>Hello &lt;a href=&quot;"), "{html}");
    assert!(
        html.ends_with("</p><hr>"),
        "the author's |safe value stays: {html}"
    );
    // CR/LF in the subject become spaces: one header line.
    assert_eq!(
        out["payload"]["subject"],
        json!("Re: hi  Bcc: evil@example.net")
    );
    // Literal text may list several; each template gives one.
    assert_eq!(
        out["to"],
        json!({
            "to": ["Zoë <zoe@example.org>"],
            "cc": ["cc@example.com", "audit@example.com", "legal@example.com"],
        })
    );
}

#[tokio::test]
async fn a_recipient_from_a_template_is_exactly_one_address() {
    let (engine, store) = engine(FROM_INPUT, connectors::Config::default()).await;
    for (name, email) in [
        ("Zoë", "a@example.org, b@example.org"),
        ("Zoë", "a@example.org; b@example.org"),
        ("Zoë\r\nBcc: evil@example.net", "zoe@example.org"),
    ] {
        let r = run(&engine, &store, from_input(name, email)).await;
        assert_eq!(r.status, RunStatus::Failed, "{name:?} {email:?}");
        let error = r.error.unwrap_or_default();
        assert!(
            error.contains("exactly one email address") || error.contains("line break"),
            "{error}"
        );
        assert!(
            events_of(&store, &r.id, "outbox.recorded").await.is_empty(),
            "nothing was sent"
        );
    }
    // A list in `cc` from input is refused the same way.
    let mut input = from_input("Zoë", "zoe@example.org");
    input["cc"] = json!("x@example.org, y@example.org");
    let r = run(&engine, &store, input).await;
    assert_eq!(r.status, RunStatus::Failed);
}
