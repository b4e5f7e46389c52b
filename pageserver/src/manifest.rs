//! The manifest: which layer files are live, and the durable LSN.
//! (Interface only; the format is being written.)

use std::path::Path;

use strata_wal::Lsn;

use crate::error::Result;
use crate::layer::LsnRange;

pub const MANIFEST_FILE_NAME: &str = "manifest";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestLayer {
    pub file_name: String,
    pub range: LsnRange,
    pub file_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub cluster_id: String,
    pub durable_lsn: Lsn,
    pub layers: Vec<ManifestLayer>,
    pub dropped_spaces: Vec<(u32, Lsn)>,
}

impl Manifest {
    pub fn new(cluster_id: &str) -> Manifest {
        Manifest {
            cluster_id: cluster_id.to_string(),
            durable_lsn: Lsn::ZERO,
            layers: Vec::new(),
            dropped_spaces: Vec::new(),
        }
    }

    pub fn load(_dir: &Path, _cluster_id: &str) -> Result<Option<Manifest>> {
        unimplemented!("manifest format")
    }

    pub fn store(&self, _dir: &Path) -> Result<()> {
        unimplemented!("manifest format")
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        unimplemented!("manifest format")
    }
}
