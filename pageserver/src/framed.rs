//! GetPage's own transport: length-prefixed protobuf frames on a plain TCP
//! connection, on the page server's one port beside gRPC
//! ([`strata_logservice::sniff`] tells them apart).
//!
//! A departure from "every RPC over gRPC", as the log's append stream
//! made before (docs/pageserver.md, "GetPage's own transport"). Through
//! HTTP/2 a GetPage crossed about seven task hand-offs (the client's
//! buffer and connection tasks, the server's connection and stream tasks,
//! and back), each a wake-up that waits for a core when the machine is
//! busy with ingest. Here the client's task writes the request into its
//! socket and reads the answer from it; the page server serves each
//! connection on a thread of its own that the kernel wakes when a request
//! arrives, answers it (on that thread, through the runtime's handle) and
//! writes the page back.
//!
//! A connection opens with [`MAGIC`], then frames, each a little-endian
//! `u32` length and that many bytes:
//!
//! - client → page server: an encoded `GetPageRequest`;
//! - page server → client, one per request, in order: a tag byte, then for
//!   [`TAG_PAGE`] an encoded `GetPageResponse`, for [`TAG_ERROR`] a
//!   little-endian `i32` gRPC status code and a UTF-8 message. A request
//!   refused (snapshot too old, page not found, wrong cluster) leaves the
//!   connection open; a frame that is not a request gets one error and the
//!   page server hangs up.
//!
//! Everything else (GetPages, status, snapshot reports) stays on gRPC.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prost::Message;
use strata_logservice::sniff::{self, BlockingConn, Malformed};
use strata_proto::pageserver as pb;
use strata_wal::Lsn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::error::{PageServerError, Result};
use crate::realtime::GetPageThread;
use crate::service::PageService;

/// The first bytes of a GetPage connection: "STRATA", transport version 1,
/// 'P' for page.
pub const MAGIC: &[u8; 8] = b"STRATA\x01P";

pub use strata_logservice::sniff::{TAG_ERROR, TAG_OK as TAG_PAGE};

/// A request is a few dozen bytes: a longer frame is not this protocol.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;
/// An answer is one page and its validity.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Appends one request frame to `out`.
pub fn put_request(out: &mut BytesMut, req: &pb::GetPageRequest) {
    sniff::put_frame(out, req);
}

/// Appends one answer frame to `out`: the page, or why not.
pub fn put_response(
    out: &mut BytesMut,
    resp: &std::result::Result<pb::GetPageResponse, tonic::Status>,
) {
    sniff::put_answer(out, resp);
}

/// Takes the next whole frame's body off the front of `buf`, if it holds
/// one. A length above `max` is an error: the peer is not speaking this
/// protocol, or is broken.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>> {
    sniff::take_frame(buf, max).map_err(|len| {
        PageServerError::BadRequest(format!(
            "GetPage frame of {len} bytes is above the limit of {max}"
        ))
    })
}

/// Decodes an answer frame: the page, or the page server's error (as the
/// same [`PageServerError`] a gRPC status would give).
pub fn decode_response(frame: Bytes) -> Result<pb::GetPageResponse> {
    let bad = |what: String| PageServerError::BadResponse(what);
    match sniff::decode_answer(frame) {
        Ok(answer) => answer.map_err(PageServerError::from),
        Err(Malformed::Empty) => Err(bad("empty GetPage answer frame".into())),
        Err(Malformed::Undecodable(e)) => Err(bad(format!("undecodable GetPage answer: {e}"))),
        Err(Malformed::UnknownTag(tag)) => {
            Err(bad(format!("GetPage answer frame with unknown tag {tag}")))
        }
    }
}

/// How often a connection's thread waiting for a request looks whether the
/// server is stopping.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// What a connection's thread needs.
pub(crate) struct Serving {
    pub cluster_id: String,
    pub service: std::sync::Arc<PageService>,
    /// GetPage is async (it may wait for an LSN, or hand a long rebuild to
    /// the blocking pool): the thread runs it through this handle.
    pub runtime: tokio::runtime::Handle,
    pub stop: CancellationToken,
}

