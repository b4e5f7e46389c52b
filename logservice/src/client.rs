//! Clients of the log service: the writer ([`LogClient`]), a reader of the
//! committed log with failover ([`LogReader`]) and [`replica_status`].
//!
//! [`LogClient`] runs the [`Writer`] state machine on one driver task. Many
//! callers' `append`s queue on a bounded channel; the driver takes all that
//! are queued, places them in the log, and sends them in as few append
//! messages as the replicas' acknowledgements allow: that is group commit.
//! Appends travel on the framed transport ([`crate::framed`]): the driver
//! owns one TCP connection per replica, writes each message straight into
//! its socket and reads the acknowledgements off it, with no task between
//! (on the commit path every task hop can be a wake-up on another worker).
//! A connection whose unsent bytes pass a bound drops further messages (the
//! writer retransmits), so a slow or dead replica never stalls the others.
//! Elections and fetches use gRPC. The caller's future resolves when a
//! majority has the batch durably.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;

use strata_proto::logservice as pb;
use strata_proto::logservice::log_service_client::LogServiceClient;
use strata_wal::{Batch, Lsn};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use crate::error::{LogError, Result};
use crate::framed;
use crate::msg::{AppendResponse, FetchResponse, Promise, ReadChunk, ReplicaId};
use crate::server::MAX_MESSAGE_BYTES;
use crate::writer::{Outgoing, Phase, SubmitError, Writer, WriterConfig};

