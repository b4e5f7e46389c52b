//! Attaching to the bucket at start, and recovering a local directory from
//! it.
//!
//! [`attach`] runs before the timeline opens: it takes this page server's
//! generation (recorded in the bucket before anything else is written),
//! reads the newest index, and if the local manifest is missing or covers
//! less of the log than that index, downloads every layer the index names
//! (each checked against the index's crc before it is written: a flipped
//! bit is [`PageServerError::Corrupt`], never a wrong page), stores the
//! index's manifest as the local one, and lets the timeline open from it.
//! Ingest then resumes at the manifest's durable LSN, which the log still
//! holds: the safe LSN reported to it never passed what an index covers.
//!
//! Downloads go to `NAME.download`, are fsynced and renamed to `NAME` (from
//! a local bucket on the same file system, the object is linked there
//! instead and checked before the rename: [`Bucket::download_layer_to`]),
//! and the directory fsynced, before the manifest naming them is stored; a crash
//! halfway leaves the old manifest (or none) and files it does not name,
//! which the timeline removes as strays (a `.download` file is overwritten
//! by the next attempt).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use strata_wal::Lsn;
use tracing::info;

use super::{Bucket, RemoteIndex, RemoteLayer};
use crate::durable;
use crate::error::{PageServerError, Result};
use crate::manifest::Manifest;

/// What the page server knows of the bucket after attaching.
#[derive(Debug)]
pub struct Attached {
    pub generation: u32,
    /// The objects the newest index names, by file name.
    pub known: HashMap<String, RemoteLayer>,
    /// The durable LSN of the newest index (ZERO: none yet).
    pub uploaded_lsn: Lsn,
    pub bucket_bytes: u64,
    /// Whether the local directory was (re)built from the bucket.
    pub recovered: bool,
}

/// How a directory behind the bucket is brought up to its newest index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Download every layer (checked) before the timeline opens.
    Eager { concurrency: usize },
    /// Store the index's manifest only: the timeline opens with the layers
    /// it lacks evicted, and reads download them on demand (checked then).
    Lazy,
}

/// Takes a generation and brings `dir` up to the bucket's newest index if
/// it is behind it.
pub async fn attach(
    bucket: &Bucket,
    dir: &Path,
    cluster_id: &str,
    recovery: Recovery,
) -> Result<Attached> {
    let generation = bucket.take_generation().await?;
    let index = bucket.newest_index().await?;
    let mut attached = Attached {
        generation,
        known: HashMap::new(),
        uploaded_lsn: Lsn::ZERO,
        bucket_bytes: 0,
        recovered: false,
    };
    let Some(index) = index else {
        return Ok(attached);
    };
    let local = {
        let (dir, cluster) = (dir.to_path_buf(), cluster_id.to_string());
        blocking(move || Manifest::load(&dir, &cluster)).await?
    };
    let remote_lsn = index.manifest.durable_lsn;
    if local.as_ref().is_none_or(|m| m.durable_lsn < remote_lsn) {
        let started = std::time::Instant::now();
        match recovery {
            Recovery::Eager { concurrency } => download(bucket, dir, &index, concurrency).await?,
            Recovery::Lazy => {
                let (dir, manifest) = (dir.to_path_buf(), index.manifest.clone());
                blocking(move || adopt_lazily(&dir, local.as_ref(), &manifest)).await?
            }
        }
        info!(
            from_generation = index.generation, durable = %remote_lsn,
            layers = index.layers.len(), ms = started.elapsed().as_millis() as u64,
            ?recovery, "local directory recovered from the bucket"
        );
        attached.recovered = true;
    }
    attached.known = index.by_name();
    attached.uploaded_lsn = remote_lsn;
    attached.bucket_bytes = index.layers.iter().map(|l| l.bytes).sum();
    Ok(attached)
}

/// Downloads every layer of `index` into `dir`, then stores its manifest.
async fn download(
    bucket: &Bucket,
    dir: &Path,
    index: &RemoteIndex,
    concurrency: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(PageServerError::io(format!("creating {}", dir.display())))?;
    // Files this download adds (not ones already here, which an older
    // local manifest may name): removed again if any download fails, so a
    // failed recovery (a corrupt object) leaves the directory as it was.
    let added: Vec<std::path::PathBuf> = index
        .manifest
        .layers
        .iter()
        .map(|l| dir.join(&l.file_name))
        .filter(|p| !p.exists())
        .collect();
    let results = futures::stream::iter(index.by_name())
        .map(|(name, layer)| async move {
            bucket
                .download_layer_to(&name, layer, &dir.join(&name))
                .await
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    if let Err(e) = results.into_iter().collect::<Result<Vec<()>>>() {
        for path in &added {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    let (dir, manifest) = (dir.to_path_buf(), index.manifest.clone());
    blocking(move || {
        durable::sync_dir(&dir)?;
        manifest.store(&dir)
    })
    .await
}

/// Stores `manifest` (the bucket's) as the local one without downloading
/// its layers: the timeline opens them as evicted. A local file of the
/// same name that the old local manifest (`old`) did not name may be the
/// half-written leftover of a crashed flush, so it is removed first (one
/// the old manifest names is complete, and a name fixes its content).
fn adopt_lazily(dir: &Path, old: Option<&Manifest>, manifest: &Manifest) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(PageServerError::io(format!("creating {}", dir.display())))?;
    for layer in &manifest.layers {
        let known = old.is_some_and(|m| m.layers.iter().any(|l| l.file_name == layer.file_name));
        let path = dir.join(&layer.file_name);
        if !known && path.exists() {
            std::fs::remove_file(&path)
                .map_err(PageServerError::io(format!("removing {}", path.display())))?;
        }
    }
    durable::sync_dir(dir)?;
    manifest.store(dir)
}

/// Writes `data` to `path` through a temporary file, fsynced and renamed
/// (the directory is synced by the caller).
pub(crate) fn write_durably(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".download");
    let mut file = std::fs::File::create(&tmp)
        .map_err(PageServerError::io(format!("creating {}", tmp.display())))?;
    // In pieces: see `IO_CHUNK`.
    for piece in data.chunks(crate::remote::IO_CHUNK) {
        file.write_all(piece)
            .map_err(PageServerError::io(format!("writing {}", tmp.display())))?;
    }
    durable::sync_file(&file, &tmp);
    std::fs::rename(&tmp, path).map_err(PageServerError::io(format!(
        "renaming {} to {}",
        tmp.display(),
        path.display()
    )))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PageServerError::Unavailable(format!("a blocking task failed: {e}")))?
}
