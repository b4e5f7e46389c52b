//! System variables: the values drivers read at connect time, which ones a
//! session may set, and `SHOW VARIABLES`.
//!
//! Every session starts from [`defaults`]; `SET [GLOBAL]` changes only the
//! session's copy (there is no shared global state to change). Numeric
//! variables hold integers, as drivers (mysql_async) expect numbers.

use std::collections::BTreeMap;

use crate::types::Value;

use super::SqlError;

/// `@@version`: MySQL 8 so that drivers pick MySQL 8 behaviour.
pub(crate) const VERSION: &str = "8.0.35-strata";

pub(crate) const SQL_MODE: &str = "STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

/// Every variable this server knows, with its initial value (names
/// lowercase).
pub(crate) fn defaults() -> BTreeMap<String, Value> {
    let ints: &[(&str, i64)] = &[
        ("max_allowed_packet", 67_108_864),
        ("wait_timeout", 28_800),
        ("interactive_timeout", 28_800),
        ("autocommit", 1),
        ("lower_case_table_names", 1),
        ("net_write_timeout", 60),
        ("net_read_timeout", 30),
        ("performance_schema", 0),
        ("max_connections", 1000),
        ("tx_read_only", 0),
        ("transaction_read_only", 0),
        ("auto_increment_increment", 1),
        ("auto_increment_offset", 1),
        ("query_cache_size", 0),
        ("query_cache_type", 0),
        ("net_buffer_length", 16_384),
        ("innodb_lock_wait_timeout", 50),
        ("lock_wait_timeout", 31_536_000),
        ("div_precision_increment", 4),
        ("group_concat_max_len", 1024),
        ("max_execution_time", 0),
        ("foreign_key_checks", 1),
        ("unique_checks", 1),
        ("sql_auto_is_null", 0),
        ("sql_safe_updates", 0),
        ("session_track_schema", 1),
        ("cte_max_recursion_depth", 1000),
        ("innodb_stats_auto_recalc", 1),
    ];
    let texts: &[(&str, &str)] = &[
        ("version", VERSION),
        ("version_comment", "Strata"),
        ("transaction_isolation", "REPEATABLE-READ"),
        ("tx_isolation", "REPEATABLE-READ"),
        ("sql_mode", SQL_MODE),
        ("character_set_client", "utf8mb4"),
        ("character_set_connection", "utf8mb4"),
        ("character_set_results", "utf8mb4"),
        ("character_set_server", "utf8mb4"),
        ("character_set_database", "utf8mb4"),
        ("collation_connection", "utf8mb4_general_ci"),
        ("collation_server", "utf8mb4_general_ci"),
        ("collation_database", "utf8mb4_general_ci"),
        ("time_zone", "SYSTEM"),
        ("system_time_zone", "UTC"),
        ("license", "Apache-2.0"),
        ("init_connect", ""),
        ("have_ssl", "DISABLED"),
        ("version_compile_os", "Linux"),
        ("version_compile_machine", "x86_64"),
        ("default_storage_engine", "InnoDB"),
        ("storage_engine", "InnoDB"),
        ("hostname", "strata"),
        ("session_track_system_variables", ""),
        ("session_track_transaction_info", "OFF"),
    ];
    let mut vars = BTreeMap::new();
    for (k, v) in ints {
        vars.insert((*k).to_string(), Value::Int(*v));
    }
    for (k, v) in texts {
        vars.insert((*k).to_string(), text(v));
    }
    // 2^64 - 1, as MySQL shows it.
    vars.insert("sql_select_limit".into(), Value::UInt(u64::MAX));
    vars
}

/// Variables a client may not change.
fn read_only(name: &str) -> bool {
    matches!(
        name,
        "version"
            | "version_comment"
            | "license"
            | "have_ssl"
            | "lower_case_table_names"
            | "system_time_zone"
            | "version_compile_os"
            | "version_compile_machine"
            | "hostname"
            | "performance_schema"
    )
}

pub(crate) fn is_boolean(name: &str) -> bool {
    matches!(
        name,
        "autocommit"
            | "tx_read_only"
            | "transaction_read_only"
            | "foreign_key_checks"
            | "unique_checks"
            | "sql_auto_is_null"
            | "sql_safe_updates"
    )
}

/// The value `SET name = v` stores, or why it cannot.
pub(crate) fn check_set(
    vars: &BTreeMap<String, Value>,
    name: &str,
    v: Value,
) -> Result<Value, SqlError> {
    let Some(current) = vars.get(name) else {
        return Err(SqlError::new(
            1193,
            "HY000",
            format!("Unknown system variable '{name}'"),
        ));
    };
    if read_only(name) {
        return Err(SqlError::new(
            1238,
            "HY000",
            format!("Variable '{name}' is a read only variable"),
        ));
    }
    if is_boolean(name) {
        return boolean(name, &v).map(|b| Value::Int(i64::from(b)));
    }
    Ok(match (current, v) {
        (_, Value::Null) => text(""),
        // MySQL takes no text for a numeric variable (1232); text that is
        // a whole number is taken here, no other (it was read as 0).
        (Value::Int(_), Value::Bytes(b))
            if std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .is_none() =>
        {
            return Err(SqlError::new(
                1232,
                "42000",
                format!("Incorrect argument type to variable '{name}'"),
            ));
        }
        (Value::Int(_), v) => match super::expr::double_of(&v) {
            // MySQL's range; a value outside is clamped (with a warning there).
            f if name == "innodb_lock_wait_timeout" && f.fract() == 0.0 && f.is_finite() => {
                Value::Int((f as i64).clamp(1, 1_073_741_824))
            }
            f if f.fract() == 0.0 && f.is_finite() => Value::Int(f as i64),
            _ => return Err(wrong_value(name, &v)),
        },
        (_, v) => Value::Bytes(super::expr::text_bytes(&v)),
    })
}

/// ON/OFF/1/0/TRUE/FALSE.
fn boolean(name: &str, v: &Value) -> Result<bool, SqlError> {
    match v {
        Value::Int(0) | Value::UInt(0) => Ok(false),
        Value::Int(1) | Value::UInt(1) => Ok(true),
        Value::Bytes(b) => match String::from_utf8_lossy(b).to_ascii_uppercase().as_str() {
            "ON" | "TRUE" | "1" => Ok(true),
            "OFF" | "FALSE" | "0" => Ok(false),
            _ => Err(wrong_value(name, v)),
        },
        _ => Err(wrong_value(name, v)),
    }
}

fn wrong_value(name: &str, v: &Value) -> SqlError {
    SqlError::new(
        1231,
        "42000",
        format!("Variable '{name}' can't be set to the value of '{v}'"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_checks_names_and_values() {
        let vars = defaults();
        assert_eq!(
            check_set(&vars, "autocommit", text("OFF")),
            Ok(Value::Int(0))
        );
        assert_eq!(
            check_set(&vars, "autocommit", Value::Int(2))
                .unwrap_err()
                .code,
            1231
        );
        assert_eq!(
            check_set(&vars, "nope", Value::Int(2)).unwrap_err().code,
            1193
        );
        assert_eq!(
            check_set(&vars, "version", Value::Int(2)).unwrap_err().code,
            1238
        );
        assert_eq!(
            check_set(&vars, "wait_timeout", text("60")),
            Ok(Value::Int(60))
        );
        assert_eq!(
            check_set(&vars, "wait_timeout", text("sixty"))
                .unwrap_err()
                .code,
            1232
        );
    }
}
