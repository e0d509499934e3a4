//! Where toolgate may connect for an upstream, and how an upstream URL is
//! shown.
//!
//! An upstream URL is parsed once at load with the `url` crate (which also
//! reads the decimal, octal and hex spellings of an IPv4 address) and
//! refused when it names a link-local or cloud-metadata address, unless the
//! server allows it (`allow_link_local = true`). The same check runs on
//! every address a name resolves to at connect time (`crate::egress`), so a
//! name pointing at the metadata service is refused too. Loopback and
//! private ranges stay allowed: that is where upstreams live.
//!
//! [`UpstreamUrl`] never prints its credentials: userinfo, query values,
//! the fragment and every value a `${env:…}`/`${file:…}` reference put into
//! the URL show as `***`; [`UpstreamUrl::scrub`] masks them (and the
//! server's header values) in error texts from the HTTP stack, which print
//! URLs in full.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Why an upstream URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("`{shown}` is not a valid URL ({reason}); use e.g. \"http://127.0.0.1:3001/mcp\"")]
    Invalid { shown: String, reason: String },
    #[error("`{0}` must start with http:// or https://")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error(
        "`{shown}` points at {what}; toolgate refuses upstreams there (they hand out cloud credentials). If this server really lives there, set `allow_link_local = true` in this server's file"
    )]
    LinkLocal { shown: String, what: &'static str },
}

/// What a well-known metadata or link-local address is, or `None` for an
/// address an upstream may have.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    match ip.octets() {
        [169, 254, 169, 254] => Some("the cloud instance metadata service (169.254.169.254)"),
        [169, 254, ..] => Some("a link-local address (169.254.0.0/16)"),
        [100, 100, 100, 200] => Some("the Alibaba Cloud metadata service (100.100.100.200)"),
        [192, 0, 0, 192] => Some("the Oracle Cloud metadata service (192.0.0.192)"),
        _ => None,
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // An IPv4 address inside IPv6: mapped (::ffff:a.b.c.d), NAT64
    // (64:ff9b::a.b.c.d) or the old compatible form (::a.b.c.d).
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some((hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some((hi, lo)),
        _ => None,
    };
    if let Some((hi, lo)) = embedded {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        return forbidden_v4(Ipv4Addr::new(a, b, c, d));
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("a link-local address (fe80::/10)");
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("the AWS instance metadata service (fd00:ec2::254)");
    }
    None
}

/// Host names of cloud metadata services (lower case, no trailing dot).
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
];

/// What a well-known metadata host name is, or `None`.
pub fn forbidden_name(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    METADATA_NAMES
        .contains(&host.as_str())
        .then_some("a cloud instance metadata service name")
}

/// Values shorter than this are not searched for in error texts (they
/// would mask ordinary words); the URL itself is always masked whole.
const MIN_SCRUBBED: usize = 4;

/// An upstream's URL: parsed, checked, and shown without credentials.
#[derive(Clone)]
pub struct UpstreamUrl {
    url: Url,
    shown: String,
    /// Credential fragments to mask in texts: longest first.
    secrets: Vec<String>,
    /// Links may go to link-local and metadata addresses.
    pub allow_link_local: bool,
}

impl UpstreamUrl {
    /// Parse and check `text` (references already resolved; `from_refs`
    /// are the values they stood for).
    pub fn parse(
        text: &str,
        from_refs: &[String],
        allow_link_local: bool,
    ) -> Result<Self, EgressError> {
        let url = Url::parse(text).map_err(|e| EgressError::Invalid {
            shown: mask_fragments(text, from_refs),
            reason: e.to_string(),
        })?;
        // A reference that is the whole URL: its credential parts are
        // collected below like a literal URL's.
        let mut secrets: Vec<String> = from_refs
            .iter()
            .filter(|v| v.as_str() != text)
            .cloned()
            .collect();
        for part in [url.username(), url.password().unwrap_or_default()] {
            secrets.push(part.to_string());
            secrets.push(decoded(part));
        }
        for (_, value) in url.query_pairs() {
            secrets.push(value.into_owned());
        }
        for pair in url.query().unwrap_or_default().split('&') {
            if let Some((_, value)) = pair.split_once('=') {
                secrets.push(value.to_string());
            }
        }
        if let Some(fragment) = url.fragment() {
            secrets.push(fragment.to_string());
        }
        secrets.retain(|s| s.len() >= MIN_SCRUBBED);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let shown = redact(&url, from_refs);
        let checked = Self {
            url,
            shown,
            secrets,
            allow_link_local,
        };
        if !matches!(checked.url.scheme(), "http" | "https") {
            return Err(EgressError::Scheme(checked.shown));
        }
        let what = match checked.url.host() {
            None => return Err(EgressError::NoHost(checked.shown)),
            Some(Host::Ipv4(ip)) => forbidden_address(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => forbidden_address(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => forbidden_name(name),
        };
        match what {
            Some(what) if !allow_link_local => Err(EgressError::LinkLocal {
                shown: checked.shown,
                what,
            }),
            _ => Ok(checked),
        }
    }

    /// The full URL, for the one place that connects to it.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }

    /// Whether the URL is plain `http://` (the fast lane's kind).
    pub fn is_plain_http(&self) -> bool {
        self.url.scheme() == "http"
    }

    /// Also mask these values (the server's header values) in [`Self::scrub`].
    pub fn mask_also<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        self.secrets.extend(
            values
                .into_iter()
                .filter(|v| v.len() >= MIN_SCRUBBED)
                .map(str::to_string),
        );
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.secrets.dedup();
    }

    /// `text` (an error from the HTTP stack, an upstream's answer) with
    /// this URL shown safely and every credential fragment masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.url.as_str(), &self.shown);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamUrl({})", self.shown)
    }
}