/// A lazily connecting gRPC client for one replica.
pub async fn connect_replica(endpoint: &str) -> Result<LogServiceClient<Channel>> {
    let channel = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| LogError::BadRequest(format!("bad endpoint {endpoint:?}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    Ok(LogServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

#[derive(Clone, Debug)]
pub struct LogClientConfig {
    pub cluster_id: String,
    pub writer_id: String,
    /// Every replica, as `http://host:port`.
    pub endpoints: Vec<String>,
    /// How long `connect` waits to win an election.
    pub election_timeout: Duration,
    /// How long `append` waits for a quorum. On timeout the batch's fate is
    /// unknown (it may still commit), as with any database's lost reply.
    pub commit_timeout: Duration,
    /// How long a closing writer keeps telling replicas its last commit
    /// LSN (one may be down, so not forever).
    pub close_patience: Duration,
    /// Group commit: after answering more than one caller at once, how
    /// many more scheduler turns the driver yields before it sends what
    /// arrived meanwhile (0: only the one turn answered callers always
    /// get). See `Driver::gather`.
    pub gather_turns: u32,
    pub writer: WriterConfig,
}

impl LogClientConfig {
    pub fn new(
        cluster_id: impl Into<String>,
        writer_id: impl Into<String>,
        endpoints: Vec<String>,
    ) -> Self {
        let writer_id = writer_id.into();
        let ids = (1..=endpoints.len() as ReplicaId).collect();
        LogClientConfig {
            cluster_id: cluster_id.into(),
            writer: WriterConfig::new(writer_id.clone(), ids),
            writer_id,
            endpoints,
            election_timeout: Duration::from_secs(10),
            commit_timeout: Duration::from_secs(30),
            close_patience: Duration::from_secs(1),
            gather_turns: 3,
        }
    }
}

/// Unsent bytes one replica's append connection may hold; beyond, new
/// messages are dropped and resent by the writer.
const LINK_BUFFER_BYTES: usize = 8 << 20;
/// The pause before a broken append connection is opened again.
const RECONNECT_DELAY: Duration = Duration::from_millis(50);

struct Cmd {
    batch: Batch,
    done: oneshot::Sender<Result<Lsn>>,
}

enum Event {
    Promise(Promise),
    /// A new append connection to a replica, its magic not yet sent.
    Connected(ReplicaId, TcpStream),
    Append(AppendResponse),
    Fetch(ReplicaId, Result<FetchResponse>),
}

/// What callers can see of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterState {
    pub phase: Phase,
    pub term: u64,
    pub commit_lsn: Lsn,
    /// Where the writer places the next batch: the end of everything it
    /// has placed (committed or not). A caller that enqueues every batch
    /// itself, in order, can know each batch's LSNs before it commits.
    pub end_lsn: Lsn,
}

/// The writer side of the log. Cheap to clone; dropping the last clone (or
/// [`LogClient::close`]) stops the driver.
#[derive(Clone)]
pub struct LogClient {
    cmds: mpsc::Sender<Cmd>,
    state: watch::Receiver<WriterState>,
    /// Asks the driver to finish: tell every replica the last commit LSN,
    /// then stop.
    closing: CancellationToken,
    /// Cancelled when the driver has stopped.
    stop: CancellationToken,
    commit_timeout: Duration,
}

impl LogClient {
    /// Connects to every replica and wins an election.
    pub async fn connect(cfg: LogClientConfig) -> Result<LogClient> {
        if cfg.endpoints.is_empty() {
            return Err(LogError::BadRequest(
                "a log client needs at least one replica".into(),
            ));
        }
        let stop = CancellationToken::new();
        let closing = CancellationToken::new();
        let (cmd_tx, cmd_rx) = mpsc::channel(4096);
        let initial = WriterState {
            phase: Phase::Idle,
            term: 0,
            commit_lsn: Lsn::ZERO,
            end_lsn: Lsn::ZERO,
        };
        let (state_tx, mut state_rx) = watch::channel(initial);
        let driver = Driver::start(&cfg, state_tx, stop.clone()).await?;
        tokio::spawn(driver.run(cmd_rx, closing.clone(), cfg.close_patience));
        let won = tokio::time::timeout(cfg.election_timeout, async {
            loop {
                let s = *state_rx.borrow_and_update();
                match s.phase {
                    Phase::Leading => return Ok(()),
                    Phase::Fenced { by_term } => {
                        return Err(LogError::Fenced {
                            term: s.term,
                            promised: by_term,
                        });
                    }
                    _ => {}
                }
                if state_rx.changed().await.is_err() {
                    return Err(LogError::Shutdown);
                }
            }
        })
        .await;
        match won {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stop.cancel();
                return Err(LogError::Unavailable(format!(
                    "no quorum of log replicas elected writer {} within {:?}",
                    cfg.writer_id, cfg.election_timeout
                )));
            }
        }
        Ok(LogClient {
            cmds: cmd_tx,
            state: state_rx,
            closing,
            stop,
            commit_timeout: cfg.commit_timeout,
        })
    }

    /// Appends one batch; returns its commit LSN once a majority has it.
    pub async fn append(&self, batch: Batch) -> Result<Lsn> {
        self.enqueue(batch).await?.await
    }

    /// Queues one batch and returns at once with a future of its commit
    /// LSN. Batches enqueued one after another by one task are placed in
    /// the log in that order, back to back (unless one fails, which the
    /// commit LSNs then show).
    pub async fn enqueue(&self, batch: Batch) -> Result<impl Future<Output = Result<Lsn>> + use<>> {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd { batch, done })
            .await
            .map_err(|_| LogError::Shutdown)?;
        let commit_timeout = self.commit_timeout;
        Ok(async move { Self::commit_of(rx, commit_timeout).await })
    }

    async fn commit_of(
        rx: oneshot::Receiver<Result<Lsn>>,
        commit_timeout: Duration,
    ) -> Result<Lsn> {
        match tokio::time::timeout(commit_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LogError::Shutdown),
            Err(_) => Err(LogError::Unavailable(format!(
                "commit not acknowledged by a quorum within {:?}",
                commit_timeout
            ))),
        }
    }

    pub fn state(&self) -> WriterState {
        *self.state.borrow()
    }

    /// Stops the writer without waiting. Batches already enqueued still
    /// commit, and the last commit LSN is sent to every replica (for up to
    /// `close_patience`, since one may be down) before the driver stops:
    /// a reader following a replica that was outside the last quorum must
    /// still see the last commit, and a writer that closes right after it
    /// would otherwise leave it unknown there until the next writer comes.
    /// [`LogClient::closed`] waits for the end.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves when the driver has stopped.
    pub async fn closed(&self) {
        self.stop.cancelled().await
    }
}

struct Driver {
    writer: Writer,
    cluster_id: String,
    clients: Vec<LogServiceClient<Channel>>,
    /// Each replica's append connection.
    links: Vec<Link>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    state: watch::Sender<WriterState>,
    stop: CancellationToken,
    epoch: Instant,
    waiting: VecDeque<(Lsn, oneshot::Sender<Result<Lsn>>)>,
    queued: VecDeque<Cmd>,
    election_started_ms: u64,
    /// Callers answered in this turn of the loop: the driver yields before
    /// sending anything more, so they run first.
    answered: usize,
    /// What the writer had to send when callers had just been answered,
    /// sent after they ran (before anything newer, so each replica still
    /// gets its messages in order).
    deferred: Vec<Outgoing>,
    /// [`LogClientConfig::gather_turns`].
    gather_turns: u32,
}

