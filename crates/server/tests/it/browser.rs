//! The review desk in a real browser: headless Chromium driven through
//! chromedriver (W3C WebDriver over HTTP) against a real server on
//! 127.0.0.1. A reviewer signs in, works through the inbox by keyboard:
//! the task page shows the decision and every draft field without
//! scrolling, one key approves and the next task opens, an edit and an
//! approval take three actions, and the run continues with the edit.
//!
//! Chromium and chromedriver come from Debian (`chromium`,
//! `chromium-driver`; `.ci/run` installs them). This test installs
//! nothing: without them it fails under `CI=true` and otherwise skips
//! with the reason printed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use countersign_server::{AppState, ServerConfig};
use engine::{Catalog, Engine, StepKinds};
use serde_json::{Value, json};
use store::{ReviewFilter, ReviewStatus, RunStatus, Store, User, UserRole};

/// Triage drafts five fields (a long reply among them), a review in
/// `operations`, then `record` echoes the approved values; `notify` is
/// listed under "after approval" but never runs (its condition is false).
const INBOX_FLOW: &str = r#"
name: inbox-flow
steps:
  - id: triage
    emit:
      output:
        summary: { type: string, maxLength: 600 }
        intent: { enum: [support_request, sales_lead, billing, complaint, other] }
        priority: { enum: [low, medium, high, urgent] }
        recommended_next_step: { type: string, maxLength: 300 }
        customer_reply_draft: { type: string, maxLength: 2000 }
      values:
        summary: "{{ input.text[:300] }}"
        intent: "{{ input.intent }}"
        priority: "{{ input.priority }}"
        recommended_next_step: "Call the customer back today and confirm the fix."
        customer_reply_draft: "{{ input.reply }}"
  - id: review
    review:
      fields: [summary, intent, priority, recommended_next_step, customer_reply_draft]
      queue: operations
  - id: record
    emit:
      values:
        summary: "{{ approved.summary }}"
        priority: "{{ approved.priority }}"
        intent: "{{ approved.intent }}"
  - id: notify
    when: approved.priority == "never"
    http:
      url: "http://127.0.0.1:9/crm/notes"
      body: { note: "{{ approved.summary }}" }
"#;

/// Every reviewed field's label and first line, and the Approve button,
/// inside the viewport: the names of those that are not.
const OUTSIDE_VIEWPORT: &str = "const h = window.innerHeight, w = window.innerWidth;     const out = [];     const inside = (e) => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.left >= 0 && r.right <= w && Math.min(r.bottom, r.top + 40) <= h; };     document.querySelectorAll('.field').forEach(f => {       const l = f.querySelector('label'), c = f.querySelector('input,textarea,select');       if (!l || !inside(l) || !c || !inside(c)) out.push(l ? l.textContent : f.outerHTML.slice(0, 80)); });     const b = document.getElementById('approve-button');     if (!b || !inside(b)) out.push('approve button');     return out;";

/// Elements reaching past the right edge of the viewport (none on a page
/// that fits the screen).
const OVERFLOWING: &str = "const w = document.documentElement.clientWidth; \
    return Array.from(document.querySelectorAll('body *')) \
      .filter(e => e.getBoundingClientRect().right > w + 1) \
      .slice(0, 8) \
      .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right) + '>' + w);";

const EMAIL: &str = "ann@example.com";
/// Every browser test's users sign in with this.
pub const PASSWORD: &str = "a long test password";

/// Adds a user who signs in with [`PASSWORD`].
pub async fn add_user(store: &Arc<dyn Store>, email: &str, role: UserRole, queues: &[&str]) {
    store
        .create_user(User {
            id: format!("u-{email}"),
            email: email.into(),
            role,
            queues: queues.iter().map(|q| q.to_string()).collect(),
            password_hash: countersign_server::hash_password(PASSWORD).expect("hash"),
            created_at_ms: 1,
            disabled_at_ms: None,
        })
        .await
        .expect("create user");
}

