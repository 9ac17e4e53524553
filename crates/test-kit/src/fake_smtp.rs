//! An in-process SMTP server (RFC 5321, plaintext only) for the `email`
//! step's tests: EHLO/HELO, AUTH PLAIN and LOGIN, MAIL FROM, RCPT TO, DATA
//! (dot-unstuffed), RSET, NOOP, QUIT. It records every accepted message
//! with its envelope and keeps protocol problems for the test.
//!
//! Fault modes: `fail_next_data` (answer the next DATA with a 4xx/5xx
//! reply) and `delay` (the message is stored *before* the delay, like a
//! server that accepted it but is slow to say so).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const USER: &str = "ops@example.com";
pub const PASSWORD: &str = "fake-app-password-abcd";

/// A message as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message, dot-unstuffed, with CRLF line ends.
    pub data: String,
    pub authenticated: Option<String>,
}

impl Received {
    /// The first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(f) = &mut found {
                    f.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                found = Some(v.trim().to_string());
            }
        }
        found
    }
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Mutex<Book>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Book {
    received: Vec<Received>,
    problems: Vec<String>,
    fail_next_data: Option<(u32, String)>,
    delay_ms: u64,
    require_auth: bool,
}

impl FakeSmtp {
    /// A server that requires AUTH with [`USER`] and [`PASSWORD`].
    pub async fn start() -> FakeSmtp {
        FakeSmtp::start_with(true).await
    }

    /// A server that accepts mail without AUTH.
    pub async fn start_open() -> FakeSmtp {
        FakeSmtp::start_with(false).await
    }

