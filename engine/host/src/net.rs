//! Name resolution for plugin HTTP, checked by the plugin's [`HttpPolicy`].
//!
//! Design decision: the resolver is a trait object so tests (and the
//! rehearsal) can make a name resolve anywhere without real DNS; every answer
//! goes through [`HttpPolicy::check_addrs`] before reqwest may connect, so a
//! granted name that resolves to a private address is refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::caps::HttpPolicy;

/// Turns a host name into addresses.
pub trait Resolver: Send + Sync + 'static {
    fn resolve(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (getaddrinfo on tokio's blocking pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = format!("{host}:0");
        Box::pin(async move { Ok(tokio::net::lookup_host(host).await?.map(|a| a.ip()).collect()) })
    }
}

/// A fixed table, for tests: names not in it do not resolve.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    pub fn with(mut self, host: &str, ips: &[IpAddr]) -> Self {
        self.0.insert(host.to_ascii_lowercase(), ips.to_vec());
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let answer = self.0.get(&host.to_ascii_lowercase()).cloned();
        let host = host.to_owned();
        Box::pin(async move {
            answer.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: unknown name"))
            })
        })
    }
}

/// reqwest's resolver for one plugin: resolves, then applies the policy.
pub(crate) struct PolicyResolver {
    pub inner: Arc<dyn Resolver>,
    pub policy: HttpPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let fut = self.inner.resolve(&host);
        let policy = self.policy.clone();
        Box::pin(async move {
            let ips = fut.await?;
            policy.check_addrs(&host, &ips)?;
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
