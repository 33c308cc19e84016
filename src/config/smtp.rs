//! SMTP settings: `HERALD_SMTP_URL` parsed into host, port, TLS mode, credentials and EHLO
//! name, and the rule on where the credentials may go.
//!
//! Parsing only: nothing here connects, resolves a name or reads the `tls_ca` file (the
//! validation checks that it exists; the mailer reads it). The URL may hold a password, so no
//! error or `Debug` output here ever contains the URL or the credentials.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::domain::Secret;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS (a local relay): `smtp://host:port`.
    None,
    /// STARTTLS if the server offers it: `smtp://host:port?tls=opportunistic`.
    Opportunistic,
    /// STARTTLS, or fail: `smtp://host:587?tls=required`.
    StartTls,
    /// TLS from the first byte: `smtps://host:465`.
    Implicit,
}

/// A parsed `HERALD_SMTP_URL`.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub(crate) credentials: Option<(String, Secret)>,
    /// An extra trusted root certificate (PEM), for a relay with a private CA: `?tls_ca=PATH`.
    pub tls_ca: Option<PathBuf>,
    /// The EHLO name: `?hello=NAME`, else the From domain.
    pub hello: String,
    /// Limit for one whole SMTP transaction.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        write!(
            f,
            "SmtpSettings {{ host: {:?}, port: {}, security: {:?}, auth: {} }}",
            self.host,
            self.port,
            self.security,
            self.credentials.is_some()
        )
    }
}

/// A problem with `HERALD_SMTP_URL`. The message never contains the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
#[error("HERALD_SMTP_URL: {0}")]
pub struct SmtpUrlError(pub String);

impl SmtpSettings {
    /// Parses `smtp://[user:pass@]host[:port][?tls=required|opportunistic][&tls_ca=PATH][&hello=NAME]`
    /// or `smtps://[user:pass@]host[:port]`.
    ///
    /// # Errors
    /// [`SmtpUrlError`] naming the part that is wrong.
    pub fn from_url(
        url: &Secret,
        default_hello: &str,
        timeout: Duration,
    ) -> Result<Self, SmtpUrlError> {
        let url = Url::parse(url.expose()).map_err(|e| SmtpUrlError(format!("not a URL ({e})")))?;
        let mut security = match url.scheme() {
            "smtp" => Security::None,
            "smtps" => Security::Implicit,
            other => {
                return Err(SmtpUrlError(format!(
                    "scheme `{other}` is not smtp or smtps"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| SmtpUrlError("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if security == Security::Implicit {
            465
        } else {
            25
        });
        let mut tls_ca = None;
        let mut hello = default_hello.to_owned();
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "required") if security == Security::None => security = Security::StartTls,
                ("tls", "opportunistic") if security == Security::None => {
                    security = Security::Opportunistic
                }
                ("tls", "none") if security == Security::None => {}
                ("tls", other) => {
                    return Err(SmtpUrlError(format!(
                        "tls={other} is not one of required, opportunistic, none (smtps:// is implicit TLS)"
                    )));
                }
                ("tls_ca", path) => tls_ca = Some(PathBuf::from(path)),
                ("hello", name) => hello = name.to_owned(),
                (other, _) => return Err(SmtpUrlError(format!("unknown parameter `{other}`"))),
            }
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                Secret::new(decode(url.password().unwrap_or(""))),
            )
        });
        Ok(Self {
            host,
            port,
            security,
            credentials,
            tls_ca,
            hello,
            timeout,
        })
    }

    /// When AUTH could go over a connection without TLS, the TLS mode that allows it:
    /// credentials with `tls=none`, or with `tls=opportunistic` (plain text when the server
    /// offers no STARTTLS, or when someone on the path strips it from the EHLO reply).
    /// `None` without credentials, or with STARTTLS required or implicit TLS.
    pub fn plaintext_auth(&self) -> Option<&'static str> {
        self.credentials.as_ref()?;
        match self.security {
            Security::None => Some("tls=none"),
            Security::Opportunistic => Some("tls=opportunistic"),
            Security::StartTls | Security::Implicit => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SmtpSettings, SmtpUrlError> {
        SmtpSettings::from_url(&Secret::new(url), "example.com", Duration::from_secs(30))
    }

    #[test]
    fn smtp_urls_cover_the_three_modes_and_keep_passwords_out_of_debug() {
        let plain = parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((plain.port, plain.security), (2525, Security::None));
        let starttls = parse("smtp://mail.example.com:587?tls=required").unwrap();
        assert_eq!(starttls.security, Security::StartTls);
        let implicit = parse("smtps://user%40x:p%40ss@mail.example.com").unwrap();
        assert_eq!(
            (implicit.port, implicit.security),
            (465, Security::Implicit)
        );
        let (user, pass) = implicit.credentials.clone().unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("user@x", "p@ss"));
        assert!(!format!("{implicit:?}").contains("p@ss"));
        assert!(parse("http://x").is_err());
        assert!(parse("smtp://x?tls=maybe").is_err());
        let err = parse("smtp://u:hunter2@x?bogus=1").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn auth_may_go_in_plain_text_only_with_credentials_and_tls_none_or_opportunistic() {
        let mode = |url: &str| parse(url).unwrap().plaintext_auth();
        assert_eq!(mode("smtp://u:p@x"), Some("tls=none"));
        assert_eq!(mode("smtp://u:p@x?tls=none"), Some("tls=none"));
        assert_eq!(
            mode("smtp://u:p@x?tls=opportunistic"),
            Some("tls=opportunistic")
        );
        assert_eq!(mode("smtp://u:p@x?tls=required"), None);
        assert_eq!(mode("smtps://u:p@x"), None);
        assert_eq!(mode("smtp://x"), None, "no credentials, no AUTH");
    }
}
