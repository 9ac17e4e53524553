//! `email`: NOT BUILT YET. The configuration is read (Gmail API, SMTP or
//! outbox, DESIGN §5) so start-up validates it, but the step kind refuses
//! every workflow that uses it, at load time, with a clear message —
//! never silently.

pub mod gmail {
    //! Gmail API settings (`GMAIL_*`).
    pub const DEFAULT_API_URL: &str = "https://gmail.googleapis.com";
    pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

    #[derive(Clone)]
    pub struct Settings {
        pub api_url: String,
        pub token_url: String,
        pub client_id: String,
        pub client_secret: String,
        pub refresh_token: String,
        pub sender: String,
    }
}

pub mod smtp {
    //! SMTP settings (`SMTP_URL`).
    #[derive(Clone)]
    pub struct Settings {
        pub url: String,
    }

    impl Settings {
        pub fn parse(u: &str) -> Result<Settings, String> {
            if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
                return Err("SMTP_URL must start with smtp:// or smtps://".into());
            }
            Ok(Settings { url: u.into() })
        }
    }
}

/// Where email effects go.
#[derive(Clone, Default)]
pub enum Transport {
    Gmail(gmail::Settings),
    Smtp(smtp::Settings),
    #[default]
    Outbox,
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Gmail(_) => "gmail",
            Transport::Smtp(_) => "smtp",
            Transport::Outbox => "outbox",
        }
    }
}

pub struct Kind {
    _transport: Transport,
}

impl Kind {
    pub fn new(_client: reqwest::Client, transport: Transport) -> Kind {
        Kind {
            _transport: transport,
        }
    }
}

impl engine::StepKind for Kind {
    fn name(&self) -> &'static str {
        "email"
    }

    fn compile(
        &self,
        def: &domain::workflow::StepDef,
        _scope: &domain::expr::Scope,
        cx: &mut domain::workflow::Cx,
    ) -> Option<std::sync::Arc<dyn engine::Step>> {
        cx.errors.push(def.body.error(
            "the `email` step is not available in this version yet (issue 6 is in progress); use an `http` step to a mail service meanwhile",
        ));
        None
    }
}
