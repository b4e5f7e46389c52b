//! The connection phase: the server's HandshakeV10, the client's
//! HandshakeResponse41, authentication of `root` and the database named in
//! the handshake.
//!
//! Invariants: only `root` exists; its password is checked with
//! `mysql_native_password` (SHA1 scramble) or the `caching_sha2_password`
//! fast path (SHA256 scramble, answered with 0x01 0x03), and any other
//! plugin the client picks is switched to `mysql_native_password`. An
//! empty password accepts only an empty answer. No SSL. The parsers never
//! panic; a response that does not parse is a "Bad handshake" (1043).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use super::codec::{Malformed, Reader, put_nul_str, put_u16, put_u32};
use super::connection::{ConnError, Connection};
use super::response::{self, OkInfo};
use super::{HandlerFactory, ServerConfig};

pub(crate) const CLIENT_LONG_PASSWORD: u32 = 0x1;
pub(crate) const CLIENT_FOUND_ROWS: u32 = 0x2;
pub(crate) const CLIENT_LONG_FLAG: u32 = 0x4;
pub(crate) const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
pub(crate) const CLIENT_PROTOCOL_41: u32 = 0x200;
pub(crate) const CLIENT_SSL: u32 = 0x800;
pub(crate) const CLIENT_TRANSACTIONS: u32 = 0x2000;
pub(crate) const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
pub(crate) const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
pub(crate) const CLIENT_PS_MULTI_RESULTS: u32 = 0x4_0000;
pub(crate) const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
pub(crate) const CLIENT_CONNECT_ATTRS: u32 = 0x10_0000;
pub(crate) const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;
pub(crate) const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;

/// What this server offers; a connection uses the intersection with the
/// client's flags.
pub(crate) const SERVER_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_DEPRECATE_EOF;

/// utf8mb4_general_ci.
const CHARSET: u8 = 45;
const NATIVE: &str = "mysql_native_password";
const CACHING_SHA2: &str = "caching_sha2_password";

/// 20 printable bytes (never NUL: clients read the scramble as a C
/// string). Randomness comes from std's per-process random hasher keys
/// mixed with a counter and the clock; good enough for a challenge nonce.
pub(crate) fn new_scramble() -> [u8; 20] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let state = std::collections::hash_map::RandomState::new();
    let mut out = [0u8; 20];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(nanos);
        h.write_usize(i);
        let bytes = h.finish().to_le_bytes();
        for (o, b) in chunk.iter_mut().zip(bytes) {
            *o = 0x21 + b % 94;
        }
    }
    out
}

/// The HandshakeV10 payload.
pub(crate) fn greeting(
    version: &str,
    connection_id: u32,
    scramble: &[u8; 20],
    status: u16,
) -> Vec<u8> {
    let mut out = vec![10u8];
    put_nul_str(&mut out, version.as_bytes());
    put_u32(&mut out, connection_id);
    out.extend_from_slice(&scramble[..8]);
    out.push(0);
    put_u16(&mut out, (SERVER_CAPABILITIES & 0xFFFF) as u16);
    out.push(CHARSET);
    put_u16(&mut out, status);
    put_u16(&mut out, (SERVER_CAPABILITIES >> 16) as u16);
    out.push(21);
    out.extend_from_slice(&[0u8; 10]);
    out.extend_from_slice(&scramble[8..]);
    out.push(0);
    put_nul_str(&mut out, NATIVE.as_bytes());
    out
}

/// A client's HandshakeResponse41.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HandshakeResponse {
    pub caps: u32,
    pub user: String,
    pub auth: Vec<u8>,
    /// Empty when none was named.
    pub database: String,
    /// Empty when the client did not name one.
    pub plugin: String,
}

/// Why a handshake response is refused before authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejected {
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("client does not speak protocol 4.1")]
    Pre41,
    #[error("client asked for SSL")]
    Ssl,
}

