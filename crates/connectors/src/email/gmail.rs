//! The Gmail API (`GMAIL_*`): an OAuth2 refresh-token grant (the access
//! token cached until shortly before it expires), `messages.send`,
//! `drafts.create`, and the `rfc822msgid:` search reconciliation uses.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value as Json, json};
use tokio::sync::Mutex;

use crate::error::{self, Error};

pub const DEFAULT_API_URL: &str = "https://gmail.googleapis.com";
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// An access token is renewed this long before Google says it expires.
const EARLY_REFRESH: Duration = Duration::from_secs(60);

/// `GMAIL_API_URL` (the root `/gmail/v1/users/me/…` is appended to),
/// `GMAIL_TOKEN_URL`, the OAuth client and refresh token, and the sender.
#[derive(Clone)]
pub struct Settings {
    pub api_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub sender: String,
}

impl Settings {
    pub fn secrets(&self) -> Vec<String> {
        vec![self.client_secret.clone(), self.refresh_token.clone()]
    }
}

/// A Gmail client over the shared HTTP client; one per step kind, so the
/// access token is shared by every `email` step.
pub struct Gmail {
    client: reqwest::Client,
    settings: Settings,
    token: Mutex<Option<(String, Instant)>>,
}

impl Gmail {
    pub fn new(client: reqwest::Client, settings: Settings) -> Gmail {
        Gmail {
            client,
            settings,
            token: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The static secrets plus the current access token, for redaction.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = self.settings.secrets();
        if let Ok(t) = self.token.try_lock()
            && let Some((tok, _)) = &*t
        {
            s.push(tok.clone());
        }
        s
    }

    /// A valid access token, refreshed when missing or about to expire.
    async fn access_token(&self, timeout_ms: u64) -> Result<String, Error> {
        let mut cached = self.token.lock().await;
        if let Some((tok, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(tok.clone());
        }
        let (tok, until) = engine::trace::call(
            "gmail",
            "oauth2.token",
            self.refresh(timeout_ms),
            error::outcome,
        )
        .await?;
        *cached = Some((tok.clone(), until));
        Ok(tok)
    }

    /// Asks the token endpoint for a fresh access token and its expiry.
    async fn refresh(&self, timeout_ms: u64) -> Result<(String, Instant), Error> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("client_secret", &self.settings.client_secret)
            .append_pair("refresh_token", &self.settings.refresh_token)
            .finish();
        let resp = self
            .client
            .post(&self.settings.token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .timeout(Duration::from_millis(timeout_ms))
            .body(form)
            .send()
            .await
            .map_err(|e| error::transport(&e))?;
        let status = resp.status();
        let retry_after_ms = error::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| error::transport(&e))?;
        let body: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
        if status.is_success()
            && let Some(tok) = body["access_token"].as_str()
        {
            let secs = body["expires_in"].as_u64().unwrap_or(3600);
            let until = Instant::now() + Duration::from_secs(secs).saturating_sub(EARLY_REFRESH);
            return Ok((tok.to_string(), until));
        }
        let code = body["error"].as_str().unwrap_or_default();
        let detail = body["error_description"].as_str().unwrap_or_default();
        let message = self.redact(&format!(
            "the OAuth token endpoint answered {status}: {code} {detail}"
        ));
        Err(match (status.as_u16(), code) {
            (429, _) => Error::RateLimited {
                retry_after_ms,
                message,
            },
            (500..=599, _) => Error::Transient(message),
            (_, "invalid_grant") => Error::Unauthorized {
                field: "GMAIL_REFRESH_TOKEN".into(),
                message: format!(
                    "{message} (refresh tokens of apps in \"Testing\" status expire after 7 days)"
                ),
            },
            (_, "invalid_client" | "unauthorized_client") => Error::Unauthorized {
                field: "GMAIL_CLIENT_ID / GMAIL_CLIENT_SECRET".into(),
                message,
            },
            _ => Error::permanent("GMAIL_TOKEN_URL", message),
        })
    }

    fn redact(&self, text: &str) -> String {
        domain::workflow::redact(&self.secrets(), text)
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/gmail/v1/users/me/{rest}", self.settings.api_url)
    }

    /// One authorised call, traced as the `gmail` call `what` (a token
    /// refresh it needs is a span inside it); a 401 drops the cached token
    /// and tries once more with a fresh one (a 401 means the request was
    /// not performed).
    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Json>,
        timeout_ms: u64,
    ) -> Result<Json, Error> {
        engine::trace::call(
            "gmail",
            what,
            self.call_untraced(what, method, url, query, body, timeout_ms),
            error::outcome,
        )
        .await
    }

