//! Credentials for Marathon, from the environment as Linkerd 1's `io.l5d.marathon` read them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::ACCEPT;
use http::{HeaderValue, StatusCode, Uri};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::Deserialize;
use serde_json::json;
use weft_config::BackendTls;

use super::REQUEST_TIMEOUT;
use crate::http::{tls_config, HttpClient};

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
    /// `Authorization: token=<token>`, the token from a DC/OS service account login.
    Dcos(Box<Dcos>),
}

/// A DC/OS service account (DC/OS IAM: "Service account login"): the namer logs in by
/// POSTing `{"uid", "token"}` to the login endpoint, `token` being an RS256 JWT of
/// `{"uid", "exp"}` signed with the account's private key, and sends the token it gets back
/// as `Authorization: token=<token>`. A 401 or 403 from Marathon forgets the token, so the
/// next request logs in again.
pub(crate) struct Dcos {
    uid: String,
    key: RsaKeyPair,
    /// The login endpoint's server (responses capped at [`MAX_LOGIN_BODY`]).
    login: HttpClient,
    login_path: String,
    token: tokio::sync::Mutex<Option<HeaderValue>>,
}

/// The JSON of `DCOS_SERVICE_ACCOUNT_CREDENTIAL` (as `dcos security org service-accounts
/// create` and DC/OS secrets give it).
#[derive(Deserialize)]
struct Credential {
    uid: String,
    private_key: String,
    login_endpoint: String,
    #[serde(default)]
    scheme: Option<String>,
}

/// How long the login JWT is valid (it is used once, at once).
const JWT_LIFETIME: Duration = Duration::from_secs(300);
/// The most bytes of a login response read.
const MAX_LOGIN_BODY: usize = 1 << 20;

impl Auth {
    /// The credentials the environment gives, read through `var` (e.g. `std::env::var`):
    /// `DCOS_SERVICE_ACCOUNT_CREDENTIAL` first, as Linkerd 1, then
    /// `MARATHON_HTTP_AUTH_CREDENTIAL`; none when neither is set (or set but empty). An
    /// `https` login endpoint is verified with `tls`, the namer's TLS config (its
    /// `trustCerts`, presenting its `clientAuth`) when the namer has one, else with the
    /// system roots.
    ///
    /// # Errors
    /// A DC/OS credential that is not JSON with `uid`, `private_key` (PEM RSA, PKCS#8 or
    /// PKCS#1) and `login_endpoint` (an `http` or `https` URL), or a basic credential that
    /// is not base64, or no system roots for an `https` login endpoint when `tls` is `None`,
    /// as a message.
    pub(crate) fn from_env(
        var: impl Fn(&str) -> Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Auth, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(cred) = set(DCOS_VAR) {
            return Dcos::new(&cred, tls)
                .map(|d| Auth::Dcos(Box::new(d)))
                .map_err(|e| format!("{DCOS_VAR}: {e}"));
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

    /// The `Authorization` header to send, if any; logs in first when a DC/OS account has no
    /// token yet.
    ///
    /// # Errors
    /// The DC/OS login failed, as a message.
    pub(crate) async fn header(&self) -> Result<Option<HeaderValue>, String> {
        Ok(match self {
            Auth::None => None,
            Auth::Basic(v) => Some(v.clone()),
            Auth::Dcos(d) => Some(d.token().await?),
        })
    }

    /// Marathon answered 401 or 403 to the credentials sent: a DC/OS token is forgotten.
    pub(crate) async fn rejected(&self) {
        if let Auth::Dcos(d) = self {
            *d.token.lock().await = None;
        }
    }

    /// What to check when Marathon refuses a request.
    pub(crate) fn hint(&self) -> String {
        match self {
            Auth::None => format!("Marathon wants credentials: set {BASIC_VAR} or {DCOS_VAR}"),
            Auth::Basic(_) => format!("Marathon refused the credentials of {BASIC_VAR}"),
            Auth::Dcos(_) => format!(
                "Marathon refused the DC/OS token of {DCOS_VAR}'s account; logging in again"
            ),
        }
    }
}

impl std::fmt::Debug for Dcos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dcos")
            .field("uid", &self.uid)
            .field(
                "login",
                &format_args!("{}{}", self.login.base(), self.login_path),
            )
            .finish_non_exhaustive()
    }
}

