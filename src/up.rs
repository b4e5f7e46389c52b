//! `strata up`: a whole cluster in one process, its data under one
//! directory: three log replicas, a page server following them, and a
//! primary compute node serving MySQL clients.
//!
//! Start order: the cluster id (made once, kept in the data directory),
//! every listener bound (so a busy port fails before anything runs), the
//! log replicas, the page server, then the compute node. Stop order (Ctrl-C
//! or SIGTERM): the compute node first (its MySQL listener, then its
//! engine), then the storage: the page server freezes and flushes what it
//! holds, the replicas stop. If any role fails, everything stops; the
//! first error is the command's.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct UpArgs {
    /// Where the cluster keeps its data.
    #[arg(long, default_value = "./strata-data")]
    data_dir: PathBuf,
    /// The first of three consecutive ports for the log replicas (0: any free ports).
    #[arg(long, default_value_t = 7101)]
    log_base_port: u16,
    /// Log replicas in the cluster.
    #[arg(long, default_value_t = 3)]
    log_replicas: u32,
    /// The page server's port (0: any free port).
    #[arg(long, default_value_t = 7200)]
    pageserver_port: u16,
    /// The MySQL port of the compute node (0: any free port).
    #[arg(long, default_value_t = 3306)]
    mysql_port: u16,
    /// `root`'s password (none by default).
    #[arg(long, env = "STRATA_ROOT_PASSWORD", hide_env_values = true)]
    root_password: Option<String>,
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

async fn bind(port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port} for {what}"))
}

fn endpoint(l: &TcpListener) -> Result<String> {
    Ok(format!("http://{}", l.local_addr()?))
}

pub async fn run(args: UpArgs, shutdown: CancellationToken) -> Result<()> {
    let cluster_id = cluster_id(&args.data_dir)?;
    let mut log_listeners = Vec::new();
    for i in 0..args.log_replicas {
        let port = match args.log_base_port {
            0 => 0,
            base => base + i as u16,
        };
        log_listeners.push(bind(port, &format!("log replica {}", i + 1)).await?);
    }
    let ps_listener = bind(args.pageserver_port, "the page server").await?;
    let mysql_listener = bind(args.mysql_port, "the MySQL port").await?;
    let log_endpoints: Vec<String> = log_listeners.iter().map(endpoint).collect::<Result<_>>()?;
    let ps_endpoint = endpoint(&ps_listener)?;
    let mysql_addr = mysql_listener.local_addr()?;

    // The storage stops only after the compute node has, and the log
    // replicas only after the page server: it stops ingest, flushes and
    // uploads its last manifest while the log can still answer it.
    let storage_stop = CancellationToken::new();
    let log_stop = CancellationToken::new();
    let mut roles: Vec<(&str, JoinHandle<Result<()>>)> = Vec::new();
    for (i, listener) in log_listeners.into_iter().enumerate() {
        let id = i as u32 + 1;
        let mut c = strata_logservice::server::ServerConfig::new(
            id,
            cluster_id.clone(),
            args.data_dir.join(format!("log-{id}")),
        );
        c.listen = listener.local_addr()?;
        c.peers = log_endpoints
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        let served = strata_logservice::server::serve_on(listener, c, log_stop.clone());
        roles.push((
            "log replica",
            tokio::spawn(async move { Ok(served.await?) }),
        ));
    }
    let mut ps = strata_pageserver::server::ServerConfig::new(
        cluster_id.clone(),
        args.data_dir.join("pageserver"),
        log_endpoints.clone(),
    );
    // The bucket: a local directory beside the page server's.
    ps.bucket = Some(strata_pageserver::remote::BucketConfig::Local(
        args.data_dir.join("bucket"),
    ));
    let served = strata_pageserver::server::serve_on(ps_listener, ps, storage_stop.clone());
    roles.push((
        "page server",
        tokio::spawn(async move {
            let stopped = served.await;
            // However it stopped (asked to, or on an error), the log goes
            // next.
            log_stop.cancel();
            Ok(stopped?)
        }),
    ));

    let engine = strata_compute::EngineConfig::new(
        cluster_id.clone(),
        log_endpoints.clone(),
        ps_endpoint.clone(),
    );
    let mut compute = strata_compute::server::ComputeConfig::new(engine, mysql_addr);
    compute.root_password = args.root_password.clone().filter(|p| !p.is_empty());
    let compute = tokio::spawn(strata_compute::server::serve_on(
        mysql_listener,
        compute,
        shutdown.clone(),
    ));

    // Written, not println!: a closed stdout (`strata up | head -1`) must
    // not take the cluster down.
    let password = match &args.root_password {
        Some(p) if !p.is_empty() => " -p",
        _ => "",
    };
    let banner = format!(
        "Strata is up: cluster {cluster_id}, data in {}\n  \
         MySQL: 127.0.0.1:{}, user root — connect with:\n    \
         mysql -h 127.0.0.1 -P {} -u root{password}\n  \
         log service replicas: {}\n  page server: {ps_endpoint}\n\
         Stop with Ctrl-C.\n",
        args.data_dir.display(),
        mysql_addr.port(),
        mysql_addr.port(),
        log_endpoints.join(" ")
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    stop_in_order(compute, roles, &shutdown, &storage_stop).await
}

/// Waits for the compute node and the storage roles; the compute node
/// stops first, then the storage, whichever way the stop began.
async fn stop_in_order(
    mut compute: JoinHandle<strata_compute::Result<()>>,
    roles: Vec<(&'static str, JoinHandle<Result<()>>)>,
    shutdown: &CancellationToken,
    storage_stop: &CancellationToken,
) -> Result<()> {
    let storage_stop2 = storage_stop.clone();
    let mut storage = tokio::spawn(async move { wait_all(roles, &storage_stop2).await });
    let compute_result = |r: Result<strata_compute::Result<()>, tokio::task::JoinError>| {
        r.context("compute node task")
            .and_then(|r| r.context("compute node"))
    };
    tokio::select! {
        done = &mut compute => {
            // Stopped (Ctrl-C) or failed: the storage goes next.
            let compute = compute_result(done);
            if compute.is_err() {
                shutdown.cancel();
            }
            storage_stop.cancel();
            let storage = storage.await.context("storage task")?;
            compute.and(storage)
        }
        done = &mut storage => {
            // A storage role failed: stop the compute node too.
            shutdown.cancel();
            storage_stop.cancel();
            let compute = compute_result(compute.await);
            done.context("storage task")?.and(compute)
        }
    }
}

/// Waits for every role; the first to fail stops the others.
async fn wait_all(
    roles: Vec<(&str, JoinHandle<Result<()>>)>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut first_error = None;
    let mut pending: futures::stream::FuturesUnordered<_> = roles
        .into_iter()
        .map(|(name, h)| async move { (name, h.await) })
        .collect();
    use futures::StreamExt;
    while let Some((name, joined)) = pending.next().await {
        let result = joined
            .with_context(|| format!("{name} task"))
            .and_then(|r| r.with_context(|| name.to_string()));
        if let Err(e) = result {
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