fn decoded(part: &str) -> String {
    url::form_urlencoded::parse(format!("x={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `text` with each of `values` (of a useful length) masked: for a URL
/// that did not parse, so only what references put in is known secret.
fn mask_fragments(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for v in values.iter().filter(|v| v.len() >= MIN_SCRUBBED) {
        out = out.replace(v.as_str(), "***");
    }
    out
}

/// The one way an upstream URL is shown (logs, errors, `/admin/v1/status`,
/// `toolgate check`): scheme, host, port and path, with userinfo, query
/// values and fragment as `***`, and any path part a reference supplied
/// (`from_refs`) as `***`.
pub fn redact(url: &Url, from_refs: &[String]) -> String {
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        shown.push_str("***@");
    }
    if let Some(host) = url.host() {
        shown.push_str(&host.to_string());
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(&mask_fragments(url.path(), from_refs));
    if let Some(query) = url.query() {
        let keys: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| format!("{}=***", mask_fragments(&k, from_refs)))
            .collect();
        shown.push('?');
        shown.push_str(&keys.join("&"));
    }
    if url.fragment().is_some() {
        shown.push_str("#***");
    }
    shown
}

/// How upstream host names become addresses: the system's resolver, or a
/// fixed table (tests, and embedders that pin addresses). Whatever it
/// answers is checked against [`forbidden_address`] before connecting.
#[derive(Clone, Default)]
pub enum HostResolver {
    #[default]
    System,
    /// Names to addresses; a name not in the table does not resolve.
    Fixed(Arc<HashMap<String, Vec<IpAddr>>>),
}

impl fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostResolver::System => f.write_str("HostResolver::System"),
            HostResolver::Fixed(t) => write!(f, "HostResolver::Fixed({} names)", t.len()),
        }
    }
}

impl HostResolver {
    /// The addresses of `host` (port `port` on each).
    pub async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            HostResolver::System => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
            HostResolver::Fixed(table) => table
                .get(&host.trim_end_matches('.').to_ascii_lowercase())
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("`{host}` is not in the fixed host table"),
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        matches!(
            UpstreamUrl::parse(text, &[], false),
            Err(EgressError::LinkLocal { .. })
        )
    }

    #[test]
    fn metadata_and_link_local_addresses_in_every_spelling_are_refused() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.169.254./",
            "http://2852039166/",
            "http://0xA9FEA9FE/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://169.254.1.1:8080/mcp",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::169.254.169.254]/",
            "http://[fe80::1]/mcp",
            "http://[febf::1]/mcp",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://192.0.0.192/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://metadata.goog/",
            "http://metadata/",
            "http://instance-data/",
            "https://u:p@169.254.169.254/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }

    #[test]
    fn loopback_private_and_public_addresses_stay_allowed() {
        for url in [
            "http://127.0.0.1:3001/mcp",
            "http://localhost:3001/mcp",
            "http://10.0.0.5/mcp",
            "http://192.168.1.2/mcp",
            "http://172.16.0.1/mcp",
            "http://[::1]:9000/mcp",
            "http://[fd12::1]/mcp",
            "http://[fec0::1]/mcp",
            "http://169.255.0.1/mcp",
            "http://100.100.100.201/mcp",
            "https://mcp.example.com/mcp",
            "https://metadata.example.com/mcp",
        ] {
            assert!(UpstreamUrl::parse(url, &[], false).is_ok(), "{url}");
        }
    }

    #[test]
    fn allowed_per_server() {
        let url = UpstreamUrl::parse("http://169.254.169.254/x", &[], true).expect("allowed");
        assert!(url.allow_link_local);
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(matches!(
            UpstreamUrl::parse("ftp://x/", &[], false),
            Err(EgressError::Scheme(_))
        ));
        assert!(matches!(
            UpstreamUrl::parse("http//x", &[], false),
            Err(EgressError::Invalid { .. })
        ));
    }

    #[test]
    fn credentials_never_show() {
        let refs = vec!["s3cr3t-from-env".to_string(), "pathtoken".to_string()];
        let mut url = UpstreamUrl::parse(
            "http://alice:pa%40ss@127.0.0.1:9/mcp/pathtoken?key=s3cr3t-from-env&x=1#frag",
            &refs,
            false,
        )
        .expect("valid");
        assert_eq!(
            url.to_string(),
            "http://***@127.0.0.1:9/mcp/***?key=***&x=***#***"
        );
        assert_eq!(format!("{url:?}"), format!("UpstreamUrl({url})"));
        url.mask_also(["header-secret-1"]);
        let error = format!(
            "error sending request for url ({}): alice pa@ss pa%40ss header-secret-1",
            url.expose()
        );
        let scrubbed = url.scrub(&error);
        for secret in [
            "alice",
            "pa@ss",
            "pa%40ss",
            "header-secret-1",
            "s3cr3t",
            "pathtoken",
        ] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert!(
            scrubbed.contains("http://***@127.0.0.1:9/mcp/"),
            "{scrubbed}"
        );
    }

    #[test]
    fn an_unparsable_url_masks_what_references_supplied() {
        let refs = vec!["topsecret".to_string()];
        let e = UpstreamUrl::parse("http://[topsecret/", &refs, false).expect_err("invalid");
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }

    #[tokio::test]
    async fn a_fixed_table_resolves_only_its_names() {
        let table = HashMap::from([(
            "meta.test".to_string(),
            vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))],
        )]);
        let r = HostResolver::Fixed(Arc::new(table));
        let addrs = r.lookup("META.test.", 80).await.expect("in table");
        assert_eq!(addrs, vec!["169.254.169.254:80".parse().expect("addr")]);
        assert!(r.lookup("other.test", 80).await.is_err());
    }
}
