//! Who is calling: the output of the authenticate stage.

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The local user who started `toolgate stdio` (the OS account).
    LocalProcess,
    /// A loopback HTTP client while no identity provider or API key is
    /// configured: the gateway only listens on loopback in that case.
    Loopback,
}

/// The identity a call is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable identifier of the caller; never empty for an authenticated call.
    pub subject: String,
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
            credential: Credential::LocalProcess,
        }
    }

    /// A client on the loopback interface.
    pub fn loopback() -> Self {
        Self {
            subject: "loopback".into(),
            credential: Credential::Loopback,
        }
    }
}
