//! Memcomparable keys. (Stub: helper A owns this file.)

use crate::types::{ColumnType, Value, ValueError};

/// Appends `v` (a value of a column of type `ty`, already coerced) to a key.
pub fn encode_key_part(out: &mut Vec<u8>, ty: &ColumnType, v: &Value) -> Result<(), ValueError> {
    let _ = (out, ty, v);
    unimplemented!("helper A")
}

/// A whole key: the parts in order.
pub fn encode_key(parts: &[(&ColumnType, &Value)]) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::new();
    for (ty, v) in parts {
        encode_key_part(&mut out, ty, v)?;
    }
    Ok(out)
}
