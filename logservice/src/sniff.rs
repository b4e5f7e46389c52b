//! One port, two protocols: connections that open with a framed
//! transport's magic bytes are served on a thread of their own, with
//! blocking I/O; the rest (HTTP/2 for gRPC) go to the tonic server.
//!
//! Used by the log service (writers' framed append streams, [`crate::framed`])
//! and the page server (framed GetPage); docs/logservice.md says why a
//! framed transport exists at all. Both serve a framed connection the same
//! way, with [`BlockingConn`] and [`take_frame`]: wait for bytes, take the
//! whole frames, answer them in one write; and their frames are alike
//! ([`put_frame`], [`put_answer`], [`decode_answer`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a new connection may take to send the bytes that say which
/// protocol it speaks.
const SNIFF_PATIENCE: Duration = Duration::from_secs(10);

/// Serves one framed connection, on its own thread, until the peer hangs
/// up or the server stops. The magic bytes have been read already and the
/// stream is in blocking mode.
pub type ServeFramed = Arc<dyn Fn(std::net::TcpStream) + Send + Sync>;

/// What [`accept_loop`] does with a connection.
pub struct Routes {
    /// The first bytes of a framed connection.
    pub magic: &'static [u8; 8],
    /// The name of each framed connection's thread.
    pub thread_name: &'static str,
    pub serve: ServeFramed,
    /// Framed connections served at once at most; one more is closed at
    /// once (each holds a thread).
    pub max_framed: usize,
    /// Everything else.
    pub grpc: mpsc::Sender<std::io::Result<TcpStream>>,
}

/// Accepts connections until `stop` and routes each (TCP_NODELAY set: every
/// answer is a small write that must leave now). Returns once every framed
/// connection's thread has ended; `serve` must end soon after `stop`.
pub async fn accept_loop(listener: TcpListener, routes: Routes, stop: CancellationToken) {
    let routes = Arc::new(routes);
    let mut conns = tokio::task::JoinSet::new();
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    threads.retain(|t| !t.is_finished());
                    let room = threads.len() < routes.max_framed;
                    conns.spawn(route(routes.clone(), stream, room, stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(routed) = conns.join_next(), if !conns.is_empty() => {
                threads.extend(routed.ok().flatten());
            }
        }
    }
    // The gRPC server's incoming stream ends when every sender is gone.
    drop(routes);
    while let Some(routed) = conns.join_next().await {
        threads.extend(routed.ok().flatten());
    }
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}

/// Serves `stream` on a thread of its own if it opens with the magic
/// (returning the thread), else hands it to the gRPC server.
async fn route(
    routes: Arc<Routes>,
    mut stream: TcpStream,
    room: bool,
    stop: CancellationToken,
) -> Option<std::thread::JoinHandle<()>> {
    let magic = routes.magic;
    let mut head = [0u8; 8];
    let sniff = tokio::time::timeout(SNIFF_PATIENCE, async {
        loop {
            let n = stream.peek(&mut head).await?;
            if n == 0 || n == head.len() || head[..n] != magic[..n] {
                return std::io::Result::Ok(n);
            }
            // The magic is sent in one write, so this is rare: let the
            // rest arrive rather than spin on `peek`.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let sniffed = tokio::select! {
        sniffed = sniff => sniffed,
        _ = stop.cancelled() => return None,
    };
    if matches!(sniffed, Ok(Ok(n)) if n == head.len()) && &head == magic {
        if !room {
            warn!(
                limit = routes.max_framed,
                "too many framed connections; closing a new one"
            );
            return None;
        }
        stream.read_exact(&mut head).await.ok()?;
        let stream = stream.into_std().ok()?;
        stream.set_nonblocking(false).ok()?;
        let serve = routes.serve.clone();
        // A thread, not the blocking pool: it lives as long as the peer.
        let thread = std::thread::Builder::new()
            .name(routes.thread_name.into())
            .spawn(move || serve(stream));
        return match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                warn!(error = %e, "could not start a connection's thread");
                None
            }
        };
    }
    let _ = routes.grpc.send(Ok(stream)).await;
    None
}

/// How long a framed connection's thread waits for a peer that stopped
/// reading its answers before it gives up on it.
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// A framed connection as its thread reads and answers it, with blocking
/// I/O: reads wake every `stop_check` to look whether the server is
/// stopping; bytes gather in a buffer the caller takes frames from.
pub struct BlockingConn {
    stream: std::net::TcpStream,
    inbuf: BytesMut,
    scratch: Vec<u8>,
}

impl BlockingConn {
    /// None if the socket refuses its timeouts.
    pub fn new(
        stream: std::net::TcpStream,
        stop_check: Duration,
        read_bytes: usize,
    ) -> Option<Self> {
        stream.set_read_timeout(Some(stop_check)).ok()?;
        stream.set_write_timeout(Some(WRITE_PATIENCE)).ok()?;
        Some(BlockingConn {
            stream,
            inbuf: BytesMut::with_capacity(read_bytes),
            scratch: vec![0u8; read_bytes],
        })
    }

