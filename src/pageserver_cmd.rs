//! `strata pageserver`: the page server on its own, configured by a TOML
//! file and flags (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use strata_pageserver::remote::{BucketConfig, S3Settings};
use strata_pageserver::server::ServerConfig;

/// `bucket` beside the data directory (`strata up`'s layout:
/// `DATA/pageserver` and `DATA/bucket`).
pub fn default_bucket(data_dir: &std::path::Path) -> PathBuf {
    match data_dir.parent() {
        Some(parent) => parent.join("bucket"),
        None => data_dir.join("bucket"),
    }
}

#[derive(Args)]
pub struct PageserverArgs {
    /// A TOML file with any of the fields below; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    cluster_id: Option<String>,
    /// The log service replicas, comma-separated `http://host:port`.
    #[arg(long, value_delimiter = ',')]
    log: Option<Vec<String>>,
    /// The open layer is frozen into a file at this size.
    #[arg(long)]
    layer_size_bytes: Option<u64>,
    /// ... or at this age, whichever comes first.
    #[arg(long)]
    freeze_interval_ms: Option<u64>,
    /// A page gets an image once this many records pile up on it.
    #[arg(long)]
    image_after_records: Option<u32>,
    /// Memory for rebuilt pages.
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// How long a GetPage waits for ingest to reach its LSN.
    #[arg(long)]
    wait_lsn_timeout_ms: Option<u64>,
    /// Serve Prometheus text on http://ADDR/metrics (e.g. 127.0.0.1:7290).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// History kept readable, in bytes of WAL (0: no byte window).
    #[arg(long)]
    gc_history_bytes: Option<u64>,
    /// History kept readable, in seconds (0: no time window). With both
    /// windows, the one that keeps more wins; with neither, nothing is
    /// collected.
    #[arg(long)]
    gc_history_secs: Option<u64>,
    /// How far below the durable LSN a compute's oldest snapshot may hold
    /// the GC horizon back.
    #[arg(long)]
    gc_snapshot_cap_bytes: Option<u64>,
    /// L0 layers are compacted into an L1 run once this many wait.
    #[arg(long)]
    compaction_l0_threshold: Option<usize>,
    /// L1 and image layer files are cut at about this size.
    #[arg(long)]
    compaction_target_file_bytes: Option<u64>,
    /// Where layer files are uploaded: a directory (default: `bucket` beside
    /// the data directory), `s3://NAME` (endpoint, region and credentials
    /// from the config file's `[s3]` table, or else the AWS_* environment
    /// variables), or `none`.
    #[arg(long)]
    bucket: Option<String>,
    /// Layer uploads and downloads in flight at most.
    #[arg(long)]
    upload_concurrency: Option<usize>,
    /// With a bucket: uploaded layer files are evicted from the local disk
    /// (least recently read first) while they pass this many bytes, and
    /// downloaded again when read; recovery on an empty disk then
    /// downloads lazily. 0 (the default): no limit.
    #[arg(long)]
    disk_budget_bytes: Option<u64>,
    /// Layer objects of older generations that no index of this page
    /// server names are deleted once this old (default 600).
    #[arg(long)]
    orphan_grace_secs: Option<u64>,
    /// The share of this machine's CPU time, in percent, GetPage threads
    /// may use at real-time priority when the process may take it
    /// (CAP_SYS_NICE); beyond it they run at normal priority for the rest
    /// of a 10 ms window. 0: never (default 50).
    #[arg(long)]
    getpage_realtime_percent: Option<u32>,
}

/// `strata pageserver`'s config file. Every field has a default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct PageserverFile {
    listen: SocketAddr,
    data_dir: PathBuf,
    cluster_id: String,
    log: Vec<String>,
    layer_size_bytes: u64,
    freeze_interval_ms: u64,
    image_after_records: u32,
    cache_bytes: u64,
    wait_lsn_timeout_ms: u64,
    metrics_listen: Option<SocketAddr>,
    gc_history_bytes: u64,
    gc_history_secs: u64,
    gc_snapshot_cap_bytes: u64,
    compaction_l0_threshold: usize,
    compaction_target_file_bytes: u64,
    /// Empty: `bucket` beside the data directory.
    bucket: String,
    upload_concurrency: usize,
    /// 0: no limit.
    disk_budget_bytes: u64,
    orphan_grace_secs: u64,
    getpage_realtime_percent: u32,
    /// How to reach an `s3://` bucket; what is left out comes from the
    /// `AWS_*` environment.
    s3: S3File,
}

/// `[s3]` of the config file: the settings of an `s3://` bucket
/// (credentials belong here or in the environment, not in flags).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S3File {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
}