impl Driver {
    async fn start(
        cfg: &LogClientConfig,
        state: watch::Sender<WriterState>,
        stop: CancellationToken,
    ) -> Result<Driver> {
        let (events_tx, events) = mpsc::channel(1024);
        let mut clients = Vec::new();
        let mut links = Vec::new();
        for (i, endpoint) in cfg.endpoints.iter().enumerate() {
            clients.push(connect_replica(endpoint).await?);
            let link = Link {
                addr: host_and_port(endpoint)?,
                conn: None,
            };
            let id = i as ReplicaId + 1;
            tokio::spawn(connect_link(
                id,
                link.addr.clone(),
                Duration::ZERO,
                events_tx.clone(),
                stop.clone(),
            ));
            links.push(link);
        }
        Ok(Driver {
            writer: Writer::new(WriterConfig {
                pump_on_response: false,
                ..cfg.writer.clone()
            }),
            cluster_id: cfg.cluster_id.clone(),
            clients,
            links,
            events_tx,
            events,
            state,
            stop,
            epoch: Instant::now(),
            waiting: VecDeque::new(),
            queued: VecDeque::new(),
            election_started_ms: 0,
            answered: 0,
            deferred: Vec::new(),
            gather_turns: cfg.gather_turns,
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        closing: CancellationToken,
        patience: Duration,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut give_up: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = closing.cancelled(), if give_up.is_none() => {
                    give_up = Some(Instant::now() + patience);
                    while let Ok(c) = cmds.try_recv() {
                        self.queued.push_back(c);
                    }
                    cmds.close();
                }
                cmd = cmds.recv(), if give_up.is_none() => match cmd {
                    Some(c) => {
                        self.queued.push_back(c);
                        while let Ok(c) = cmds.try_recv() {
                            self.queued.push_back(c);
                        }
                    }
                    // Every handle dropped: finish as `close` does.
                    None => give_up = Some(Instant::now() + patience),
                },
                wire = std::future::poll_fn(|cx| poll_links(&mut self.links, cx)) => {
                    self.on_wire(wire);
                    // Whatever else has arrived, before stepping once.
                    while let Some(wire) =
                        std::future::poll_fn(|cx| poll_links(&mut self.links, cx)).now_or_never()
                    {
                        self.on_wire(wire);
                    }
                }
                Some(ev) = self.events.recv() => {
                    self.handle(ev);
                    while let Ok(ev) = self.events.try_recv() {
                        self.handle(ev);
                    }
                }
                _ = tick.tick() => {}
                _ = self.stop.cancelled() => break,
            }
            let answered = std::mem::take(&mut self.answered);
            if answered > 0 {
                // An answered caller runs on this thread only once the
                // driver yields; sending the new commit LSN to every
                // replica first would add three socket writes to its
                // commit latency.
                tokio::task::yield_now().await;
                let out = std::mem::take(&mut self.deferred);
                self.dispatch(out);
                // What they appended since goes out with the commit LSN.
                if give_up.is_none() {
                    if answered > 1 {
                        self.gather().await;
                    }
                    while let Ok(c) = cmds.try_recv() {
                        self.queued.push_back(c);
                    }
                }
            }
            self.step();
            if let Some(give_up) = give_up {
                let finished = self.waiting.is_empty()
                    && self.queued.is_empty()
                    && self.writer.all_told_commit();
                if finished || Instant::now() >= give_up {
                    break;
                }
            }
        }
        self.stop.cancel();
        self.fail_all(|| LogError::Shutdown);
    }

    /// Group commit under load. The callers just answered, with any other
    /// runnable session, are about to commit again: yielding a few more
    /// scheduler turns lets their batches share the next append (one write
    /// and one fsync on each replica) instead of spreading over the ones
    /// that follow. On two cores, three turns took the batches per append
    /// under sysbench at 16 threads from 7.6 to 10.9–11.8 and the CPU per
    /// commit down by about a tenth (docs/logservice.md). Only after a
    /// group of more than one: a lone session, whose next commit cannot
    /// arrive during the wait, is never held back.
    async fn gather(&self) {
        for _ in 0..self.gather_turns {
            tokio::task::yield_now().await;
        }
    }