impl Dcos {
    fn new(cred: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Dcos, String> {
        let cred: Credential = serde_json::from_str(cred)
            .map_err(|e| format!("not JSON with uid, private_key and login_endpoint: {e}"))?;
        if let Some(s) = cred.scheme.as_deref().filter(|s| *s != "RS256") {
            return Err(format!("scheme {s:?}: only RS256 is supported"));
        }
        let key = match PrivateKeyDer::from_pem_slice(cred.private_key.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(der)) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            Ok(_) => return Err("private_key is not an RSA key".into()),
            Err(e) => return Err(format!("private_key is not a PEM private key: {e}")),
        }
        .map_err(|e| format!("private_key is not a usable RSA key: {e}"))?;
        let uri: Uri = cred
            .login_endpoint
            .parse()
            .map_err(|e| format!("login_endpoint {:?}: {e}", cred.login_endpoint))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "login_endpoint {uri}: expected an http or https URL"
                ))
            }
        };
        let Some(host) = uri.host() else {
            return Err(format!("login_endpoint {uri}: no host"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some((host, tls)),
            (true, None) => {
                let system = BackendTls {
                    common_name: None,
                    trust_certs: Vec::new(),
                    client_auth: None,
                };
                Some((host, tls_config(&system)?))
            }
        };
        let mut login = HttpClient::with_tls_config(host, port, tls)?;
        login.set_max_body(MAX_LOGIN_BODY);
        Ok(Dcos {
            uid: cred.uid,
            key,
            login,
            login_path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The token, logging in if there is none. Logins are serialised by the lock.
    async fn token(&self) -> Result<HeaderValue, String> {
        let mut token = self.token.lock().await;
        if let Some(t) = &*token {
            return Ok(t.clone());
        }
        let t = self.login().await.map_err(|e| {
            let at = self.login.base();
            format!("DC/OS login at {at}{}: {e}", self.login_path)
        })?;
        *token = Some(t.clone());
        Ok(t)
    }

    /// One login, within [`REQUEST_TIMEOUT`].
    async fn login(&self) -> Result<HeaderValue, String> {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(JWT_LIFETIME)
            .as_secs();
        let jwt = jwt(&self.key, &json!({"uid": self.uid, "exp": exp}))?;
        let body = json!({"uid": self.uid, "token": jwt});
        let accept = (ACCEPT, HeaderValue::from_static("application/json"));
        let resp = self
            .login
            .post_json(&self.login_path, &[accept], &body, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.kind().to_string())?;
        let (status, body) = (resp.status, resp.body);
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("status {status}: {text}"));
        }
        #[derive(Deserialize)]
        struct Token {
            token: String,
        }
        let t: Token =
            serde_json::from_slice(&body).map_err(|e| format!("malformed response: {e}"))?;
        HeaderValue::try_from(format!("token={}", t.token))
            .map(sensitive)
            .map_err(|_| "the token is not a valid header value".into())
    }
}

/// An RS256 JSON Web Token (RFC 7519, RFC 7515 with RSASSA-PKCS1-v1_5 SHA-256) of `claims`.
fn jwt(key: &RsaKeyPair, claims: &serde_json::Value) -> Result<String, String> {
    let mut msg = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    msg.push('.');
    msg.push_str(&base64url(claims.to_string().as_bytes()));
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .map_err(|_| "signing the login token failed".to_owned())?;
    msg.push('.');
    msg.push_str(&base64url(&sig));
    Ok(msg)
}

/// Base64 with the URL-safe alphabet and no padding (RFC 4648 section 5), as JWTs use.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2048-bit RSA key made for these tests only (openssl genrsa), in both PEM forms.
    pub(crate) const TEST_KEY_PKCS8: &str = include_str!("testdata/dcos-test-key.pkcs8.pem");
    const TEST_KEY_PKCS1: &str = include_str!("testdata/dcos-test-key.pkcs1.pem");

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    /// Decodes unpadded base64url; `None` on a bad character.
    pub(crate) fn unbase64url(s: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()
    }

    /// Checks an RS256 JWT against the test key; returns its claims.
    pub(crate) fn verify_jwt(jwt: &str) -> serde_json::Value {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let header: serde_json::Value =
            serde_json::from_slice(&unbase64url(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let der = PrivateKeyDer::from_pem_slice(TEST_KEY_PKCS8.as_bytes()).unwrap();
        let key = RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
        let public = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            key.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &unbase64url(parts[2]).unwrap())
            .expect("a valid RS256 signature by the test key");
        serde_json::from_slice(&unbase64url(parts[1]).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn basic_credentials_become_the_header() {
        let auth = Auth::from_env(env(&[(BASIC_VAR, "dXNlcjpwYXNz\n")]), None).unwrap();
        let h = auth.header().await.unwrap().unwrap();
        assert_eq!(h, "Basic dXNlcjpwYXNz");
        assert!(h.is_sensitive());
        let none = Auth::from_env(env(&[(BASIC_VAR, " ")]), None).unwrap();
        assert_eq!(none.header().await.unwrap(), None);
        assert!(Auth::from_env(env(&[(BASIC_VAR, "user:pass")]), None).is_err());
    }

    #[test]
    fn jwts_are_signed_rs256() {
        for pem in [TEST_KEY_PKCS8, TEST_KEY_PKCS1] {
            let cred = json!({
                "uid": "weft",
                "private_key": pem,
                "login_endpoint": "https://leader.mesos/acs/api/v1/auth/login",
                "scheme": "RS256",
            });
            let Auth::Dcos(d) = Auth::from_env(env(&[(DCOS_VAR, &cred.to_string())]), None)
                .unwrap_or_else(|e| panic!("{e}"))
            else {
                panic!("not a DC/OS account")
            };
            assert_eq!(
                (d.login.base().to_owned(), d.login_path.as_str()),
                ("https://leader.mesos:443".into(), "/acs/api/v1/auth/login")
            );
            let claims = verify_jwt(&jwt(&d.key, &json!({"uid": "weft", "exp": 1})).unwrap());
            assert_eq!(claims, json!({"uid": "weft", "exp": 1}));
        }
    }

    #[test]
    fn bad_dcos_credentials_are_refused_clearly() {
        let key = TEST_KEY_PKCS8;
        for (cred, want) in [
            ("{\"uid\": \"weft\"}".to_owned(), "not JSON with uid"),
            (json!({"uid": "w", "private_key": "x", "login_endpoint": "http://a/"}).to_string(), "not a PEM private key"),
            (json!({"uid": "w", "private_key": key, "login_endpoint": "ftp://a/"}).to_string(), "http or https"),
            (json!({"uid": "w", "private_key": key, "login_endpoint": "http://a/", "scheme": "HS256"}).to_string(), "only RS256"),
        ] {
            let e = Auth::from_env(env(&[(DCOS_VAR, &cred), (BASIC_VAR, "eA==")]), None)
                .unwrap_err();
            assert!(e.contains(DCOS_VAR) && e.contains(want), "{e}");
        }
    }
}
