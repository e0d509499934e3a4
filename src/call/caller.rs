//! Who is calling: the output of the authenticate stage.

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The local user who started `toolgate stdio` (the OS account).
    LocalProcess,
    /// A loopback HTTP client without credentials, let in as the dev user
    /// by `serve --dev-insecure`.
    DevInsecure,
    /// A toolgate API key (`toolgate keys create`).
    ApiKey,
    /// An OIDC access token from a configured issuer.
    AccessToken,
    /// A browser session from an SSO sign-in (`/auth/login`).
    Session,
    /// Nothing: refused by the pipeline's authenticate stage.
    None,
}

/// The identity a call is made under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    /// Stable identifier of the caller; never empty for an authenticated call.
    pub subject: String,
    /// A readable name (an API key's name, a user's display name).
    pub name: Option<String>,
    /// Groups the caller is in, for policies.
    pub groups: Vec<String>,
    /// App roles granted to the caller (Entra `roles`).
    pub roles: Vec<String>,
    pub email: Option<String>,
    /// The directory tenant (Entra `tid`).
    pub tenant: Option<String>,
    /// Who vouched for the caller: the token's issuer.
    pub issuer: Option<String>,
    /// The OAuth client (agent) the token was issued to (`azp`,
    /// `client_id` or Entra's `appid`).
    pub client_id: Option<String>,
    /// Scopes the token grants.
    pub scopes: Vec<String>,
    pub credential: Credential,
    /// Where the request came from (set per request by the ingress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
}

impl Caller {
    /// `subject` proven by `credential`, nothing else known yet.
    pub fn new(subject: String, credential: Credential) -> Self {
        Self {
            subject,
            name: None,
            groups: Vec::new(),
            roles: Vec::new(),
            email: None,
            tenant: None,
            issuer: None,
            client_id: None,
            scopes: Vec::new(),
            credential,
            address: None,
        }
    }

    /// The OS user running `toolgate stdio`.
    pub fn local_process() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "local".into());
        Self {
            name: Some(user.clone()),
            ..Self::new(format!("local:{user}"), Credential::LocalProcess)
        }
    }

    /// A loopback client without credentials under `--dev-insecure`: the
    /// OS user running the gateway, in group `dev`.
    pub fn dev() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "local".into());
        Self {
            name: Some(user.clone()),
            groups: vec!["dev".into()],
            ..Self::new(format!("dev:{user}"), Credential::DevInsecure)
        }
    }

    /// No identity established: every call made with it is refused.
    pub fn nobody() -> Self {
        Self::new(String::new(), Credential::None)
    }
}
