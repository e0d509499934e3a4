//! Who is calling: the output of the authenticate stage.

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The local user who started `toolgate stdio` (the OS account).
    LocalProcess,
    /// A loopback HTTP client without credentials, accepted as the local
    /// user while `auth.local_without_credentials` is on.
    Loopback,
    /// A toolgate API key (`toolgate keys create`).
    ApiKey,
    /// An OIDC access token from a configured issuer.
    AccessToken,
    /// Nothing: refused by the pipeline's authenticate stage.
    None,
}

/// The identity a call is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable identifier of the caller; never empty for an authenticated call.
    pub subject: String,
    /// A readable name (an API key's name, a user's display name).
    pub name: Option<String>,
    /// Groups the caller is in, for policies.
    pub groups: Vec<String>,
    pub credential: Credential,
}

impl Caller {
    /// The OS user running `toolgate stdio`.
    pub fn local_process() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "local".into());
        Self {
            subject: format!("local:{user}"),
            name: Some(user),
            groups: Vec::new(),
            credential: Credential::LocalProcess,
        }
    }

    /// A client on the loopback interface, without credentials.
    pub fn loopback() -> Self {
        Self {
            subject: "loopback".into(),
            name: None,
            groups: Vec::new(),
            credential: Credential::Loopback,
        }
    }

    /// No identity established: every call made with it is refused.
    pub fn nobody() -> Self {
        Self {
            subject: String::new(),
            name: None,
            groups: Vec::new(),
            credential: Credential::None,
        }
    }
}
