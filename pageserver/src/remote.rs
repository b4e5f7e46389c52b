//! The bucket: layer files and manifests offloaded to an object store.
//!
//! A [`Bucket`] wraps an `object_store` store: a local directory by default
//! (`LocalFileSystem` with fsync on, so every put has its data and its
//! directory entry durable before it returns), or an S3-compatible bucket
//! given as `s3://NAME` (endpoint, region and credentials from
//! [`S3Settings`], and what those leave unset from the environment,
//! `AmazonS3Builder::from_env`). Keys, under the cluster id:
//!
//! ```text
//! CLUSTER/generations/GGGGGGGGGG      one empty object per page server start
//! CLUSTER/index/GGGGGGGGGG            the uploaded manifest of generation G
//! CLUSTER/layers/NAME-GGGGGGGGGG      layer file NAME uploaded by generation G
//! ```
//!
//! **Generations** fence zombies. A page server takes generation = 1 + the
//! highest marker in the bucket and creates its marker (create-if-absent:
//! two starting at once cannot take the same one) before it writes anything
//! else. It only ever writes keys carrying its own generation, so it never
//! overwrites another's object; before it publishes an index or deletes an
//! object it checks that no newer marker exists, and stops with
//! [`PageServerError::Fenced`] if one does. The index of the highest
//! generation is the bucket's truth ([`Bucket::newest_index`]).
//!
//! **Order**: a layer is uploaded before any index names it; an object is
//! deleted only after an index that no longer names it is published (see
//! [`upload`]). An index names each layer's object (its generation) and the
//! crc32 of its whole content, so a download checks every byte before a
//! file is written locally ([`recover`]).
//!
//! **A local bucket links layer files instead of copying them** when it
//! can ([`Bucket::put_layer_file`]): a layer file is complete and fsynced
//! before any manifest names it, and never written again (a download puts
//! a new file, or a link to the object, in place by rename), so a hard link puts the
//! same bytes in the bucket as a copy would, without writing them a
//! second time to the same disk or fsyncing them again. The link is made
//! under a staging name, crc'd from the bucket's side, renamed into place
//! and its directory fsynced, so the object appears whole or not at all,
//! as `LocalFileSystem`'s own put does. A bucket on another file system
//! (the link is refused) is written by copy through `object_store`.
//! Downloads from it link the other way ([`Bucket::download_layer_to`]),
//! checked against the index before the link gets the layer's name.
//!
//! Index object format, little-endian, crc32 at the end:
//!
//! ```text
//! magic       8   b"STRATIDX"
//! version     u32 1
//! generation  u32 the writer's
//! manifest    u32 length + the manifest's own file image (with its crc)
//! layers      u32 count (= the manifest's layers), then count x
//!                 (generation u32, object crc32 u32)
//! crc32       u32 of every byte before it
//! ```

pub mod recover;
pub mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use tracing::{info, warn};

use crate::error::{PageServerError, Result};
use crate::layer::delta_file::ByteReader;
use crate::manifest::Manifest;

pub const INDEX_MAGIC: [u8; 8] = *b"STRATIDX";
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// Starts that may race for one generation before giving up.
const GENERATION_ATTEMPTS: usize = 8;

/// Where the bucket is, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketConfig {
    /// A directory on a local file system.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3 {
        bucket: String,
        settings: S3Settings,
    },
}

/// How to reach an S3-compatible bucket. A setting left `None` comes from
/// the environment, as `AmazonS3Builder::from_env` reads it
/// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, and the rest of `AWS_*`);
/// a setting given here wins over the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// The service's URL, for a store other than AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Plain `http://` endpoints are refused unless this is true.
    pub allow_http: Option<bool>,
}

impl S3Settings {
    /// Whether any setting is given.
    pub fn is_empty(&self) -> bool {
        *self == S3Settings::default()
    }
}

