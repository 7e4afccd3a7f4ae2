//! etcd-style URL lists (`--listen-client-urls`, `--advertise-client-urls`, peer URLs). Pure.
//!
//! `http://host:port` is served in the clear, `https://host:port` over TLS with the side's
//! certificate (`crate::tls`); a start with an https URL and no certificate is refused.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// One `http://host:port` or `https://host:port` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https`: served or dialled over TLS.
    pub tls: bool,
    /// The host as written (a name, an IPv4 address, or an IPv6 address without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Url {
    /// The address to bind or dial: `localhost` and other names resolve to their first
    /// address, IPv4 preferred.
    pub fn socket_address(&self) -> Result<SocketAddr, String> {
        let addresses: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {self}: {e}"))?
            .collect();
        addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(addresses.first())
            .copied()
            .ok_or_else(|| format!("{self} resolves to no address"))
    }
}

impl Url {
    /// `host:port` (an IPv6 host in brackets), as sockets are dialled.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// A comma-separated list of URLs (at least one, no duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Urls(pub Vec<Url>);

impl fmt::Display for Urls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&urls.join(","))
    }
}

/// Parses `http(s)://host:port[,http(s)://host:port...]`, as etcd's URL flags take them.
pub fn parse_urls(list: &str) -> Result<Urls, String> {
    let mut urls = Vec::new();
    for item in list.split(',').map(str::trim) {
        let url = parse_url(item)?;
        if urls.contains(&url) {
            return Err(format!("{item} is listed twice"));
        }
        urls.push(url);
    }
    Ok(Urls(urls))
}

/// Parses one `http://host:port` or `https://host:port` URL.
pub fn parse_url(url: &str) -> Result<Url, String> {
    if url.is_empty() {
        return Err("empty URL".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{url}: expected http://host:port or https://host:port"
        ));
    };
    let tls = match scheme {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "{url}: unsupported scheme {other:?} (use http:// or https://)"
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') || authority.contains('#') {
        return Err(format!("{url}: a client URL has no path"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("{url}: unclosed [ in the host"));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("{url}: missing :port"));
        };
        (host, port)
    } else {
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(format!("{url}: missing :port"));
        };
        if host.contains(':') {
            return Err(format!("{url}: write IPv6 hosts in brackets"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("{url}: missing host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: bad port {port:?}"))?;
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_style_lists() {
        let urls = parse_urls("http://localhost:2379, http://10.0.0.1:22379/").unwrap();
        assert_eq!(urls.0.len(), 2);
        assert_eq!(urls.0[0].host, "localhost");
        assert_eq!(urls.0[1].port, 22379);
        assert_eq!(
            urls.to_string(),
            "http://localhost:2379,http://10.0.0.1:22379"
        );
        let secure = parse_urls("https://127.0.0.1:2379,http://127.0.0.1:2379").unwrap();
        assert!(secure.0[0].tls && !secure.0[1].tls);
        assert_eq!(
            secure.to_string(),
            "https://127.0.0.1:2379,http://127.0.0.1:2379"
        );
        let v6 = parse_urls("http://[::1]:2379").unwrap();
        assert_eq!(v6.0[0].host, "::1");
        assert_eq!(v6.to_string(), "http://[::1]:2379");
        assert_eq!(
            parse_urls("http://127.0.0.1:2379").unwrap().0[0]
                .socket_address()
                .unwrap()
                .to_string(),
            "127.0.0.1:2379"
        );
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for (bad, why) in [
            ("", "empty"),
            ("localhost:2379", "expected http://"),
            ("unix://x:1", "unsupported scheme"),
            ("http://localhost", "missing :port"),
            ("http://localhost:99999", "bad port"),
            ("http://:2379", "missing host"),
            ("http://localhost:2379/v3", "no path"),
            ("http://::1:2379", "brackets"),
            ("http://a:1,http://a:1", "twice"),
        ] {
            let error = parse_urls(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
