//! `countersign bench --desk N`: the review desk under a full queue. N
//! runs of the reference workflow (offline heuristic) wait for review on a
//! fresh SQLite database; then, over HTTP on loopback as a signed-in
//! admin, the inbox page, task pages, and decide-then-open-the-next-task.
//! Printed as a Markdown table for BENCHMARKS.md. A benchmark, not a test.

use std::time::{Duration, Instant};

use store::{ReviewFilter, ReviewStatus};

use crate::{DbArgs, Failure};

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

const TEXTS: [&str; 4] = [
    "Our invoice is wrong and we were charged twice, please call me urgently",
    "We would like a quote for 40 seats and a demo next week",
    "The export button is broken since yesterday, error 500",
    "Can you tell me your opening hours?",
];

fn percentile(mut ms: Vec<f64>, p: f64) -> f64 {
    ms.sort_by(f64::total_cmp);
    let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
    ms.get(i).copied().unwrap_or(f64::NAN)
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// `serve` on a loopback port for `engine`, and a signed-in admin.
pub(crate) struct Signed {
    pub base: String,
    pub http: reqwest::Client,
    /// The session cookie, as a `Cookie` header value.
    pub jar: String,
    pub host: String,
}

pub(crate) async fn serve_signed_in(engine: &engine::Engine) -> Result<Signed, Failure> {
    let store = engine.store().clone();
    let email = "bench@countersign.local";
    let password = server::new_password();
    store
        .create_user(store::User {
            id: "bench-admin".into(),
            email: email.into(),
            role: store::UserRole::Admin,
            queues: Vec::new(),
            password_hash: server::hash_password(&password).map_err(fail)?,
            created_at_ms: engine::now_ms(),
            disabled_at_ms: None,
        })
        .await
        .map_err(fail)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail)?;
    let base = format!("http://{}", listener.local_addr().map_err(fail)?);
    let state = server::AppState::new(engine.clone(), server::ServerConfig::default());
    tokio::spawn(server::serve(listener, state, std::future::pending()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(fail)?;
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .map_err(fail)?;
    let nonce = cookie(&login, "cs_login").ok_or_else(|| fail("no sign-in cookie"))?;
    let host = base.trim_start_matches("http://").to_string();
    let signed = http
        .post(format!("{base}/login"))
        .header("cookie", format!("cs_login={nonce}"))
        .header("origin", &base)
        .header("host", &host)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", nonce.as_str()),
            ("next", "/inbox"),
            ("email", email),
            ("password", password.as_str()),
        ]))
        .send()
        .await
        .map_err(fail)?;
    let session = cookie(&signed, "cs_session").ok_or_else(|| fail("sign-in failed"))?;
    Ok(Signed {
        base,
        http,
        jar: format!("cs_session={session}"),
        host,
    })
}