impl std::fmt::Debug for S3Settings {
    /// Every setting but the secret key, which shows as given or not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<given>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl BucketConfig {
    /// `s3://NAME`, `file:///path` or a plain path.
    pub fn parse(s: &str) -> Result<BucketConfig> {
        if let Some(name) = s.strip_prefix("s3://") {
            let name = name.trim_end_matches('/');
            if name.is_empty() || name.contains('/') {
                return Err(PageServerError::BadRequest(format!(
                    "bucket {s:?}: expected s3://NAME"
                )));
            }
            return Ok(BucketConfig::S3 {
                bucket: name.to_string(),
                settings: S3Settings::default(),
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() || s.contains("://") && !s.starts_with("file://") {
            return Err(PageServerError::BadRequest(format!(
                "bucket {s:?}: expected a directory, file:///DIR or s3://NAME"
            )));
        }
        Ok(BucketConfig::Local(PathBuf::from(path)))
    }
}

/// What an index says of one layer's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteLayer {
    /// The generation in the object's key.
    pub generation: u32,
    /// crc32 of the object's whole content.
    pub crc: u32,
    pub bytes: u64,
}

/// An uploaded manifest and where each of its layers lives in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIndex {
    pub generation: u32,
    pub manifest: Manifest,
    /// One per layer of `manifest`, in its order.
    pub layers: Vec<RemoteLayer>,
}

impl RemoteIndex {
    /// Layers by file name.
    pub fn by_name(&self) -> HashMap<String, RemoteLayer> {
        self.manifest
            .layers
            .iter()
            .map(|l| l.file_name.clone())
            .zip(self.layers.iter().copied())
            .collect()
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let manifest = self.manifest.encode()?;
        let mut out = Vec::with_capacity(manifest.len() + 32 + 8 * self.layers.len());
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        let too_large = |_| PageServerError::BadRequest("index too large".into());
        let manifest_len = u32::try_from(manifest.len()).map_err(too_large)?;
        let count = u32::try_from(self.layers.len()).map_err(too_large)?;
        out.extend_from_slice(&manifest_len.to_le_bytes());
        out.extend_from_slice(&manifest);
        out.extend_from_slice(&count.to_le_bytes());
        for l in &self.layers {
            out.extend_from_slice(&l.generation.to_le_bytes());
            out.extend_from_slice(&l.crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decodes an index object; the byte sizes of its layers come from the
    /// manifest.
    fn decode(bytes: &[u8], cluster_id: &str) -> std::result::Result<RemoteIndex, String> {
        if bytes.len() < 8 + 4 + 4 + 4 + 4 + 4 {
            return Err(format!("{} bytes is too short for an index", bytes.len()));
        }
        if bytes[..8] != INDEX_MAGIC {
            return Err("bad magic: not a Strata index".into());
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != stored {
            return Err("crc mismatch".into());
        }
        let mut r = ByteReader::new(&body[8..]);
        let version = r.u32()?;
        if version != INDEX_FORMAT_VERSION {
            return Err(format!("unsupported index format version {version}"));
        }
        let generation = r.u32()?;
        let len = r.u32()? as usize;
        let manifest = crate::manifest::decode(r.bytes(len)?)?;
        if manifest.cluster_id != cluster_id {
            return Err(format!(
                "belongs to cluster {:?}, not {cluster_id:?}",
                manifest.cluster_id
            ));
        }
        manifest.validate()?;
        let count = r.u32()? as usize;
        if count != manifest.layers.len() {
            return Err(format!(
                "{count} layer entries for {} layers",
                manifest.layers.len()
            ));
        }
        let mut layers = Vec::new();
        for l in &manifest.layers {
            layers.push(RemoteLayer {
                generation: r.u32()?,
                crc: r.u32()?,
                bytes: l.file_bytes,
            });
        }
        if !r.is_empty() {
            return Err(format!("{} unexpected bytes at the end", r.remaining()));
        }
        Ok(RemoteIndex {
            generation,
            manifest,
            layers,
        })
    }
}

/// The object store of one cluster.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    cluster_id: String,
    /// For messages.
    describe: String,
    /// Layer files larger than this are uploaded in parts.
    multipart_threshold: u64,
    /// The size of one part (S3 wants at least 5 MiB but the last).
    part_bytes: usize,
    /// A local bucket's store and root directory: layer files are put by
    /// hard link ([`link_layer_file`]).
    local: Option<(Arc<object_store::local::LocalFileSystem>, PathBuf)>,
    /// Set once the file system refused a link: copies from then on.
    links_refused: AtomicBool,
}

/// Layer files above this are uploaded in parts ([`Bucket::put_layer_file`]).
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// One part of a multipart upload.
pub const PART_BYTES: usize = 8 << 20;
/// The most bytes one read or write call moves in the layer I/O done
/// beside serving: an upload's reads and (local bucket) writes, a
/// download's reads (local bucket) and its write to local disk. A kernel
/// built without full preemption (this project's test VM: `PREEMPT_NONE`,
/// HZ 250) does not preempt a thread inside a write, and one 16 MiB write
/// held a core for ~5 ms, so a GetPage woken on that core waited that long
/// (a `SCHED_FIFO` thread too). A call returns to user space, where a
/// woken thread gets the core, after at most this much (256 KiB still
/// held it ~0.4 ms at a time; the layer writers' buffers are 64 KiB too).
pub const IO_CHUNK: usize = 64 << 10;
/// Parts of one upload in flight at once (besides the one being filled).
const PARTS_IN_FLIGHT: usize = 2;

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.describe)
    }
}

/// An object store error, with what was being done.
fn store_error(context: String) -> impl FnOnce(object_store::Error) -> PageServerError {
    move |e| PageServerError::ObjectStore(format!("{context}: {e}"))
}

/// Reads the next [`IO_CHUNK`] (less at the end) of `file`; `None` at its
/// end.
async fn read_chunk(file: &mut tokio::fs::File) -> std::io::Result<Option<Bytes>> {
    use tokio::io::AsyncReadExt;
    let mut buf = bytes::BytesMut::zeroed(IO_CHUNK);
    let mut filled = 0;
    while filled < IO_CHUNK {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok((filled > 0).then(|| buf.freeze()))
}

/// Runs a link's file system calls on the blocking pool; an error says
/// what was `doing`.
async fn linking<T: Send + 'static>(
    doing: String,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(done) => done.map_err(PageServerError::io(doing)),
        Err(e) => Err(PageServerError::io(doing)(std::io::Error::other(e))),
    }
}

/// What [`link_layer_file`] did.
#[derive(Debug)]
enum Linked {
    /// The object is in place: its size and crc32.
    Object { bytes: u64, crc: u32 },
    /// The layer file is gone (a newer manifest dropped it).
    SourceGone,
    /// The file system will not link it here (another file system, or
    /// no hard links): copy instead.
    Refused(std::io::Error),
}

/// Puts layer file `from` into a local bucket as the object at file
/// `object` by hard link: linked under a staging name (`OBJECT#0`, which
/// `LocalFileSystem` leaves out of listings, as its own staged puts), read
/// back for its size and crc, renamed into place, and the directory
/// fsynced. Directories made on the way are fsynced up to `root`. The
/// file's bytes are already durable (a layer file is fsynced before a
/// manifest names it, and only named files are uploaded).
fn link_layer_file(
    from: &std::path::Path,
    object: &std::path::Path,
    root: &std::path::Path,
) -> std::io::Result<Linked> {
    use std::io::ErrorKind;
    let dir = object
        .parent()
        .ok_or_else(|| std::io::Error::other("an object path without a directory"))?;
    let staged = clear_staged(object, "#0")?;
    loop {
        match std::fs::hard_link(from, &staged) {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::NotFound && !from.exists() => {
                return Ok(Linked::SourceGone);
            }
            Err(e) if e.kind() == ErrorKind::NotFound && !dir.exists() => {
                std::fs::create_dir_all(dir)?;
                let mut made = Some(dir);
                while let Some(d) = made.and_then(std::path::Path::parent) {
                    std::fs::File::open(d)?.sync_all()?;
                    made = (d != root && d.starts_with(root)).then_some(d);
                }
            }
            Err(e) if refuses_links(&e) => return Ok(Linked::Refused(e)),
            Err(e) => return Err(e),
        }
    }
    let (bytes, crc) = size_and_crc(&staged)?;
    std::fs::rename(&staged, object)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Linked::Object { bytes, crc })
}

/// An object whose size and crc are not what the index says.
fn mismatch(key: &ObjectPath, bytes: u64, crc: u32, layer: RemoteLayer) -> PageServerError {
    PageServerError::corrupt(
        key.to_string(),
        format!(
            "{bytes} bytes with crc {crc:#010x}; the index says {} bytes, crc {:#010x}",
            layer.bytes, layer.crc
        ),
    )
}

