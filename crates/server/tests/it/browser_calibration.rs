//! The calibration page in headless Chromium (see `browser.rs` for the
//! driver) over the store suite's fixture of reviewed runs: an admin sees
//! one table per step with the agreement, its interval and weekly bars,
//! the fields people change most and the latest edits; a reviewer sees
//! their queues' reviews only; the page passes axe-core, fits a phone and
//! is screenshot at 1366x768 and 390x844 (`target/tmp/calibration-*.png`).

use std::sync::Arc;

use engine::{Catalog, Engine, StepKinds};
use serde_json::json;
use store::{Store, UserRole};

use crate::browser::{Driver, add_user, axe_source, browser_for, save, serve, sign_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calibration_page_in_headless_chromium() {
    let Some((chromium, chromedriver)) = browser_for("the_calibration_page_in_headless_chromium")
    else {
        return;
    };
    let store: Arc<dyn Store> =
        Arc::new(store_sqlite::SqliteStore::open_memory().expect("open store"));
    store::suite::seed_calibration(&store).await;
    let none = |_: &str| None::<String>;
    let catalog = Arc::new(Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        Arc::new(none),
        store.clone(),
    ));
    let engine = Engine::start(store.clone(), catalog, engine::Config::default());
    let base = serve(engine).await;
    add_user(&store, "ann@example.com", UserRole::Admin, &[]).await;
    add_user(&store, "rita@example.com", UserRole::Reviewer, &["finance"]).await;
    let axe = axe_source();
    let mut d = Driver::start(&chromium, &chromedriver).await;
    sign_in(&d, &base, "ann@example.com").await;
    d.goto(&format!("{base}/calibration?workflow=intake")).await;
    d.wait_text("Fields people change most").await;
    let text = d
        .exec("return document.querySelector('main').innerText;")
        .await;
    let text = text.as_str().unwrap_or_default();
    for want in [
        "7 reviews counted",
        "not counted: 1 decided by a deadline, 1 decided in bulk",
        "intake · version 1",
        "33.3%",
        "2 of 6",
        "9.7%–70.0%",
        "Wants money back → Wants their money back",
        "Refund asked →",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    // Two weeks of bars per field of version 1, one for version 2.
    let bars = d
        .exec("return Array.from(document.querySelectorAll('section.cal-step')).map(s => s.querySelectorAll('svg.weeks rect.bar').length);")
        .await;
    assert_eq!(bars, json!([4, 2]));
    let nav = d
        .exec("return document.querySelector('nav a[aria-current=page]').textContent;")
        .await;
    assert_eq!(nav, json!("Calibration"));
    d.assert_fits_a_phone("the calibration page").await;
    for (w, h) in [(1366, 768), (390, 844)] {
        d.viewport(w, h).await;
        if let Some(axe) = axe.as_deref() {
            d.assert_accessible(axe, &format!("the calibration page at {w}x{h}"))
                .await;
        }
        save(&d.screenshot().await, &format!("calibration-{w}x{h}.png"));
        d.exec("window.scrollTo(0, document.body.scrollHeight);")
            .await;
        save(
            &d.screenshot().await,
            &format!("calibration-{w}x{h}-end.png"),
        );
        d.exec("window.scrollTo(0, 0);").await;
    }

    // A reviewer of `finance` measures that queue's review only.
    d.quit().await;
    let mut d = Driver::start(&chromium, &chromedriver).await;
    sign_in(&d, &base, "rita@example.com").await;
    d.goto(&format!("{base}/calibration")).await;
    let page = d.wait_text("Only the reviews of your queues").await;
    let text = d
        .exec("return document.querySelector('main').innerText;")
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("1 review counted"), "{text}");
    assert!(text.contains("refunds · version 1"), "{text}");
    assert!(!text.contains("intake"), "{page}");
    d.quit().await;
}
