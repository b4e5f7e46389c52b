//! The row format. (Stub: helper A owns this file.)

use crate::types::{ColumnType, Value};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt row: {0}")]
pub struct RowError(pub String);

/// Encodes a row of `values` (coerced to `types`) at `schema_version`.
pub fn encode_row(schema_version: u32, types: &[ColumnType], values: &[Value]) -> Vec<u8> {
    let _ = (schema_version, types, values);
    unimplemented!("helper A")
}

/// The schema version a row was written with.
pub fn row_schema_version(bytes: &[u8]) -> Result<u32, RowError> {
    let _ = bytes;
    unimplemented!("helper A")
}

/// Decodes a row written with the schema whose column types are `types`.
pub fn decode_row(types: &[ColumnType], bytes: &[u8]) -> Result<Vec<Value>, RowError> {
    let _ = (types, bytes);
    unimplemented!("helper A")
}