    /// What came off a replica's append connection.
    fn on_wire(&mut self, wire: Wire) {
        match wire {
            Wire::Response(r, Ok(msg)) => match AppendResponse::try_from(msg) {
                Ok(mut resp) => {
                    resp.replica_id = r;
                    self.handle(Event::Append(resp));
                }
                Err(e) => warn!(replica = r, error = %e, "bad append response"),
            },
            Wire::Response(r, Err(e)) | Wire::Broken(r, e) => self.reconnect(r, e),
        }
    }

    /// Drops replica `r`'s append connection, with every message still
    /// queued on it, and opens a new one after a pause.
    fn reconnect(&mut self, r: ReplicaId, why: LogError) {
        let link = &mut self.links[r as usize - 1];
        if link.conn.take().is_none() {
            return;
        }
        warn!(replica = r, error = %why, "append connection failed; reconnecting");
        tokio::spawn(connect_link(
            r,
            link.addr.clone(),
            RECONNECT_DELAY,
            self.events_tx.clone(),
            self.stop.clone(),
        ));
    }

    fn handle(&mut self, ev: Event) {
        let out = match ev {
            Event::Promise(p) => self.writer.on_promise(p),
            Event::Append(resp) => self.writer.on_append_response(resp),
            Event::Connected(r, stream) => {
                // A message made for an earlier connection went with it: a
                // restarted replica (even on an empty disk) sees only
                // messages made after the writer knew, and what it
                // acknowledged before no longer counts.
                self.links[r as usize - 1].conn = Some(Conn::new(stream));
                self.writer.on_replica_reset(r);
                Vec::new()
            }
            Event::Fetch(from, Ok(resp)) => self.writer.on_fetch_response(from, resp),
            Event::Fetch(_, Err(e)) => {
                warn!(error = %e, "fetching the adopted log failed");
                self.writer.on_fetch_error();
                Vec::new()
            }
        };
        // Callers first: what the writer sends now (more bytes, the new
        // commit LSN) is not on their commit's path, so it waits until
        // they have run (see `run`).
        self.answer_committed();
        match self.answered {
            0 => self.dispatch(out),
            _ => self.deferred.extend(out),
        }
    }

    /// Resolves every waiting `append` whose batch is committed, after
    /// publishing the state: an answered caller then never sees a commit
    /// LSN below its own batch (the driver may yield several turns before
    /// its next step publishes again).
    fn answer_committed(&mut self) {
        let commit = self.writer.commit();
        if self.waiting.front().is_some_and(|(lsn, _)| *lsn <= commit) {
            self.publish_state();
        }
        while self.waiting.front().is_some_and(|(lsn, _)| *lsn <= commit) {
            let (lsn, done) = self.waiting.pop_front().expect("checked");
            let _ = done.send(Ok(lsn));
            self.answered += 1;
        }
    }

    /// Publishes the writer's phase, term, commit and end LSNs.
    fn publish_state(&self) {
        let s = WriterState {
            phase: self.writer.phase(),
            term: self.writer.term(),
            commit_lsn: self.writer.commit(),
            end_lsn: self.writer.end(),
        };
        self.state
            .send_if_modified(|old| std::mem::replace(old, s) != s);
    }

    /// Submits queued batches, sends what is due, answers what committed.
    fn step(&mut self) {
        let now = self.now_ms();
        self.submit_queued();
        let out = self.writer.pump(now);
        self.dispatch(out);
        self.answer_committed();
        match self.writer.phase() {
            Phase::Fenced { by_term } => {
                let term = self.writer.term();
                self.fail_all(|| LogError::Fenced {
                    term,
                    promised: by_term,
                });
            }
            Phase::Idle => self.elect(now),
            Phase::Electing { .. } | Phase::Recovering { .. }
                if now - self.election_started_ms > 2000 =>
            {
                self.elect(now)
            }
            _ => {}
        }
        self.publish_state();
    }

