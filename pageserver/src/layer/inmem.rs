//! The open in-memory layer.