    /// Waits until more bytes have arrived and adds them to
    /// [`BlockingConn::buffer`]; false once the peer hung up, the
    /// connection failed, or `stop` is cancelled.
    pub fn fill(&mut self, stop: &CancellationToken) -> bool {
        use std::io::{ErrorKind, Read};
        loop {
            if stop.is_cancelled() {
                return false;
            }
            match self.stream.read(&mut self.scratch) {
                Ok(0) => return false,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&self.scratch[..n]);
                    return true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The bytes received and not yet taken.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.inbuf
    }

    /// Writes `out` whole; false if the peer is gone (or did not read for
    /// [`WRITE_PATIENCE`]).
    pub fn send(&mut self, out: &[u8]) -> bool {
        use std::io::Write;
        self.stream.write_all(out).is_ok()
    }
}

/// Takes the next whole frame's body (after its little-endian `u32`
/// length) off the front of `buf`, if it holds one. `Err(len)`: the next
/// frame claims `len` bytes, more than `max`, so the peer is not speaking
/// the protocol, or is broken.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> std::result::Result<Option<Bytes>, usize> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(len);
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The tag of an answer frame that holds the answer's message.
pub const TAG_OK: u8 = 0;
/// The tag of an answer frame that holds a gRPC status code and message.
pub const TAG_ERROR: u8 = 1;
/// The most bytes of an error's text an answer frame carries.
const MAX_ERROR_TEXT: usize = 64 << 10;

/// Appends one frame holding `msg` to `out`.
pub fn put_frame<M: prost::Message>(out: &mut BytesMut, msg: &M) {
    let len = msg.encoded_len();
    out.reserve(4 + len);
    out.put_u32_le(len as u32);
    msg.encode(out).expect("reserved above");
}

/// Appends one answer frame to `out`: [`TAG_OK`] and the message, or
/// [`TAG_ERROR`], the status code (little-endian `i32`) and its text.
pub fn put_answer<M: prost::Message>(
    out: &mut BytesMut,
    answer: &std::result::Result<M, tonic::Status>,
) {
    match answer {
        Ok(msg) => {
            let len = msg.encoded_len();
            out.reserve(5 + len);
            out.put_u32_le(1 + len as u32);
            out.put_u8(TAG_OK);
            msg.encode(out).expect("reserved above");
        }
        Err(status) => {
            let text = status.message().as_bytes();
            let text = &text[..text.len().min(MAX_ERROR_TEXT)];
            out.put_u32_le((1 + 4 + text.len()) as u32);
            out.put_u8(TAG_ERROR);
            out.put_i32_le(status.code() as i32);
            out.put_slice(text);
        }
    }
}

/// Why an answer frame could not be read.
#[derive(Debug)]
pub enum Malformed {
    Empty,
    Undecodable(prost::DecodeError),
    UnknownTag(u8),
}

/// Reads an answer frame's body (as [`take_frame`] gave it): the message,
/// or the status the peer answered with.
pub fn decode_answer<M: prost::Message + Default>(
    mut frame: Bytes,
) -> std::result::Result<std::result::Result<M, tonic::Status>, Malformed> {
    if frame.is_empty() {
        return Err(Malformed::Empty);
    }
    match frame.get_u8() {
        TAG_OK => M::decode(frame).map(Ok).map_err(Malformed::Undecodable),
        TAG_ERROR if frame.len() >= 4 => {
            let code = tonic::Code::from_i32(frame.get_i32_le());
            let text = String::from_utf8_lossy(&frame).into_owned();
            Ok(Err(tonic::Status::new(code, text)))
        }
        tag => Err(Malformed::UnknownTag(tag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const MAGIC: &[u8; 8] = b"TESTMAG1";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn framed_connections_beyond_the_limit_are_closed_and_the_rest_go_to_grpc() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (grpc_tx, mut grpc_rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let serving = stop.clone();
        // Echoes one frame's worth of bytes, then holds its thread until the
        // server stops.
        let serve: ServeFramed = Arc::new(move |stream| {
            let Some(mut conn) = BlockingConn::new(stream, Duration::from_millis(20), 64) else {
                return;
            };
            if conn.fill(&serving) {
                let got = conn.buffer().split().freeze();
                conn.send(&got);
            }
            while conn.fill(&serving) {}
        });
        let routes = Routes {
            magic: MAGIC,
            thread_name: "test-framed",
            serve,
            max_framed: 1,
            grpc: grpc_tx,
        };
        let acceptor = tokio::spawn(accept_loop(listener, routes, stop.clone()));

        // The first framed connection is served on its thread, which sees
        // the bytes after the magic.
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"TESTMAG1hello").await.unwrap();
        let mut echo = [0u8; 5];
        first.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello");

        // The limit is one: a second is closed at once (the acceptor
        // counts the first's thread once its routing has ended).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(b"TESTMAG1again").await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut rest));
        // Closed with our bytes unread, the kernel may answer with a reset.
        let closed = match read.await.expect("closed at once, not served") {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed && rest.is_empty(), "closed unserved: {rest:?}");

        // Anything else goes to gRPC untouched, the bytes still unread.
        let mut other = TcpStream::connect(addr).await.unwrap();
        other.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let routed = grpc_rx.recv().await.unwrap().unwrap();
        let mut head = [0u8; 14];
        let n = routed.peek(&mut head).await.unwrap();
        assert_eq!(&head[..n], &b"PRI * HTTP/2.0"[..n]);

        // Stopping ends the framed thread, and the acceptor waits for it.
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), acceptor)
            .await
            .expect("the acceptor returns once its threads have ended")
            .unwrap();
        drop(first);
    }

    #[test]
    fn a_frame_is_taken_whole_or_refused_by_its_length() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&3u32.to_le_bytes());
        buf.extend_from_slice(b"ab");
        assert_eq!(take_frame(&mut buf, 16), Ok(None));
        buf.extend_from_slice(b"c");
        assert_eq!(
            take_frame(&mut buf, 16),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert!(buf.is_empty());
        buf.extend_from_slice(&17u32.to_le_bytes());
        assert_eq!(take_frame(&mut buf, 16), Err(17));
    }
}
