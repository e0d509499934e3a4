//! Azure OpenAI with Entra ID: toolgate signs in as its own app
//! registration (the client-credentials grant, `client_secret_post`,
//! scope `https://cognitiveservices.azure.com/.default` unless set) and
//! sends the app token as `Authorization: Bearer`. The token is kept
//! until a minute before it expires, then fetched again by the first call
//! that needs it while the others wait for that one fetch. The grant is the
//! `oauth2` crate's, over [`IdpHttp`] (no redirects, a timeout, bodies
//! capped), as for Microsoft Graph.

use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse as _, TokenUrl};

use super::provider::Failure;
use crate::authenticate::idp_http::{IdpHttp, token_error};
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
        let url = &self.credentials.token_url;
        let fail = |why: String| {
            Failure::Connect(format!(
                "cannot get an Entra ID token from {url} (entra of the provider): {why}"
            ))
        };
        let token_url = TokenUrl::new(url.clone()).map_err(|e| fail(e.to_string()))?;
        let answer = BasicClient::new(ClientId::new(self.credentials.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.credentials.client_secret.expose().to_string(),
            ))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url)
            .exchange_client_credentials()
            .add_scope(Scope::new(self.credentials.scope.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| fail(token_error(url, e)))?;
        let token = answer.access_token().secret().clone();
        // Trust a token at most a day, and a token without a lifetime five
        // minutes.
        let lifetime = answer
            .expires_in()
            .unwrap_or(Duration::from_secs(300))
            .min(Duration::from_secs(86_400));
        let until = Instant::now() + lifetime.saturating_sub(EARLY);
        *current = Some((token.clone(), until));
        Ok(token)
    }
}
