//! The review inbox over HTTP (`app().oneshot()`): sign-in, cookies,
//! CSRF and origin checks, roles and queues in the pages and in the API,
//! and decisions with field errors from the engine's rules.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use countersign_server::hash_password;
use store::{ReviewStatus, User, UserRole};

use crate::reviews::waiting;
use crate::support::{Harness, Reply};

const PASSWORD: &str = "a long test password";

pub(crate) async fn add_user(h: &Harness, email: &str, role: UserRole, queues: &[&str]) {
    h.store
        .create_user(User {
            id: format!("u-{email}"),
            email: email.into(),
            role,
            queues: queues.iter().map(|q| q.to_string()).collect(),
            password_hash: hash_password(PASSWORD).unwrap(),
            created_at_ms: 1,
            disabled_at_ms: None,
        })
        .await
        .unwrap();
}

fn cookies_of(r: &Reply) -> Vec<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_value<'a>(set: &'a [String], name: &str) -> &'a str {
    set.iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {set:?}"))
}

pub(crate) fn form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "inbox.test")
        .header(header::ORIGIN, "http://inbox.test")
        .header(header::COOKIE, cookie)
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub(crate) fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A signed-in browser: its cookie header and CSRF token.
pub(crate) struct Browser {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

pub(crate) async fn sign_in(h: &Harness, email: &str) -> Browser {
    let page = h.send(get("/login", "")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let set = cookies_of(&page);
    let nonce = cookie_value(&set, "cs_login").to_string();
    let r = h
        .send(form(
            "/login",
            &format!("cs_login={nonce}"),
            &format!(
                "csrf={nonce}&next=%2Finbox&email={}&password={}",
                enc(email),
                enc(PASSWORD)
            ),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = cookies_of(&r);
    let session = set
        .iter()
        .find(|c| c.starts_with("cs_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
    let cookie = format!("cs_session={}", cookie_value(&set, "cs_session"));
    let inbox = h.send(get("/inbox", &cookie)).await;
    assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.text);
    let csrf = inbox
        .text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf field")
        .to_string();
    Browser { cookie, csrf }
}

#[tokio::test]
async fn sign_in_needs_the_password_and_the_form_token() {
    let h = Harness::new().await;
    add_user(&h, "ann@example.com", UserRole::Admin, &[]).await;
    let r = h.send(get("/inbox", "")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers.get(header::LOCATION).unwrap(),
        "/login?next=/inbox"
    );

    let page = h.send(get("/login", "")).await;
    let nonce = cookie_value(&cookies_of(&page), "cs_login").to_string();
    let attempt = |cookie: String, body: String| form("/login", &cookie, &body);
    let wrong = h
        .send(attempt(
            format!("cs_login={nonce}"),
            format!("csrf={nonce}&email=ann%40example.com&password=nope"),
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("Wrong email or password"));
    assert!(
        cookies_of(&wrong)
            .iter()
            .all(|c| !c.starts_with("cs_session="))
    );
    let unknown = h
        .send(attempt(
            format!("cs_login={nonce}"),
            format!("csrf={nonce}&email=bob%40example.com&password=x"),
        ))
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "same answer");
    let no_token = h
        .send(attempt(
            format!("cs_login={nonce}"),
            format!("email=ann%40example.com&password={}", enc(PASSWORD)),
        ))
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let mut cross = attempt(
        format!("cs_login={nonce}"),
        format!(
            "csrf={nonce}&email=ann%40example.com&password={}",
            enc(PASSWORD)
        ),
    );
    cross
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(h.send(cross).await.status, StatusCode::FORBIDDEN);

    // Five failures from one address lock the email out there for a while,
    // even with the right password; from another address Ann still signs in.
    let from = |ip: &str, mut req: Request<Body>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                ip.parse().unwrap(),
                40_000,
            )));
        req
    };
    for _ in 0..5 {
        h.send(from(
            "198.51.100.7",
            attempt(
                format!("cs_login={nonce}"),
                format!("csrf={nonce}&email=ann%40example.com&password=nope"),
            ),
        ))
        .await;
    }
    let right = || {
        attempt(
            format!("cs_login={nonce}"),
            format!(
                "csrf={nonce}&email=ann%40example.com&password={}",
                enc(PASSWORD)
            ),
        )
    };
    let locked = h.send(from("198.51.100.7", right())).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    let desk = h.send(from("192.0.2.10", right())).await;
    assert_eq!(desk.status, StatusCode::SEE_OTHER, "{}", desk.text);
}

#[tokio::test]
async fn cookies_are_secure_behind_https_and_logout_ends_the_session() {
    let h = Harness::new().await;
    add_user(&h, "ann@example.com", UserRole::Admin, &[]).await;
    let b = sign_in(&h, "ann@example.com").await;
    let mut req = get("/login", "");
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let r = h.send(req).await;
    assert!(cookies_of(&r).iter().all(|c| c.contains("; Secure")));

    let bad = h.send(form("/logout", &b.cookie, "csrf=forged")).await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.send(get("/inbox", &b.cookie)).await.status,
        StatusCode::OK
    );
    let out = h
        .send(form("/logout", &b.cookie, &format!("csrf={}", b.csrf)))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.send(get("/inbox", &b.cookie)).await.status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );
}

