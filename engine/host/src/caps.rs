//! Capabilities: the one place that decides whether a plugin may make a
//! request.
//!
//! Design decision: [`HttpPolicy`] answers every question about a request
//! (scheme, origin declared by the plugin AND granted by the operator, the
//! addresses a name resolves to) and nothing else does. Deny by default: an
//! empty grant list refuses everything. Loopback, private, link-local and
//! metadata addresses are refused unless the operator granted that exact
//! origin (no wildcard), which is what a rehearsal does for its simulators.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// `scheme://host[:port]` where host may start with `*.` (any subdomain,
/// not the apex) and port may be `*`. A missing port means the scheme's
/// default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    pub scheme: String,
    pub host: HostPattern,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.vendor.com` holds "vendor.com".
    Subdomains(String),
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not an origin like https://api.vendor.com"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{text:?}: only http and https origins exist"));
        }
        if rest.contains('/') || rest.contains('@') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "{text:?}: an origin has no path, user, query or fragment"
            ));
        }
        let (host, port_text) = if rest.starts_with('[') {
            match rest.split_once("]:") {
                Some((h, p)) => (format!("{h}]"), Some(p)),
                None => (rest.to_owned(), None),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port_text {
            None => PortSpec::Default,
            Some("*") => PortSpec::Any,
            Some(p) => PortSpec::Is(
                p.parse::<u16>()
                    .map_err(|_| format!("{text:?}: bad port {p:?}"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{text:?}: empty host"));
        }
        let host = if let Some(apex) = host.strip_prefix("*.") {
            if apex.is_empty() || apex.contains('*') {
                return Err(format!("{text:?}: a wildcard must look like *.vendor.com"));
            }
            HostPattern::Subdomains(apex.to_owned())
        } else if host.contains('*') {
            return Err(format!("{text:?}: a wildcard must look like *.vendor.com"));
        } else {
            HostPattern::Exact(host.trim_start_matches('[').trim_end_matches(']').to_owned())
        };
        let port = match port {
            PortSpec::Any => None,
            PortSpec::Is(p) => Some(p),
            PortSpec::Default => Some(default_port(&scheme)),
        };
        Ok(Self { scheme, host, port })
    }

    pub fn matches(&self, o: &Origin) -> bool {
        if self.scheme != o.scheme {
            return false;
        }
        if let Some(p) = self.port
            && p != o.port
        {
            return false;
        }
        match &self.host {
            HostPattern::Exact(h) => *h == o.host,
            HostPattern::Subdomains(apex) => {
                o.host.len() > apex.len() + 1
                    && o.host.ends_with(apex.as_str())
                    && o.host.as_bytes()[o.host.len() - apex.len() - 1] == b'.'
            }
        }
    }

    /// No wildcard at all: names one origin.
    pub fn is_exact(&self) -> bool {
        matches!(self.host, HostPattern::Exact(_)) && self.port.is_some()
    }
}

enum PortSpec {
    Any,
    Is(u16),
    Default,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Subdomains(a) => format!("*.{a}"),
        };
        match self.port {
            Some(p) => write!(f, "{}://{}:{}", self.scheme, host, p),
            None => write!(f, "{}://{}:*", self.scheme, host),
        }
    }
}

/// The origin of a concrete URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Why a request was refused. The message names the refused origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denial(pub String);

/// Decides every HTTP request of one plugin against one target.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    pub plugin: String,
    /// What the plugin's manifest says it needs.
    pub declared: Vec<OriginPattern>,
    /// What the operator granted for the target.
    pub granted: Vec<OriginPattern>,
    /// In a rehearsal the simulators stand in for the vendor, so the granted
    /// (exact, loopback) origins replace the declared ones.
    pub rehearsal: bool,
}

impl HttpPolicy {
    /// Parses the URL and decides on its origin.
    pub fn check_url(&self, url: &str) -> Result<(Url, Origin), Denial> {
        let parsed = Url::parse(url).map_err(|e| Denial(format!("invalid URL {url:?}: {e}")))?;
        let scheme = parsed.scheme().to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(Denial(format!(
                "scheme {scheme:?} is not allowed, only http and https"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Denial(
                "credentials in the URL are refused: inject secrets by handle".to_owned(),
            ));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(Denial(format!("URL {url:?} has no host"))),
        };
        let port = parsed.port_or_known_default().unwrap_or(default_port(&scheme));
        let origin = Origin { scheme, host, port };
        self.check_origin(&origin)?;
        if let Ok(ip) = origin.host.parse::<IpAddr>() {
            self.check_addrs(&origin.host, &[ip])?;
        }
        Ok((parsed, origin))
    }

    pub fn check_origin(&self, origin: &Origin) -> Result<(), Denial> {
        if !self.rehearsal && !self.declared.iter().any(|p| p.matches(origin)) {
            return Err(Denial(format!(
                "origin {origin} is not declared by plugin {:?} (declared: {})",
                self.plugin,
                list(&self.declared)
            )));
        }
        if !self.granted.iter().any(|p| p.matches(origin)) {
            return Err(Denial(format!(
                "origin {origin} is not granted to plugin {:?} (granted: {})",
                self.plugin,
                list(&self.granted)
            )));
        }
        Ok(())
    }

    /// Checks what `host` resolved to. Any loopback, private, link-local or
    /// metadata address is refused unless `host` is granted exactly.
    pub fn check_addrs(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Denial> {
        if addrs.is_empty() {
            return Err(Denial(format!("{host} resolved to no address")));
        }
        let exact = self
            .granted
            .iter()
            .any(|p| p.is_exact() && p.host == HostPattern::Exact(host.to_owned()));
        if let Some(bad) = addrs.iter().find(|ip| is_internal(ip))
            && !exact
        {
            return Err(Denial(format!(
                "{host} resolves to the internal address {bad}, which only an exactly granted origin may reach"
            )));
        }
        Ok(())
    }
}

fn list(patterns: &[OriginPattern]) -> String {
    if patterns.is_empty() {
        "none".to_owned()
    } else {
        patterns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Loopback, private, link-local (cloud metadata lives there), CGNAT,
/// unspecified, broadcast, multicast, unique-local.
pub fn is_internal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(&v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80
                || *v6 == Ipv6Addr::LOCALHOST
        }
    }
}

fn is_internal_v4(v4: &Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<OriginPattern> {
        p.iter().filter_map(|s| OriginPattern::parse(s).ok()).collect()
    }

    fn policy(declared: &[&str], granted: &[&str]) -> HttpPolicy {
        HttpPolicy {
            plugin: "p".into(),
            declared: pats(declared),
            granted: pats(granted),
            rehearsal: false,
        }
    }

    #[test]
    fn parses_patterns() -> Result<(), String> {
        let p = OriginPattern::parse("https://*.vendor.com:443")?;
        assert_eq!(p.host, HostPattern::Subdomains("vendor.com".into()));
        assert_eq!(p.port, Some(443));
        assert_eq!(OriginPattern::parse("https://api.vendor.com")?.port, Some(443));
        assert_eq!(OriginPattern::parse("http://127.0.0.1:*")?.port, None);
        assert_eq!(
            OriginPattern::parse("http://[::1]:8080")?.host,
            HostPattern::Exact("::1".into())
        );
        assert!(OriginPattern::parse("ftp://x").is_err());
        assert!(OriginPattern::parse("https://a.com/path").is_err());
        assert!(OriginPattern::parse("https://a.*.com").is_err());
        Ok(())
    }

    #[test]
    fn needs_declared_and_granted() {
        let p = policy(&["https://*.vendor.com"], &["https://api.vendor.com"]);
        assert!(p.check_url("https://api.vendor.com/v1/keys").is_ok());
        assert!(p.check_url("https://api.vendor.com:443/x").is_ok());
        // declared, not granted
        let e = p.check_url("https://eu.vendor.com/x").err();
        assert!(e.is_some_and(|d| d.0.contains("not granted") && d.0.contains("https://eu.vendor.com:443")));
        // granted, not declared
        let p2 = policy(&["https://api.vendor.com"], &["https://*.vendor.com"]);
        assert!(p2.check_url("https://eu.vendor.com/").is_err());
        // wrong scheme / port / apex
        assert!(p.check_url("http://api.vendor.com/").is_err());
        assert!(p.check_url("https://api.vendor.com:8443/").is_err());
        let w = policy(&["https://*.vendor.com"], &["https://*.vendor.com"]);
        assert!(w.check_url("https://vendor.com/").is_err());
        assert!(w.check_url("https://evilvendor.com/").is_err());
        assert!(w.check_url("https://a.b.vendor.com/").is_ok());
        assert!(w.check_url("file:///etc/passwd").is_err());
        assert!(w.check_url("https://user:pw@a.vendor.com/").is_err());
    }

    #[test]
    fn deny_by_default() {
        let p = policy(&["https://api.vendor.com"], &[]);
        assert!(p.check_url("https://api.vendor.com/").is_err());
    }

    #[test]
    fn internal_addresses_need_an_exact_grant() {
        let wide = policy(&["http://127.0.0.1:*"], &["http://127.0.0.1:*"]);
        assert!(wide.check_url("http://127.0.0.1:8080/").is_err());
        let exact = policy(&["http://127.0.0.1:*"], &["http://127.0.0.1:8080"]);
        assert!(exact.check_url("http://127.0.0.1:8080/").is_ok());
        assert!(exact.check_url("http://127.0.0.1:8081/").is_err());
        let named = policy(&["https://*.vendor.com"], &["https://*.vendor.com"]);
        let private: IpAddr = [10, 0, 0, 5].into();
        let public: IpAddr = [93, 184, 216, 34].into();
        assert!(named.check_addrs("api.vendor.com", &[public]).is_ok());
        assert!(named.check_addrs("api.vendor.com", &[public, private]).is_err());
        let metadata: IpAddr = [169, 254, 169, 254].into();
        assert!(named.check_addrs("api.vendor.com", &[metadata]).is_err());
    }

    #[test]
    fn classifies_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(ip.parse::<IpAddr>().is_ok_and(|ip| is_internal(&ip)), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(ip.parse::<IpAddr>().is_ok_and(|ip| !is_internal(&ip)), "{ip}");
        }
    }

    #[test]
    fn rehearsal_uses_grants_only() {
        let mut p = policy(&["https://api.vendor.com"], &["http://127.0.0.1:4000"]);
        assert!(p.check_url("http://127.0.0.1:4000/").is_err());
        p.rehearsal = true;
        assert!(p.check_url("http://127.0.0.1:4000/").is_ok());
        assert!(p.check_url("https://api.vendor.com/").is_err());
    }
}