/// Serves one framed GetPage connection until the client hangs up, after a
/// frame that is not a request, or within [`STOP_CHECK`] of the server
/// stopping. Requests that arrived together are answered in one write. The
/// thread runs at real-time priority within the GetPage threads' budget
/// ([`crate::realtime`]), else with a short slice.
pub(crate) fn serve_connection(serving: &Serving, stream: std::net::TcpStream) {
    let mut priority = GetPageThread::start(serving.service.realtime());
    let Some(mut conn) = BlockingConn::new(stream, STOP_CHECK, 16 << 10) else {
        return;
    };
    let mut out = BytesMut::with_capacity(16 << 10);
    while conn.fill(&serving.stop) {
        out.clear();
        let mut failed = false;
        loop {
            let frame = match take_frame(conn.buffer(), MAX_REQUEST_BYTES) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    put_response(&mut out, &Err(e.into()));
                    failed = true;
                    break;
                }
            };
            match pb::GetPageRequest::decode(frame) {
                Ok(req) => put_response(&mut out, &answer(serving, req)),
                Err(e) => {
                    let bad =
                        PageServerError::BadRequest(format!("undecodable GetPage frame: {e}"));
                    put_response(&mut out, &Err(bad.into()));
                    failed = true;
                    break;
                }
            }
        }
        if (!out.is_empty() && !conn.send(&out)) || failed {
            return;
        }
        priority.after_batch();
    }
}

/// The scheduler slice a GetPage thread asks for.
pub const GETPAGE_SLICE: Duration = Duration::from_micros(100);

/// `struct sched_attr` as `sched_setattr(2)` takes it (its first version,
/// 48 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Asks the kernel for a [`GETPAGE_SLICE`] scheduler slice for the calling
/// thread, keeping its policy (normal) and nice value; true if it was
/// taken. On Linux 6.12 and later (EEVDF), a thread with a shorter slice
/// than the one running preempts it when it wakes. Without this, a GetPage
/// thread woken on a core busy with ingest or the log waited for the
/// running thread's whole slice (1.4 ms here): a quarter of the soak's
/// GetPages while compacting waited over 0.3 ms. It needs no privilege and
/// takes no more than the thread's fair share: a thread that runs long
/// just gets many short turns. An older kernel ignores the field.
pub fn request_short_slice() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority takes no pointers; sched_setattr on the
        // calling thread (0) only reads `attr`, which outlives the call.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
            if nice == -1 && *libc::__errno_location() != 0 {
                return false;
            }
            let attr = SchedAttr {
                size: std::mem::size_of::<SchedAttr>() as u32,
                policy: libc::SCHED_OTHER as u32,
                flags: 0,
                nice,
                priority: 0,
                runtime: GETPAGE_SLICE.as_nanos() as u64,
                deadline: 0,
                period: 0,
            };
            libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

fn answer(
    serving: &Serving,
    req: pb::GetPageRequest,
) -> std::result::Result<pb::GetPageResponse, tonic::Status> {
    crate::server::check_cluster(&serving.cluster_id, &req.cluster_id)?;
    let page = crate::server::page_id(req.page)?;
    let version = serving
        .runtime
        .block_on(serving.service.get_page(page, Lsn(req.lsn)))?;
    Ok(pb::GetPageResponse {
        page: Some(crate::server::image(version)),
    })
}

/// Idle framed connections a client keeps for later requests at most.
const MAX_IDLE: usize = 32;

/// A client's framed GetPage connections, shared by its clones: a request
/// takes an idle connection (or opens one), and puts it back once its
/// answer has been read whole. A request dropped halfway drops its
/// connection with it, so a connection in the pool never holds half an
/// exchange.
pub(crate) struct Pool {
    /// `host:port`.
    addr: String,
    idle: Mutex<Vec<TcpStream>>,
}

impl Pool {
    pub(crate) fn new(addr: String) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// One GetPage. A pooled connection the page server has closed since
    /// (a restart) fails on first use: the request is then sent once more
    /// on a new connection (GetPage changes nothing, so that is safe).
    pub(crate) async fn get_page(&self, req: &pb::GetPageRequest) -> Result<pb::GetPageResponse> {
        let mut wire = BytesMut::new();
        put_request(&mut wire, req);
        let pooled = self.idle.lock().pop();
        if let Some(conn) = pooled
            && let Ok(answered) = self.exchange(conn, &wire).await
        {
            return answered;
        }
        let conn = self.open().await?;
        self.exchange(conn, &wire)
            .await
            .map_err(|e| PageServerError::Unavailable(format!("GetPage from {}: {e}", self.addr)))?
    }

    async fn open(&self) -> Result<TcpStream> {
        let unavailable = |e: std::io::Error| {
            PageServerError::Unavailable(format!("connecting to {}: {e}", self.addr))
        };
        let mut conn = TcpStream::connect(&self.addr).await.map_err(unavailable)?;
        conn.set_nodelay(true).map_err(unavailable)?;
        conn.write_all(MAGIC).await.map_err(unavailable)?;
        Ok(conn)
    }