    async fn call_untraced(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Json>,
        timeout_ms: u64,
    ) -> Result<Json, Error> {
        let mut url = reqwest::Url::parse(url)
            .map_err(|e| Error::permanent("GMAIL_API_URL", e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        for attempt in 0..2 {
            let token = self.access_token(timeout_ms).await?;
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(&token)
                .timeout(Duration::from_millis(timeout_ms));
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| error::transport(&e))?;
            let status = resp.status();
            let retry_after_ms = error::retry_after(resp.headers());
            let bytes = resp.bytes().await.map_err(|e| error::transport(&e))?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|_| {
                    Error::Transient(format!(
                        "Gmail {what} answered {status} with a body that is not JSON"
                    ))
                });
            }
            if status.as_u16() == 401 && attempt == 0 {
                *self.token.lock().await = None;
                continue;
            }
            return Err(self.classify(what, status.as_u16(), retry_after_ms, &bytes));
        }
        unreachable!("the loop returns on its second pass")
    }

    fn classify(
        &self,
        what: &str,
        status: u16,
        retry_after_ms: Option<u64>,
        bytes: &[u8],
    ) -> Error {
        let body: Json = serde_json::from_slice(bytes).unwrap_or(Json::Null);
        let reason = body["error"]["errors"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let detail = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| error::snippet(bytes, 200));
        let message = self.redact(&format!(
            "Gmail {what} answered {status}{}: {detail}",
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        ));
        match (status, reason.as_str()) {
            (429, _)
            | (403, "dailyLimitExceeded" | "userRateLimitExceeded" | "rateLimitExceeded") => {
                Error::RateLimited {
                    retry_after_ms,
                    message,
                }
            }
            (500..=599, _) => Error::Transient(message),
            (401, _) => Error::Unauthorized {
                field: "GMAIL_REFRESH_TOKEN".into(),
                message,
            },
            (403, _) => Error::Unauthorized {
                field: "GMAIL_REFRESH_TOKEN (its scopes: send needs gmail.send, drafts need gmail.compose)".into(),
                message,
            },
            _ => Error::permanent("email", message),
        }
    }

    /// `messages.send` (or `drafts.create` when `draft`) of an RFC 822
    /// message; answers the Gmail message id (and the draft id).
    pub async fn send(&self, rfc822: &[u8], draft: bool, timeout_ms: u64) -> Result<Sent, Error> {
        let raw = base64::engine::general_purpose::URL_SAFE.encode(rfc822);
        if draft {
            let r = self
                .call(
                    "drafts.create",
                    reqwest::Method::POST,
                    &self.url("drafts"),
                    &[],
                    Some(&json!({ "message": { "raw": raw } })),
                    timeout_ms,
                )
                .await?;
            Ok(Sent {
                id: r["message"]["id"].as_str().unwrap_or_default().to_string(),
                thread_id: r["message"]["threadId"].as_str().map(str::to_string),
                draft_id: r["id"].as_str().map(str::to_string),
            })
        } else {
            let r = self
                .call(
                    "messages.send",
                    reqwest::Method::POST,
                    &self.url("messages/send"),
                    &[],
                    Some(&json!({ "raw": raw })),
                    timeout_ms,
                )
                .await?;
            Ok(Sent {
                id: r["id"].as_str().unwrap_or_default().to_string(),
                thread_id: r["threadId"].as_str().map(str::to_string),
                draft_id: None,
            })
        }
    }

    /// The message (or draft) whose `Message-ID` is `message_id`, if any.
    pub async fn find(
        &self,
        message_id: &str,
        draft: bool,
        timeout_ms: u64,
    ) -> Result<Option<Sent>, Error> {
        let q = format!("rfc822msgid:{message_id}");
        let params = [("q", q.as_str()), ("includeSpamTrash", "true")];
        if draft {
            let r = self
                .call(
                    "drafts.list",
                    reqwest::Method::GET,
                    &self.url("drafts"),
                    &params,
                    None,
                    timeout_ms,
                )
                .await?;
            Ok(r["drafts"]
                .as_array()
                .and_then(|d| d.first())
                .map(|d| Sent {
                    id: d["message"]["id"].as_str().unwrap_or_default().to_string(),
                    thread_id: d["message"]["threadId"].as_str().map(str::to_string),
                    draft_id: d["id"].as_str().map(str::to_string),
                }))
        } else {
            let r = self
                .call(
                    "messages.list",
                    reqwest::Method::GET,
                    &self.url("messages"),
                    &params,
                    None,
                    timeout_ms,
                )
                .await?;
            Ok(r["messages"]
                .as_array()
                .and_then(|m| m.first())
                .map(|m| Sent {
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                    thread_id: m["threadId"].as_str().map(str::to_string),
                    draft_id: None,
                }))
        }
    }
}

/// What Gmail answered for a sent message or a created draft.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub thread_id: Option<String>,
    pub draft_id: Option<String>,
}