    fn submit_queued(&mut self) {
        while let Some(cmd) = self.queued.front() {
            let err = match self.writer.submit(&cmd.batch) {
                Ok(lsn) => {
                    let cmd = self.queued.pop_front().expect("checked");
                    self.waiting.push_back((lsn, cmd.done));
                    continue;
                }
                Err(SubmitError::Full | SubmitError::NotLeader) => return,
                Err(SubmitError::Fenced { by_term }) => LogError::Fenced {
                    term: self.writer.term(),
                    promised: by_term,
                },
                Err(SubmitError::TooLarge) => LogError::BadRequest(format!(
                    "a batch of {} bytes is larger than the writer's uncommitted-bytes bound",
                    cmd.batch.len()
                )),
            };
            let cmd = self.queued.pop_front().expect("checked");
            let _ = cmd.done.send(Err(err));
        }
    }

    fn elect(&mut self, now: u64) {
        self.election_started_ms = now;
        let out = self.writer.start_election(now);
        debug!(term = self.writer.term(), "starting an election");
        self.dispatch(out);
    }

    fn fail_all(&mut self, err: impl Fn() -> LogError) {
        for (_, done) in self.waiting.drain(..) {
            let _ = done.send(Err(err()));
        }
        for cmd in self.queued.drain(..) {
            let _ = cmd.done.send(Err(err()));
        }
    }

    fn dispatch(&mut self, out: Vec<Outgoing>) {
        for o in out {
            match o {
                Outgoing::Append(r, req) => {
                    // No connection, or too much unsent on it: the replica
                    // is gone or slow, and the writer resends.
                    let Some(conn) = self.links[r as usize - 1].conn.as_mut() else {
                        continue;
                    };
                    if conn.out.len() >= LINK_BUFFER_BYTES {
                        continue;
                    }
                    let mut msg = pb::AppendRequest::from(&req);
                    msg.cluster_id = self.cluster_id.clone();
                    framed::put_request(&mut conn.out, &msg);
                    if let Err(e) = conn.flush() {
                        self.reconnect(r, e);
                    }
                }
                Outgoing::Elect(r, req) => {
                    let mut client = self.clients[r as usize - 1].clone();
                    let mut req = pb::ElectRequest::from(&req);
                    req.cluster_id = self.cluster_id.clone();
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        let call =
                            tokio::time::timeout(Duration::from_secs(1), client.elect(req)).await;
                        if let Ok(Ok(resp)) = call
                            && let Ok(mut p) = Promise::try_from(resp.into_inner())
                        {
                            p.replica_id = r;
                            let _ = events.send(Event::Promise(p)).await;
                        }
                    });
                }
                Outgoing::Fetch(r, req) => {
                    let mut client = self.clients[r as usize - 1].clone();
                    let mut req = pb::FetchRequest::from(&req);
                    req.cluster_id = self.cluster_id.clone();
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        let resp = match client.fetch(req).await {
                            Ok(resp) => FetchResponse::try_from(resp.into_inner()),
                            Err(status) => Err(status.into()),
                        };
                        let _ = events.send(Event::Fetch(r, resp)).await;
                    });
                }
            }
        }
    }
}

/// The append connection to one replica, owned by the driver.
struct Link {
    /// The replica's `host:port`.
    addr: String,
    /// None while (re)connecting.
    conn: Option<Conn>,
}

struct Conn {
    stream: TcpStream,
    /// Frames not yet written, starting with the magic.
    out: BytesMut,
    /// Bytes read that are not yet a whole frame.
    inbuf: BytesMut,
}

/// What one look at the append connections found.
enum Wire {
    /// A frame from replica `r`: an acknowledgement, or the error the
    /// replica ended the stream with.
    Response(ReplicaId, Result<pb::AppendResponse>),
    /// The connection to replica `r` broke.
    Broken(ReplicaId, LogError),
}

