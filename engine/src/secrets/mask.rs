//! Which values are secret and how text is masked (Airflow's `secrets_masker`).

use std::borrow::Cow;
use std::sync::Arc;

/// Airflow's `DEFAULT_SENSITIVE_FIELDS` (airflow/utils/log/secrets_masker.py): a variable key
/// or an extra key containing one of these (ignoring case) holds a secret.
pub const SENSITIVE_FIELDS: [&str; 12] = [
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
];

/// What masked text shows instead of a secret.
pub const MASK: &str = "***";

/// Airflow's `should_hide_value_for_key`: whether a variable or extra key names a secret.
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_lowercase();
    SENSITIVE_FIELDS.iter().any(|f| k.contains(f))
}

/// Values shorter than this are not masked: masking every `a` or `12` would make logs
/// unreadable and hide nothing (Airflow skips tiny values too).
pub const MIN_SECRET_LEN: usize = 3;

/// Replaces every registered secret in a text by `***`, the longest first (so a secret that
/// contains another is masked whole). Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Masker {
    /// Distinct secrets, longest first.
    secrets: Arc<Vec<String>>,
}

impl Masker {
    /// Registers a secret, and its percent-encoded form when that differs (a password shows
    /// up encoded in a connection URI). Values shorter than [`MIN_SECRET_LEN`] are skipped.
    pub fn add(&mut self, secret: &str) {
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let mut all = (*self.secrets).clone();
        for s in [secret.to_string(), super::connection::quote(secret), form] {
            if s.chars().count() >= MIN_SECRET_LEN && !all.contains(&s) {
                all.push(s);
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.secrets = Arc::new(all);
    }

    /// Whether no secret is registered.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The text with every registered secret replaced by `***`; borrowed when none occurs.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(s) = self.secrets.iter().find(|s| rest.starts_with(s.as_str())) {
                out.push_str(MASK);
                rest = &rest[s.len()..];
            } else {
                let c = rest.chars().next().expect("not empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_keys_are_those_containing_airflows_names() {
        for k in [
            "password",
            "DB_PASSWORD",
            "my_api_key",
            "GitHubToken",
            "client_secret",
            "Authorization",
            "gcp_keyfile_dict",
        ] {
            assert!(is_sensitive_key(k), "{k}");
        }
        for k in ["host", "region", "min_amount", "user", "pass"] {
            assert!(!is_sensitive_key(k), "{k}");
        }
    }

    #[test]
    fn masking_replaces_every_occurrence_longest_first() {
        let mut m = Masker::default();
        m.add("hunter2");
        m.add("hunter2-extended");
        m.add("ab"); // too short: not registered
        assert_eq!(
            m.mask("pw=hunter2-extended and hunter2, ab"),
            "pw=*** and ***, ab"
        );
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_percent_encoded_form_is_masked_too() {
        let mut m = Masker::default();
        m.add("p@ss w/rd");
        assert_eq!(m.mask("postgres://u:p%40ss+w%2Frd@h"), "postgres://u:***@h");
        assert_eq!(m.mask("raw p@ss w/rd"), "raw ***");
        assert_eq!(
            m.mask("postgres://u:p%40ss%20w%2Frd@h"),
            "postgres://u:***@h"
        );
    }

    #[test]
    fn masking_keeps_multibyte_text_intact() {
        let mut m = Masker::default();
        m.add("geheim");
        assert_eq!(m.mask("ünï geheim ✓"), "ünï *** ✓");
        assert!(Masker::default().is_empty());
    }
}
