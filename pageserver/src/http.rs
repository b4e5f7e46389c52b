//! The `/metrics` endpoint: Prometheus text over a hand-written HTTP/1.1
//! responder on tokio.
//!
//! Why not hyper or axum: one read-only endpoint, scraped every few seconds
//! by one client, does not need a router, and hand-writing it adds no
//! dependency. What it accepts is small and bounded: a request head of at
//! most [`MAX_HEAD_BYTES`], read within [`READ_TIMEOUT`], one request per
//! connection (`Connection: close`). `GET /metrics` answers 200, any other
//! path 404, any other method 405, a malformed or oversized head 400.
//!
//! It owns nothing but its listener and its connection tasks; it stops when
//! its cancellation token is cancelled (connections in flight finish within
//! the timeout on their own).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::service::PageService;

pub const MAX_HEAD_BYTES: usize = 8192;
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve_metrics(
    listener: TcpListener,
    service: Arc<PageService>,
    stop: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = service.clone();
                    connections.spawn(async move {
                        if let Err(e) = answer(stream, &service).await {
                            debug!(error = %e, "metrics connection");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accepting a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

async fn answer(mut stream: TcpStream, service: &PageService) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let response = match head {
        Some(head) => respond(&head, || Metrics::read(service).prometheus()),
        None => reply("400 Bad Request", "text/plain", "bad request\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head; None if the head
/// is too long or the peer closes first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(String::from_utf8(buf).ok());
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

/// The response to a request head; `body` is only built for `/metrics`.
pub fn respond(head: &str, body: impl FnOnce() -> String) -> String {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let ok_version = version.is_some_and(|v| v.starts_with("HTTP/1."));
    match (method, target) {
        _ if !ok_version || parts.next().is_some() => {
            reply("400 Bad Request", "text/plain", "bad request\n")
        }
        (Some("GET"), Some(t)) if t == "/metrics" || t.starts_with("/metrics?") => reply(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &body(),
        ),
        (Some("GET"), _) => reply("404 Not Found", "text/plain", "not found\n"),
        _ => reply(
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n",
        ),
    }
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_gets_the_body() {
        let body = || "x 1\n".to_string();
        let ok = respond("GET /metrics HTTP/1.1\r\nHost: a", body);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nx 1\n") && ok.contains("Content-Length: 4\r\n"));
        assert!(respond("GET / HTTP/1.1", body).starts_with("HTTP/1.1 404"));
        assert!(respond("POST /metrics HTTP/1.1", body).starts_with("HTTP/1.1 405"));
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics SPDY/3",
            "GET /metrics HTTP/1.1 x",
        ] {
            assert!(respond(bad, body).starts_with("HTTP/1.1 400"), "{bad:?}");
        }
    }
}
