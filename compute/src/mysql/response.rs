//! The generic responses: OK, ERR and EOF payloads, the server status
//! flags they carry, and the protocol-level errors this server raises
//! itself (statement errors come from the handler as [`SqlError`]).
//!
//! Invariants: an ERR payload always carries a 5-byte SQLSTATE (a bad one
//! from a handler becomes `HY000`); OK-as-EOF (header 0xFE) is only used
//! when the client negotiated `CLIENT_DEPRECATE_EOF`.

use super::codec::{put_lenenc_int, put_u16};
use crate::sql::SqlError;

pub(crate) const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
pub(crate) const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;

/// Fields of an OK packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OkInfo {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: String,
}

/// An OK packet (header 0x00), or the OK that ends a result set under
/// `CLIENT_DEPRECATE_EOF` (header 0xFE).
pub(crate) fn ok(out: &mut Vec<u8>, header: u8, ok: &OkInfo) {
    out.push(header);
    put_lenenc_int(out, ok.affected_rows);
    put_lenenc_int(out, ok.last_insert_id);
    put_u16(out, ok.status);
    put_u16(out, ok.warnings);
    // Length-encoded, as MySQL and MariaDB servers send it (`net_store_data`)
    // and as libmariadb reads it, whatever the protocol documentation says
    // of `string<EOF>` without CLIENT_SESSION_TRACK.
    if !ok.info.is_empty() {
        put_lenenc_int(out, ok.info.len() as u64);
        out.extend_from_slice(ok.info.as_bytes());
    }
}

/// A classic EOF packet.
pub(crate) fn eof(out: &mut Vec<u8>, status: u16, warnings: u16) {
    out.push(0xFE);
    put_u16(out, warnings);
    put_u16(out, status);
}

/// An ERR packet.
pub(crate) fn err(out: &mut Vec<u8>, e: &SqlError) {
    out.push(0xFF);
    put_u16(out, e.code);
    out.push(b'#');
    let state = e.state.as_bytes();
    if state.len() == 5 && state.iter().all(u8::is_ascii_alphanumeric) {
        out.extend_from_slice(state);
    } else {
        out.extend_from_slice(b"HY000");
    }
    out.extend_from_slice(e.message.as_bytes());
}

pub(crate) fn sql_error(code: u16, state: &str, message: impl Into<String>) -> SqlError {
    SqlError {
        code,
        state: state.to_string(),
        message: message.into(),
    }
}

pub(crate) fn handshake_error() -> SqlError {
    sql_error(1043, "08S01", "Bad handshake")
}

pub(crate) fn access_denied(user: &str, with_password: bool) -> SqlError {
    let yes = if with_password { "YES" } else { "NO" };
    sql_error(
        1045,
        "28000",
        format!("Access denied for user '{user}'@'localhost' (using password: {yes})"),
    )
}

pub(crate) fn unknown_command(cmd: u8) -> SqlError {
    sql_error(1047, "08S01", format!("Unknown command {cmd:#04x}"))
}

pub(crate) fn packet_too_large() -> SqlError {
    sql_error(
        1153,
        "08S01",
        "Got a packet bigger than 'max_allowed_packet' bytes",
    )
}

pub(crate) fn out_of_order() -> SqlError {
    sql_error(1156, "08S01", "Got packets out of order")
}

pub(crate) fn unknown_statement(id: u32, command: &str) -> SqlError {
    sql_error(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to {command}"),
    )
}

pub(crate) fn malformed() -> SqlError {
    sql_error(1835, "HY000", "Malformed communication packet.")
}

pub(crate) fn not_utf8() -> SqlError {
    sql_error(1300, "HY000", "Invalid utf8mb4 character string")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_layout() {
        let mut out = Vec::new();
        err(&mut out, &access_denied("bob", true));
        assert_eq!(&out[..9], b"\xFF\x15\x04#28000");
        assert!(out.ends_with(b"(using password: YES)"));
        out.clear();
        err(&mut out, &sql_error(1, "bad", "m"));
        assert_eq!(out, b"\xFF\x01\x00#HY000m");
    }

    #[test]
    fn ok_and_eof_layout() {
        let mut out = Vec::new();
        let info = OkInfo {
            affected_rows: 3,
            last_insert_id: 300,
            status: SERVER_STATUS_AUTOCOMMIT,
            warnings: 1,
            info: String::new(),
        };
        ok(&mut out, 0, &info);
        assert_eq!(out, b"\x00\x03\xFC\x2C\x01\x02\x00\x01\x00");
        out.clear();
        eof(&mut out, 3, 0);
        assert_eq!(out, b"\xFE\x00\x00\x03\x00");
    }
}
