//! SMTP (`SMTP_URL`) through lettre's pooled async transport.
//!
//! - `smtp://user:pass@host:587`: STARTTLS, required.
//! - `smtps://user:pass@host:465`: implicit TLS.
//! - `smtp://host:2525?tls=none`: plaintext, an explicit opt-in for local
//!   relays and tests; never the default.
//!
//! The sender is `?from=address`, or the user name when it is an address
//! (Gmail's SMTP with an app password). SMTP cannot be asked whether a
//! message went out, so this transport is at-least-once; every attempt
//! carries the same `Message-ID`.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{self, Error};

/// Parsed `SMTP_URL`. `Debug` leaves the password out.
#[derive(Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<String>,
    pub from: Mailbox,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://`: STARTTLS, refused if the server does not offer it.
    StartTls,
    /// `smtp://…?tls=none`: no encryption at all.
    None,
}

impl Settings {
    /// Parses `SMTP_URL`; errors name the variable and never quote the
    /// password.
    pub fn parse(u: &str) -> Result<Settings, String> {
        let bad = |why: &str| format!("SMTP_URL: {why}");
        let url = url::Url::parse(u).map_err(|e| bad(&format!("not a URL ({e})")))?;
        let (mut security, default_port) = match url.scheme() {
            "smtp" => (Security::StartTls, 587),
            "smtps" => (Security::Implicit, 465),
            _ => return Err(bad("must start with smtp:// or smtps://")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .to_string();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = Some(decode(url.username())).filter(|s| !s.is_empty());
        let password = url.password().map(|p| {
            // `+` is literal in the userinfo, unlike in a query.
            decode(&p.replace('+', "%2B"))
        });
        let mut from = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "tls" => match (&*v, security) {
                    ("none", Security::StartTls) => security = Security::None,
                    ("required", Security::StartTls) | ("implicit", Security::Implicit) => {}
                    _ => {
                        return Err(bad(&format!(
                            "tls={v} is not supported here (smtp:// takes tls=required or tls=none)"
                        )));
                    }
                },
                "from" => {
                    from = Some(
                        Mailbox::from_str(&v)
                            .map_err(|e| bad(&format!("from={v:?} is not an address: {e}")))?,
                    );
                }
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        let from = match from {
            Some(f) => f,
            None => user
                .as_deref()
                .and_then(|u| Mailbox::from_str(u).ok())
                .ok_or_else(|| {
                    bad("no sender: add ?from=address (or log in with a full email address)")
                })?,
        };
        if user.is_some() != password.is_some() {
            return Err(bad("give both a user name and a password, or neither"));
        }
        Ok(Settings {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            user,
            password,
            from,
        })
    }

    pub fn secrets(&self) -> Vec<String> {
        self.password.iter().cloned().collect()
    }
}

/// A pooled SMTP client, built once per step kind.
#[derive(Clone)]
pub struct Smtp {
    settings: Settings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    pub fn new(settings: Settings) -> Result<Smtp, String> {
        let builder = match settings.security {
            Security::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host),
            Security::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
            }
            Security::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &settings.host,
            )),
        }
        .map_err(|e| format!("SMTP_URL: {e}"))?;
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(Duration::from_secs(30)));
        if let (Some(u), Some(p)) = (&settings.user, &settings.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Smtp {
            transport: builder.build(),
            settings,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends `message` to every `To` and `Cc` recipient; answers the
    /// server's reply text.
    pub async fn send(&self, message: Message, timeout_ms: u64) -> Result<String, Error> {
        engine::trace::call(
            "smtp",
            "send",
            self.send_untraced(message, timeout_ms),
            error::outcome,
        )
        .await
    }

    async fn send_untraced(&self, message: Message, timeout_ms: u64) -> Result<String, Error> {
        let sent = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.transport.send(message),
        )
        .await
        .map_err(|_| Error::NoAnswer("SMTP: the server did not answer in time".into()))?;
        match sent {
            Ok(r) => Ok(r.message().collect::<Vec<_>>().join(" ")),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// 4xx and connection trouble are retried; 535 is a refused login; other
/// 5xx replies (a refused sender or recipient, a policy rejection) fail.
fn classify(e: &lettre::transport::smtp::Error) -> Error {
    let text = e.to_string();
    let code = e.status().map(|c| c.to_string());
    if code.as_deref() == Some("535") || code.as_deref() == Some("534") {
        return Error::Unauthorized {
            field: "SMTP_URL".into(),
            message: format!("SMTP: {text}"),
        };
    }
    if e.is_permanent() {
        return Error::permanent("email", format!("SMTP: {text}"));
    }
    if code.is_some() {
        Error::Transient(format!("SMTP: {text}"))
    } else {
        // No reply code: the connection broke, maybe after the message
        // was handed over.
        Error::NoAnswer(format!("SMTP: {text}"))
    }
}
