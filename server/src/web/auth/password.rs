//! The development password: one user, an argon2id hash in the configuration.

use super::{Refusal, Verified};
use crate::web::settings::DevPassword;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Checks `password` for `user` against the configured hash (on a blocking thread: argon2 is
/// slow on purpose).
pub async fn verify(dev: &DevPassword, user: &str, password: &str) -> Result<Verified, Refusal> {
    if password.is_empty() {
        return Err(Refusal::Credentials("empty password".into()));
    }
    let (hash, wanted, given, password) = (
        dev.hash.clone(),
        dev.user.clone(),
        user.to_owned(),
        password.to_owned(),
    );
    let ok = tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| format!("the configured hash: {e}"))?;
        // The hash is checked even for a wrong user, so that timing does not tell users apart.
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok::<_, String>(matches && given == wanted)
    })
    .await
    .map_err(|e| Refusal::Unavailable(e.to_string()))?
    .map_err(Refusal::Unavailable)?;
    if ok {
        Ok(Verified {
            user: user.to_owned(),
            groups: Vec::new(),
        })
    } else {
        Err(Refusal::Credentials(format!("wrong password for `{user}`")))
    }
}

/// An argon2id hash of `password` with a fresh salt, for the configuration.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_right_password_signs_in_and_nothing_else_does() {
        let dev = DevPassword {
            user: "dev".into(),
            hash: hash("correct horse").unwrap(),
            roles: vec![],
        };
        assert!(dev.hash.starts_with("$argon2id$"));
        assert_eq!(
            verify(&dev, "dev", "correct horse").await.unwrap().user,
            "dev"
        );
        for (u, p) in [("dev", "wrong"), ("other", "correct horse"), ("dev", "")] {
            assert!(matches!(
                verify(&dev, u, p).await,
                Err(Refusal::Credentials(_))
            ));
        }
    }
}