/// Signs `email` in through the login form; lands on the inbox.
pub async fn sign_in(d: &Driver, base: &str, email: &str) {
    d.goto(&format!("{base}/login")).await;
    d.type_into("#email", email).await;
    d.type_into("#password", PASSWORD).await;
    d.click("form[action='/login'] button[type=submit]").await;
    d.wait_path("/inbox").await;
}
const EDITED: &str = "Customer's printer is on fire; send a technician today";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `(chromium, chromedriver)`, or why they are not usable here.
pub fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| find_in_path(n))
        .ok_or("no `chromium` on PATH (apt-get install chromium chromium-driver)")?;
    let driver = find_in_path("chromedriver")
        .ok_or("no `chromedriver` on PATH (apt-get install chromium-driver)")?;
    Ok((chromium, driver))
}

/// Kills chromedriver (and so Chromium) when the test ends, however it ends.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    session: Option<String>,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Driver {
    pub async fn start(chromium: &Path, driver: &Path) -> Driver {
        // chromedriver wants a port number: take a free one from the OS.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!(
            "countersign-chromium-{}-{port}",
            std::process::id()
        ));
        let mut d = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            session: None,
            profile,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = d
                .http
                .get(format!("{}/status", d.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer /status"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", d.profile.display()),
                    "--window-size=1280,2200"
                ]
            }
        }}});
        let v = d.call(reqwest::Method::POST, "", caps).await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        d.session = Some(id);
        d.call(
            reqwest::Method::POST,
            "/timeouts",
            json!({ "implicit": 10_000, "pageLoad": 30_000 }),
        )
        .await;
        d
    }

    /// One WebDriver command on the session; returns `value`.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = match &self.session {
            Some(s) => format!("{}/session/{s}{path}", self.url),
            None => format!("{}/session{path}", self.url),
        };
        let mut rb = self.http.request(method.clone(), &url);
        if method == reqwest::Method::POST {
            rb = rb.json(&body);
        }
        let res = rb.send().await.expect("webdriver request");
        let status = res.status();
        let v: Value = res.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element matching `css` (waits up to the implicit timeout).
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Presses and releases each key in turn (W3C key actions).
    async fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({ "type": "keyDown", "value": k }));
            actions.push(json!({ "type": "keyUp", "value": k }));
        }
        self.call(
            reqwest::Method::POST,
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await;
    }

    /// Presses the keys together (a chord such as Ctrl+Enter).
    async fn chord(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({ "type": "keyDown", "value": k }));
        }
        for k in keys.iter().rev() {
            actions.push(json!({ "type": "keyUp", "value": k }));
        }
        self.call(
            reqwest::Method::POST,
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await;
    }

    /// Runs a script in the page and returns its result.
    pub async fn exec(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Makes the page's viewport exactly `width` × `height` CSS pixels
    /// (window sizes include the browser's own frame).
    pub async fn viewport(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500
            }}),
        )
        .await;
    }

    /// Runs axe-core (from npm, never committed) on the page and fails on
    /// any violation. `axe` is the library's source.
    pub async fn assert_accessible(&self, axe: &str, what: &str) {
        self.exec(axe).await;
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                json!({ "script": "const done = arguments[arguments.length - 1]; \
                    axe.run(document, { resultTypes: ['violations'] }) \
                      .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' @ ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')))) \
                      .catch(e => done(['axe failed: ' + e]));", "args": [] }),
            )
            .await;
        assert_eq!(v, json!([]), "accessibility violations on {what}");
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            json!({}),
        )
        .await;
    }

    /// Polls until the page's path is `path` (navigation after a submit).
    pub async fn wait_path(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.current_url().await;
            let p = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or("");
            if p.split('?').next() == Some(path) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still at {url}, expected {path}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the page source until it contains `needle`, for at most 20 s.
    /// Use it after a form posts back to the same path, where the URL
    /// alone cannot tell the old page from the new one.
    pub async fn wait_text(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.source().await;
            if page.contains(needle) {
                return page;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {needle:?}: {page}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// On a phone-sized window nothing reaches past the right edge (no
    /// sideways scrolling); the window is restored afterwards.
    pub async fn assert_fits_a_phone(&self, what: &str) {
        let size = |w: u32, h: u32| json!({ "width": w, "height": h });
        self.call(reqwest::Method::POST, "/window/rect", size(390, 844))
            .await;
        let wide = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                json!({ "script": OVERFLOWING, "args": [] }),
            )
            .await;
        assert_eq!(wide, json!([]), "{what} overflows a phone screen");
        self.call(reqwest::Method::POST, "/window/rect", size(1280, 2200))
            .await;
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("PNG")
    }

    pub async fn quit(&mut self) {
        if self.session.is_some() {
            self.call(reqwest::Method::DELETE, "", Value::Null).await;
            self.session = None;
        }
    }
}

async fn start_server() -> (String, Arc<dyn Store>, Engine) {
    let store: Arc<dyn Store> =
        Arc::new(store_sqlite::SqliteStore::open_memory().expect("open store"));
    let catalog = Arc::new(Catalog::new(
        {
            let mut kinds = StepKinds::builtin(reqwest::Client::new());
            kinds.register(Arc::new(crate::reviews::Emit));
            kinds
        },
        Arc::new(|_: &str| None),
        store.clone(),
    ));
    catalog
        .load_source(INBOX_FLOW, "inbox-flow.yaml")
        .await
        .unwrap_or_else(|e| panic!("inbox-flow.yaml: {e}"));
    let engine = Engine::start(store.clone(), catalog, engine::Config::default());
    let base = serve(engine.clone()).await;
    (base, store, engine)
}

async fn pending_review(store: &Arc<dyn Store>, run_id: &str) -> store::Review {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = store
            .list_reviews(&ReviewFilter {
                status: Some(ReviewStatus::Pending),
                limit: 50,
                ..ReviewFilter::default()
            })
            .await
            .expect("list reviews")
            .into_iter()
            .find(|r| r.run_id == run_id);
        if let Some(r) = found {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no review task for {run_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// axe-core's source: `COUNTERSIGN_AXE`, else where `.ci/run` installs it
/// (`target/axe`). Required under `CI=true`.
pub fn axe_source() -> Option<String> {
    let path = std::env::var_os("COUNTERSIGN_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/axe/node_modules/axe-core/axe.min.js")
        });
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true needs axe-core at {}: {e}", path.display())
        }
        Err(e) => {
            skipped(&format!(
                "the accessibility check (no axe-core at {}: {e})",
                path.display()
            ));
            None
        }
    }
}