/// `GET path` as the signed-in admin: milliseconds and the page.
pub(crate) async fn get_page(
    http: &reqwest::Client,
    base: &str,
    jar: &str,
    path: String,
) -> Result<(f64, String), Failure> {
    let t = Instant::now();
    let res = http
        .get(format!("{base}{path}"))
        .header("cookie", jar)
        .send()
        .await
        .map_err(fail)?;
    let status = res.status();
    let text = res.text().await.map_err(fail)?;
    if !status.is_success() {
        return Err(fail(format!("GET {path}: {status}")));
    }
    Ok((t.elapsed().as_secs_f64() * 1000.0, text))
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
pub async fn run(tasks: usize, samples: usize, postgres: Option<&str>) -> Result<(), Failure> {
    let (db, place) = Place::new("desk", postgres).await?;
    let engine = crate::commands::reference_node(&db).await?;
    let store = engine.store().clone();

    // Fill the queue.
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..tasks {
        let input = serde_json::json!({
            "name": format!("Customer {i}"),
            "email": format!("c{i}@example.com"),
            "company": format!("Company {}", i % 97),
            "message": TEXTS[i % TEXTS.len()],
        });
        let e = engine.clone();
        pending.push(tokio::spawn(async move {
            e.submit("inbound-request", input, None, "bench").await
        }));
        if pending.len() >= 256 {
            for p in pending.drain(..) {
                p.await.map_err(fail)?.map_err(fail)?;
            }
        }
    }
    for p in pending.drain(..) {
        p.await.map_err(fail)?.map_err(fail)?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let waiting = loop {
        // Counted per queue (a listing is capped in the store).
        let n = store
            .pending_by_queue()
            .await
            .map_err(fail)?
            .iter()
            .map(|q| q.pending as usize)
            .sum::<usize>();
        if n >= tasks || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fill_s = started.elapsed().as_secs_f64();

    let Signed {
        base,
        http,
        jar,
        host,
    } = serve_signed_in(&engine).await?;
    let get = |path: String| get_page(&http, &base, &jar, path);
    let (_, inbox) = get("/inbox".into()).await?;
    let csrf = inbox
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| fail("no CSRF token on the inbox"))?
        .to_string();

    let mut inbox_ms = Vec::new();
    for _ in 0..samples {
        inbox_ms.push(get("/inbox".into()).await?.0);
    }
    let ids: Vec<String> = store
        .list_reviews(&ReviewFilter {
            status: Some(ReviewStatus::Pending),
            limit: samples,
            ..ReviewFilter::default()
        })
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut task_ms = Vec::new();
    for id in &ids {
        task_ms.push(get(format!("/inbox/{id}")).await?.0);
    }
    // Decide and open the next task, as the page does after `a`.
    let mut next = ids.first().cloned();
    let mut decide_ms = Vec::new();
    for _ in 0..samples {
        let Some(id) = next.take() else { break };
        let t = Instant::now();
        let res = http
            .post(format!("{base}/inbox/{id}/decision"))
            .header("cookie", &jar)
            .header("origin", &base)
            .header("host", &host)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("csrf", csrf.as_str()), ("decision", "approve")]))
            .send()
            .await
            .map_err(fail)?;
        let to = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| fail(format!("decision on {id}: {}", res.status())))?;
        get(to.clone()).await?;
        decide_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        next = to
            .strip_prefix("/inbox/")
            .and_then(|rest| rest.split('?').next())
            .map(str::to_string);
    }
    print_table(
        &format!(
            "{waiting} pending tasks, {}, filled in {fill_s:.0} s",
            place.backend()
        ),
        vec![
            ("inbox page (`GET /inbox`)", inbox_ms),
            ("task page (`GET /inbox/{id}`)", task_ms),
            ("approve + next task page", decide_ms),
        ],
    );
    engine.shutdown(Duration::from_secs(5)).await;
    place.remove().await;
    Ok(())
}

/// The Markdown table both page benchmarks print: p50, p95 and the number
/// of samples of each row's milliseconds.
#[allow(clippy::print_stdout, reason = "the benchmark's report")]
pub(crate) fn print_table(what: &str, rows: Vec<(&str, Vec<f64>)>) {
    println!("| what ({what}) | p50 ms | p95 ms | samples |");
    println!("|---|---|---|---|");
    for (row, ms) in rows {
        let n = ms.len();
        println!(
            "| {row} | {:.1} | {:.1} | {n} |",
            percentile(ms.clone(), 0.5),
            percentile(ms, 0.95)
        );
    }
}

/// Where a benchmark's database lives: a fresh SQLite file, or a scratch
/// PostgreSQL database (dropped after) on the server `postgres` names.
pub(crate) enum Place {
    Sqlite(std::path::PathBuf),
    Postgres(store_postgres::scratch::ScratchDb),
}

impl Place {
    pub(crate) async fn new(
        label: &str,
        postgres: Option<&str>,
    ) -> Result<(DbArgs, Place), Failure> {
        match postgres {
            Some(url) => {
                let db = store_postgres::scratch::ScratchDb::create(url, label)
                    .await
                    .map_err(fail)?;
                Ok((
                    DbArgs {
                        database: db.url().to_string(),
                        power_loss_safe: false,
                    },
                    Place::Postgres(db),
                ))
            }
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("countersign-bench-{label}-{}", std::process::id()));
                std::fs::create_dir_all(&dir).map_err(fail)?;
                Ok((
                    DbArgs {
                        database: format!("sqlite://{}", dir.join("cs.db").display()),
                        power_loss_safe: false,
                    },
                    Place::Sqlite(dir),
                ))
            }
        }
    }

    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Place::Sqlite(_) => "SQLite",
            Place::Postgres(_) => "PostgreSQL",
        }
    }

    pub(crate) async fn remove(self) {
        match self {
            Place::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::Postgres(db) => {
                let _ = db.drop_now().await;
            }
        }
    }
}
