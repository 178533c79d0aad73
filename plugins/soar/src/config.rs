//! An app's app.config as SOAR apps read it: the `[resilient]` section's
//! `api_key_id` and `api_key_secret`, where a value `$NAME` or `${NAME}` is
//! the App Secret NAME and `^NAME` a PAM secret.
//!
//! Design decision: a value read from an App Secret is recorded by name
//! only; this module never sees a secret value, because SOAR never returns
//! one and app.config holds references.

/// Where app.config takes `api_key_secret` from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `$NAME` / `${NAME}`: the App Secret NAME.
    App(String),
    /// `^NAME`: a secret in a PAM vault.
    Pam(String),
    /// The secret written into app.config itself.
    Plain,
}

impl SecretRef {
    fn parse(value: &str) -> Self {
        let v = value.trim();
        if let Some(rest) = v.strip_prefix('$') {
            let name = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .unwrap_or(rest);
            return SecretRef::App(name.to_owned());
        }
        if let Some(name) = v.strip_prefix('^') {
            return SecretRef::Pam(name.to_owned());
        }
        SecretRef::Plain
    }

    /// The App Secret's name, for `$NAME`.
    pub fn name(&self) -> Option<&str> {
        match self {
            SecretRef::App(n) => Some(n),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AppConfig {
    api_key_id: Option<String>,
    api_key_secret: Option<String>,
}

impl AppConfig {
    /// Reads the `[resilient]` section (keys before any section count too:
    /// some apps ship a bare file).
    pub fn parse(text: &str) -> Self {
        let mut out = AppConfig::default();
        let mut section: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.trim().to_owned());
                continue;
            }
            if section.as_deref().is_some_and(|s| s != "resilient") {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "api_key_id" => out.api_key_id = Some(v.trim().to_owned()),
                "api_key_secret" => out.api_key_secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        out
    }

    /// The API key ID written in app.config (not one read from a secret).
    pub fn api_key_id(&self) -> Option<&str> {
        self.api_key_id
            .as_deref()
            .filter(|v| !v.starts_with('$') && !v.starts_with('^'))
    }

    pub fn secret_ref(&self) -> Option<SecretRef> {
        self.api_key_secret.as_deref().map(SecretRef::parse)
    }

    /// Whether app.config points at the account, by its ID or by reading
    /// its secret from the App Secret named after it.
    pub fn names_account(&self, api_key_id: &str, account: &str) -> bool {
        self.api_key_id() == Some(api_key_id)
            || self.secret_ref().and_then(|r| r.name().map(|n| n == account)) == Some(true)
    }
}
