//! The HTTP client the `openidconnect` and `oauth2` crates send through.
//!
//! Both crates build their requests as `http::Request<Vec<u8>>` and leave
//! sending to the caller ([`oauth2::AsyncHttpClient`]). Their own `reqwest`
//! feature would compile a second, older reqwest/hyper stack beside ours, so
//! it stays off and this adapter sends over the project's reqwest client,
//! with the rules every identity-provider request here follows:
//! - redirects are never followed: an answer of 3xx is an error naming
//!   where it pointed (credentials in the request must not travel on);
//! - one timeout for the whole exchange;
//! - the answer's body is read with [`super::read_capped`], abandoned as
//!   soon as it passes the limit;
//! - a failed answer whose body is not JSON (so not an OAuth error) is an
//!   error with its status, rather than the crates' bare "parse error".

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Why a request to an identity provider (or Graph) failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpHttpError {
    #[error("{method} {url}: the request could not be built: {reason}")]
    Build {
        method: String,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: {reason}")]
    Send {
        method: String,
        url: String,
        reason: String,
    },
    #[error(
        "{method} {url}: the answer is a redirect (HTTP {status} to {location}); toolgate does not follow redirects from an identity provider: configure the endpoint's final URL"
    )]
    Redirect {
        method: String,
        url: String,
        status: u16,
        location: String,
    },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    /// The client itself could not be built (`what` names it).
    #[error("the HTTP client for {what} could not be built: {source}")]
    Client {
        what: String,
        #[source]
        source: reqwest::Error,
    },
}

/// A reqwest client without redirects, with a timeout and a cap on the
/// bodies it reads; usable as the crates' async HTTP client.
#[derive(Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
    limit: usize,
}

impl IdpHttp {
    /// `what` names the client in the error should it not build.
    pub fn new(what: &str, timeout: Duration, limit: usize) -> Result<Self, IdpHttpError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|source| IdpHttpError::Client {
                what: what.to_string(),
                source,
            })?;
        Ok(Self { client, limit })
    }

    /// The underlying client, for requests outside the crates' flows
    /// (same redirect policy and timeout; read bodies with
    /// [`super::read_capped`] and [`Self::limit`]).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The largest body read.
    pub fn limit(&self) -> usize {
        self.limit
    }

    async fn send(
        &self,
        request: oauth2::HttpRequest,
    ) -> Result<oauth2::HttpResponse, IdpHttpError> {
        let method = request.method().to_string();
        // Without the query: it may carry codes or secrets.
        let mut shown = request.uri().clone().into_parts();
        shown.path_and_query = shown
            .path_and_query
            .as_ref()
            .and_then(|p| p.path().parse().ok());
        let url = http::Uri::from_parts(shown)
            .map(|u| u.to_string())
            .unwrap_or_default();
        let request = reqwest::Request::try_from(request).map_err(|e| IdpHttpError::Build {
            method: method.clone(),
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| IdpHttpError::Send {
                method: method.clone(),
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere")
                .to_string();
            return Err(IdpHttpError::Redirect {
                method,
                url,
                status: status.as_u16(),
                location,
            });
        }
        let version = response.version();
        let headers = response.headers().clone();
        let body = super::read_capped(response, self.limit)
            .await
            .map_err(|reason| IdpHttpError::Send {
                method: method.clone(),
                url: url.clone(),
                reason,
            })?;
        if !status.is_success() && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(IdpHttpError::Status {
                method,
                url,
                status: status.as_u16(),
                body: shown,
            });
        }
        let mut answer = http::Response::new(body);
        *answer.status_mut() = status;
        *answer.version_mut() = version;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for IdpHttp {
    type Error = IdpHttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, IdpHttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// Why an app token could not be had ([`client_credentials`]).
#[derive(Debug)]
pub enum GrantError {
    /// The token endpoint is not a URL.
    TokenUrl(oauth2::url::ParseError),
    /// The endpoint refused or failed, in one line ([`token_error`]).
    Token(String),
}

/// An app token by the client-credentials grant (`client_secret_post`,
/// one scope) from `token_url`, over `http`; with its lifetime when the
/// answer gives one.
pub async fn client_credentials(
    http: &IdpHttp,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    scope: &str,
) -> Result<(String, Option<Duration>), GrantError> {
    use oauth2::TokenResponse as _;
    let url = oauth2::TokenUrl::new(token_url.to_string()).map_err(GrantError::TokenUrl)?;
    let answer = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.to_string()))
        .set_client_secret(oauth2::ClientSecret::new(client_secret.to_string()))
        .set_auth_type(oauth2::AuthType::RequestBody)
        .set_token_uri(url)
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new(scope.to_string()))
        .request_async(http)
        .await
        .map_err(|e| GrantError::Token(token_error(token_url, e)))?;
    Ok((answer.access_token().secret().clone(), answer.expires_in()))
}

/// Why a token request to `url` failed, in one line, for either crate's
/// error responses.
pub fn token_error<T>(
    url: &str,
    e: oauth2::RequestTokenError<IdpHttpError, oauth2::StandardErrorResponse<T>>,
) -> String
where
    T: oauth2::ErrorResponseType + AsRef<str> + std::fmt::Display + 'static,
{
    match e {
        oauth2::RequestTokenError::ServerResponse(refusal) => {
            let why = format!(
                "{} {}",
                refusal.error().as_ref(),
                refusal
                    .error_description()
                    .map(String::as_str)
                    .unwrap_or_default()
            );
            format!("POST {url}: refused: {}", why.trim_end())
        }
        // The adapter's errors name the request already.
        oauth2::RequestTokenError::Request(e) => e.to_string(),
        oauth2::RequestTokenError::Parse(e, _) => {
            format!("POST {url}: the answer is not a token response: {e}")
        }
        oauth2::RequestTokenError::Other(why) => format!("POST {url}: {why}"),
    }
}

/// An error and its sources, as one line (reqwest's own message alone
/// says only "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
