//! Secret keys the server makes for itself (`server_keys`): created with
//! random bytes on first use and then read back, so that replicas sharing a
//! database, and one server across restarts, sign and check with the same key.

use sqlx::Row;

use crate::{Store, StoreError, now_ms};

/// Bytes of a new key (256 bits, the size of an HMAC-SHA256 output).
const KEY_BYTES: usize = 32;

impl Store {
    /// The key called `name`, made on first use. Two replicas asking at once
    /// get the same key: the first insert wins, the other is ignored.
    pub async fn server_key(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        if let Some(key) = self.read_server_key(name).await? {
            return Ok(key);
        }
        let secret: [u8; KEY_BYTES] = rand::random();
        {
            let _write = self.write.lock().await;
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO server_keys (name, secret, created_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(to_hex(&secret))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        self.read_server_key(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("server key `{name}` vanished")))
    }

    async fn read_server_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT secret FROM server_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let secret: String = row.try_get("secret")?;
        from_hex(&secret)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("server key `{name}` is not hex")))
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001abff").as_deref(), Some(&bytes[..]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
