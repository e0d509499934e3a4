//! Azure OpenAI with Entra ID: toolgate signs in as its own app
//! registration (the client-credentials grant, `client_secret_post`,
//! scope `https://cognitiveservices.azure.com/.default` unless set) and
//! sends the app token as `Authorization: Bearer`. The token is kept
//! until a minute before it expires, then fetched again by the first call
//! that needs it while the others wait for that one fetch. The grant is the
//! `oauth2` crate's, over [`IdpHttp`] (no redirects, a timeout, bodies
//! capped), as for Microsoft Graph.

use std::time::{Duration, Instant};

use super::provider::Failure;
use crate::authenticate::idp_http::{GrantError, IdpHttp, client_credentials};
use crate::config::EntraCredentials;

/// Longest wait for the token endpoint.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Renewed this long before it expires.
const EARLY: Duration = Duration::from_secs(60);

/// The app token of one provider.
pub struct EntraToken {
    credentials: EntraCredentials,
    http: IdpHttp,
    /// The token and until when it is used.
    current: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl EntraToken {
    pub fn new(credentials: EntraCredentials, place: &str) -> Result<Self, String> {
        let http = IdpHttp::new(place, TIMEOUT, MAX_ANSWER_BYTES).map_err(|e| e.to_string())?;
        Ok(EntraToken {
            credentials,
            http,
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// A token good for a minute at least, fetched when the last is not.
    pub async fn bearer(&self) -> Result<String, Failure> {
        let mut current = self.current.lock().await;
        if let Some((token, until)) = &*current
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let credentials = &self.credentials;
        let url = &credentials.token_url;
        let (token, expires_in) = client_credentials(
            &self.http,
            url,
            &credentials.client_id,
            credentials.client_secret.expose(),
            &credentials.scope,
        )
        .await
        .map_err(|e| {
            let why = match e {
                GrantError::TokenUrl(e) => e.to_string(),
                GrantError::Token(why) => why,
            };
            Failure::Connect(format!(
                "cannot get an Entra ID token from {url} (entra of the provider): {why}"
            ))
        })?;
        // Trust a token at most a day, and a token without a lifetime five
        // minutes.
        let lifetime = expires_in
            .unwrap_or(Duration::from_secs(300))
            .min(Duration::from_secs(86_400));
        let until = Instant::now() + lifetime.saturating_sub(EARLY);
        *current = Some((token.clone(), until));
        Ok(token)
    }
}
