//! Credentials for Marathon, from the environment as Linkerd 1's `io.l5d.marathon` read them.

use http::HeaderValue;

/// The environment variable holding HTTP basic auth credentials: base64 of `user:password`,
/// sent as `Authorization: Basic <value>`.
pub(crate) const BASIC_VAR: &str = "MARATHON_HTTP_AUTH_CREDENTIAL";
/// The environment variable holding a DC/OS service account (JSON with `uid`, `private_key`,
/// `login_endpoint`).
pub(crate) const DCOS_VAR: &str = "DCOS_SERVICE_ACCOUNT_CREDENTIAL";

/// How requests to Marathon authenticate.
#[derive(Debug)]
pub(crate) enum Auth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Basic <base64 user:password>`.
    Basic(HeaderValue),
}

impl Auth {
    /// The credentials the environment gives, read through `var` (e.g. `std::env::var`):
    /// `DCOS_SERVICE_ACCOUNT_CREDENTIAL` first, as Linkerd 1, then
    /// `MARATHON_HTTP_AUTH_CREDENTIAL`; none when neither is set (or set but empty).
    ///
    /// # Errors
    /// A DC/OS service account (not supported yet: the namer refuses to start rather than
    /// talk to Marathon without the credentials the operator gave), or a basic credential
    /// that cannot be a header value, as a message.
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Auth, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set(DCOS_VAR).is_some() {
            return Err(format!(
                "{DCOS_VAR} is set, but DC/OS service account login is not supported yet; \
                 use {BASIC_VAR} (base64 of user:password) or unset {DCOS_VAR}"
            ));
        }
        match set(BASIC_VAR) {
            None => Ok(Auth::None),
            Some(cred) => {
                let cred = cred.trim();
                let valid = cred
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                let value = HeaderValue::try_from(format!("Basic {cred}"))
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| format!("{BASIC_VAR} is not base64 of user:password"))?;
                Ok(Auth::Basic(sensitive(value)))
            }
        }
    }

    /// The `Authorization` header to send, if any.
    ///
    /// # Errors
    /// None for basic auth (kept async for logins that need a request).
    pub(crate) async fn header(&self) -> Result<Option<HeaderValue>, String> {
        Ok(match self {
            Auth::None => None,
            Auth::Basic(v) => Some(v.clone()),
        })
    }

    /// Marathon answered 401 or 403 to the credentials sent.
    pub(crate) fn rejected(&self) {}

    /// What to check when Marathon refuses a request.
    pub(crate) fn hint(&self) -> String {
        match self {
            Auth::None => format!("Marathon wants credentials: set {BASIC_VAR}"),
            Auth::Basic(_) => format!("Marathon refused the credentials of {BASIC_VAR}"),
        }
    }
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[tokio::test]
    async fn basic_credentials_become_the_header() {
        let auth = Auth::from_env(env(&[(BASIC_VAR, "dXNlcjpwYXNz\n")])).unwrap();
        let h = auth.header().await.unwrap().unwrap();
        assert_eq!(h, "Basic dXNlcjpwYXNz");
        assert!(h.is_sensitive());
        let none = Auth::from_env(env(&[(BASIC_VAR, " ")])).unwrap();
        assert_eq!(none.header().await.unwrap(), None);
        assert!(Auth::from_env(env(&[(BASIC_VAR, "user:pass")])).is_err());
    }

    #[test]
    fn dcos_accounts_are_refused_clearly() {
        let e = Auth::from_env(env(&[
            (DCOS_VAR, "{\"uid\": \"weft\"}"),
            (BASIC_VAR, "eA=="),
        ]))
        .unwrap_err();
        assert!(e.contains(DCOS_VAR) && e.contains("not supported"), "{e}");
    }
}