/// `path` with `suffix`, the staging name of a link to it, with whatever
/// an interrupted attempt left there removed.
fn clear_staged(path: &std::path::Path, suffix: &str) -> std::io::Result<PathBuf> {
    let mut staged = path.as_os_str().to_owned();
    staged.push(suffix);
    let staged = PathBuf::from(staged);
    match std::fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(staged),
    }
}

/// The size and crc32 of the file at `path`, read in [`IO_CHUNK`] calls.
fn size_and_crc(path: &std::path::Path) -> std::io::Result<(u64, u32)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok((bytes, crc.finalize())),
            n => {
                crc.update(&buf[..n]);
                bytes += n as u64;
            }
        }
    }
}

/// What [`link_download`] did.
#[derive(Debug)]
enum Fetched {
    /// The object is at the local path, checked.
    Linked,
    /// The object's size and crc are not the index's: nothing was left.
    Mismatch { bytes: u64, crc: u32 },
    /// The object is missing, or the file system will not link it here:
    /// download it through the store instead (which reports a missing one).
    Unlinked,
}

/// Puts a local bucket's object at file `object` at `path` by hard link
/// (the reverse of [`link_layer_file`]): linked as `PATH.download`,
/// checked against `layer`'s size and crc (a mismatch removes it), and
/// renamed to `path`. The bytes are durable already (the bucket fsynced
/// them); the caller syncs the directory.
fn link_download(
    object: &std::path::Path,
    path: &std::path::Path,
    layer: RemoteLayer,
) -> std::io::Result<Fetched> {
    use std::io::ErrorKind;
    let staged = clear_staged(path, ".download")?;
    match std::fs::hard_link(object, &staged) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound && !object.exists() => {
            return Ok(Fetched::Unlinked);
        }
        Err(e) if refuses_links(&e) => return Ok(Fetched::Unlinked),
        Err(e) => return Err(e),
    }
    let (bytes, crc) = size_and_crc(&staged)?;
    if (bytes, crc) != (layer.bytes, layer.crc) {
        std::fs::remove_file(&staged)?;
        return Ok(Fetched::Mismatch { bytes, crc });
    }
    std::fs::rename(&staged, path)?;
    Ok(Fetched::Linked)
}

/// Whether a failed link means this file system will not link here
/// (another file system, or no hard links), as opposed to a failure.
fn refuses_links(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::CrossesDevices
        || e.raw_os_error() == Some(libc::EPERM)
        || e.raw_os_error() == Some(libc::EMLINK)
}

/// Bytes `range` of `file` (fewer if the file ends first), read in
/// [`IO_CHUNK`] calls.
fn read_file_range(mut file: std::fs::File, range: std::ops::Range<u64>) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let len = usize::try_from(range.end.saturating_sub(range.start))
        .map_err(|_| std::io::Error::other("the object does not fit in memory"))?;
    file.seek(SeekFrom::Start(range.start))?;
    let mut data = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let end = len.min(filled + IO_CHUNK);
        match file.read(&mut data[filled..end])? {
            // Shorter than it said: what is there (the caller's crc
            // check tells a cut object from a whole one).
            0 => break,
            n => filled += n,
        }
    }
    data.truncate(filled);
    Ok(Bytes::from(data))
}

/// The generation in a key's last part (`…-GGGGGGGGGG` or `GGGGGGGGGG`).
fn key_generation(name: &str) -> Option<u32> {
    let digits = name.rsplit('-').next()?;
    (digits.len() == 10).then(|| digits.parse().ok()).flatten()
}

