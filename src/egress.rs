//! How toolgate connects out to HTTP upstreams and LLM providers: never to
//! a link-local or metadata address (unless the server or provider allows
//! it), never following a redirect.
//!
//! The URL was checked at load (`config::egress`); here every address its
//! host name resolves to is checked at connect time, on the rmcp link's
//! reqwest client and on the fast lane's hyper connector alike, so a name
//! that points (or is re-pointed) at the metadata service is refused. A
//! redirect is refused too: following it would send the server's
//! configured headers (API keys) to wherever the upstream points, and serve
//! that server's tools under this server's name.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::config::egress::{forbidden_address, forbidden_name};
use crate::config::{HostResolver, ServerConfig};

/// Why toolgate would not connect (or go on) to where a link leads.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "`{host}` {how} {what}; toolgate does not connect there (they hand out cloud credentials): set `allow_link_local = true` in {place} if this server really lives there"
    )]
    LinkLocal {
        /// Where the URL is configured (`servers/NAME.toml`).
        place: Arc<str>,
        host: String,
        /// "is" (a name) or "resolves to 169.254.169.254,".
        how: String,
        what: &'static str,
    },
    #[error("`{host}` did not resolve: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` resolved to no address")]
    NoAddress(String),
    #[error(
        "the upstream answered HTTP {status}, a redirect to {location}; toolgate does not follow redirects (the credentials it sends would go there too): set the URL in {place} to the final one"
    )]
    Redirect {
        place: Arc<str>,
        status: u16,
        /// Shown without credentials.
        location: String,
    },
    #[error("the HTTP client for upstream links could not be built: {0}")]
    Client(String),
}

/// The resolver of one server's links (or one provider's): looks names
/// up, then refuses link-local and metadata answers.
#[derive(Clone)]
pub struct CheckedResolver {
    /// Where its URL is configured, for errors (`servers/NAME.toml`).
    place: Arc<str>,
    resolver: HostResolver,
    allow_link_local: bool,
}

impl CheckedResolver {
    /// The resolver for what is configured at `place` (`servers/NAME.toml`).
    pub fn new(place: &str, resolver: HostResolver, allow_link_local: bool) -> Self {
        Self {
            place: Arc::from(place),
            resolver,
            allow_link_local,
        }
    }

    async fn lookup(self, host: String, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let refuse = |how: String, what| Refused::LinkLocal {
            place: self.place.clone(),
            host: host.clone(),
            how,
            what,
        };
        if !self.allow_link_local
            && let Some(what) = forbidden_name(&host)
        {
            return Err(refuse("is".into(), what));
        }
        let addrs = self
            .resolver
            .lookup(&host, port)
            .await
            .map_err(|source| Refused::Lookup {
                host: host.clone(),
                source,
            })?;
        if !self.allow_link_local
            && let Some((ip, what)) = addrs
                .iter()
                .find_map(|a| forbidden_address(a.ip()).map(|w| (a.ip(), w)))
        {
            // One bad answer refuses the name: which address a connection
            // would try first is not ours to predict.
            return Err(refuse(format!("resolves to {ip},"), what));
        }
        if addrs.is_empty() {
            return Err(Refused::NoAddress(host));
        }
        Ok(addrs)
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.clone().lookup(name.as_str().to_string(), 0);
        Box::pin(async move {
            let addrs = lookup.await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

type Lookup = Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, Refused>> + Send>>;

impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Refused;
    type Future = Lookup;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let lookup = self.clone().lookup(name.as_str().to_string(), 0);
        Box::pin(async move { Ok(lookup.await?.into_iter()) })
    }
}

/// Where a server's URL is configured, as egress errors name it.
pub fn server_place(name: &str) -> String {
    format!("servers/{name}.toml")
}

/// The reqwest client of one HTTP upstream's rmcp link ([`client`]).
pub fn upstream_client(
    server: &ServerConfig,
    resolver: HostResolver,
) -> Result<reqwest::Client, Refused> {
    let allow_link_local = match &server.transport {
        crate::config::Transport::Http { url, .. } => url.allow_link_local,
        crate::config::Transport::Stdio { .. } => false,
    };
    client(&server_place(&server.name), resolver, allow_link_local)
}

/// A reqwest client for what is configured at `place`: the checked
/// resolver, no redirects, no proxy from the environment (a proxy would
/// resolve names where the check cannot see them), TCP_NODELAY, pooled
/// keep-alive connections.
pub fn client(
    place: &str,
    resolver: HostResolver,
    allow_link_local: bool,
) -> Result<reqwest::Client, Refused> {
    let at: Arc<str> = Arc::from(place);
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let refused = Refused::Redirect {
            place: at.clone(),
            status: attempt.status().as_u16(),
            location: crate::config::egress::redact(attempt.url(), &[]),
        };
        attempt.error(refused)
    });
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .redirect(policy)
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver::new(
            place,
            resolver,
            allow_link_local,
        )))
        .build()
        .map_err(|e| Refused::Client(e.to_string()))
}

/// The egress refusal somewhere in `error`'s chain, if there is one.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::str::FromStr;
    use tower::Service;

    fn resolver(allow_link_local: bool) -> CheckedResolver {
        let ip = |s: &str| IpAddr::from_str(s).expect("ip");
        let table = HashMap::from([
            ("ok.test".to_string(), vec![ip("10.0.0.7")]),
            (
                "meta.test".to_string(),
                vec![ip("10.0.0.7"), ip("::ffff:169.254.169.254")],
            ),
            ("empty.test".to_string(), vec![]),
        ]);
        CheckedResolver::new(
            &server_place("up"),
            HostResolver::Fixed(Arc::new(table)),
            allow_link_local,
        )
    }

    async fn lane_lookup(r: &mut CheckedResolver, host: &str) -> Result<Vec<SocketAddr>, Refused> {
        let name = hyper_util::client::legacy::connect::dns::Name::from_str(host).expect("name");
        r.call(name).await.map(Iterator::collect)
    }

    #[tokio::test]
    async fn the_lane_connector_refuses_names_that_resolve_to_metadata_addresses() {
        let mut checked = resolver(false);
        assert!(lane_lookup(&mut checked, "ok.test").await.is_ok());
        let refused = lane_lookup(&mut checked, "meta.test")
            .await
            .expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("`meta.test` resolves to ::ffff:169.254.169.254")
                && refused.to_string().contains("servers/up.toml"),
            "{refused}"
        );
        let named = lane_lookup(&mut checked, "metadata.google.internal")
            .await
            .expect_err("refused by name, before any lookup");
        assert!(matches!(named, Refused::LinkLocal { .. }), "{named}");
        assert!(matches!(
            lane_lookup(&mut checked, "empty.test").await,
            Err(Refused::NoAddress(_))
        ));
        let mut allowed = resolver(true);
        assert_eq!(
            lane_lookup(&mut allowed, "meta.test")
                .await
                .expect("allowed")
                .len(),
            2
        );
    }

    #[test]
    fn a_refusal_is_found_inside_wrapping_errors() {
        let refused = Refused::NoAddress("x".into());
        let io = std::io::Error::other(refused);
        assert!(matches!(refusal_in(&io), Some(Refused::NoAddress(_))));
        let plain = std::io::Error::other("no");
        assert!(refusal_in(&plain).is_none());
    }
}