pub(crate) fn parse_response(payload: &[u8]) -> Result<HandshakeResponse, Rejected> {
    let mut r = Reader::new(payload);
    let client = r.u32()?;
    if client & CLIENT_PROTOCOL_41 == 0 {
        return Err(Rejected::Pre41);
    }
    if client & CLIENT_SSL != 0 {
        return Err(Rejected::Ssl);
    }
    let caps = client & SERVER_CAPABILITIES;
    let _max_packet = r.u32()?;
    let _charset = r.u8()?;
    r.take(23)?;
    let user = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
    let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()?
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let len = r.u8()?;
        r.take(usize::from(len))?
    } else {
        r.nul_bytes()?
    };
    let mut database = Vec::new();
    if caps & CLIENT_CONNECT_WITH_DB != 0 && r.remaining() > 0 {
        database = r.nul_or_rest().to_vec();
    }
    let mut plugin = Vec::new();
    if caps & CLIENT_PLUGIN_AUTH != 0 && r.remaining() > 0 {
        plugin = r.nul_or_rest().to_vec();
    }
    // Connection attributes (CLIENT_CONNECT_ATTRS) are accepted and ignored.
    Ok(HandshakeResponse {
        caps,
        user,
        auth: auth.to_vec(),
        database: String::from_utf8(database).map_err(|_| Malformed("database name"))?,
        plugin: String::from_utf8_lossy(&plugin).into_owned(),
    })
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA1(pw) XOR SHA1(scramble, SHA1(SHA1(pw))).
pub(crate) fn native_answer(password: &[u8], scramble: &[u8]) -> [u8; 20] {
    let h1 = sha1(&[password]);
    let h2 = sha1(&[&h1]);
    let h3 = sha1(&[scramble, &h2]);
    std::array::from_fn(|i| h1[i] ^ h3[i])
}

/// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)), scramble).
pub(crate) fn caching_sha2_answer(password: &[u8], scramble: &[u8]) -> [u8; 32] {
    let h1 = sha256(&[password]);
    let h2 = sha256(&[&h1]);
    let h3 = sha256(&[&h2, scramble]);
    std::array::from_fn(|i| h1[i] ^ h3[i])
}

/// Whether `answer` proves `password` under `plugin` (NATIVE or
/// CACHING_SHA2) for this `scramble`.
pub(crate) fn verify(password: &str, plugin: &str, scramble: &[u8], answer: &[u8]) -> bool {
    if password.is_empty() {
        return answer.is_empty() || answer == [0];
    }
    match plugin {
        CACHING_SHA2 => answer == caching_sha2_answer(password.as_bytes(), scramble),
        _ => answer == native_answer(password.as_bytes(), scramble),
    }
}

fn auth_switch(scramble: &[u8; 20]) -> Vec<u8> {
    let mut out = vec![0xFE];
    put_nul_str(&mut out, NATIVE.as_bytes());
    put_nul_str(&mut out, scramble);
    out
}

/// Runs the connection phase; `Ok(true)` when the client is in and may
/// send commands, `Ok(false)` when it was refused (its error already sent).
pub(crate) async fn establish<S, F>(
    conn: &mut Connection<S, F>,
    config: &ServerConfig,
) -> Result<bool, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    F: HandlerFactory,
{
    let scramble = new_scramble();
    let hello = greeting(&config.server_version, conn.id(), &scramble, conn.status());
    conn.send(&hello);
    conn.flush().await?;
    let payload = conn.read_packet().await?;
    let resp = match parse_response(&payload) {
        Ok(resp) => resp,
        Err(Rejected::Pre41) => {
            let e = response::sql_error(
                1251,
                "08004",
                "Client does not support authentication protocol requested by server",
            );
            return conn.refuse(&e).await;
        }
        Err(Rejected::Ssl | Rejected::Malformed(_)) => {
            return conn.refuse(&response::handshake_error()).await;
        }
    };
    conn.set_caps(resp.caps);
    if !authenticate(conn, config, &scramble, &resp).await? {
        let denied = response::access_denied(&resp.user, !resp.auth.is_empty());
        return conn.refuse(&denied).await;
    }
    if !resp.database.is_empty()
        && let Err(e) = conn.use_database(&resp.database).await
    {
        return conn.refuse(&e).await;
    }
    let ok = OkInfo {
        status: conn.status(),
        ..OkInfo::default()
    };
    conn.send_ok(0, &ok);
    conn.flush().await?;
    Ok(true)
}