impl Bucket {
    /// Opens (a local one: creates) the bucket `config` names.
    pub fn open(config: &BucketConfig, cluster_id: &str) -> Result<Bucket> {
        let mut local = None;
        let (store, describe): (Arc<dyn ObjectStore>, String) = match config {
            BucketConfig::Local(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(PageServerError::io(format!("creating {}", dir.display())))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(store_error(format!("opening {}", dir.display())))?
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                let fs = Arc::new(fs);
                // Absolute, as the store's own paths are (a relative root
                // would stop the fsyncs of new directories short).
                let root = std::fs::canonicalize(dir)
                    .map_err(PageServerError::io(format!("resolving {}", dir.display())))?;
                local = Some((fs.clone(), root));
                (fs, dir.display().to_string())
            }
            BucketConfig::S3 { bucket, settings } => {
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &settings.region {
                    builder = builder.with_region(region);
                }
                if let Some(id) = &settings.access_key_id {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = &settings.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                if let Some(allow) = settings.allow_http {
                    builder = builder.with_allow_http(allow);
                }
                let s3 = builder
                    .build()
                    .map_err(store_error(format!("opening s3://{bucket}")))?;
                (Arc::new(s3), format!("s3://{bucket}"))
            }
        };
        Ok(Bucket {
            store,
            cluster_id: cluster_id.to_string(),
            describe,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_bytes: PART_BYTES,
            local,
            links_refused: AtomicBool::new(false),
        })
    }

    /// Uploads files above `threshold` bytes in parts of `part_bytes`
    /// (tests use small ones).
    pub fn with_multipart(mut self, threshold: u64, part_bytes: usize) -> Bucket {
        self.multipart_threshold = threshold;
        self.part_bytes = part_bytes.max(1);
        self
    }

    /// Copies layer files into a local bucket instead of linking them
    /// (tests of the copy path).
    #[cfg(test)]
    pub(crate) fn copying(mut self) -> Bucket {
        self.local = None;
        self
    }

    /// Uploads the layer file at `path` as `file_name` under `generation`,
    /// returning what the index records of it (size, crc of the whole
    /// object); `None` if the file is gone (a newer manifest dropped it).
    /// A file above the multipart threshold goes up in parts, read and
    /// crc'd as it is sent, so at most a few parts are in memory; a
    /// smaller one in one put. Either way the object appears whole or not
    /// at all (a local bucket stages it and renames, fsyncing both, as
    /// for a put), and a download checks the crc over the whole object.
    /// A local bucket links the file instead where it can (module docs).
    pub async fn put_layer_file(
        &self,
        file_name: &str,
        generation: u32,
        path: &std::path::Path,
    ) -> Result<Option<RemoteLayer>> {
        if let Some((fs, root)) = &self.local
            && !self.links_refused.load(Ordering::Relaxed)
        {
            let key = self.layer_key(file_name, generation);
            let object = fs
                .path_to_filesystem(&key)
                .map_err(store_error(format!("placing {key}")))?;
            let (from, root) = (path.to_path_buf(), root.clone());
            let linked = linking(format!("linking {} as {key}", path.display()), move || {
                link_layer_file(&from, &object, &root)
            })
            .await?;
            match linked {
                Linked::Object { bytes, crc } => {
                    return Ok(Some(RemoteLayer {
                        generation,
                        crc,
                        bytes,
                    }));
                }
                Linked::SourceGone => return Ok(None),
                Linked::Refused(e) => {
                    warn!(bucket = %self.describe, error = %e,
                        "the bucket's file system refuses hard links to layer files; copying them");
                    self.links_refused.store(true, Ordering::Relaxed);
                }
            }
        }
        let io_err = |e| PageServerError::io(format!("reading {}", path.display()))(e);
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        let bytes = file.metadata().await.map_err(io_err)?.len();
        if bytes <= self.multipart_threshold {
            let mut chunks = Vec::new();
            let mut crc = crc32fast::Hasher::new();
            while let Some(chunk) = read_chunk(&mut file).await.map_err(io_err)? {
                crc.update(&chunk);
                chunks.push(chunk);
            }
            let data: PutPayload = chunks.into_iter().collect();
            let layer = RemoteLayer {
                generation,
                crc: crc.finalize(),
                bytes: data.content_length() as u64,
            };
            self.put_layer_payload(file_name, generation, data).await?;
            return Ok(Some(layer));
        }
        let key = self.layer_key(file_name, generation);
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(store_error(format!("starting a multipart upload of {key}")))?;
        let mut parts = object_store::WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
        let mut crc = crc32fast::Hasher::new();
        let mut sent = 0u64;
        let streamed: Result<()> = async {
            while let Some(chunk) = read_chunk(&mut file).await.map_err(io_err)? {
                crc.update(&chunk);
                sent += chunk.len() as u64;
                parts
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(store_error(format!("uploading {key}")))?;
                // Owned chunks: a local bucket writes each with a write
                // call of its own.
                parts.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            if let Err(abort) = parts.abort().await {
                tracing::warn!(%key, error = %abort, "cannot abort a multipart upload");
            }
            return Err(e);
        }
        parts
            .finish()
            .await
            .map_err(store_error(format!("completing the upload of {key}")))?;
        Ok(Some(RemoteLayer {
            generation,
            crc: crc.finalize(),
            bytes: sent,
        }))
    }

    fn key(&self, dir: &str, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{dir}/{name}", self.cluster_id))
    }

    pub fn layer_key(&self, file_name: &str, generation: u32) -> ObjectPath {
        self.key("layers", &format!("{file_name}-{generation:010}"))
    }

    fn index_key(&self, generation: u32) -> ObjectPath {
        self.key("index", &format!("{generation:010}"))
    }

    /// Every object under this cluster's `dir`.
    async fn list(&self, dir: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let prefix = ObjectPath::from(format!("{}/{dir}", self.cluster_id));
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store_error(format!(
                "listing {prefix} in {}",
                self.describe
            )))
    }

    /// Generations found under `dir`, from the keys' last parts.
    async fn generations(&self, dir: &str) -> Result<Vec<u32>> {
        let metas = self.list(dir).await?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(key_generation))
            .collect())
    }

    /// The highest generation any page server has taken (0: none).
    pub async fn newest_generation(&self) -> Result<u32> {
        Ok(self
            .generations("generations")
            .await?
            .into_iter()
            .max()
            .unwrap_or(0))
    }

    /// Takes the next generation: 1 + the highest marker, recorded durably
    /// in the bucket (create-if-absent) before anything else is written.
    pub async fn take_generation(&self) -> Result<u32> {
        for _ in 0..GENERATION_ATTEMPTS {
            let generation = self.newest_generation().await? + 1;
            let key = self.key("generations", &format!("{generation:010}"));
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self.store.put_opts(&key, PutPayload::new(), opts).await {
                Ok(_) => {
                    info!(generation, bucket = %self.describe, "took a generation");
                    return Ok(generation);
                }
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(store_error(format!("creating {key}"))(e)),
            }
        }
        Err(PageServerError::ObjectStore(format!(
            "{}: another page server took every generation this one tried",
            self.describe
        )))
    }

    /// Fails with [`PageServerError::Fenced`] if a page server with a
    /// newer generation than `ours` has started on this bucket.
    pub async fn check_generation(&self, ours: u32) -> Result<()> {
        let newest = self.newest_generation().await?;
        match newest > ours {
            true => Err(PageServerError::Fenced {
                ours,
                newer: newest,
            }),
            false => Ok(()),
        }
    }

    /// The index of the highest generation that uploaded one.
    pub async fn newest_index(&self) -> Result<Option<RemoteIndex>> {
        let Some(generation) = self.generations("index").await?.into_iter().max() else {
            return Ok(None);
        };
        let key = self.index_key(generation);
        let bytes = self.get(&key).await?;
        let index = RemoteIndex::decode(&bytes, &self.cluster_id)
            .map_err(|detail| PageServerError::corrupt(key.to_string(), detail))?;
        if index.generation != generation {
            return Err(PageServerError::corrupt(
                key.to_string(),
                format!("names generation {}", index.generation),
            ));
        }
        Ok(Some(index))
    }

    /// Publishes `index` as its generation's (replacing that generation's
    /// last one), unless a newer generation has started.
    pub async fn put_index(&self, index: &RemoteIndex) -> Result<()> {
        self.check_generation(index.generation).await?;
        let key = self.index_key(index.generation);
        let bytes = Bytes::from(index.encode()?);
        self.store
            .put(&key, bytes.into())
            .await
            .map_err(store_error(format!("uploading {key}")))?;
        Ok(())
    }

    /// Uploads a layer file's content under `generation`.
    pub async fn put_layer(&self, file_name: &str, generation: u32, data: Bytes) -> Result<()> {
        let chunks = (0..data.len())
            .step_by(IO_CHUNK)
            .map(|at| data.slice(at..data.len().min(at + IO_CHUNK)));
        self.put_layer_payload(file_name, generation, chunks.collect())
            .await
    }

    async fn put_layer_payload(
        &self,
        file_name: &str,
        generation: u32,
        data: PutPayload,
    ) -> Result<()> {
        let key = self.layer_key(file_name, generation);
        self.store
            .put(&key, data)
            .await
            .map_err(store_error(format!("uploading {key}")))?;
        Ok(())
    }

    /// Downloads a layer object and checks its crc against the index's.
    pub async fn get_layer(&self, file_name: &str, layer: RemoteLayer) -> Result<Bytes> {
        let key = self.layer_key(file_name, layer.generation);
        let data = self.get(&key).await?;
        let crc = crc32fast::hash(&data);
        if crc != layer.crc || data.len() as u64 != layer.bytes {
            return Err(mismatch(&key, data.len() as u64, crc, layer));
        }
        Ok(data)
    }

    /// Puts layer `file_name`'s object (`layer`, from an index) at `path`,
    /// checked against the index's size and crc before it is there (a
    /// mismatch is [`PageServerError::Corrupt`] and leaves nothing): the
    /// bytes through a `.download` file, fsynced and renamed; from a local
    /// bucket on the same file system, a hard link to the object instead
    /// (the object's bytes are durable already). The caller syncs the
    /// directory.
    pub async fn download_layer_to(
        &self,
        file_name: &str,
        layer: RemoteLayer,
        path: &std::path::Path,
    ) -> Result<()> {
        let key = self.layer_key(file_name, layer.generation);
        if let Some((fs, _)) = &self.local
            && !self.links_refused.load(Ordering::Relaxed)
        {
            let object = fs
                .path_to_filesystem(&key)
                .map_err(store_error(format!("placing {key}")))?;
            let to = path.to_path_buf();
            let fetched = linking(format!("linking {key} as {}", path.display()), move || {
                link_download(&object, &to, layer)
            })
            .await?;
            match fetched {
                Fetched::Linked => return Ok(()),
                Fetched::Mismatch { bytes, crc } => return Err(mismatch(&key, bytes, crc, layer)),
                Fetched::Unlinked => {}
            }
        }
        let data = self.get_layer(file_name, layer).await?;
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || recover::write_durably(&path, &data))
            .await
            .map_err(|e| PageServerError::Unavailable(format!("a download task failed: {e}")))?
    }

    /// Deletes a layer object (one already gone is fine). The caller has
    /// checked that no newer generation has started.
    pub async fn delete_layer(&self, file_name: &str, generation: u32) -> Result<()> {
        let key = self.layer_key(file_name, generation);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(format!("deleting {key}"))(e)),
        }
    }

    /// Every layer object in the bucket: (file name, generation, age).
    /// An object whose key does not parse is left out (never deleted).
    pub async fn list_layers(&self) -> Result<Vec<(String, u32, std::time::Duration)>> {
        let metas = self.list("layers").await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(metas
            .iter()
            .filter_map(|m| {
                let key = m.location.filename()?;
                let (name, _) = key.rsplit_once('-')?;
                let generation = key_generation(key)?;
                let age_ms = now_ms.saturating_sub(m.last_modified.timestamp_millis());
                let age = std::time::Duration::from_millis(age_ms.max(0) as u64);
                Some((name.to_string(), generation, age))
            })
            .collect())
    }

    /// Every layer object in the bucket as (file name, generation).
    pub async fn layer_objects(&self) -> Result<std::collections::BTreeSet<(String, u32)>> {
        Ok(self
            .list_layers()
            .await?
            .into_iter()
            .map(|(name, generation, _)| (name, generation))
            .collect())
    }

    /// Deletes what interrupted puts left in a local bucket's layer
    /// directory: staged names (`KEY#DIGITS`: a link staged by
    /// [`link_layer_file`], or `LocalFileSystem`'s own staged put) of
    /// generations older than `ours`, at least `grace` old; the number
    /// deleted. Listings leave these names out, so nothing else would
    /// ever delete them, and a staged link keeps its layer's bytes on disk
    /// after the page server has deleted its own name. An S3 bucket has
    /// none (an interrupted multipart upload is aborted, or expires by the
    /// bucket's lifecycle rules). Our own generation's are left alone (a
    /// put may be in flight); the generation check comes first, as for any
    /// deletion.
    pub async fn delete_stale_staged(&self, ours: u32, grace: std::time::Duration) -> Result<u64> {
        let Some((fs, _)) = &self.local else {
            return Ok(0);
        };
        let dir = fs
            .path_to_filesystem(&self.key("layers", "x"))
            .map_err(store_error("placing the layer directory".into()))?;
        let Some(dir) = dir.parent().map(std::path::Path::to_path_buf) else {
            return Ok(0);
        };
        self.check_generation(ours).await?;
        let sweep = move || -> std::io::Result<u64> {
            let entries = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                other => other?,
            };
            let mut deleted = 0;
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some((key, suffix)) = name.to_str().and_then(|n| n.split_once('#')) else {
                    continue;
                };
                let staged = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit());
                let older = key_generation(key).is_some_and(|g| g < ours);
                let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
                if staged && older && age >= grace {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => deleted += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(deleted)
        };
        let deleted = tokio::task::spawn_blocking(sweep)
            .await
            .map_err(|e| PageServerError::io("sweeping staged objects")(std::io::Error::other(e)))?
            .map_err(PageServerError::io(format!(
                "sweeping staged objects of {}",
                self.describe
            )))?;
        if deleted > 0 {
            info!(deleted, "deleted staged objects of interrupted puts");
        }
        Ok(deleted)
    }

    /// Deletes the generation markers and index objects of generations
    /// older than `ours`; the number deleted. Only once `ours` has its
    /// own index in the bucket (otherwise an older index is still the one
    /// a starting page server reads, and none is deleted), and only after
    /// checking that no newer generation has started ([`Self::check_generation`]).
    ///
    /// Safe for everyone who may still read them: a generation is 1 + the
    /// highest marker and fencing compares against the highest, both of
    /// which `ours` (never deleted) keeps; a page server recovers from the
    /// newest index, which is ours or a newer one; and an older page
    /// server is fenced by our marker before it publishes. Layer objects
    /// are not touched here (orphans are swept by the uploader).
    pub async fn delete_older_generations(&self, ours: u32) -> Result<u64> {
        let indexes: Vec<u32> = self.generations("index").await?;
        let markers: Vec<u32> = self.generations("generations").await?;
        if !indexes.contains(&ours) {
            return Ok(0);
        }
        let old: Vec<ObjectPath> = indexes
            .into_iter()
            .filter(|g| *g < ours)
            .map(|g| self.index_key(g))
            .chain(
                markers
                    .into_iter()
                    .filter(|g| *g < ours)
                    .map(|g| self.key("generations", &format!("{g:010}"))),
            )
            .collect();
        self.check_generation(ours).await?;
        let mut deleted = 0;
        for key in &old {
            match self.store.delete(key).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(format!("deleting {key}"))(e)),
            }
        }
        info!(
            deleted,
            ours, "deleted older generations' markers and indexes"
        );
        Ok(deleted)
    }

    async fn get(&self, key: &ObjectPath) -> Result<Bytes> {
        let got = self
            .store
            .get(key)
            .await
            .map_err(store_error(format!("downloading {key}")))?;
        let range = got.range;
        match got.payload {
            // A local bucket's object is a file: read in IO_CHUNK calls
            // (`GetResult::bytes` would read it in one).
            GetResultPayload::File(file, path) => {
                let reading = |e| PageServerError::io(format!("reading {}", path.display()))(e);
                tokio::task::spawn_blocking(move || read_file_range(file, range))
                    .await
                    .map_err(|e| reading(std::io::Error::other(e)))?
                    .map_err(reading)
            }
            GetResultPayload::Stream(stream) => {
                let chunks: Vec<Bytes> = stream
                    .try_collect()
                    .await
                    .map_err(store_error(format!("downloading {key}")))?;
                let mut all = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in chunks {
                    all.extend_from_slice(&chunk);
                }
                Ok(all.freeze())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LsnRange;
    use crate::layer::desc::{KeyRange, LayerDesc, LayerKind};
    use strata_wal::Lsn;

    fn index() -> RemoteIndex {
        let mut manifest = Manifest::new("c");
        manifest.durable_lsn = Lsn(300);
        for (i, (s, e)) in [(0u64, 100u64), (100, 300)].into_iter().enumerate() {
            manifest.layers.push(LayerDesc {
                file_name: format!("l{i}.delta"),
                kind: LayerKind::L0,
                range: LsnRange {
                    start: Lsn(s),
                    end: Lsn(e),
                },
                keys: KeyRange::ALL,
                file_bytes: 1000 + i as u64,
            });
        }
        RemoteIndex {
            generation: 7,
            manifest,
            layers: vec![
                RemoteLayer {
                    generation: 3,
                    crc: 0xdead_beef,
                    bytes: 1000,
                },
                RemoteLayer {
                    generation: 7,
                    crc: 1,
                    bytes: 1001,
                },
            ],
        }
    }

    #[test]
    fn an_index_round_trips_and_any_flipped_bit_is_refused() {
        let idx = index();
        let bytes = idx.encode().unwrap();
        assert_eq!(RemoteIndex::decode(&bytes, "c"), Ok(idx));
        assert!(RemoteIndex::decode(&bytes, "other").is_err());
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 1 << (at % 8);
            assert!(RemoteIndex::decode(&b, "c").is_err(), "byte {at}");
        }
        assert!(RemoteIndex::decode(&bytes[..bytes.len() - 1], "c").is_err());
    }

    #[test]
    fn bucket_urls_parse() {
        assert_eq!(
            BucketConfig::parse("s3://b").unwrap(),
            BucketConfig::S3 {
                bucket: "b".into(),
                settings: S3Settings::default()
            }
        );
        assert_eq!(
            BucketConfig::parse("file:///x/y").unwrap(),
            BucketConfig::Local("/x/y".into())
        );
        assert_eq!(
            BucketConfig::parse("rel/dir").unwrap(),
            BucketConfig::Local("rel/dir".into())
        );
        for bad in ["s3://", "s3://a/b", "", "gs://x"] {
            assert!(BucketConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generations_are_read_from_keys() {
        assert_eq!(key_generation("0000000012"), Some(12));
        assert_eq!(key_generation("a-b.delta-0000000003"), Some(3));
        assert_eq!(key_generation("a.delta"), None);
    }

    #[tokio::test]
    async fn generations_increase_and_an_older_one_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().into()), "c").unwrap();
        generations_fence(&bucket).await;
    }

    /// On an empty bucket of cluster "c".
    async fn generations_fence(bucket: &Bucket) {
        assert_eq!(bucket.newest_index().await.unwrap(), None);
        let g1 = bucket.take_generation().await.unwrap();
        let g2 = bucket.take_generation().await.unwrap();
        assert_eq!((g1, g2), (1, 2));
        let mut idx = index();
        idx.generation = g1;
        let fenced = bucket.put_index(&idx).await.unwrap_err();
        assert!(
            matches!(fenced, PageServerError::Fenced { ours: 1, newer: 2 }),
            "{fenced}"
        );
        idx.generation = g2;
        bucket.put_index(&idx).await.unwrap();
        assert_eq!(bucket.newest_index().await.unwrap(), Some(idx));
    }

    #[tokio::test]
    async fn older_generations_markers_and_indexes_are_swept_only_by_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().into()), "c").unwrap();
        older_generations_swept(&bucket).await;
    }

    /// On an empty bucket of cluster "c".
    async fn older_generations_swept(bucket: &Bucket) {
        let mut idx = index();
        for g in 1..=3 {
            assert_eq!(bucket.take_generation().await.unwrap(), g);
            if g < 3 {
                idx.generation = g;
                bucket.put_index(&idx).await.unwrap();
            }
        }
        bucket
            .put_layer("l0.delta", 1, Bytes::from_static(b"x"))
            .await
            .unwrap();
        // Generation 3 has no index yet: generation 2's is the one a
        // starting page server reads, so nothing goes.
        assert_eq!(bucket.delete_older_generations(3).await.unwrap(), 0);
        assert_eq!(bucket.generations("index").await.unwrap().len(), 2);
        // An older generation is fenced and deletes nothing.
        let fenced = bucket.delete_older_generations(2).await.unwrap_err();
        assert!(
            matches!(fenced, PageServerError::Fenced { ours: 2, newer: 3 }),
            "{fenced}"
        );
        idx.generation = 3;
        bucket.put_index(&idx).await.unwrap();
        // Indexes 1, 2 and markers 1, 2.
        assert_eq!(bucket.delete_older_generations(3).await.unwrap(), 4);
        assert_eq!(bucket.generations("index").await.unwrap(), vec![3]);
        assert_eq!(bucket.generations("generations").await.unwrap(), vec![3]);
        assert_eq!(bucket.newest_index().await.unwrap(), Some(idx.clone()));
        assert_eq!(bucket.newest_generation().await.unwrap(), 3);
        // Layer objects are left alone; the zombie is still fenced; the
        // next generation is still 1 + the newest.
        assert_eq!(bucket.list_layers().await.unwrap().len(), 1);
        idx.generation = 2;
        assert!(matches!(
            bucket.put_index(&idx).await,
            Err(PageServerError::Fenced { ours: 2, newer: 3 })
        ));
        assert_eq!(bucket.take_generation().await.unwrap(), 4);
        assert_eq!(
            bucket
                .delete_older_generations(3)
                .await
                .unwrap_err()
                .to_string(),
            PageServerError::Fenced { ours: 3, newer: 4 }.to_string()
        );
    }

    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = crate::workload::Rng::new(seed);
        (0..len).map(|_| rng.below(256) as u8).collect()
    }

    /// Writes `data` to `dir/name`, uploads it, checks what the index would
    /// record of it, and checks that it downloads the same.
    async fn round_trip(
        bucket: &Bucket,
        dir: &std::path::Path,
        name: &str,
        generation: u32,
        data: &[u8],
    ) -> RemoteLayer {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        let layer = bucket
            .put_layer_file(name, generation, &path)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (layer.bytes, layer.crc, layer.generation),
            (data.len() as u64, crc32fast::hash(data), generation)
        );
        assert_eq!(bucket.get_layer(name, layer).await.unwrap(), data);
        layer
    }

    #[tokio::test]
    async fn a_large_layer_goes_up_in_parts_and_its_crc_is_checked_on_download() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().join("b")), "c")
            .unwrap()
            .copying()
            .with_multipart(10_000, 16_384);
        let data = random_bytes(11, 100_003);
        let layer = round_trip(&bucket, dir.path(), "big.delta", 4, &data).await;
        // A small one in one put; a missing file is None.
        std::fs::write(dir.path().join("small.delta"), b"abc").unwrap();
        let small = bucket
            .put_layer_file("small.delta", 4, &dir.path().join("small.delta"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            bucket.get_layer("small.delta", small).await.unwrap(),
            &b"abc"[..]
        );
        let gone = dir.path().join("gone.delta");
        assert_eq!(
            bucket.put_layer_file("gone.delta", 4, &gone).await.unwrap(),
            None
        );
        // A flipped bit in the object is caught by the whole object's crc.
        let object = dir
            .path()
            .join("b")
            .join(bucket.layer_key("big.delta", 4).as_ref());
        let mut stored = std::fs::read(&object).unwrap();
        assert_eq!(stored, data);
        stored[77_777] ^= 0x10;
        std::fs::write(&object, &stored).unwrap();
        let err = bucket.get_layer("big.delta", layer).await.unwrap_err();
        assert!(matches!(err, PageServerError::Corrupt { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_layer_of_several_io_chunks_goes_up_whole_in_one_put() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().join("b")), "c")
            .unwrap()
            .copying();
        // Two whole chunks and a part of one: read, crc'd and written
        // chunk by chunk, none lost or repeated.
        let data = random_bytes(12, 2 * IO_CHUNK + 12_345);
        assert!(data.len() as u64 <= MULTIPART_THRESHOLD);
        let layer = round_trip(&bucket, dir.path(), "mid.delta", 5, &data).await;
        // The same bytes handed over in memory.
        bucket
            .put_layer("mem.delta", 5, Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(bucket.get_layer("mem.delta", layer).await.unwrap(), data);
        // An empty file: an empty object.
        let empty = round_trip(&bucket, dir.path(), "empty.delta", 5, b"").await;
        assert_eq!(empty.bytes, 0);
        // An object cut short in the bucket is read as far as it goes and
        // refused by its crc and length.
        let object = dir
            .path()
            .join("b")
            .join(bucket.layer_key("mid.delta", 5).as_ref());
        let stored = std::fs::OpenOptions::new()
            .write(true)
            .open(&object)
            .unwrap();
        stored.set_len(IO_CHUNK as u64 + 7).unwrap();
        let err = bucket.get_layer("mid.delta", layer).await.unwrap_err();
        assert!(matches!(err, PageServerError::Corrupt { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_local_bucket_links_layer_files_and_copies_across_file_systems() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().join("b")), "c").unwrap();
        let object = |name: &str, generation| {
            dir.path()
                .join("b")
                .join(bucket.layer_key(name, generation).as_ref())
        };
        // The bucket's first object: its directories are made on the way.
        // Multipart sizes do not matter to a link.
        let data = random_bytes(13, 3 * IO_CHUNK + 5);
        let layer = round_trip(&bucket, dir.path(), "a.delta", 6, &data).await;
        let (source, stored) = (
            std::fs::metadata(dir.path().join("a.delta")).unwrap(),
            std::fs::metadata(object("a.delta", 6)).unwrap(),
        );
        assert_eq!((stored.dev(), stored.ino()), (source.dev(), source.ino()));
        assert_eq!(stored.nlink(), 2);
        // A staged link left by an interrupted put is replaced; no staged
        // name is left or listed.
        let staged = |name: &str, generation| {
            let mut p = object(name, generation).into_os_string();
            p.push("#0");
            PathBuf::from(p)
        };
        std::fs::write(staged("b.delta", 6), b"left over").unwrap();
        round_trip(&bucket, dir.path(), "b.delta", 6, b"bee").await;
        assert!(!staged("a.delta", 6).exists() && !staged("b.delta", 6).exists());
        assert_eq!(
            Vec::from_iter(bucket.layer_objects().await.unwrap()),
            [("a.delta".into(), 6), ("b.delta".into(), 6)]
        );
        // The object outlives the local file (eviction, a wiped disk).
        std::fs::remove_file(dir.path().join("a.delta")).unwrap();
        assert_eq!(bucket.get_layer("a.delta", layer).await.unwrap(), data);
        // A download is a link too, checked against the index first: a
        // size or crc the object does not have is refused, leaving nothing.
        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        bucket
            .download_layer_to("a.delta", layer, &back.join("a.delta"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(back.join("a.delta")).unwrap(), data);
        assert_eq!(
            std::fs::metadata(back.join("a.delta")).unwrap().ino(),
            std::fs::metadata(object("a.delta", 6)).unwrap().ino()
        );
        for wrong in [
            RemoteLayer {
                crc: layer.crc ^ 1,
                ..layer
            },
            RemoteLayer {
                bytes: layer.bytes + 1,
                ..layer
            },
        ] {
            let err = bucket
                .download_layer_to("a.delta", wrong, &back.join("x.delta"))
                .await
                .unwrap_err();
            assert!(matches!(err, PageServerError::Corrupt { .. }), "{err}");
            assert!(!back.join("x.delta").exists() && !back.join("x.delta.download").exists());
        }
        assert_eq!(
            bucket
                .put_layer_file("a.delta", 7, &dir.path().join("a.delta"))
                .await
                .unwrap(),
            None
        );
        // From another file system the link is refused, and the file is
        // copied (and every later one: the refusal is remembered).
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm: the copy after a refused link is not checked");
            return;
        };
        if std::fs::metadata(shm.path()).unwrap().dev() == source.dev() {
            eprintln!("/dev/shm is this file system: the copy after a refused link is not checked");
            return;
        }
        let elsewhere = random_bytes(14, 1000);
        round_trip(&bucket, shm.path(), "c.delta", 6, &elsewhere).await;
        assert_ne!(
            std::fs::metadata(object("c.delta", 6)).unwrap().dev(),
            std::fs::metadata(shm.path().join("c.delta")).unwrap().dev()
        );
        round_trip(&bucket, dir.path(), "d.delta", 6, b"dee").await;
        assert_eq!(std::fs::metadata(object("d.delta", 6)).unwrap().nlink(), 1);
    }

    #[tokio::test]
    async fn staged_names_of_older_generations_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(&BucketConfig::Local(dir.path().join("b")), "c").unwrap();
        bucket.take_generation().await.unwrap();
        let ours = bucket.take_generation().await.unwrap();
        assert_eq!(ours, 2);
        // Nothing in the bucket yet: nothing to do.
        let none = std::time::Duration::ZERO;
        assert_eq!(bucket.delete_stale_staged(ours, none).await.unwrap(), 0);
        round_trip(&bucket, dir.path(), "kept.delta", 1, b"object").await;
        let layers = dir.path().join("b").join("c").join("layers");
        let names = [
            "a.delta-0000000001#0", // a staged link, older: deleted
            "b.delta-0000000001#3", // a staged put, older: deleted
            "c.delta-0000000002#0", // ours: kept
            "d.delta-0000000003#1", // newer: kept
            "e.delta-0000000001#x", // not a staged name: kept
        ];
        for name in names {
            std::fs::write(layers.join(name), b"left over").unwrap();
        }
        // Younger than the grace period: kept.
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(bucket.delete_stale_staged(ours, hour).await.unwrap(), 0);
        assert_eq!(bucket.delete_stale_staged(ours, none).await.unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "c.delta-0000000002#0",
                "d.delta-0000000003#1",
                "e.delta-0000000001#x",
                "kept.delta-0000000001",
            ]
        );
        // A fenced page server deletes nothing.
        let err = bucket.delete_stale_staged(1, none).await.unwrap_err();
        assert!(matches!(err, PageServerError::Fenced { .. }), "{err}");
    }

    /// Creates bucket `name` on `server` and opens it for cluster "c".
    fn s3_bucket(server: &crate::testing::S3Server, name: &str) -> Bucket {
        Bucket::open(&server.create_bucket(name), "c").unwrap()
    }

    #[tokio::test]
    async fn an_s3_bucket_fences_older_generations_and_sweeps_them() {
        let server = crate::testing::S3Server::start();
        // Markers are created with create-if-absent (`If-None-Match: *`),
        // which the S3 protocol must honour for two starts not to share
        // a generation.
        generations_fence(&s3_bucket(&server, "generations")).await;
        older_generations_swept(&s3_bucket(&server, "sweep")).await;
        let bucket = s3_bucket(&server, "race");
        let key = bucket.key("generations", "0000000001");
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        bucket
            .store
            .put_opts(&key, PutPayload::new(), create.clone())
            .await
            .unwrap();
        let second = bucket
            .store
            .put_opts(&key, PutPayload::new(), create)
            .await
            .unwrap_err();
        assert!(
            matches!(second, object_store::Error::AlreadyExists { .. }),
            "{second}"
        );
        assert_eq!(bucket.take_generation().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn layers_go_through_s3_in_parts_and_a_flipped_bit_is_caught() {
        let server = crate::testing::S3Server::start();
        let dir = tempfile::tempdir().unwrap();
        // S3's smallest part is 5 MiB (but the last): 11 MiB in three.
        let bucket = s3_bucket(&server, "layers").with_multipart(6 << 20, 5 << 20);
        let data = random_bytes(13, (11 << 20) + 321);
        let big = round_trip(&bucket, dir.path(), "big.delta", 4, &data).await;
        let small = round_trip(&bucket, dir.path(), "small.delta", 4, b"abc").await;
        let gone = dir.path().join("gone.delta");
        assert_eq!(
            bucket.put_layer_file("gone.delta", 4, &gone).await.unwrap(),
            None
        );
        assert_eq!(
            Vec::from_iter(bucket.layer_objects().await.unwrap()),
            [("big.delta".into(), 4), ("small.delta".into(), 4)]
        );
        // A flipped bit in the stored object is caught by its crc.
        let mut stored = data.clone();
        stored[5_000_001] ^= 0x04;
        bucket
            .store
            .put(
                &bucket.layer_key("big.delta", 4),
                Bytes::from(stored).into(),
            )
            .await
            .unwrap();
        let err = bucket.get_layer("big.delta", big).await.unwrap_err();
        assert!(matches!(err, PageServerError::Corrupt { .. }), "{err}");
        // Deleted: gone from the listing, and a read of it fails.
        bucket.delete_layer("small.delta", 4).await.unwrap();
        let names: Vec<String> = bucket
            .list_layers()
            .await
            .unwrap()
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        assert_eq!(names, vec!["big.delta".to_string()]);
        assert!(bucket.get_layer("small.delta", small).await.is_err());
    }
}
