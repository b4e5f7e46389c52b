//! `strata compute`: a primary compute node on its own — the engine over a
//! log service and a page server, serving MySQL clients — configured by a
//! TOML file and flags (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use strata_compute::EngineConfig;
use strata_compute::server::ComputeConfig;

#[derive(Args)]
pub struct ComputeArgs {
    /// A TOML file with any of the fields below; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where MySQL clients connect.
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    cluster_id: Option<String>,
    /// The log service replicas, comma-separated `http://host:port`.
    #[arg(long, value_delimiter = ',')]
    log: Option<Vec<String>>,
    /// The page server, `http://host:port`.
    #[arg(long)]
    pageserver: Option<String>,
    /// This node's name as the log's writer.
    #[arg(long)]
    node_id: Option<String>,
    /// `root`'s password (none by default).
    #[arg(long, env = "STRATA_ROOT_PASSWORD", hide_env_values = true)]
    root_password: Option<String>,
    /// Memory for cached page versions.
    #[arg(long)]
    pool_budget_bytes: Option<u64>,
    /// How long a statement waits for a row lock (MySQL's
    /// innodb_lock_wait_timeout).
    #[arg(long)]
    lock_wait_timeout_ms: Option<u64>,
}

/// `strata compute`'s config file. Every field has a default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeFile {
    listen: SocketAddr,
    cluster_id: String,
    log: Vec<String>,
    pageserver: String,
    node_id: String,
    root_password: String,
    pool_budget_bytes: u64,
    lock_wait_timeout_ms: u64,
}

impl Default for ComputeFile {
    fn default() -> Self {
        let e = EngineConfig::new("strata", Vec::new(), "");
        ComputeFile {
            listen: SocketAddr::from(([127, 0, 0, 1], 3306)),
            cluster_id: e.cluster_id,
            log: vec![
                "http://127.0.0.1:7101".into(),
                "http://127.0.0.1:7102".into(),
                "http://127.0.0.1:7103".into(),
            ],
            pageserver: "http://127.0.0.1:7200".into(),
            node_id: e.node_id,
            root_password: String::new(),
            pool_budget_bytes: e.pool_budget_bytes,
            lock_wait_timeout_ms: e.lock_wait_timeout.as_millis() as u64,
        }
    }
}

impl ComputeArgs {
    /// The file's values, overridden by flags, validated.
    pub fn into_config(self) -> Result<ComputeConfig> {
        let mut f = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<ComputeFile>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => ComputeFile::default(),
        };
        f.listen = self.listen.unwrap_or(f.listen);
        f.cluster_id = self.cluster_id.unwrap_or(f.cluster_id);
        f.log = self.log.unwrap_or(f.log);
        f.pageserver = self.pageserver.unwrap_or(f.pageserver);
        f.node_id = self.node_id.unwrap_or(f.node_id);
        f.root_password = self.root_password.unwrap_or(f.root_password);
        f.pool_budget_bytes = self.pool_budget_bytes.unwrap_or(f.pool_budget_bytes);
        f.lock_wait_timeout_ms = self.lock_wait_timeout_ms.unwrap_or(f.lock_wait_timeout_ms);
        f.validate()?;
        let mut engine = EngineConfig::new(f.cluster_id, f.log, f.pageserver);
        engine.node_id = f.node_id;
        engine.pool_budget_bytes = f.pool_budget_bytes;
        engine.lock_wait_timeout = Duration::from_millis(f.lock_wait_timeout_ms);
        let mut c = ComputeConfig::new(engine, f.listen);
        c.root_password = Some(f.root_password).filter(|p| !p.is_empty());
        Ok(c)
    }
}

impl ComputeFile {
    fn validate(&self) -> Result<()> {
        if self.cluster_id.is_empty() || self.node_id.is_empty() {
            bail!("--cluster-id and --node-id must not be empty");
        }
        if self.log.is_empty() {
            bail!("--log must name at least one log service replica");
        }
        for e in self.log.iter().chain([&self.pageserver]) {
            if !e.starts_with("http://") {
                bail!("{e:?} must be an http://host:port address");
            }
        }
        if self.pool_budget_bytes < 64 * 8192 {
            bail!("--pool-budget-bytes must hold at least 64 pages (512 KiB)");
        }
        if self.lock_wait_timeout_ms == 0 {
            bail!("--lock-wait-timeout-ms must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> ComputeArgs {
        ComputeArgs {
            config,
            listen: None,
            cluster_id: None,
            log: None,
            pageserver: None,
            node_id: None,
            root_password: None,
            pool_budget_bytes: None,
            lock_wait_timeout_ms: None,
        }
    }

    #[test]
    fn flags_override_the_file_and_an_empty_file_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compute.toml");
        std::fs::write(&path, "cluster_id = \"c\"\nroot_password = \"s3cret\"\n").unwrap();
        let mut a = args(Some(path));
        a.listen = Some("127.0.0.1:4000".parse().unwrap());
        let c = a.into_config().unwrap();
        assert_eq!(c.engine.cluster_id, "c");
        assert_eq!(c.root_password.as_deref(), Some("s3cret"));
        assert_eq!(c.mysql_listen.port(), 4000);
        let c = args(None).into_config().unwrap();
        assert_eq!(c.mysql_listen.port(), 3306);
        assert_eq!(c.root_password, None);
        assert_eq!(c.engine.log_endpoints.len(), 3);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compute.toml");
        std::fs::write(&path, "mysql_port = 1\n").unwrap();
        let err = args(Some(path)).into_config().unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        let mut a = args(None);
        a.pageserver = Some("127.0.0.1:7200".into());
        assert!(a.into_config().unwrap_err().to_string().contains("http://"));
        let mut a = args(None);
        a.pool_budget_bytes = Some(8192);
        assert!(a.into_config().is_err());
    }
}