#[tokio::test]
async fn reviewers_see_and_decide_only_their_queues_also_through_the_api() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    add_user(&h, "sales@example.com", UserRole::Reviewer, &["sales"]).await;
    add_user(&h, "view@example.com", UserRole::Viewer, &[]).await;
    let (_, id) = waiting(&h).await;
    let sales = sign_in(&h, "sales@example.com").await;
    let inbox = h.send(get("/inbox", &sales.cookie)).await;
    assert!(!inbox.text.contains(&id), "{}", inbox.text);
    let page = h.send(get(&format!("/inbox/{id}"), &sales.cookie)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let post = h
        .send(form(
            &format!("/inbox/{id}/decision"),
            &sales.cookie,
            &format!("csrf={}&decision=approve", sales.csrf),
        ))
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    let api = h
        .send(get(&format!("/api/v1/reviews/{id}"), &sales.cookie))
        .await;
    api.assert_problem(StatusCode::FORBIDDEN, "forbidden-queue");
    let api_post = h
        .send(
            Request::post(format!("/api/v1/reviews/{id}/decision"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &sales.cookie)
                .body(Body::from(r#"{"decision":"approve"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(api_post.status, StatusCode::UNAUTHORIZED, "no CSRF header");

    let viewer = sign_in(&h, "view@example.com").await;
    let page = h.send(get(&format!("/inbox/{id}"), &viewer.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("deciding needs the reviewer role"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("/decision"), "no forms for a viewer");
    let post = h
        .send(form(
            &format!("/inbox/{id}/decision"),
            &viewer.cookie,
            &format!("csrf={}&decision=approve", viewer.csrf),
        ))
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);

    let ops = sign_in(&h, "ops@example.com").await;
    let page = h.send(get(&format!("/inbox/{id}"), &ops.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("name=\"f.summary\""), "{}", page.text);
    let api = h
        .send(get(&format!("/api/v1/reviews/{id}"), &ops.cookie))
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert_eq!(
        h.store.review(&id).await.unwrap().unwrap().status,
        ReviewStatus::Pending,
        "nothing was decided"
    );
    // With the session's CSRF token the API decides as the user.
    let api_post = h
        .send(
            Request::post(format!("/api/v1/reviews/{id}/decision"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &ops.cookie)
                .header("x-csrf-token", &ops.csrf)
                .body(Body::from(r#"{"decision":"approve"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(api_post.status, StatusCode::OK, "{}", api_post.text);
    assert_eq!(api_post.json["decided_by"], "user:ops@example.com");
}

#[tokio::test]
async fn decisions_check_csrf_and_show_field_errors() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let (run_id, id) = waiting(&h).await;
    let ops = sign_in(&h, "ops@example.com").await;
    let path = format!("/inbox/{id}/decision");

    let forged = h
        .send(form(
            &path,
            &ops.cookie,
            "csrf=forged&decision=reject&reason=x",
        ))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let mut cross = form(
        &path,
        &ops.cookie,
        &format!("csrf={}&decision=reject&reason=x", ops.csrf),
    );
    cross
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(h.send(cross).await.status, StatusCode::FORBIDDEN);

    // The summary's schema allows 40 characters: the engine's message comes back.
    let long = "x".repeat(41);
    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!(
                "csrf={}&decision=approve&f.summary={long}&f.priority=high",
                ops.csrf
            ),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("is longer than 40 characters"),
        "{}",
        r.text
    );
    assert!(r.text.contains(&long), "the edit is kept: {}", r.text);
    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=approve&f.priority=%3Cb%3Enever", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("choose one of the listed values"));
    assert!(!r.text.contains("<b>never"), "escaped");
    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=reject&reason=+", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("A rejection needs a reason"));
    assert_eq!(
        h.store.review(&id).await.unwrap().unwrap().status,
        ReviewStatus::Pending
    );

    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=reject&reason=Duplicate+request", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let review = h.store.review(&id).await.unwrap().unwrap();
    assert_eq!(review.status, ReviewStatus::Rejected);
    assert_eq!(review.decided_by.as_deref(), Some("user:ops@example.com"));
    assert_eq!(
        h.store.run(&run_id).await.unwrap().unwrap().status,
        store::RunStatus::Rejected
    );
    let page = h.send(get(&format!("/inbox/{id}"), &ops.cookie)).await;
    assert!(
        page.text.contains("Rejected by ops@example.com"),
        "{}",
        page.text
    );
    assert!(!page.text.contains(&path), "decided: no forms");
}

#[tokio::test]
async fn the_outbox_lists_recorded_effects_as_not_sent_escaped_for_signed_in_people() {
    let h = Harness::new().await;
    add_user(&h, "view@example.com", UserRole::Viewer, &[]).await;
    let mut run = store::suite::new_run("run-outbox-1", "triage", 1_000, None, None);
    run.events.push(store::NewEvent {
        kind: "outbox.recorded".into(),
        actor: "system".into(),
        data: serde_json::json!({
            "key": "run-outbox-1:reply", "step": "reply", "connector": "email",
            "action": "messages.send", "to": { "to": ["Zoë <zoe@example.org>"] },
            "payload": { "subject": "<script>alert(1)</script>", "body": "Hello Zoë" },
            "note": "OUTBOX — not sent",
        })
        .to_string(),
        at_ms: 2_000,
    });
    run.events.push(store::NewEvent {
        kind: "effect.suggested".into(),
        actor: "system".into(),
        data: r#"{"connector":"slack","suggestion":"only suggested"}"#.into(),
        at_ms: 2_001,
    });
    h.store.create_run(run).await.unwrap();

    // Signed out: to the sign-in page, nothing shown.
    let anon = h.send(get("/outbox", "")).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER, "{}", anon.text);
    assert!(!anon.text.contains("zoe@example.org"));

    let viewer = sign_in(&h, "view@example.com").await;
    let inbox = h.send(get("/inbox", &viewer.cookie)).await;
    assert!(inbox.text.contains("href=\"/outbox\""), "{}", inbox.text);
    let page = h.send(get("/outbox", &viewer.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        page.text.matches("class=\"outbox-entry\"").count(),
        1,
        "{}",
        page.text
    );
    for shown in [
        "not sent",
        "email",
        "messages.send",
        "Zoë &lt;zoe@example.org&gt;",
        "Hello Zoë",
        "href=\"/runs/run-outbox-1\"",
        "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;",
    ] {
        assert!(
            page.text.contains(shown),
            "missing {shown:?}: {}",
            page.text
        );
    }
    assert!(!page.text.contains("<script>alert(1)"), "{}", page.text);
    assert!(
        !page.text.contains("only suggested"),
        "other kinds are not listed"
    );

    // A reviewer holds some queues only: the outbox (every queue) is closed.
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let ops = sign_in(&h, "ops@example.com").await;
    let page = h.send(get("/outbox", &ops.cookie)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    assert!(!page.text.contains("zoe@example.org"));
    let inbox = h.send(get("/inbox", &ops.cookie)).await;
    assert!(!inbox.text.contains("href=\"/outbox\""), "{}", inbox.text);
}

/// Submits a `reviewed` run with `priority`; returns its review task id.
async fn task_with(h: &Harness, text: &str, priority: &str) -> String {
    let r = h
        .post(
            "/api/v1/workflows/reviewed/runs?wait=10",
            Some(&h.tokens.writer),
            &serde_json::json!({ "text": text, "priority": priority }).to_string(),
        )
        .await;
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    let run_id = r.json["run_id"].as_str().unwrap().to_string();
    let list = h
        .get("/api/v1/reviews?status=pending", Some(&h.tokens.reviewer))
        .await;
    list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["run_id"] == run_id.as_str())
        .and_then(|i| i["id"].as_str())
        .unwrap()
        .to_string()
}

fn location(r: &Reply) -> String {
    r.headers
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no Location: {} {}", r.status, r.text))
}

#[tokio::test]
async fn the_inbox_triages_and_a_decision_opens_the_next_task_without_javascript() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let medium = task_with(&h, "Question about exports", "medium").await;
    let urgent = task_with(&h, "Server room flooded", "urgent").await;
    let high = task_with(&h, "Invoice charged twice", "high").await;
    let ops = sign_in(&h, "ops@example.com").await;

    let inbox = h.send(get("/inbox", &ops.cookie)).await;
    let at = |id: &str| inbox.text.find(&format!("/inbox/{id}")).unwrap();
    assert!(
        at(&urgent) < at(&high) && at(&high) < at(&medium),
        "overdue, then priority: {}",
        inbox.text
    );
    assert!(inbox.text.contains("operations · 3"), "{}", inbox.text);
    let oldest = h.send(get("/inbox?sort=oldest", &ops.cookie)).await;
    let at = |id: &str| oldest.text.find(&format!("/inbox/{id}")).unwrap();
    assert!(at(&medium) < at(&urgent), "{}", oldest.text);

    // Approve the urgent one: the next in the reviewer's order opens.
    let r = h
        .send(form(
            &format!("/inbox/{urgent}/decision"),
            &ops.cookie,
            &format!(
                "csrf={}&decision=approve&f.summary=Server+room+flooded&f.priority=urgent",
                ops.csrf
            ),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = location(&r);
    assert!(
        to.starts_with(&format!("/inbox/{high}?done={urgent}")),
        "{to}"
    );
    let next = h.send(get(&to, &ops.cookie)).await;
    assert!(
        next.text.contains("Approved: Server room flooded"),
        "{}",
        next.text
    );
    assert!(next.text.contains("Invoice charged twice"), "{}", next.text);

    // The Decided view: who decided what, searchable.
    let decided = h.send(get("/inbox?view=decided", &ops.cookie)).await;
    assert_eq!(decided.status, StatusCode::OK);
    assert!(
        decided.text.contains(&format!("/inbox/{urgent}")),
        "{}",
        decided.text
    );
    assert!(decided.text.contains("ops@example.com"), "{}", decided.text);
    assert!(
        !decided.text.contains(&format!("/inbox/{high}")),
        "pending is not decided"
    );
    let none = h
        .send(get("/inbox?view=decided&q=nothing-like-this", &ops.cookie))
        .await;
    assert!(
        !none.text.contains(&format!("/inbox/{urgent}")),
        "{}",
        none.text
    );
    let found = h
        .send(get("/inbox?view=decided&q=flooded", &ops.cookie))
        .await;
    assert!(
        found.text.contains(&format!("/inbox/{urgent}")),
        "{}",
        found.text
    );

    // A filtered list is kept: the next task comes from the same filter.
    let r = h
        .send(form(
            &format!("/inbox/{high}/decision"),
            &ops.cookie,
            &format!("csrf={}&decision=approve&from=%3Fpriority%3Dhigh", ops.csrf),
        ))
        .await;
    let to = location(&r);
    assert!(
        to.starts_with(&format!("/inbox?priority=high&done={high}")),
        "no other high task: {to}"
    );
}

#[tokio::test]
async fn a_task_decided_elsewhere_is_not_decided_twice_and_says_so() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let id = task_with(&h, "Printer on fire", "high").await;
    let ops = sign_in(&h, "ops@example.com").await;
    // Decided through the API (as Slack or an email link would) first.
    let api = h
        .post(
            &format!("/api/v1/reviews/{id}/decision"),
            Some(&h.tokens.reviewer),
            r#"{"decision":"reject","reason":"duplicate"}"#,
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    let r = h
        .send(form(
            &format!("/inbox/{id}/decision"),
            &ops.cookie,
            &format!("csrf={}&decision=approve", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = location(&r);
    assert!(to.contains("already=1"), "{to}");
    let page = h.send(get(&to, &ops.cookie)).await;
    assert!(
        page.text.contains("was already rejected by"),
        "{}",
        page.text
    );
    let review = h.store.review(&id).await.unwrap().unwrap();
    assert_eq!(review.status, ReviewStatus::Rejected);
    assert_eq!(review.acts.len(), 1, "one decision: {:?}", review.acts);
}

#[tokio::test]
async fn a_hand_off_needs_a_reason_ends_the_run_handed_off_and_runs_nothing_after_the_review() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let id = task_with(&h, "We will see you in court", "high").await;
    let next = task_with(&h, "Question about exports", "medium").await;
    let ops = sign_in(&h, "ops@example.com").await;
    let page = h.send(get(&format!("/inbox/{id}"), &ops.cookie)).await;
    assert!(
        page.text.contains("name=\"decision\" value=\"hand_off\"")
            && page.text.contains("<kbd>h</kbd> hand off"),
        "{}",
        page.text
    );
    let path = format!("/inbox/{id}/decision");
    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=hand_off&handoff_reason=+", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text
            .contains("Say what the person taking over should know."),
        "{}",
        r.text
    );
    assert_eq!(
        h.store.review(&id).await.unwrap().unwrap().status,
        ReviewStatus::Pending
    );

    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!(
                "csrf={}&decision=hand_off&handoff_reason=Legal+threat%3A+our+counsel+calls+them",
                ops.csrf
            ),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert!(
        location(&r).starts_with(&format!("/inbox/{next}")),
        "{}",
        location(&r)
    );
    let review = h.store.review(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            review.status,
            review.reason.as_deref(),
            review.decided_by.as_deref()
        ),
        (
            ReviewStatus::HandedOff,
            Some("Legal threat: our counsel calls them"),
            Some("user:ops@example.com")
        )
    );
    let run = h
        .get(
            &format!("/api/v1/runs/{}", review.run_id),
            Some(&h.tokens.reader),
        )
        .await;
    assert_eq!(
        (run.json["status"].as_str(), run.json["outcome"].as_str()),
        (Some("handed_off"), Some("handed_off")),
        "{}",
        run.text
    );
    // The step after the review never ran.
    let events = h.store.events(&review.run_id, 0, 1000).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"run.handed_off"), "{kinds:?}");
    assert!(
        !events
            .iter()
            .any(|e| e.kind == "step.started" && e.data.contains("\"after\"")),
        "{kinds:?}"
    );
    let shown = h.send(get(&format!("/inbox/{}", id), &ops.cookie)).await;
    assert!(shown.text.contains("Handed off"), "{}", shown.text);

    // The API: `hand_off` with a reason; without one, 422 naming /reason.
    let api = h
        .post(
            &format!("/api/v1/reviews/{next}/decision"),
            Some(&h.tokens.reviewer),
            r#"{"decision":"hand_off"}"#,
        )
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", api.text);
    assert!(api.text.contains("/reason"), "{}", api.text);
    let api = h
        .post(
            &format!("/api/v1/reviews/{next}/decision"),
            Some(&h.tokens.reviewer),
            r#"{"decision":"hand_off","reason":"needs a phone call"}"#,
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert_eq!(api.json["status"], "handed_off", "{}", api.text);
}

#[tokio::test]
async fn reject_needs_a_reason_and_escalation_only_known_queues() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    add_user(&h, "boss@example.com", UserRole::Reviewer, &["managers"]).await;
    let id = task_with(&h, "Printer on fire", "high").await;
    let ops = sign_in(&h, "ops@example.com").await;
    let path = format!("/inbox/{id}/decision");

    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=reject&reason=+", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("A rejection needs a reason."), "{}", r.text);

    let page = h.send(get(&format!("/inbox/{id}"), &ops.cookie)).await;
    assert!(
        page.text.contains("<option value=\"managers\""),
        "{}",
        page.text
    );
    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=escalate&queue=finance-typo", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("There is no queue `finance-typo`"),
        "{}",
        r.text
    );
    assert_eq!(
        h.store.review(&id).await.unwrap().unwrap().queue,
        "operations"
    );

    let r = h
        .send(form(
            &path,
            &ops.cookie,
            &format!("csrf={}&decision=escalate&queue=managers", ops.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let review = h.store.review(&id).await.unwrap().unwrap();
    assert_eq!(review.queue, "managers");
    assert_eq!(review.status, ReviewStatus::Pending);
}

#[tokio::test]
async fn bulk_approval_confirms_first_and_skips_what_it_may_not_approve() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    add_user(&h, "view@example.com", UserRole::Viewer, &[]).await;
    let a = task_with(&h, "First request", "medium").await;
    let b = task_with(&h, "Second request", "high").await;
    let gone = task_with(&h, "Already handled", "high").await;
    let api = h
        .post(
            &format!("/api/v1/reviews/{gone}/decision"),
            Some(&h.tokens.reviewer),
            r#"{"decision":"reject","reason":"duplicate"}"#,
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    let ops = sign_in(&h, "ops@example.com").await;
    let inbox = h.send(get("/inbox", &ops.cookie)).await;
    assert!(
        inbox.text.contains("action=\"/inbox/bulk\""),
        "{}",
        inbox.text
    );

    let picked = format!("csrf={}&task={a}&task={b}&task={gone}", ops.csrf);
    let confirm = h.send(form("/inbox/bulk", &ops.cookie, &picked)).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(
        confirm.text.contains("Approve 2 tasks as drafted?"),
        "{}",
        confirm.text
    );
    assert!(
        confirm.text.contains("already rejected"),
        "{}",
        confirm.text
    );
    assert_eq!(
        h.store.review(&a).await.unwrap().unwrap().status,
        ReviewStatus::Pending,
        "nothing decided before the confirmation"
    );

    let done = h
        .send(form(
            "/inbox/bulk",
            &ops.cookie,
            &format!("{picked}&confirm=1"),
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let to = location(&done);
    assert!(to.contains("approved=2&skipped=1"), "{to}");
    for id in [&a, &b] {
        let r = h.store.review(id).await.unwrap().unwrap();
        assert_eq!(r.status, ReviewStatus::Approved, "{r:?}");
        assert_eq!(r.decided_by.as_deref(), Some("user:ops@example.com"));
        assert!(
            r.acts[0]
                .comment
                .as_deref()
                .is_some_and(|c| c.starts_with("Bulk approval")),
            "recorded as bulk: {:?}",
            r.acts
        );
    }
    let page = h.send(get(&to, &ops.cookie)).await;
    assert!(
        page.text
            .contains("Approved 2 tasks as drafted; 1 not approved"),
        "{}",
        page.text
    );

    // A viewer gets no bulk form, and a bulk POST decides nothing.
    let viewer = sign_in(&h, "view@example.com").await;
    let c = task_with(&h, "Third request", "medium").await;
    let inbox = h.send(get("/inbox", &viewer.cookie)).await;
    assert!(
        !inbox.text.contains("action=\"/inbox/bulk\""),
        "{}",
        inbox.text
    );
    let r = h
        .send(form(
            "/inbox/bulk",
            &viewer.cookie,
            &format!("csrf={}&task={c}&confirm=1", viewer.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        location(&r).contains("approved=0&skipped=1"),
        "{}",
        location(&r)
    );
    assert_eq!(
        h.store.review(&c).await.unwrap().unwrap().status,
        ReviewStatus::Pending
    );
}

#[tokio::test]
async fn bulk_rejection_clears_tasks_after_a_confirmation_and_runs_none_of_their_actions() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let a = task_with(&h, "Cheap watches, click here", "medium").await;
    let b = task_with(&h, "Casino winner", "medium").await;
    let ops = sign_in(&h, "ops@example.com").await;
    let inbox = h.send(get("/inbox", &ops.cookie)).await;
    assert!(
        inbox.text.contains("name=\"action\" value=\"reject\""),
        "{}",
        inbox.text
    );

    let picked = format!("csrf={}&action=reject&task={a}&task={b}", ops.csrf);
    let confirm = h.send(form("/inbox/bulk", &ops.cookie, &picked)).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(confirm.text.contains("Reject 2 tasks?"), "{}", confirm.text);
    assert!(
        confirm.text.contains("none of its actions run"),
        "{}",
        confirm.text
    );
    assert_eq!(
        h.store.review(&a).await.unwrap().unwrap().status,
        ReviewStatus::Pending,
        "nothing decided before the confirmation"
    );
    let done = h
        .send(form(
            "/inbox/bulk",
            &ops.cookie,
            &format!("{picked}&confirm=1"),
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let to = location(&done);
    assert!(to.contains("rejected=2&skipped=0"), "{to}");
    for id in [&a, &b] {
        let r = h.store.review(id).await.unwrap().unwrap();
        assert_eq!(r.status, ReviewStatus::Rejected, "{r:?}");
        assert_eq!(r.decided_by.as_deref(), Some("user:ops@example.com"));
        assert!(
            r.acts[0]
                .comment
                .as_deref()
                .is_some_and(|c| c.starts_with("Bulk rejection")),
            "recorded as bulk: {:?}",
            r.acts
        );
    }
    let page = h.send(get(&to, &ops.cookie)).await;
    assert!(page.text.contains("Rejected 2 tasks."), "{}", page.text);
}

#[tokio::test]
async fn a_soft_claim_names_the_holder_steers_the_next_task_and_can_be_taken_over() {
    let h = Harness::new().await;
    add_user(&h, "ann@example.com", UserRole::Reviewer, &["operations"]).await;
    add_user(&h, "bob@example.com", UserRole::Reviewer, &["operations"]).await;
    let first = task_with(&h, "Urgent one", "urgent").await;
    let second = task_with(&h, "High one", "high").await;
    let third = task_with(&h, "Medium one", "medium").await;
    let ann = sign_in(&h, "ann@example.com").await;
    let bob = sign_in(&h, "bob@example.com").await;

    // Ann opens the urgent task: she holds it, and it was shown to her.
    let page = h.send(get(&format!("/inbox/{first}"), &ann.cookie)).await;
    assert!(!page.text.contains("Claimed by"), "{}", page.text);
    // Bob sees her claim in the inbox and on the page.
    let inbox = h.send(get("/inbox", &bob.cookie)).await;
    assert!(
        inbox.text.contains("claimed by ann@example.com"),
        "{}",
        inbox.text
    );
    let page = h.send(get(&format!("/inbox/{first}"), &bob.cookie)).await;
    assert!(
        page.text
            .contains("Claimed by <strong>ann@example.com</strong>"),
        "{}",
        page.text
    );
    let views = h.store.review_views(&first).await.unwrap();
    assert_eq!(
        views.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
        ["u-ann@example.com", "u-bob@example.com"]
    );
    // Bob decides the high one: the next task skips Ann's claimed one.
    h.send(get(&format!("/inbox/{second}"), &bob.cookie)).await;
    let r = h
        .send(form(
            &format!("/inbox/{second}/decision"),
            &bob.cookie,
            &format!("csrf={}&decision=approve", bob.csrf),
        ))
        .await;
    assert!(
        location(&r).starts_with(&format!("/inbox/{third}?")),
        "{}",
        location(&r)
    );
    // Bob takes the urgent one over, with one confirmation.
    let r = h
        .send(form(
            &format!("/inbox/{first}/claim"),
            &bob.cookie,
            &format!("csrf={}", bob.csrf),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = h.send(get(&format!("/inbox/{first}"), &ann.cookie)).await;
    assert!(
        page.text
            .contains("Claimed by <strong>bob@example.com</strong>"),
        "{}",
        page.text
    );
    let claims = h
        .store
        .review_claims(std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(claims[0].user_id, "u-bob@example.com");
}
