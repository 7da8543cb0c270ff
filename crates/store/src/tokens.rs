//! API tokens. Only a SHA-256 hash of each secret is stored; the secret is
//! shown once, when the token is made.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, NewEntry};
use crate::{Store, StoreError, now_ms};

/// Prefix of every secret Rollgate makes, so leaked tokens are recognisable.
pub const SECRET_PREFIX: &str = "rg_";
/// Characters of the secret kept in the clear to tell tokens apart.
const HINT_LEN: usize = 4;
/// Secrets shorter than this get no hint: four characters of a short,
/// hand-picked secret (a bootstrap token) would give too much of it away.
const MIN_LEN_FOR_HINT: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// May do everything.
    Admin,
    /// May only evaluate (and send events) in its one environment.
    Client,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Client => "client",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "admin" => Ok(TokenKind::Admin),
            "client" => Ok(TokenKind::Client),
            other => Err(StoreError::Corrupt(format!("unknown token kind `{other}`"))),
        }
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub kind: TokenKind,
    /// The one environment of a client token; `None` for admin tokens.
    pub environment: Option<String>,
    /// The last characters of the secret.
    pub hint: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
}

/// A token that is not revoked, with the hash its secret must match.
#[derive(Clone, Debug)]
pub struct ActiveToken {
    pub record: TokenRecord,
    pub hash: String,
}

/// The stored form of a secret: SHA-256, lowercase hex.
pub fn hash_token(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    let mut secret = String::from(SECRET_PREFIX);
    for byte in bytes {
        use std::fmt::Write;
        let _ = write!(secret, "{byte:02x}");
    }
    secret
}

fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < MIN_LEN_FOR_HINT {
        return String::new();
    }
    chars[chars.len().saturating_sub(HINT_LEN)..]
        .iter()
        .collect()
}

const TOKEN_COLUMNS: &str =
    "id, name, kind, environment, hint, created_at_ms, created_by, revoked_at_ms";

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: TokenKind::parse(&kind)?,
        environment: row.try_get("environment")?,
        hint: row.try_get("hint")?,
        created_at_ms: row.try_get("created_at_ms")?,
        created_by: row.try_get("created_by")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

fn token_json(t: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "kind": t.kind.as_str(),
        "environment": t.environment,
        "hint": t.hint,
        "revoked": t.revoked_at_ms.is_some(),
    })
}

impl Store {
    /// Makes a token and returns it with its secret, which is not stored.
    pub async fn create_token(
        &self,
        name: &str,
        kind: TokenKind,
        environment: Option<&str>,
        actor: &str,
    ) -> Result<(TokenRecord, String), StoreError> {
        let secret = new_secret();
        let record = self
            .insert_token(name, kind, environment, &secret, actor)
            .await?;
        Ok((record, secret))
    }

    /// On a store without tokens, makes an admin token with the given secret
    /// (from `ROLLGATE_ADMIN_TOKEN`). Returns whether it did.
    pub async fn bootstrap_admin_token(&self, secret: &str) -> Result<bool, StoreError> {
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tokens")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        if count > 0 {
            return Ok(false);
        }
        self.insert_token(
            "bootstrap-admin",
            TokenKind::Admin,
            None,
            secret,
            "rollgate",
        )
        .await?;
        Ok(true)
    }

    async fn insert_token(
        &self,
        name: &str,
        kind: TokenKind,
        environment: Option<&str>,
        secret: &str,
        actor: &str,
    ) -> Result<TokenRecord, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        if let Some(env) = environment
            && sqlx::query("SELECT key FROM environments WHERE key = $1")
                .bind(env)
                .fetch_optional(&mut *tx)
                .await?
                .is_none()
        {
            return Err(StoreError::not_found("environment", env));
        }
        let hash = hash_token(secret);
        let taken = sqlx::query("SELECT id FROM tokens WHERE hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(
                "a token with this secret already exists".to_owned(),
            ));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO tokens (name, kind, environment, hash, hint, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(name)
        .bind(kind.as_str())
        .bind(environment)
        .bind(&hash)
        .bind(hint(secret))
        .bind(now_ms())
        .bind(actor)
        .fetch_one(&mut *tx)
        .await?;
        let record = token_from_row(&row)?;
        let after = token_json(&record);
        audit::record(
            &mut tx,
            NewEntry {
                actor,
                action: "token.created",
                environment,
                target_kind: "token",
                target_key: &record.id.to_string(),
                before: None,
                after: Some(&after),
                reason: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every token, revoked ones included, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Tokens that may be used, with their hashes (for the server's cache).
    pub async fn active_tokens(&self) -> Result<Vec<ActiveToken>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, hash FROM tokens WHERE revoked_at_ms IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActiveToken {
                    record: token_from_row(row)?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Revokes a token; revoking a revoked token changes nothing.
    pub async fn revoke_token(&self, id: i64, actor: &str) -> Result<TokenRecord, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("token", &id.to_string()))?;
        let before = token_from_row(&row)?;
        if before.revoked_at_ms.is_some() {
            return Ok(before);
        }
        let now = now_ms();
        sqlx::query("UPDATE tokens SET revoked_at_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let after = TokenRecord {
            revoked_at_ms: Some(now),
            ..before.clone()
        };
        audit::record(
            &mut tx,
            NewEntry {
                actor,
                action: "token.revoked",
                environment: before.environment.as_deref(),
                target_kind: "token",
                target_key: &id.to_string(),
                before: Some(&token_json(&before)),
                after: Some(&token_json(&after)),
                reason: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_are_prefixed_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 48);
        assert_ne!(a, b);
        assert_eq!(hint(&a), a[a.len() - 4..]);
        assert_eq!(hint("dev"), "", "short secrets get no hint");
    }
}
