//! Connecting to NATS with the credentials a URL carries (`nats://user:pass@host:port`,
//! `nats://token@host:port`): async-nats parses them but does not send them, so every Herald
//! process starts its connection options here.

/// Options with the URL's credentials applied; connect with the same URL.
pub fn options(url: &str) -> async_nats::ConnectOptions {
    match credentials(url) {
        Some((user, Some(pass))) => async_nats::ConnectOptions::with_user_and_password(user, pass),
        Some((token, None)) => async_nats::ConnectOptions::with_token(token),
        None => async_nats::ConnectOptions::new(),
    }
}

/// [`options`], and TLS with `tls`'s CA as the only root when given (required then).
pub fn options_with(url: &str, tls: Option<&crate::nats_tls::NatsTls>) -> async_nats::ConnectOptions {
    match tls {
        Some(t) => options(url).tls_client_config((*t.client_config()).clone()).require_tls(true),
        None => options(url),
    }
}

/// Every server of a comma-separated list (async-nats parses a string as one server only);
/// connect with this and [`options`] of the same string.
pub fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, std::io::Error> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::parse).collect()
}

/// `(user, Some(password))`, `(token, None)`, or `None` when the URL has no user part. With
/// several comma-separated URLs, the first one's credentials count.
fn credentials(url: &str) -> Option<(String, Option<String>)> {
    let first = url.split(',').next()?.trim();
    let rest = first.split_once("://").map_or(first, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    match userinfo.split_once(':') {
        Some((u, p)) => Some((u.to_owned(), Some(p.to_owned()))),
        None if !userinfo.is_empty() => Some((userinfo.to_owned(), None)),
        None => None,
    }
}

/// The URL with any credentials removed, for logs.
pub fn redacted(url: &str) -> String {
    let one = |u: &str| {
        let (scheme, rest) = u.split_once("://").map_or(("", u), |(s, r)| (s, r));
        let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
        let host = authority.rsplit_once('@').map_or(authority.to_owned(), |(_, h)| format!("***@{h}"));
        let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
        path.map_or(format!("{scheme}{host}"), |p| format!("{scheme}{host}/{p}"))
    };
    url.split(',').map(|u| one(u.trim())).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_password_and_token() {
        assert_eq!(credentials("nats://127.0.0.1:4222"), None);
        assert_eq!(credentials("nats://gw:s3cr3t@h:4222"), Some(("gw".into(), Some("s3cr3t".into()))));
        assert_eq!(credentials("tls://tok@h:4222,tls://tok@g:4222"), Some(("tok".into(), None)));
        assert_eq!(redacted("nats://gw:s3cr3t@h:4222"), "nats://***@h:4222");
        assert_eq!(redacted("nats://h:4222"), "nats://h:4222");
        assert_eq!(servers("nats://a:1, nats://u:p@b:2").unwrap().len(), 2);
    }
}
