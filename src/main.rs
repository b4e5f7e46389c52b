//! `strata`: the one command-line entry point.
//!
//! Thin by design: parse flags and config, set up tracing, call a library's
//! `serve`. `strata up` runs the whole cluster in one process (today: the
//! three log replicas); `strata logservice` runs one replica on its own.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use strata_logservice::server::{ServerConfig, serve, serve_on};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a cloud-native SQL database with separated storage and compute"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster in this process, with its data under one directory.
    Up(UpArgs),
    /// Run one log service replica.
    Logservice(LogserviceArgs),
}

#[derive(Args)]
struct UpArgs {
    /// Where the cluster keeps its data.
    #[arg(long, default_value = "./strata-data")]
    data_dir: PathBuf,
    /// The first of three consecutive ports for the log replicas (0: any free ports).
    #[arg(long, default_value_t = 7101)]
    log_base_port: u16,
    /// Log replicas in the cluster.
    #[arg(long, default_value_t = 3)]
    log_replicas: u32,
}

#[derive(Args)]
struct LogserviceArgs {
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
    fn into_config(self) -> Result<ServerConfig> {
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

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        match cli.command {
            Command::Up(args) => up(args, shutdown).await,
            Command::Logservice(args) => Ok(serve(args.into_config()?, shutdown).await?),
        }
    })
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
    shutdown.cancel();
}

/// The cluster's id, made on first start and kept in the data directory.
fn cluster_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("cluster_id");
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(id.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let id = format!(
                "strata-{:016x}",
                strata_logservice::control_file::new_incarnation()
            );
            let tmp = data_dir.join("cluster_id.tmp");
            std::fs::write(&tmp, format!("{id}\n")).context("writing the cluster id")?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

async fn up(args: UpArgs, shutdown: CancellationToken) -> Result<()> {
    let cluster_id = cluster_id(&args.data_dir)?;
    let mut listeners = Vec::new();
    for i in 0..args.log_replicas {
        let port = if args.log_base_port == 0 {
            0
        } else {
            args.log_base_port + i as u16
        };
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port} for log replica {}", i + 1))?;
        listeners.push(l);
    }
    let endpoints: Vec<String> = listeners
        .iter()
        .map(|l| Ok(format!("http://{}", l.local_addr()?)))
        .collect::<Result<_>>()?;
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u32 + 1;
        let mut c = ServerConfig::new(
            id,
            cluster_id.clone(),
            args.data_dir.join(format!("log-{id}")),
        );
        c.listen = listener.local_addr()?;
        c.peers = endpoints
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        servers.push(tokio::spawn(serve_on(listener, c, shutdown.clone())));
    }
    // Written, not println!: a closed stdout (`strata up | head -1`) must
    // not take the cluster down.
    let banner = format!(
        "Strata is up: cluster {cluster_id}, data in {}\n  log service replicas: {}\n  \
         (the SQL compute node and its MySQL port arrive with the next milestones)\n\
         Stop with Ctrl-C.\n",
        args.data_dir.display(),
        endpoints.join(" ")
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    let mut first_error = None;
    for s in servers {
        if let Err(e) = s.await.context("log replica task")? {
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
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