/// Room kept free in a connection's read buffer before each read.
const READ_ROOM: usize = 64 << 10;

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let mut out = BytesMut::with_capacity(64 << 10);
        out.extend_from_slice(framed::MAGIC);
        Conn {
            stream,
            out,
            inbuf: BytesMut::with_capacity(READ_ROOM),
        }
    }

    /// Writes what the socket takes now of the unsent bytes.
    fn flush(&mut self) -> Result<()> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(LogError::io("writing to a log replica")(e)),
            }
        }
        Ok(())
    }

    /// Writes unsent bytes as the socket takes them, and returns the next
    /// whole frame once it has arrived.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes>> {
        // A `WouldBlock` clears the socket's readiness, so the next poll
        // registers this task for it: neither loop spins.
        while !self.out.is_empty() {
            match self.stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => self.flush()?,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(LogError::io("waiting to write to a log replica")(e)));
                }
                Poll::Pending => break,
            }
        }
        loop {
            if let Some(frame) = framed::take_frame(&mut self.inbuf)? {
                return Poll::Ready(Ok(frame));
            }
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(LogError::io("waiting to read from a log replica")(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
            if self.inbuf.capacity() - self.inbuf.len() < READ_ROOM / 4 {
                self.inbuf.reserve(READ_ROOM);
            }
            match self.stream.try_read_buf(&mut self.inbuf) {
                Ok(0) => {
                    return Poll::Ready(Err(LogError::Unavailable(
                        "the log replica closed the append connection".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(LogError::io("reading from a log replica")(e))),
            }
        }
    }
}

/// The first event on any connection: a frame, or a broken connection.
fn poll_links(links: &mut [Link], cx: &mut Context<'_>) -> Poll<Wire> {
    for (i, link) in links.iter_mut().enumerate() {
        let r = i as ReplicaId + 1;
        let Some(conn) = link.conn.as_mut() else {
            continue;
        };
        match conn.poll_frame(cx) {
            Poll::Ready(Ok(frame)) => {
                return Poll::Ready(Wire::Response(r, framed::decode_response(frame)));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Wire::Broken(r, e)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}

/// Opens an append connection to replica `id` after `delay`, retrying
/// until it succeeds or the writer stops, and hands it to the driver.
async fn connect_link(
    id: ReplicaId,
    addr: String,
    delay: Duration,
    events: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let mut delay = delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
        delay = RECONNECT_DELAY;
        let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr));
        let stream = tokio::select! {
            s = connect => s,
            _ = stop.cancelled() => return,
        };
        if let Ok(Ok(stream)) = stream {
            // Each message is one write that must leave at once.
            let _ = stream.set_nodelay(true);
            let _ = events.send(Event::Connected(id, stream)).await;
            return;
        }
    }
}

/// `host:port` of an endpoint given as `http://host:port`.
fn host_and_port(endpoint: &str) -> Result<String> {
    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| LogError::BadRequest(format!("bad endpoint {endpoint:?}: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| LogError::BadRequest(format!("endpoint {endpoint:?} has no host")))?;
    let port = authority
        .port_u16()
        .ok_or_else(|| LogError::BadRequest(format!("endpoint {endpoint:?} has no port")))?;
    Ok(format!("{}:{port}", authority.host()))
}

/// A replica's status, as its Status RPC reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub replica_id: ReplicaId,
    pub promised_term: u64,
    pub voter: bool,
    pub flush_lsn: Lsn,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub start_lsn: Lsn,
    pub segment_count: u64,
    pub fsync_count: u64,
}

pub async fn replica_status(endpoint: &str, cluster_id: &str) -> Result<ReplicaStatus> {
    status_of(connect_replica(endpoint).await?, cluster_id).await
}

async fn status_of(
    mut client: LogServiceClient<Channel>,
    cluster_id: &str,
) -> Result<ReplicaStatus> {
    let s = client
        .status(pb::StatusRequest {
            cluster_id: cluster_id.to_string(),
        })
        .await?
        .into_inner();
    Ok(ReplicaStatus {
        replica_id: s.replica_id,
        promised_term: s.promised_term,
        voter: s.voter,
        flush_lsn: Lsn(s.flush_lsn),
        commit_lsn: Lsn(s.commit_lsn),
        end_lsn: Lsn(s.end_lsn),
        start_lsn: Lsn(s.start_lsn),
        segment_count: s.segment_count,
        fsync_count: s.fsync_count,
    })
}

/// How long a reader's stream may stay silent before it asks the other
/// replicas whether they know a later commit.
const READER_QUIET: Duration = Duration::from_secs(1);

/// Follows the committed log from an LSN, failing over between replicas.
pub struct LogReader {
    cluster_id: String,
    consumer_id: String,
    endpoints: Vec<String>,
    /// A channel per endpoint, made on first use and kept: a reader that
    /// asks its peers' status every quiet second, or reports its safe LSN,
    /// must not open a connection each time.
    clients: Vec<Option<LogServiceClient<Channel>>>,
    turn: usize,
    next: Lsn,
    stream: Option<tonic::Streaming<pb::ReadResponse>>,
}

impl LogReader {
    pub fn new(
        cluster_id: impl Into<String>,
        consumer_id: impl Into<String>,
        endpoints: Vec<String>,
        from: Lsn,
    ) -> Self {
        LogReader {
            cluster_id: cluster_id.into(),
            consumer_id: consumer_id.into(),
            clients: vec![None; endpoints.len()],
            endpoints,
            turn: 0,
            next: from,
            stream: None,
        }
    }

    /// The channel to endpoint `i`, made on first use.
    async fn client(&mut self, i: usize) -> Result<LogServiceClient<Channel>> {
        if let Some(client) = &self.clients[i] {
            return Ok(client.clone());
        }
        let client = connect_replica(&self.endpoints[i]).await?;
        self.clients[i] = Some(client.clone());
        Ok(client)
    }

    /// The LSN the next chunk starts at.
    pub fn position(&self) -> Lsn {
        self.next
    }

    /// The next chunk of committed log (whole records), waiting for one.
    /// A replica that fails (down, corrupt, trimmed) is left for the next;
    /// an error comes back only when every replica has failed in a row.
    pub async fn next_chunk(&mut self) -> Result<ReadChunk> {
        let mut failures = 0;
        loop {
            match self.try_next().await {
                Ok(chunk) => return Ok(chunk),
                Err(e) => {
                    warn!(endpoint = %self.endpoints[self.turn % self.endpoints.len()], error = %e, "log read failed; trying the next replica");
                    self.stream = None;
                    self.turn += 1;
                    failures += 1;
                    if failures >= self.endpoints.len() {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn try_next(&mut self) -> Result<ReadChunk> {
        let msg = loop {
            if self.stream.is_none() {
                let mut client = self.client(self.turn % self.endpoints.len()).await?;
                let req = pb::ReadRequest {
                    cluster_id: self.cluster_id.clone(),
                    consumer_id: self.consumer_id.clone(),
                    start_lsn: self.next.0,
                };
                self.stream = Some(client.read(req).await?.into_inner());
            }
            let stream = self.stream.as_mut().expect("just set");
            // `message` is cancel-safe: a timeout loses nothing.
            if let Ok(msg) = tokio::time::timeout(READER_QUIET, stream.message()).await {
                break msg?;
            }
            if let Some(turn) = self.peer_ahead().await {
                debug!(to = %self.endpoints[turn], next = %self.next, "a peer knows a later commit; switching replicas");
                self.turn = turn;
                self.stream = None;
            }
        }
        .ok_or_else(|| LogError::Unavailable("read stream ended".into()))?;
        if msg.start_lsn != self.next.0 {
            return Err(LogError::BadRequest(format!(
                "read stream jumped to {} from {}",
                msg.start_lsn, self.next
            )));
        }
        strata_wal::record::scan(&msg.data, self.next)?;
        let chunk = ReadChunk {
            start: self.next,
            data: msg.data,
            commit_lsn: Lsn(msg.commit_lsn),
        };
        self.next = self.next.advance(chunk.data.len() as u64);
        Ok(chunk)
    }

    /// Another replica whose commit LSN is past what this reader has read,
    /// when its own went quiet. A replica learns the commit LSN from the
    /// writer; one outside the last quorum of a writer that crashed right
    /// after a commit keeps an older one until the next writer is elected.
    async fn peer_ahead(&mut self) -> Option<usize> {
        let n = self.endpoints.len();
        for step in 1..n {
            let turn = (self.turn + step) % n;
            let Ok(client) = self.client(turn).await else {
                continue;
            };
            let status =
                tokio::time::timeout(READER_QUIET, status_of(client, &self.cluster_id)).await;
            if let Ok(Ok(s)) = status
                && s.commit_lsn > self.next
            {
                return Some(turn);
            }
        }
        None
    }

    /// Tells every reachable replica this consumer needs nothing below `safe`.
    pub async fn report_safe_lsn(&mut self, safe: Lsn) -> Result<()> {
        let mut last_err = None;
        for i in 0..self.endpoints.len() {
            let req = pb::ReportSafeLsnRequest {
                cluster_id: self.cluster_id.clone(),
                consumer_id: self.consumer_id.clone(),
                safe_lsn: safe.0,
            };
            let result = match self.client(i).await {
                Ok(mut client) => client.report_safe_lsn(req).await.map_err(LogError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                last_err = Some(e);
            }
        }
        match last_err {
            Some(e) if self.endpoints.len() == 1 => Err(e),
            _ => Ok(()),
        }
    }
}