    /// Sends `wire` and reads one answer. The outer error is the
    /// connection's (it is dropped); the inner one the page server's answer
    /// (the connection goes back to the pool).
    async fn exchange(
        &self,
        mut conn: TcpStream,
        wire: &[u8],
    ) -> std::io::Result<Result<pb::GetPageResponse>> {
        conn.write_all(wire).await?;
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RESPONSE_BYTES {
            return Ok(Err(PageServerError::BadResponse(format!(
                "GetPage answer of {len} bytes is above the limit of {MAX_RESPONSE_BYTES}"
            ))));
        }
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).await?;
        let answered = decode_response(Bytes::from(body));
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        Ok(answered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    fn request(page_no: u32, lsn: u64) -> pb::GetPageRequest {
        pb::GetPageRequest {
            cluster_id: "c".into(),
            page: Some(pb::PageRef { space: 1, page_no }),
            lsn,
        }
    }

    proptest! {
        /// Requests written back to back come out whole and in order,
        /// however the bytes arrive in pieces.
        #[test]
        fn frames_survive_any_split(
            reqs in proptest::collection::vec((any::<u32>(), any::<u64>()), 1..8),
            cut in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let sent: Vec<_> = reqs.iter().map(|(p, l)| request(*p, *l)).collect();
            let mut wire = BytesMut::new();
            for r in &sent {
                put_request(&mut wire, r);
            }
            let mut wire = wire.freeze();
            let (mut buf, mut got, mut cuts) = (BytesMut::new(), Vec::new(), cut.iter().cycle());
            while !wire.is_empty() {
                let n = (*cuts.next().unwrap()).min(wire.len());
                buf.extend_from_slice(&wire.split_to(n));
                while let Some(frame) = take_frame(&mut buf, MAX_REQUEST_BYTES).unwrap() {
                    got.push(pb::GetPageRequest::decode(frame).unwrap());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, sent);
        }
    }

    #[test]
    fn a_page_and_an_error_come_back_as_sent() {
        let page = pb::GetPageResponse {
            page: Some(pb::PageImage {
                image: Bytes::from(vec![7u8; 8192]),
                valid_from: 10,
                valid_to: 20,
            }),
        };
        let mut buf = BytesMut::new();
        put_response(&mut buf, &Ok(page.clone()));
        let too_old = PageServerError::SnapshotTooOld {
            lsn: Lsn(5),
            horizon: Lsn(9),
        };
        let code = too_old.code();
        put_response(&mut buf, &Err(too_old.into()));
        let first = take_frame(&mut buf, MAX_RESPONSE_BYTES).unwrap().unwrap();
        assert_eq!(decode_response(first).unwrap(), page);
        let second = take_frame(&mut buf, MAX_RESPONSE_BYTES).unwrap().unwrap();
        match decode_response(second) {
            Err(e) => {
                assert_eq!(e.code(), code);
                assert!(e.to_string().contains("0/9"), "{e}");
            }
            Ok(_) => panic!("expected the page server's error"),
        }
        assert!(buf.is_empty());
    }

    /// The kernel's release as (major, minor), from `uname -r`.
    #[cfg(target_os = "linux")]
    fn kernel_release() -> Option<(u32, u32)> {
        let text = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let mut parts = text.trim().split(['.', '-']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// A GetPage thread's slice is the short one on a kernel that has
    /// custom slices (6.12+), and its nice value is what it was.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_getpage_thread_asks_for_a_short_slice_and_keeps_its_nice() {
        std::thread::spawn(|| {
            // SAFETY: setpriority/getpriority on the calling thread.
            let nice = |set: Option<i32>| unsafe {
                if let Some(n) = set {
                    libc::setpriority(libc::PRIO_PROCESS, 0, n);
                }
                libc::getpriority(libc::PRIO_PROCESS, 0)
            };
            let before = nice(Some(5));
            assert_eq!(before, 5);
            let taken = request_short_slice();
            assert_eq!(nice(None), before, "the nice value is kept");
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
            let slice = sched
                .lines()
                .find(|l| l.starts_with("se.slice"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<u64>().ok());
            // A sandbox may refuse the call (seccomp); where the kernel
            // took it and has custom slices, the slice is the short one.
            if taken
                && kernel_release().is_some_and(|r| r >= (6, 12))
                && let Some(slice) = slice
            {
                assert_eq!(slice, GETPAGE_SLICE.as_nanos() as u64, "{sched}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_oversized_frame_or_unknown_tag_is_refused() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(MAX_REQUEST_BYTES as u32 + 1);
        assert!(matches!(
            take_frame(&mut buf, MAX_REQUEST_BYTES),
            Err(PageServerError::BadRequest(_))
        ));
        assert!(matches!(
            decode_response(Bytes::from_static(&[9, 1, 2])),
            Err(PageServerError::BadResponse(_))
        ));
        assert!(matches!(
            decode_response(Bytes::new()),
            Err(PageServerError::BadResponse(_))
        ));
    }
}