impl S3File {
    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            allow_http: self.allow_http,
        }
    }
}

impl std::fmt::Debug for S3File {
    /// As [`S3Settings`] shows itself: without the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings().fmt(f)
    }
}

impl Default for PageserverFile {
    fn default() -> Self {
        let d = ServerConfig::new("strata", "./strata-data/pageserver", Vec::new());
        PageserverFile {
            listen: SocketAddr::from(([127, 0, 0, 1], 7200)),
            data_dir: d.data_dir,
            cluster_id: d.cluster_id,
            log: vec![
                "http://127.0.0.1:7101".into(),
                "http://127.0.0.1:7102".into(),
                "http://127.0.0.1:7103".into(),
            ],
            layer_size_bytes: d.layer_size_bytes,
            freeze_interval_ms: d.freeze_interval.as_millis() as u64,
            image_after_records: d.image_after_records,
            cache_bytes: d.cache_bytes,
            wait_lsn_timeout_ms: d.wait_lsn_timeout.as_millis() as u64,
            metrics_listen: None,
            gc_history_bytes: d.gc.history_bytes.unwrap_or(0),
            gc_history_secs: d.gc.history.map_or(0, |t| t.as_secs()),
            gc_snapshot_cap_bytes: d.gc.snapshot_cap_bytes,
            compaction_l0_threshold: d.compaction.l0_threshold,
            compaction_target_file_bytes: d.compaction.target_file_bytes,
            bucket: String::new(),
            upload_concurrency: d.upload_concurrency,
            disk_budget_bytes: d.disk_budget_bytes.unwrap_or(0),
            orphan_grace_secs: d.orphan_grace.as_secs(),
            getpage_realtime_percent: d.getpage_realtime_percent,
            s3: S3File::default(),
        }
    }
}

impl PageserverArgs {
    /// The file's values, overridden by flags, validated.
    pub fn into_config(self) -> Result<ServerConfig> {
        let mut f = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<PageserverFile>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => PageserverFile::default(),
        };
        f.listen = self.listen.unwrap_or(f.listen);
        f.data_dir = self.data_dir.unwrap_or(f.data_dir);
        f.cluster_id = self.cluster_id.unwrap_or(f.cluster_id);
        f.log = self.log.unwrap_or(f.log);
        f.layer_size_bytes = self.layer_size_bytes.unwrap_or(f.layer_size_bytes);
        f.freeze_interval_ms = self.freeze_interval_ms.unwrap_or(f.freeze_interval_ms);
        f.image_after_records = self.image_after_records.unwrap_or(f.image_after_records);
        f.cache_bytes = self.cache_bytes.unwrap_or(f.cache_bytes);
        f.wait_lsn_timeout_ms = self.wait_lsn_timeout_ms.unwrap_or(f.wait_lsn_timeout_ms);
        f.metrics_listen = self.metrics_listen.or(f.metrics_listen);
        f.gc_history_bytes = self.gc_history_bytes.unwrap_or(f.gc_history_bytes);
        f.gc_history_secs = self.gc_history_secs.unwrap_or(f.gc_history_secs);
        f.gc_snapshot_cap_bytes = self
            .gc_snapshot_cap_bytes
            .unwrap_or(f.gc_snapshot_cap_bytes);
        f.compaction_l0_threshold = self
            .compaction_l0_threshold
            .unwrap_or(f.compaction_l0_threshold);
        f.compaction_target_file_bytes = self
            .compaction_target_file_bytes
            .unwrap_or(f.compaction_target_file_bytes);
        f.bucket = self.bucket.unwrap_or(f.bucket);
        f.upload_concurrency = self.upload_concurrency.unwrap_or(f.upload_concurrency);
        f.disk_budget_bytes = self.disk_budget_bytes.unwrap_or(f.disk_budget_bytes);
        f.orphan_grace_secs = self.orphan_grace_secs.unwrap_or(f.orphan_grace_secs);
        f.getpage_realtime_percent = self
            .getpage_realtime_percent
            .unwrap_or(f.getpage_realtime_percent);
        f.validate()?;
        let bucket = f.bucket()?;
        let mut c = ServerConfig::new(f.cluster_id, f.data_dir, f.log);
        c.listen = f.listen;
        c.layer_size_bytes = f.layer_size_bytes;
        c.freeze_interval = Duration::from_millis(f.freeze_interval_ms);
        c.image_after_records = f.image_after_records;
        c.cache_bytes = f.cache_bytes;
        c.wait_lsn_timeout = Duration::from_millis(f.wait_lsn_timeout_ms);
        c.metrics_listen = f.metrics_listen;
        c.gc.history_bytes = (f.gc_history_bytes > 0).then_some(f.gc_history_bytes);
        c.gc.history = (f.gc_history_secs > 0).then(|| Duration::from_secs(f.gc_history_secs));
        c.gc.snapshot_cap_bytes = f.gc_snapshot_cap_bytes;
        c.compaction.l0_threshold = f.compaction_l0_threshold;
        c.compaction.target_file_bytes = f.compaction_target_file_bytes;
        c.bucket = bucket;
        c.upload_concurrency = f.upload_concurrency;
        c.disk_budget_bytes = (f.disk_budget_bytes > 0).then_some(f.disk_budget_bytes);
        c.orphan_grace = Duration::from_secs(f.orphan_grace_secs);
        c.getpage_realtime_percent = f.getpage_realtime_percent;
        Ok(c)
    }
}