#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn skipped(what: &str) {
    eprintln!("SKIPPED {what}");
}

/// Chromium and chromedriver for the browser test `test`; without them
/// the test fails under `CI=true`, else it is skipped, saying why.
pub fn browser_for(test: &str) -> Option<(PathBuf, PathBuf)> {
    match browser() {
        Ok(b) => Some(b),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true needs the browser test to run: {why}")
        }
        Err(why) => {
            skipped(&format!("{test}: {why}"));
            None
        }
    }
}

/// Serves the whole app for `engine` on a free loopback port; its base URL.
pub async fn serve(engine: Engine) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // The production accept loop, so pages are tested as they are served.
    let state = AppState::new(engine, ServerConfig::default());
    tokio::spawn(countersign_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    base
}

async fn wait_status(store: &Arc<dyn Store>, review_id: &str, status: ReviewStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = store.review(review_id).await.unwrap().unwrap();
        if r.status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "review {review_id} stayed {:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished(store: &Arc<dyn Store>, run_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = store.run(run_id).await.expect("run").expect("exists");
        if run.status.is_terminal() {
            assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run never ended: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let detail = store.run_detail(run_id).await.unwrap().unwrap();
    let record = detail
        .steps
        .iter()
        .rev()
        .find(|s| s.step_id == "record")
        .and_then(|s| s.output.clone())
        .expect("record ran");
    serde_json::from_str(&record).expect("JSON")
}

pub fn save(png: &[u8], name: &str) {
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join(name), png)
        .expect("save screenshot");
    if std::env::var("COUNTERSIGN_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(name);
        std::fs::write(&docs, png).expect("save screenshot in docs/");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_works_the_desk_by_keyboard_in_headless_chromium() {
    let Some((chromium, chromedriver)) =
        browser_for("a_reviewer_works_the_desk_by_keyboard_in_headless_chromium")
    else {
        return;
    };
    let (base, store, engine) = start_server().await;
    add_user(&store, EMAIL, UserRole::Reviewer, &["operations"]).await;
    let submit = |text: String, intent: &str, priority: &str, reply: String| {
        let engine = engine.clone();
        let input = json!({ "text": text, "intent": intent, "priority": priority, "reply": reply });
        async move {
            engine
                .submit("inbox-flow", input, None, "token:test")
                .await
                .expect("submit")
                .run_id
        }
    };
    // The viewport fixture: a 2,000-character message, a 1,200-character
    // reply draft and five fields; urgent, so it comes first.
    let long_text = format!(
        "Printer on fire <script>alert(1)</script>. {}",
        "The office printer overheated again and smoke came out of the tray. ".repeat(29)
    )
    .chars()
    .take(2000)
    .collect::<String>();
    let long_reply = "Dear customer, we are sorry to hear about the printer. "
        .repeat(22)
        .chars()
        .take(1200)
        .collect::<String>();
    let low = submit(
        "Please update our billing address.".into(),
        "billing",
        "low",
        "Done.".into(),
    )
    .await;
    let urgent = submit(long_text, "complaint", "urgent", long_reply).await;
    let medium = submit(
        "How do I export a report?".into(),
        "support_request",
        "medium",
        "Here is how.".into(),
    )
    .await;
    let r_low = pending_review(&store, &low).await;
    let r_urgent = pending_review(&store, &urgent).await;
    let r_medium = pending_review(&store, &medium).await;

    let mut driver = Driver::start(&chromium, &chromedriver).await;
    driver.goto(&format!("{base}/inbox")).await;
    driver.wait_path("/login").await;
    driver.type_into("#email", EMAIL).await;
    driver.type_into("#password", PASSWORD).await;
    driver
        .click("form[action='/login'] button[type=submit]")
        .await;
    driver.wait_path("/inbox").await;
    let inbox = driver.source().await;
    assert!(inbox.contains("Pending reviews"), "{inbox}");
    assert!(
        !inbox.contains("<script>alert(1)"),
        "untrusted text must be escaped: {inbox}"
    );
    // The reviewer's order: urgent, medium, low (not newest first).
    let at = |id: &str| inbox.find(&format!("/inbox/{id}")).unwrap_or(usize::MAX);
    assert!(
        at(&r_urgent.id) < at(&r_medium.id) && at(&r_medium.id) < at(&r_low.id),
        "inbox order: {inbox}"
    );
    driver.assert_fits_a_phone("the inbox").await;
    let axe = axe_source();
    if let Some(axe) = &axe {
        for (w, h) in [(1366, 768), (390, 844)] {
            driver.viewport(w, h).await;
            driver
                .assert_accessible(axe, &format!("the inbox at {w}x{h}"))
                .await;
        }
        driver.goto(&format!("{base}/inbox")).await;
    }

    // Keyboard only: j focuses the first task (our script), Enter opens it.
    driver.keys(&["j"]).await;
    let focused = driver
        .exec("return document.activeElement.getAttribute('href');")
        .await;
    assert_eq!(focused, json!(format!("/inbox/{}", r_urgent.id)));
    driver.keys(&["\u{E007}"]).await;
    driver.wait_path(&format!("/inbox/{}", r_urgent.id)).await;
    let page = driver.source().await;
    for expected in [
        "AI draft",
        "Why you are asked",
        "What happens after you approve",
        "Recommended next step",
        "Complaint",
        "History",
    ] {
        assert!(
            page.contains(expected),
            "task page lacks {expected:?}: {page}"
        );
    }

    // 1366×768: the decision and every draft field without scrolling.
    driver.viewport(1366, 768).await;
    assert_eq!(
        driver.exec(OUTSIDE_VIEWPORT).await,
        json!([]),
        "at 1366x768"
    );
    save(&driver.screenshot().await, "review-task.png");
    // A phone: the decision controls within reach (sticky at the bottom).
    driver.viewport(390, 844).await;
    let top = driver
        .exec("const r = document.querySelector('.decision').getBoundingClientRect(); return Math.round(r.top + window.scrollY);")
        .await;
    assert!(
        top.as_i64().is_some_and(|t| t <= 1688),
        "decision at {top} on a phone"
    );
    save(&driver.screenshot().await, "review-task-phone.png");
    driver.assert_fits_a_phone("the task page").await;
    if let Some(axe) = &axe {
        driver
            .assert_accessible(axe, "the task page at 390x844")
            .await;
    }
    driver.viewport(1366, 768).await;
    if let Some(axe) = &axe {
        driver
            .assert_accessible(axe, "the task page at 1366x768")
            .await;
    }

    // Keys typed inside a field decide nothing.
    let field = driver.find("[name='f.summary']").await;
    driver
        .call(
            reqwest::Method::POST,
            &format!("/element/{field}/value"),
            json!({ "text": "a" }),
        )
        .await;
    assert_eq!(
        store.review(&r_urgent.id).await.unwrap().unwrap().status,
        ReviewStatus::Pending,
        "typing `a` in a field approved the task"
    );
    // Edit one field and approve: three actions (focus and type, Ctrl+Enter).
    driver.type_into("[name='f.summary']", EDITED).await;
    driver.chord(&["\u{E009}", "\u{E007}"]).await;
    wait_status(&store, &r_urgent.id, ReviewStatus::Approved).await;
    // The next task in the reviewer's order opened, saying what was decided.
    driver.wait_path(&format!("/inbox/{}", r_medium.id)).await;
    let next = driver.wait_text("Approved").await;
    assert!(next.contains("How do I export a report?"), "{next}");

    // One keystroke approves an unchanged task and opens the next one.
    driver.keys(&["a"]).await;
    wait_status(&store, &r_medium.id, ReviewStatus::Approved).await;
    driver.wait_path(&format!("/inbox/{}", r_low.id)).await;
    driver.wait_text("Approved").await;
    save(&driver.screenshot().await, "review-next-task.png");

    // Hand off from the keyboard: `h`, the reason, Ctrl+Enter.
    driver.keys(&["h"]).await;
    driver
        .type_into("#handoff_reason", "Needs a phone call")
        .await;
    driver.chord(&["\u{E009}", "\u{E007}"]).await;
    wait_status(&store, &r_low.id, ReviewStatus::HandedOff).await;
    driver.goto(&format!("{base}/inbox")).await;
    save(&driver.screenshot().await, "inbox.png");
    driver.quit().await;

    // The runs continued with what the reviewer approved.
    let edited = finished(&store, &urgent).await;
    assert_eq!(edited["summary"], EDITED, "{edited}");
    assert_eq!(edited["priority"], "urgent", "{edited}");
    let decided = store.review(&r_urgent.id).await.unwrap().unwrap();
    assert_eq!(decided.decided_by.as_deref(), Some("user:ann@example.com"));
    let summary = decided
        .results
        .iter()
        .find(|f| f.field == "summary")
        .expect("summary result");
    assert!(summary.changed, "{summary:?}");
    let unchanged = finished(&store, &medium).await;
    assert_eq!(
        unchanged["summary"], "How do I export a report?",
        "{unchanged}"
    );
    let decided = store.review(&r_medium.id).await.unwrap().unwrap();
    assert!(decided.results.iter().all(|f| !f.changed), "{decided:?}");
    let handed = store.review(&r_low.id).await.unwrap().unwrap();
    assert_eq!(handed.reason.as_deref(), Some("Needs a phone call"));
    assert_eq!(
        store.run(&low).await.unwrap().unwrap().status,
        store::RunStatus::HandedOff
    );
}
