//! `strata logservice`: one log service replica, configured by a TOML file
//! and flags (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use strata_logservice::server::ServerConfig;

#[derive(Args)]
pub struct LogserviceArgs {
    /// A TOML file with any of the fields below; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This replica's id, unique in the cluster (1, 2, 3, …).
    #[arg(long)]
    id: Option<u32>,
    #[arg(long)]
    cluster_id: Option<String>,
    /// The other replicas, comma-separated `http://host:port`.
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    #[arg(long)]
    segment_size_bytes: Option<u64>,
    /// A consumer further behind than this stops holding the log back (it
    /// is warned about, loudly, on every housekeeping pass).
    #[arg(long)]
    retention_cap_bytes: Option<u64>,
}

/// `strata logservice`'s config file. Every field has a default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct LogserviceFile {
    listen: SocketAddr,
    data_dir: PathBuf,
    id: u32,
    cluster_id: String,
    peers: Vec<String>,
    segment_size_bytes: u64,
    retention_cap_bytes: u64,
}

impl Default for LogserviceFile {
    fn default() -> Self {
        LogserviceFile {
            listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            data_dir: PathBuf::from("./strata-data/log-1"),
            id: 1,
            cluster_id: "strata".into(),
            peers: Vec::new(),
            segment_size_bytes: 64 << 20,
            retention_cap_bytes: 16 << 30,
        }
    }
}

impl LogserviceArgs {
    /// The file's values, overridden by flags, validated.
    pub fn into_config(self) -> Result<ServerConfig> {
        let mut f = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<LogserviceFile>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => LogserviceFile::default(),
        };
        f.listen = self.listen.unwrap_or(f.listen);
        f.data_dir = self.data_dir.unwrap_or(f.data_dir);
        f.id = self.id.unwrap_or(f.id);
        f.cluster_id = self.cluster_id.unwrap_or(f.cluster_id);
        f.peers = self.peers.unwrap_or(f.peers);
        f.segment_size_bytes = self.segment_size_bytes.unwrap_or(f.segment_size_bytes);
        f.retention_cap_bytes = self.retention_cap_bytes.unwrap_or(f.retention_cap_bytes);
        if f.id == 0 {
            bail!("--id must be 1 or more");
        }
        if f.cluster_id.is_empty() {
            bail!("--cluster-id must not be empty");
        }
        if f.segment_size_bytes < (1 << 20) {
            bail!("--segment-size-bytes must be at least 1 MiB (a record may be 1 MiB)");
        }
        for p in &f.peers {
            if !p.starts_with("http://") {
                bail!("peer {p:?} must be an http://host:port address");
            }
        }
        let mut c = ServerConfig::new(f.id, f.cluster_id, f.data_dir);
        c.listen = f.listen;
        c.peers = f.peers;
        c.segment_size_bytes = f.segment_size_bytes;
        c.retention_cap_bytes = f.retention_cap_bytes;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> LogserviceArgs {
        LogserviceArgs {
            config,
            listen: None,
            data_dir: None,
            id: None,
            cluster_id: None,
            peers: None,
            segment_size_bytes: None,
            retention_cap_bytes: None,
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_override_the_file_and_an_empty_file_runs() {
        let (_d, path) = file("id = 2\ncluster_id = \"c\"\nsegment_size_bytes = 2097152\n");
        let mut a = args(Some(path));
        a.id = Some(3);
        let c = a.into_config().unwrap();
        assert_eq!(
            (c.id, c.cluster_id.as_str(), c.segment_size_bytes),
            (3, "c", 2 << 20)
        );
        let (_d, empty) = file("");
        assert_eq!(args(Some(empty)).into_config().unwrap().id, 1);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let (_d, path) = file("idd = 2\n");
        let err = args(Some(path)).into_config().unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        let mut a = args(None);
        a.id = Some(0);
        assert!(a.into_config().is_err());
        let mut a = args(None);
        a.peers = Some(vec!["127.0.0.1:1".into()]);
        assert!(a.into_config().unwrap_err().to_string().contains("http://"));
    }
}