impl PageserverFile {
    /// The bucket: as given, `none`, or `bucket` beside the data directory.
    /// `[s3]` settings go with an `s3://` bucket only.
    fn bucket(&self) -> Result<Option<BucketConfig>> {
        let bucket = match self.bucket.as_str() {
            "none" => None,
            "" => Some(BucketConfig::Local(default_bucket(&self.data_dir))),
            given => Some(BucketConfig::parse(given)?),
        };
        let settings = self.s3.settings();
        match bucket {
            Some(BucketConfig::S3 { bucket, .. }) => {
                Ok(Some(BucketConfig::S3 { bucket, settings }))
            }
            _ if !settings.is_empty() => bail!(
                "[s3] settings are given, but the bucket ({}) is not s3://NAME",
                if self.bucket.is_empty() {
                    "the default local one"
                } else {
                    self.bucket.as_str()
                }
            ),
            other => Ok(other),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.cluster_id.is_empty() {
            bail!("--cluster-id must not be empty");
        }
        if self.log.is_empty() {
            bail!("--log must name at least one log service replica");
        }
        for e in &self.log {
            if !e.starts_with("http://") {
                bail!("log replica {e:?} must be an http://host:port address");
            }
        }
        if self.layer_size_bytes < 64 << 10 {
            bail!("--layer-size-bytes must be at least 64 KiB");
        }
        if self.freeze_interval_ms == 0 || self.image_after_records == 0 {
            bail!("--freeze-interval-ms and --image-after-records must be at least 1");
        }
        if self.cache_bytes < 8192 {
            bail!("--cache-bytes must hold at least one 8 KiB page");
        }
        if self.compaction_l0_threshold == 0 {
            bail!("--compaction-l0-threshold must be at least 1");
        }
        if self.upload_concurrency == 0 {
            bail!("--upload-concurrency must be at least 1");
        }
        if self.compaction_target_file_bytes < 64 << 10 {
            bail!("--compaction-target-file-bytes must be at least 64 KiB");
        }
        if self.getpage_realtime_percent > 100 {
            bail!("--getpage-realtime-percent must be at most 100");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> PageserverArgs {
        PageserverArgs {
            config,
            listen: None,
            data_dir: None,
            cluster_id: None,
            log: None,
            layer_size_bytes: None,
            freeze_interval_ms: None,
            image_after_records: None,
            cache_bytes: None,
            wait_lsn_timeout_ms: None,
            metrics_listen: None,
            gc_history_bytes: None,
            gc_history_secs: None,
            gc_snapshot_cap_bytes: None,
            compaction_l0_threshold: None,
            compaction_target_file_bytes: None,
            bucket: None,
            upload_concurrency: None,
            disk_budget_bytes: None,
            orphan_grace_secs: None,
            getpage_realtime_percent: None,
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ps.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_override_the_file_and_an_empty_file_runs() {
        let (_d, path) =
            file("cluster_id = \"c\"\nlog = [\"http://127.0.0.1:1\"]\ncache_bytes = 65536\n");
        let mut a = args(Some(path));
        a.cache_bytes = Some(1 << 20);
        let c = a.into_config().unwrap();
        assert_eq!(c.cluster_id, "c");
        assert_eq!(c.log_endpoints, vec!["http://127.0.0.1:1".to_string()]);
        assert_eq!(c.cache_bytes, 1 << 20);
        let (_d, empty) = file("");
        assert_eq!(
            args(Some(empty)).into_config().unwrap().log_endpoints.len(),
            3
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let (_d, path) = file("cache_byte = 2\n");
        let err = args(Some(path)).into_config().unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        let mut a = args(None);
        a.log = Some(vec!["127.0.0.1:1".into()]);
        assert!(a.into_config().unwrap_err().to_string().contains("http://"));
        let mut a = args(None);
        a.layer_size_bytes = Some(10);
        assert!(a.into_config().is_err());
        let mut a = args(None);
        a.compaction_l0_threshold = Some(0);
        assert!(a.into_config().is_err());
        let mut a = args(None);
        a.bucket = Some("gs://x".into());
        assert!(a.into_config().is_err());
        let mut a = args(None);
        a.getpage_realtime_percent = Some(101);
        let err = a.into_config().unwrap_err().to_string();
        assert!(err.contains("--getpage-realtime-percent"), "{err}");
        let (_d, path) = file("getpage_realtime_percent = 0\n");
        assert_eq!(
            args(Some(path))
                .into_config()
                .unwrap()
                .getpage_realtime_percent,
            0
        );
        assert_eq!(
            args(None).into_config().unwrap().getpage_realtime_percent,
            50
        );
    }

    #[test]
    fn the_bucket_defaults_beside_the_data_dir_and_can_be_turned_off() {
        let mut a = args(None);
        a.data_dir = Some("/d/pageserver".into());
        let c = a.into_config().unwrap();
        assert_eq!(c.bucket, Some(BucketConfig::Local("/d/bucket".into())));
        let mut a = args(None);
        a.bucket = Some("none".into());
        assert_eq!(a.into_config().unwrap().bucket, None);
        let mut a = args(None);
        a.bucket = Some("s3://b".into());
        let want = BucketConfig::S3 {
            bucket: "b".into(),
            settings: S3Settings::default(),
        };
        assert_eq!(a.into_config().unwrap().bucket, Some(want));
        // No disk budget unless one is given.
        assert_eq!(args(None).into_config().unwrap().disk_budget_bytes, None);
        let mut a = args(None);
        a.disk_budget_bytes = Some(1 << 30);
        assert_eq!(a.into_config().unwrap().disk_budget_bytes, Some(1 << 30));
    }

    #[test]
    fn s3_settings_come_from_the_file_and_only_with_an_s3_bucket() {
        let (_d, path) = file(
            "bucket = \"s3://layers\"\n[s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"eu-west-1\"\naccess_key_id = \"AKID\"\n\
             secret_access_key = \"hush\"\nallow_http = true\n",
        );
        let c = args(Some(path)).into_config().unwrap();
        let Some(BucketConfig::S3 { bucket, settings }) = c.bucket else {
            panic!("not an s3 bucket: {:?}", c.bucket);
        };
        assert_eq!(bucket, "layers");
        assert_eq!(
            settings,
            S3Settings {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                access_key_id: Some("AKID".into()),
                secret_access_key: Some("hush".into()),
                allow_http: Some(true),
            }
        );
        // The secret never shows in a debug print (a logged config).
        let shown = format!("{settings:?}");
        assert!(shown.contains("AKID") && !shown.contains("hush"), "{shown}");
        // Only the settings given: the rest is the environment's.
        let (_d, path) = file("bucket = \"s3://b\"\n[s3]\nregion = \"r\"\n");
        let c = args(Some(path)).into_config().unwrap();
        let want = S3Settings {
            region: Some("r".into()),
            ..S3Settings::default()
        };
        assert_eq!(
            c.bucket,
            Some(BucketConfig::S3 {
                bucket: "b".into(),
                settings: want
            })
        );
        // [s3] with a local bucket (given or the default) is a mistake.
        for bucket in ["", "bucket = \"/tmp/b\"\n", "bucket = \"none\"\n"] {
            let (_d, path) = file(&format!("{bucket}[s3]\nregion = \"r\"\n"));
            let err = args(Some(path)).into_config().unwrap_err();
            assert!(err.to_string().contains("not s3://NAME"), "{err}");
        }
        // An unknown setting is refused.
        let (_d, path) = file("bucket = \"s3://b\"\n[s3]\nsecret = \"x\"\n");
        let err = format!("{:#}", args(Some(path)).into_config().unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn gc_and_metrics_flags_reach_the_config() {
        let (_d, path) = file("gc_history_bytes = 0\ngc_history_secs = 600\n");
        let mut a = args(Some(path));
        a.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 9999)));
        let c = a.into_config().unwrap();
        assert_eq!(c.gc.history_bytes, None);
        assert_eq!(c.gc.history, Some(Duration::from_secs(600)));
        assert_eq!(c.metrics_listen.map(|a| a.port()), Some(9999));
        let c = args(None).into_config().unwrap();
        assert_eq!(c.gc.history_bytes, Some(1 << 30));
        assert_eq!(c.metrics_listen, None);
    }
}