async fn authenticate<S, F>(
    conn: &mut Connection<S, F>,
    config: &ServerConfig,
    scramble: &[u8; 20],
    resp: &HandshakeResponse,
) -> Result<bool, ConnError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    F: HandlerFactory,
{
    let password = config.root_password.as_deref().unwrap_or("");
    let (plugin, answer) = match resp.plugin.as_str() {
        "" | NATIVE | CACHING_SHA2 => (resp.plugin.as_str(), resp.auth.clone()),
        _ => {
            conn.send(&auth_switch(scramble));
            conn.flush().await?;
            (NATIVE, conn.read_packet().await?)
        }
    };
    if resp.user != "root" || !verify(password, plugin, scramble, &answer) {
        return Ok(false);
    }
    if plugin == CACHING_SHA2 && !password.is_empty() {
        conn.send(&[0x01, 0x03]);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A HandshakeResponse41 as a client would build it.
    pub(crate) fn client_response(user: &str, auth: &[u8], db: &str, plugin: &str) -> Vec<u8> {
        let caps = SERVER_CAPABILITIES & !CLIENT_CONNECT_ATTRS;
        let mut out = Vec::new();
        put_u32(&mut out, caps);
        put_u32(&mut out, 1 << 24);
        out.push(45);
        out.extend_from_slice(&[0; 23]);
        put_nul_str(&mut out, user.as_bytes());
        super::super::codec::put_lenenc_bytes(&mut out, auth);
        put_nul_str(&mut out, db.as_bytes());
        put_nul_str(&mut out, plugin.as_bytes());
        out
    }

    #[test]
    fn greeting_layout() {
        let s = *b"abcdefghijklmnopqrst";
        let g = greeting("8.0.36", 7, &s, 2);
        assert_eq!(g[0], 10);
        assert_eq!(&g[1..8], b"8.0.36\0");
        assert_eq!(&g[8..12], &7u32.to_le_bytes());
        assert_eq!(&g[12..20], b"abcdefgh");
        assert!(g.ends_with(b"ijklmnopqrst\0mysql_native_password\0"));
        assert!(new_scramble().iter().all(|b| (0x21..0x7F).contains(b)));
        assert_ne!(new_scramble(), new_scramble());
    }

    #[test]
    fn parses_a_response() {
        let p = client_response("root", &[1, 2, 3], "shop", NATIVE);
        let r = parse_response(&p).expect("parses");
        assert_eq!(r.user, "root");
        assert_eq!(r.auth, vec![1, 2, 3]);
        assert_eq!(r.database, "shop");
        assert_eq!(r.plugin, NATIVE);
        let mut old = p.clone();
        old[1] &= !0x02;
        assert_eq!(parse_response(&old), Err(Rejected::Pre41));
        assert!(matches!(
            parse_response(&p[..40]),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn password_checks() {
        let s = b"12345678901234567890";
        let native = native_answer(b"secret", s);
        assert!(verify("secret", NATIVE, s, &native));
        assert!(verify("secret", "", s, &native));
        assert!(!verify("other", NATIVE, s, &native));
        let sha2 = caching_sha2_answer(b"secret", s);
        assert!(verify("secret", CACHING_SHA2, s, &sha2));
        assert!(!verify("secret", NATIVE, s, &sha2));
        assert!(verify("", NATIVE, s, b""));
        assert!(!verify("", NATIVE, s, &native));
        assert!(!verify("secret", NATIVE, s, b""));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn response_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_response(&bytes);
        }

        #[test]
        fn mutated_responses_never_panic(
            user in "[a-z]{0,8}",
            auth in proptest::collection::vec(any::<u8>(), 0..40),
            flips in proptest::collection::vec(any::<(usize, u8)>(), 1..4),
            cut in any::<usize>(),
        ) {
            let mut p = client_response(&user, &auth, "db", CACHING_SHA2);
            prop_assert_eq!(parse_response(&p).map(|r| r.auth), Ok(auth.clone()));
            for (i, x) in flips {
                let i = i % p.len();
                p[i] ^= x;
            }
            p.truncate(cut % (p.len() + 1));
            let _ = parse_response(&p);
        }
    }
}