    async fn start_with(require_auth: bool) -> FakeSmtp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake SMTP server");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Mutex::new(Book {
            require_auth,
            ..Book::default()
        }));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    // A client that hangs up mid-session is not a problem.
                    let _ = session(sock, &state).await;
                });
            }
        });
        FakeSmtp { addr, shared, task }
    }

    /// `SMTP_URL` with the fake's credentials, plaintext.
    pub fn url(&self) -> String {
        format!(
            "smtp://{}:{}@{}?tls=none",
            USER.replace('@', "%40"),
            PASSWORD,
            self.addr
        )
    }

    /// `SMTP_URL` with other credentials.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!(
            "smtp://{}:{}@{}?tls=none",
            user.replace('@', "%40"),
            password,
            self.addr
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.book().received.clone()
    }

    /// Messages whose `Message-ID` header is `id`.
    pub fn count_message_id(&self, id: &str) -> usize {
        self.book()
            .received
            .iter()
            .filter(|r| r.header("message-id").as_deref() == Some(id))
            .count()
    }

    /// Why sessions were not valid SMTP; empty when all were.
    pub fn problems(&self) -> Vec<String> {
        self.book().problems.clone()
    }

    /// Answers the next `n` DATA commands with `reply` (e.g. `451 4.3.0
    /// try later` or `550 5.1.1 no such user`) instead of accepting them.
    pub fn fail_next_data(&self, n: u32, reply: &str) {
        self.book().fail_next_data = (n > 0).then(|| (n, reply.to_string()));
    }

    /// Holds the reply to DATA back by `ms`, after storing the message.
    pub fn delay(&self, ms: u64) {
        self.book().delay_ms = ms;
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.lock().expect("fake state")
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Session {
    greeted: bool,
    user: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

async fn session(sock: TcpStream, shared: &Mutex<Book>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 fake.smtp.test ESMTP ready\r\n").await?;
    let mut s = Session::default();
    let mut line = String::new();
    let problem = |p: String| shared.lock().expect("fake state").problems.push(p);
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if !line.ends_with("\r\n") {
            problem(format!("command {line:?} does not end in CRLF"));
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or_default().to_string();
        let require_auth = shared.lock().expect("fake state").require_auth;
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                s = Session {
                    greeted: true,
                    user: s.user.take(),
                    ..Session::default()
                };
                if verb == "EHLO" {
                    "250-fake.smtp.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 36700160".into()
                } else {
                    "250 fake.smtp.test".into()
                }
            }
            "AUTH" => {
                let parts: Vec<&str> = cmd.split(' ').collect();
                let creds = match parts.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
                    Some("PLAIN") => {
                        let b64 = match parts.get(2) {
                            Some(b) => b.to_string(),
                            None => {
                                w.write_all(b"334 \r\n").await?;
                                let mut l = String::new();
                                r.read_line(&mut l).await?;
                                l.trim_end().to_string()
                            }
                        };
                        decode(&b64).and_then(|d| {
                            let mut p = d.split('\0');
                            let _authz = p.next()?;
                            Some((p.next()?.to_string(), p.next()?.to_string()))
                        })
                    }
                    Some("LOGIN") => {
                        let user = match parts.get(2) {
                            Some(b) => decode(b),
                            None => {
                                w.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                                let mut l = String::new();
                                r.read_line(&mut l).await?;
                                decode(l.trim_end())
                            }
                        };
                        w.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let mut l = String::new();
                        r.read_line(&mut l).await?;
                        user.zip(decode(l.trim_end()))
                    }
                    _ => None,
                };
                match creds {
                    Some((u, p)) if u == USER && p == PASSWORD => {
                        s.user = Some(u);
                        "235 2.7.0 Authentication successful".into()
                    }
                    Some(_) => "535 5.7.8 Username and Password not accepted".into(),
                    None => "501 5.5.2 Cannot decode the AUTH response".into(),
                }
            }
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                if !s.greeted {
                    problem("MAIL before EHLO".into());
                    "503 5.5.1 EHLO first".into()
                } else if require_auth && s.user.is_none() {
                    "530 5.7.0 Authentication required".into()
                } else {
                    s.mail_from = Some(path(&cmd["MAIL FROM:".len()..]));
                    s.rcpt_to.clear();
                    "250 2.1.0 OK".into()
                }
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if s.mail_from.is_none() {
                    problem("RCPT before MAIL".into());
                    "503 5.5.1 MAIL first".into()
                } else {
                    s.rcpt_to.push(path(&cmd["RCPT TO:".len()..]));
                    "250 2.1.5 OK".into()
                }
            }
            "DATA" => {
                if s.mail_from.is_none() || s.rcpt_to.is_empty() {
                    problem("DATA without MAIL and RCPT".into());
                    "503 5.5.1 need MAIL and RCPT first".into()
                } else {
                    w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).await? == 0 {
                            return Ok(());
                        }
                        if l == ".\r\n" {
                            break;
                        }
                        if !l.ends_with("\r\n") {
                            problem(format!("DATA line {l:?} does not end in CRLF"));
                        }
                        data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    }
                    let (failure, delay) = {
                        let mut b = shared.lock().expect("fake state");
                        let failure = b.fail_next_data.take().map(|(n, reply)| {
                            if n > 1 {
                                b.fail_next_data = Some((n - 1, reply.clone()));
                            }
                            reply
                        });
                        if failure.is_none() {
                            b.received.push(Received {
                                mail_from: s.mail_from.clone().unwrap_or_default(),
                                rcpt_to: s.rcpt_to.clone(),
                                data,
                                authenticated: s.user.clone(),
                            });
                        }
                        (failure, b.delay_ms)
                    };
                    s.mail_from = None;
                    s.rcpt_to.clear();
                    if delay > 0 && failure.is_none() {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    failure.unwrap_or_else(|| "250 2.0.0 OK queued".into())
                }
            }
            "RSET" => {
                s.mail_from = None;
                s.rcpt_to.clear();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => {
                problem(format!("unknown command {cmd:?}"));
                "502 5.5.2 Command not recognized".into()
            }
        };
        w.write_all(reply.as_bytes()).await?;
        w.write_all(b"\r\n").await?;
    }
}

fn decode(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `<a@b> SIZE=…` → `a@b`.
fn path(s: &str) -> String {
    let s = s.trim();
    let s = s.split(' ').next().unwrap_or_default();
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}
