//! Encryption at rest: Fernet with a key list, as Airflow's `MultiFernet` (the first key
//! encrypts, every key decrypts, so a key can be rotated in).

use std::fmt;
use std::sync::Arc;

use fernet::{Fernet, MultiFernet};

use crate::error::{EngineError, Result};

/// The environment variable holding the comma-separated key list.
pub const FERNET_KEY_ENV: &str = "UPIFLOW_FERNET_KEY";

/// The configured keys. Cheap to clone; its `Debug` never shows a key.
#[derive(Clone)]
pub struct KeyRing {
    multi: Arc<MultiFernet>,
    /// How many keys `multi` holds.
    count: usize,
    /// The keys' text, for masking them ([`super::Secrets::mask_keys`]).
    raw: Arc<Vec<String>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({} key(s))", self.count)
    }
}

impl KeyRing {
    /// Parses a comma-separated list of Fernet keys (url-safe base64 of 32 bytes each);
    /// blanks around keys are ignored. An empty list or a malformed key is an error that
    /// says which key (by position), never what it is.
    pub fn parse(list: &str) -> Result<KeyRing> {
        let keys: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            return Err(EngineError::FernetKeyInvalid("no key in the list".into()));
        }
        let mut fernets = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let f = Fernet::new(k).ok_or_else(|| {
                EngineError::FernetKeyInvalid(format!(
                    "key {} of {} is not a Fernet key (32 bytes in url-safe base64; make one with `upiflow db generate-key`)",
                    i + 1,
                    keys.len()
                ))
            })?;
            fernets.push(f);
        }
        Ok(KeyRing {
            raw: Arc::new(keys.iter().map(|k| k.to_string()).collect()),
            count: fernets.len(),
            multi: Arc::new(MultiFernet::new(fernets)),
        })
    }

    /// A new random key, as text for `UPIFLOW_FERNET_KEY`.
    pub fn generate_key() -> String {
        Fernet::generate_key()
    }

    /// The keys' text.
    pub(crate) fn raw(&self) -> &[String] {
        &self.raw
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Never true (a ring has at least one key); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encrypts with the first key.
    pub fn encrypt(&self, plain: &str) -> String {
        self.multi.encrypt(plain.as_bytes())
    }

    /// Decrypts with whichever key fits; `what` names the value in the error ("connection
    /// `x`'s password").
    pub fn decrypt(&self, token: &str, what: &str) -> Result<String> {
        let bytes = self
            .multi
            .decrypt(token)
            .map_err(|_| EngineError::DecryptFailed(what.to_string()))?;
        String::from_utf8(bytes).map_err(|_| EngineError::DecryptFailed(what.to_string()))
    }
}

/// A stored value: its text and whether that text is a Fernet token.
pub fn seal(ring: Option<&KeyRing>, plain: &str) -> (String, bool) {
    match ring {
        Some(r) => (r.encrypt(plain), true),
        None => (plain.to_string(), false),
    }
}

/// The plain text of a stored value (see [`seal`]).
pub fn open(ring: Option<&KeyRing>, stored: &str, encrypted: bool, what: &str) -> Result<String> {
    match (encrypted, ring) {
        (false, _) => Ok(stored.to_string()),
        (true, Some(r)) => r.decrypt(stored, what),
        (true, None) => Err(EngineError::FernetKeyMissing(what.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let (a, b) = (KeyRing::generate_key(), KeyRing::generate_key());
        let old = KeyRing::parse(&a).unwrap();
        let token = old.encrypt("s3cret");
        assert!(!token.contains("s3cret"));
        let both = KeyRing::parse(&format!("{b}, {a}")).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both.decrypt(&token, "x").unwrap(), "s3cret");
        let fresh = both.encrypt("s3cret");
        let only_b = KeyRing::parse(&b).unwrap();
        assert_eq!(only_b.decrypt(&fresh, "x").unwrap(), "s3cret");
        let e = only_b
            .decrypt(&token, "connection `w`'s password")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot decrypt connection `w`'s password: the Fernet key does not match (UPIFLOW_FERNET_KEY must list the key it was encrypted with)"
        );
    }

    #[test]
    fn bad_key_lists_are_refused_without_showing_the_key() {
        let good = KeyRing::generate_key();
        for list in ["", " , ", "not-a-key", &format!("{good},short")] {
            let e = KeyRing::parse(list).unwrap_err();
            assert!(matches!(e, EngineError::FernetKeyInvalid(_)), "{list}: {e}");
            assert!(!e.to_string().contains("short") && !e.to_string().contains("not-a-key"));
        }
        assert!(format!("{:?}", KeyRing::parse(&good).unwrap()).starts_with("KeyRing(1"));
    }

    #[test]
    fn without_a_key_values_are_stored_plain_and_encrypted_ones_need_a_key() {
        assert_eq!(seal(None, "v"), ("v".to_string(), false));
        let r = KeyRing::parse(&KeyRing::generate_key()).unwrap();
        let (t, enc) = seal(Some(&r), "v");
        assert!(enc);
        assert_eq!(open(Some(&r), &t, true, "x").unwrap(), "v");
        assert!(matches!(
            open(None, &t, true, "x"),
            Err(EngineError::FernetKeyMissing(_))
        ));
        assert_eq!(open(None, "plain", false, "x").unwrap(), "plain");
    }
}
