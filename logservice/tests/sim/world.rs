//! One simulated run: three replicas, two competing writers, a reader, a
//! lossy network and crashing disks, driven by one seeded [`Rng`] and one
//! event queue in logical time.
//!
//! The replicas and writers are the real state machines
//! ([`Replica`]`<`[`MemStorage`]`>` and [`Writer`]); the world plays their
//! servers and clients the way `server.rs` and `client.rs` do: a replica
//! answers an append that wrote bytes only once a sync covering them has
//! completed, a lagging replica fetches committed log from a peer, a writer
//! is pumped on a tick and re-elects when it lost a round or was fenced,
//! and a writer learns that its link to a crashed replica broke
//! ([`Writer::on_replica_reset`]) before the replica's new process starts.
//!
//! A run has two phases. In the *chaos* phase the network drops, delays,
//! duplicates and partitions messages, replicas crash (losing or tearing
//! what was not synced) and one replica restarts wiped, writers compete and
//! batches are submitted. In the *final* phase the network heals, every
//! replica is up, one writer is chosen to commit one more batch, and the
//! run goes on until every replica holds the writer's committed log; then
//! [`super::check::final_check`] looks at the disks. Any error a state
//! machine returns for input a correct protocol would not produce fails the
//! run, as does a broken invariant.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use strata_logservice::LogError;
use strata_logservice::msg::{AppendOutcome, FetchResponse, ReplicaId};
use strata_logservice::replica::{Replica, SyncTicket};
use strata_logservice::storage::{MemStorage, MemSync, Storage, SyncJob};
use strata_logservice::writer::{Outgoing, Phase, Writer, WriterConfig};
use strata_wal::record::{RecordIter, decode_batches};
use strata_wal::{Batch, BatchBuilder, Lsn, Record};

use super::check::{self, Ack, Checker, WriterRef};
use super::net::{Envelope, Msg, Net, Node};
use super::rng::Rng;

pub const CLUSTER: &str = "sim";
pub const REPLICAS: [ReplicaId; 3] = [1, 2, 3];
const WRITER_IDS: [&str; 2] = ["w1", "w2"];
const MS: u64 = 1000;

/// The writer configuration of a simulated run: small appends, a small
/// window and fast timers, so that splitting, lagging replicas, peer
/// catch-up and retransmission all happen in a few simulated seconds.
pub fn writer_config(id: &str) -> WriterConfig {
    let mut cfg = WriterConfig::new(id, REPLICAS.to_vec());
    cfg.max_append_bytes = 4 << 10;
    cfg.max_inflight_appends = 3;
    // Between one append and the uncommitted bound, so that runs both
    // gather small batches and pipeline backlogs.
    cfg.pipeline_min_bytes = 8 << 10;
    cfg.max_uncommitted_bytes = 64 << 10;
    cfg.window_bytes = 16 << 10;
    cfg.heartbeat_ms = 20;
    cfg.retransmit_ms = 100;
    cfg
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub chaos_ms: u64,
    /// How long the final phase may take before the run counts as stuck.
    pub settle_ms: u64,
    /// Print every event (for replaying one seed).
    pub trace: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub events: u64,
    pub messages: u64,
    pub acks: usize,
    pub committed_bytes: u64,
    pub elections: u64,
    pub crashes: u64,
    pub peer_fetches: u64,
    pub wiped: Option<ReplicaId>,
    pub sim_ms: u64,
    /// crc32 of the final committed log.
    pub log_crc32: u32,
}

enum Event {
    Deliver(Envelope),
    WriterTick(usize),
    ReplicaTick(ReplicaId),
    SyncDone {
        id: ReplicaId,
        life: u64,
        job: MemSync,
        ticket: SyncTicket,
    },
    Restart {
        id: ReplicaId,
        life: u64,
    },
    /// A writer notices that its connection to a replica broke.
    LinkReset {
        writer: usize,
        life: u64,
        replica: ReplicaId,
    },
    Crash,
    Wipe,
    Partition,
    Heal(Vec<(Node, Node)>),
    Kick,
    Submit,
    Read,
    EndChaos,
}

struct Scheduled {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed: the heap pops the earliest event, ties in the order made.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at_us,
            seq: self.seq,
            event,
        });
    }
}

enum ReplicaState {
    Up(Box<Replica<MemStorage>>),
    Down(MemStorage),
}

struct ReplicaNode {
    life: u64,
    state: ReplicaState,
    /// Append streams waiting for a sync: writer instance -> the log end
    /// that must be durable before it gets its acknowledgement.
    awaiting: BTreeMap<WriterRef, Lsn>,
    /// A peer catch-up is under way until then.
    catch_up_until_us: u64,
    catch_up_rounds: u32,
    wipe_on_restart: bool,
}

impl ReplicaNode {
    fn disk(&self) -> &MemStorage {
        match &self.state {
            ReplicaState::Up(r) => r.storage(),
            ReplicaState::Down(d) => d,
        }
    }
}

struct Submitted {
    term: u64,
    lsn: Lsn,
    bytes: Vec<u8>,
    is_final: bool,
}

struct WriterNode {
    id: &'static str,
    life: u64,
    writer: Writer,
    wants_lead: bool,
    next_elect_us: Option<u64>,
    election_deadline_us: u64,
    retire_at_us: Option<u64>,
    pending: VecDeque<Submitted>,
    last_commit: Lsn,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RunPhase {
    Chaos,
    Final { writer: usize },
}

pub struct World {
    cfg: SimConfig,
    rng: Rng,
    now_us: u64,
    queue: Queue,
    outbox: Vec<(Node, Node, Option<u64>, Msg)>,
    net: Net,
    replicas: BTreeMap<ReplicaId, ReplicaNode>,
    writers: Vec<WriterNode>,
    checker: Checker,
    phase: RunPhase,
    reader_at: Lsn,
    final_acked: bool,
    report: Report,
}

type Sim<T = ()> = Result<T, String>;

fn bug(what: impl std::fmt::Display, e: LogError) -> String {
    format!("{what}: {e}")
}

fn all_nodes() -> Vec<Node> {
    let mut nodes: Vec<Node> = REPLICAS.iter().map(|&r| Node::Replica(r)).collect();
    nodes.extend((0..WRITER_IDS.len()).map(Node::Writer));
    nodes
}

/// Runs one seed to the end; `Err` names the broken rule.
pub fn run(seed: u64, cfg: SimConfig) -> Sim<Report> {
    let mut w = World::new(seed, cfg)?;
    let deadline_us = (w.cfg.chaos_ms + w.cfg.settle_ms) * MS;
    while !w.done() {
        let Some(s) = w.queue.heap.pop() else {
            return Err("the event queue ran dry".into());
        };
        w.now_us = s.at_us;
        if w.now_us > deadline_us {
            return Err(format!(
                "liveness: the cluster did not settle\n{}",
                w.describe()
            ));
        }
        w.report.events += 1;
        if w.cfg.trace {
            w.trace_event(&s.event);
        }
        let t = w.now_us;
        w.handle(s.event)
            .map_err(|e| format!("t={}.{:03}ms: {e}", t / MS, t % MS))?;
        w.flush_outbox();
    }
    w.finish()
}

impl World {
    fn new(seed: u64, cfg: SimConfig) -> Sim<World> {
        let mut rng = Rng::new(seed);
        let mut replicas = BTreeMap::new();
        for id in REPLICAS {
            let r = Replica::open(MemStorage::new(), id, CLUSTER, rng.next_u64())
                .map_err(|e| bug("opening a new replica", e))?;
            replicas.insert(
                id,
                ReplicaNode {
                    life: 0,
                    state: ReplicaState::Up(Box::new(r)),
                    awaiting: BTreeMap::new(),
                    catch_up_until_us: 0,
                    catch_up_rounds: 0,
                    wipe_on_restart: false,
                },
            );
        }
        let writers = WRITER_IDS
            .iter()
            .enumerate()
            .map(|(i, &id)| WriterNode {
                id,
                life: 0,
                writer: Writer::new(writer_config(id)),
                wants_lead: i == 0,
                next_elect_us: (i == 0).then_some(0),
                election_deadline_us: 0,
                retire_at_us: None,
                pending: VecDeque::new(),
                last_commit: Lsn::ZERO,
            })
            .collect();
        let mut w = World {
            cfg,
            rng,
            now_us: 0,
            queue: Queue::default(),
            outbox: Vec::new(),
            net: Net::new(),
            replicas,
            writers,
            checker: Checker::default(),
            phase: RunPhase::Chaos,
            reader_at: Lsn::ZERO,
            final_acked: false,
            report: Report::default(),
        };
        w.schedule_start();
        Ok(w)
    }

    fn schedule_start(&mut self) {
        for i in 0..self.writers.len() {
            let at = self.rng.range(0, 5 * MS);
            self.queue.push(at, Event::WriterTick(i));
        }
        for id in REPLICAS {
            let at = self.rng.range(0, 20 * MS);
            self.queue.push(at, Event::ReplicaTick(id));
        }
        let chaos = self.cfg.chaos_ms * MS;
        let at = |rng: &mut Rng, lo: u64, hi: u64| rng.range(lo, hi);
        let t = at(&mut self.rng, 50 * MS, 400 * MS);
        self.queue.push(t, Event::Crash);
        let t = at(&mut self.rng, 20 * MS, 300 * MS);
        self.queue.push(t, Event::Partition);
        let t = at(&mut self.rng, 100 * MS, 600 * MS);
        self.queue.push(t, Event::Kick);
        let t = at(&mut self.rng, chaos / 5, chaos * 7 / 10);
        self.queue.push(t, Event::Wipe);
        self.queue.push(10 * MS, Event::Submit);
        self.queue.push(15 * MS, Event::Read);
        self.queue.push(chaos, Event::EndChaos);
    }

    fn in_chaos(&self) -> bool {
        self.phase == RunPhase::Chaos
    }

    fn handle(&mut self, event: Event) -> Sim {
        match event {
            Event::Deliver(env) => self.deliver(env),
            Event::WriterTick(i) => self.writer_tick(i),
            Event::ReplicaTick(id) => self.replica_tick(id),
            Event::SyncDone {
                id,
                life,
                job,
                ticket,
            } => self.sync_done(id, life, job, ticket),
            Event::Restart { id, life } => self.restart(id, life),
            Event::LinkReset {
                writer,
                life,
                replica,
            } => {
                self.link_reset(writer, life, replica);
                Ok(())
            }
            Event::Crash => self.chaos_crash(),
            Event::Wipe => self.chaos_wipe(),
            Event::Partition => {
                self.chaos_partition();
                Ok(())
            }
            Event::Heal(pairs) => {
                self.net.heal(&pairs);
                Ok(())
            }
            Event::Kick => self.chaos_kick(),
            Event::Submit => self.submit_workload(),
            Event::Read => self.read(),
            Event::EndChaos => self.end_chaos(),
        }
    }

    // ---- the network ----

    fn life_of(&self, node: Node) -> u64 {
        match node {
            Node::Replica(id) => self.replicas[&id].life,
            Node::Writer(i) => self.writers[i].life,
        }
    }

    /// Queues a message from `from` (its current life) to `to`: to the
    /// given life of it (a response to a request), or to its current one.
    fn send(&mut self, from: Node, to: Node, to_life: Option<u64>, msg: Msg) {
        self.outbox.push((from, to, to_life, msg));
    }

    fn flush_outbox(&mut self) {
        for (from, to, to_life, msg) in std::mem::take(&mut self.outbox) {
            self.report.messages += 1;
            let from_life = self.life_of(from);
            let to_life = to_life.unwrap_or_else(|| self.life_of(to));
            for delay in self.net.fate(&mut self.rng) {
                let env = Envelope {
                    from,
                    from_life,
                    to,
                    to_life,
                    msg: msg.clone(),
                };
                self.queue.push(self.now_us + delay, Event::Deliver(env));
            }
        }
    }

    fn deliver(&mut self, env: Envelope) -> Sim {
        let live = self.life_of(env.from) == env.from_life && self.life_of(env.to) == env.to_life;
        if !live || !self.net.connected(env.from, env.to) {
            return Ok(());
        }
        match env.to {
            Node::Replica(id) => self.replica_receive(id, env),
            Node::Writer(i) => self.writer_receive(i, env),
        }
    }

    // ---- replicas ----

    fn replica_receive(&mut self, id: ReplicaId, env: Envelope) -> Sim {
        let node = self.replicas.get_mut(&id).expect("a replica");
        let ReplicaState::Up(r) = &mut node.state else {
            return Ok(());
        };
        let me = Node::Replica(id);
        let back = Some(env.from_life);
        match env.msg {
            Msg::Elect(req) => {
                let p = r
                    .elect(&req)
                    .map_err(|e| bug(format!("replica {id}: elect"), e))?;
                self.send(me, env.from, back, Msg::Promise(p));
            }
            Msg::Append(req) => {
                let Node::Writer(w) = env.from else {
                    return Err("an append from a replica".into());
                };
                let resp = r
                    .append(&req)
                    .map_err(|e| bug(format!("replica {id}: append"), e))?;
                let end = r.end();
                if resp.outcome == AppendOutcome::Accepted && durable_end(r.storage()) < end {
                    node.awaiting.insert((w, env.from_life), end);
                } else {
                    self.send(me, env.from, back, Msg::AppendResp(resp));
                }
                self.replica_changed(id)?;
            }
            Msg::Fetch(req) | Msg::PeerFetch(req) => {
                let peer = matches!(env.from, Node::Replica(_));
                let resp = match r.fetch(&req) {
                    Ok(resp) => Some(resp),
                    Err(LogError::Fenced { .. }) if !peer => None,
                    Err(e) => return Err(bug(format!("replica {id}: fetch {req:?}"), e)),
                };
                let msg = if peer {
                    Msg::PeerFetchResp(resp)
                } else {
                    Msg::FetchResp(resp)
                };
                self.send(me, env.from, back, msg);
            }
            Msg::PeerFetchResp(resp) => self.apply_peer_fetch(id, env.from, resp)?,
            Msg::Promise(_) | Msg::AppendResp(_) | Msg::FetchResp(_) => {
                return Err("a writer's message sent to a replica".into());
            }
        }
        Ok(())
    }

    fn apply_peer_fetch(&mut self, id: ReplicaId, peer: Node, resp: Option<FetchResponse>) -> Sim {
        let node = self.replicas.get_mut(&id).expect("a replica");
        let ReplicaState::Up(r) = &mut node.state else {
            return Ok(());
        };
        let Some(resp) = resp else {
            node.catch_up_until_us = 0;
            return Ok(());
        };
        let more = r.apply_peer_fetch(&resp).map_err(|e| {
            bug(
                format!("replica {id}: applying a peer's fetch from {peer:?}"),
                e,
            )
        })?;
        check_commit_is_batch_end(r)?;
        node.catch_up_rounds += 1;
        if more && node.catch_up_rounds < 64 {
            let req = r.catch_up_request(self.rng.range(1 << 10, 16 << 10) as usize);
            self.report.peer_fetches += 1;
            self.send(Node::Replica(id), peer, None, Msg::PeerFetch(req));
        } else {
            node.catch_up_until_us = 0;
        }
        self.replica_changed(id)
    }

    /// After anything that may have written or cut the log: start a sync,
    /// answer append streams whose bytes are durable (or were cut).
    fn replica_changed(&mut self, id: ReplicaId) -> Sim {
        let node = self.replicas.get_mut(&id).expect("a replica");
        let ReplicaState::Up(r) = &mut node.state else {
            return Ok(());
        };
        if r.commit() > r.end() {
            return Err(format!(
                "replica {id}: commit {} above its log end {}",
                r.commit().0,
                r.end().0
            ));
        }
        if let Some((job, ticket)) = r.begin_sync() {
            let delay = if self.rng.chance(0.05) {
                self.rng.range(10 * MS, 40 * MS)
            } else {
                self.rng.range(200, 3 * MS)
            };
            let life = node.life;
            self.queue.push(
                self.now_us + delay,
                Event::SyncDone {
                    id,
                    life,
                    job,
                    ticket,
                },
            );
        }
        let durable = durable_end(r.storage());
        let end = r.end();
        let ready: Vec<WriterRef> = node
            .awaiting
            .iter()
            .filter(|(_, target)| durable >= **target || end < **target)
            .map(|(w, _)| *w)
            .collect();
        for w in ready {
            node.awaiting.remove(&w);
            let ack = r.ack();
            self.outbox.push((
                Node::Replica(id),
                Node::Writer(w.0),
                Some(w.1),
                Msg::AppendResp(ack),
            ));
        }
        Ok(())
    }

    fn sync_done(&mut self, id: ReplicaId, life: u64, job: MemSync, ticket: SyncTicket) -> Sim {
        let node = self.replicas.get_mut(&id).expect("a replica");
        if node.life != life {
            return Ok(()); // the disk crashed before this sync ran
        }
        let ReplicaState::Up(r) = &mut node.state else {
            return Err("a sync on a replica that is down".into());
        };
        job.run().map_err(|e| bug("a sync job", e))?;
        r.storage_mut().sync_to(ticket.end);
        r.finish_sync(ticket)
            .map_err(|e| bug(format!("replica {id}: finish_sync"), e))?;
        if self.rng.chance(0.02) {
            check_commit_is_batch_end(r)?; // O(log): sampled
        }
        self.replica_changed(id)
    }

    fn replica_tick(&mut self, id: ReplicaId) -> Sim {
        let next = self.now_us + self.rng.range(10 * MS, 30 * MS);
        self.queue.push(next, Event::ReplicaTick(id));
        let node = self.replicas.get_mut(&id).expect("a replica");
        let ReplicaState::Up(r) = &mut node.state else {
            return Ok(());
        };
        if self.rng.chance(0.1) {
            r.checkpoint()
                .map_err(|e| bug(format!("replica {id}: checkpoint"), e))?;
        }
        if r.is_behind() && self.now_us >= node.catch_up_until_us {
            let peers: Vec<ReplicaId> = REPLICAS.iter().copied().filter(|&p| p != id).collect();
            let peer = self.rng.pick(&peers);
            let req = r.catch_up_request(self.rng.range(1 << 10, 16 << 10) as usize);
            node.catch_up_until_us = self.now_us + 200 * MS;
            node.catch_up_rounds = 0;
            self.report.peer_fetches += 1;
            self.send(
                Node::Replica(id),
                Node::Replica(peer),
                None,
                Msg::PeerFetch(req),
            );
        }
        Ok(())
    }

    fn crash(&mut self, id: ReplicaId) {
        let node = self.replicas.get_mut(&id).expect("a replica");
        let ReplicaState::Up(r) = &mut node.state else {
            return; // already down
        };
        let mut disk = std::mem::take(r.storage_mut());
        let volatile = disk.volatile_len() as u64;
        let keep = if self.rng.chance(0.2) {
            volatile
        } else {
            self.rng.below(volatile + 1)
        };
        let tear = self.rng.chance(0.5);
        if self.cfg.trace {
            eprintln!(
                "             r{id} crashes: keeps {keep} of {volatile} unsynced bytes{}{}",
                if tear { ", torn" } else { "" },
                if node.wipe_on_restart {
                    ", disk to be wiped"
                } else {
                    ""
                }
            );
        }
        disk.crash(keep as usize, tear);
        node.state = ReplicaState::Down(disk);
        node.life += 1;
        node.awaiting.clear();
        node.catch_up_until_us = 0;
        self.report.crashes += 1;
        let life = node.life;
        let down_us = self.rng.range(5 * MS, 300 * MS);
        self.queue
            .push(self.now_us + down_us, Event::Restart { id, life });
        // Each writer's stream to the dead process breaks before it can
        // talk to the new one (gRPC over TCP).
        for writer in 0..self.writers.len() {
            let at = self.now_us + self.rng.below(down_us);
            let life = self.writers[writer].life;
            self.queue.push(
                at,
                Event::LinkReset {
                    writer,
                    life,
                    replica: id,
                },
            );
        }
    }

    fn link_reset(&mut self, writer: usize, life: u64, replica: ReplicaId) {
        let node = &mut self.writers[writer];
        if node.life == life {
            node.writer.on_replica_reset(replica);
        }
    }

    fn restart(&mut self, id: ReplicaId, life: u64) -> Sim {
        let node = self.replicas.get_mut(&id).expect("a replica");
        if node.life != life {
            return Ok(());
        }
        let ReplicaState::Down(disk) =
            std::mem::replace(&mut node.state, ReplicaState::Down(MemStorage::new()))
        else {
            return Err("restarting a live replica".into());
        };
        let disk = if std::mem::take(&mut node.wipe_on_restart) {
            self.report.wiped = Some(id);
            MemStorage::new()
        } else {
            disk
        };
        let r = Replica::open(disk, id, CLUSTER, self.rng.next_u64())
            .map_err(|e| bug(format!("replica {id}: reopening"), e))?;
        // A torn tail is cut back to the last complete batch.
        let log = r
            .storage()
            .read(Lsn::ZERO, r.end().0 as usize)
            .map_err(|e| bug("reading", e))?;
        decode_batches(&log, Lsn::ZERO).map_err(|e| {
            format!("replica {id} reopened with a log that is not whole batches: {e}")
        })?;
        check_commit_is_batch_end(&r)?;
        node.state = ReplicaState::Up(Box::new(r));
        node.life += 1;
        Ok(())
    }

    // ---- writers ----

    fn writer_receive(&mut self, i: usize, env: Envelope) -> Sim {
        let w = &mut self.writers[i].writer;
        let out = match env.msg {
            Msg::Promise(p) => w.on_promise(p),
            Msg::AppendResp(resp) => w.on_append_response(resp),
            Msg::FetchResp(Some(resp)) => {
                let Node::Replica(from) = env.from else {
                    return Err("a fetch answer from a writer".into());
                };
                w.on_fetch_response(from, resp)
            }
            Msg::FetchResp(None) => {
                w.on_fetch_error();
                Vec::new()
            }
            _ => return Err("a replica's message sent to a writer".into()),
        };
        self.dispatch(i, out)?;
        self.after_writer(i)
    }

    fn dispatch(&mut self, i: usize, out: Vec<Outgoing>) -> Sim {
        let max_append = writer_config(self.writers[i].id).max_append_bytes;
        for o in out {
            let (to, msg) = match o {
                Outgoing::Elect(r, req) => (r, Msg::Elect(req)),
                Outgoing::Fetch(r, req) => (r, Msg::Fetch(req)),
                Outgoing::Append(r, req) => {
                    let records = RecordIter::new(&req.data, req.start).count();
                    if req.data.len() > max_append && records > 1 {
                        return Err(format!(
                            "writer {} sent an append of {} bytes ({records} records) to replica {r}: above max_append_bytes {max_append}",
                            self.writers[i].id,
                            req.data.len()
                        ));
                    }
                    (r, Msg::Append(req))
                }
            };
            self.send(Node::Writer(i), Node::Replica(to), None, msg);
        }
        Ok(())
    }

    /// Checks a writer after it moved: one leader per term, commit never
    /// backwards, and acknowledges what it committed.
    fn after_writer(&mut self, i: usize) -> Sim {
        let wref = (i, self.writers[i].life);
        let node = &mut self.writers[i];
        match node.writer.phase() {
            Phase::Leading => {}
            Phase::Fenced { .. } => {
                node.pending.clear();
                return Ok(());
            }
            Phase::Idle => {
                if node.wants_lead && node.next_elect_us.is_none() {
                    node.next_elect_us = Some(self.now_us + self.rng.range(5 * MS, 80 * MS));
                }
                return Ok(());
            }
            Phase::Electing { .. } | Phase::Recovering { .. } => return Ok(()),
        }
        let term = node.writer.term();
        let commit = node.writer.commit();
        if commit < node.last_commit {
            return Err(format!(
                "writer {:?} commit went back from {} to {}",
                wref, node.last_commit.0, commit.0
            ));
        }
        if commit > node.writer.end() {
            return Err(format!(
                "writer {wref:?} commit {} above its log end",
                commit.0
            ));
        }
        node.last_commit = commit;
        self.checker.leading(term, wref)?;
        while self.writers[i]
            .pending
            .front()
            .is_some_and(|p| p.lsn <= commit)
        {
            let p = self.writers[i].pending.pop_front().expect("checked");
            if p.term != term {
                return Err(format!(
                    "writer {wref:?} committed a batch of term {} in term {term}",
                    p.term
                ));
            }
            self.final_acked |= p.is_final;
            let ack = Ack {
                term,
                writer: wref,
                lsn: p.lsn,
                bytes: p.bytes,
            };
            self.check_durable_at_ack(&ack)?;
            self.checker.acknowledged(ack)?;
        }
        Ok(())
    }

    /// At the moment a batch is acknowledged, a majority of disks (up or
    /// down) hold it durably.
    fn check_durable_at_ack(&self, ack: &Ack) -> Sim {
        let holders = self
            .replicas
            .values()
            .filter(|n| check::durably_holds(n.disk(), ack.start(), &ack.bytes))
            .count();
        if holders < REPLICAS.len() / 2 + 1 {
            return Err(format!(
                "batch [{}, {}) acknowledged by {:?} in term {} is durable on {holders} replicas only",
                ack.start().0,
                ack.lsn.0,
                ack.writer,
                ack.term
            ));
        }
        Ok(())
    }

    fn writer_tick(&mut self, i: usize) -> Sim {
        let next = self.now_us + self.rng.range(5 * MS, 20 * MS);
        self.queue.push(next, Event::WriterTick(i));
        self.drive_election(i)?;
        if self.phase == (RunPhase::Final { writer: i }) {
            self.submit_final(i);
        }
        let out = self.writers[i].writer.pump(self.now_us / MS);
        self.dispatch(i, out)?;
        self.after_writer(i)
    }

    /// What a client does about elections: retry a lost round after a
    /// backoff, give up on a stuck one, replace a fenced writer.
    fn drive_election(&mut self, i: usize) -> Sim {
        let now = self.now_us;
        let node = &mut self.writers[i];
        match node.writer.phase() {
            Phase::Leading => Ok(()),
            Phase::Fenced { .. } => {
                match node.retire_at_us {
                    None => node.retire_at_us = Some(now + self.rng.range(20 * MS, 500 * MS)),
                    Some(t) if now >= t => self.replace_writer(i),
                    Some(_) => {}
                }
                Ok(())
            }
            Phase::Idle => match node.next_elect_us {
                Some(t) if node.wants_lead && now >= t => self.elect(i),
                _ => Ok(()),
            },
            Phase::Electing { .. } | Phase::Recovering { .. } => {
                if node.wants_lead && now >= node.election_deadline_us {
                    self.elect(i)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn elect(&mut self, i: usize) -> Sim {
        let deadline = self.now_us + self.rng.range(100 * MS, 400 * MS);
        let node = &mut self.writers[i];
        node.next_elect_us = None;
        node.election_deadline_us = deadline;
        let out = node.writer.start_election(self.now_us / MS);
        self.report.elections += 1;
        self.dispatch(i, out)?;
        self.after_writer(i)
    }

    /// A fenced writer is done for good: its client starts a new one, above
    /// every term the old one saw.
    fn replace_writer(&mut self, i: usize) {
        let wants_lead = match self.phase {
            RunPhase::Chaos => self.rng.chance(0.5),
            RunPhase::Final { writer } => writer == i,
        };
        let node = &mut self.writers[i];
        let seen = match node.writer.phase() {
            Phase::Fenced { by_term } => by_term.max(node.writer.term()),
            _ => node.writer.term(),
        };
        let mut writer = Writer::new(writer_config(node.id));
        writer.observe_term(seen);
        node.writer = writer;
        node.life += 1;
        node.wants_lead = wants_lead;
        node.next_elect_us = wants_lead.then_some(self.now_us);
        node.retire_at_us = None;
        node.pending.clear();
        node.last_commit = Lsn::ZERO;
    }

    fn submit(&mut self, i: usize, batch: &Batch, is_final: bool) -> bool {
        let node = &mut self.writers[i];
        let Ok(lsn) = node.writer.submit(batch) else {
            return false;
        };
        let mut bytes = Vec::with_capacity(batch.len());
        let end = batch.stamp_into(&mut bytes, Lsn(lsn.0 - batch.len() as u64));
        assert_eq!(end, lsn, "the writer placed the batch where it says");
        let term = node.writer.term();
        node.pending.push_back(Submitted {
            term,
            lsn,
            bytes,
            is_final,
        });
        true
    }

    fn submit_workload(&mut self) -> Sim {
        if !self.in_chaos() {
            return Ok(());
        }
        let next = self.now_us + self.rng.range(500, 5 * MS);
        self.queue.push(next, Event::Submit);
        for i in 0..self.writers.len() {
            if !self.writers[i].writer.is_leader() {
                continue;
            }
            let batch = random_batch(&mut self.rng, self.now_us);
            if self.submit(i, &batch, false) {
                let out = self.writers[i].writer.pump(self.now_us / MS);
                self.dispatch(i, out)?;
            }
        }
        Ok(())
    }

    fn submit_final(&mut self, i: usize) {
        let node = &self.writers[i];
        if self.final_acked || !node.writer.is_leader() || node.pending.iter().any(|p| p.is_final) {
            return;
        }
        let batch = random_batch(&mut self.rng, self.now_us);
        self.submit(i, &batch, true);
    }

    // ---- the reader ----

    fn read(&mut self) -> Sim {
        let next = self.now_us + self.rng.range(3 * MS, 20 * MS);
        self.queue.push(next, Event::Read);
        if self.rng.chance(0.03) {
            self.reader_at = Lsn::ZERO; // read it all again, maybe elsewhere
        }
        let id = self.rng.pick(&REPLICAS);
        let max = self.rng.range(256, 16 << 10) as usize;
        let node = self.replicas.get_mut(&id).expect("a replica");
        let ReplicaState::Up(r) = &mut node.state else {
            return Ok(());
        };
        let chunk = r.read_committed(self.reader_at, max).map_err(|e| {
            bug(
                format!("replica {id}: read_committed from {}", self.reader_at.0),
                e,
            )
        })?;
        let end = chunk.start.advance(chunk.data.len() as u64);
        if chunk.start != self.reader_at || (!chunk.data.is_empty() && end > chunk.commit_lsn) {
            return Err(format!(
                "replica {id} gave a reader [{}, {}) with commit LSN {}",
                chunk.start.0, end.0, chunk.commit_lsn.0
            ));
        }
        self.checker
            .read(chunk.start, &chunk.data)
            .map_err(|e| format!("replica {id}: {e}"))?;
        self.reader_at = end;
        Ok(())
    }

    // ---- chaos ----

    fn chaos_crash(&mut self) -> Sim {
        if !self.in_chaos() {
            return Ok(());
        }
        let next = self.now_us + self.rng.range(50 * MS, 600 * MS);
        self.queue.push(next, Event::Crash);
        let up: Vec<ReplicaId> = REPLICAS
            .iter()
            .copied()
            .filter(|id| self.replicas[id].up_ref().is_some())
            .collect();
        let down = REPLICAS.len() - up.len();
        if up.is_empty() || down >= 2 || (down == 1 && !self.rng.chance(0.3)) {
            return Ok(());
        }
        let id = self.rng.pick(&up);
        self.crash(id);
        Ok(())
    }

    /// Once per run: a replica's disk is replaced by an empty one. The one
    /// disk loss the cluster must survive, so it waits until every replica
    /// is a voter: with a replica not yet promoted (it missed the bootstrap
    /// round, or has not caught up), losing a voter's disk leaves fewer
    /// voters than a majority, and the protocol then refuses to elect
    /// anyone, which is safe but not live.
    fn chaos_wipe(&mut self) -> Sim {
        if !self.in_chaos() {
            return Ok(());
        }
        let all_voters = self
            .replicas
            .values()
            .all(|n| n.disk().load_control().is_some_and(|c| c.voter));
        if !all_voters {
            let later = self.now_us + self.rng.range(20 * MS, 200 * MS);
            self.queue.push(later, Event::Wipe);
            return Ok(());
        }
        let id = self.rng.pick(&REPLICAS);
        self.replicas
            .get_mut(&id)
            .expect("a replica")
            .wipe_on_restart = true;
        self.crash(id);
        Ok(())
    }

    fn chaos_partition(&mut self) {
        if !self.in_chaos() {
            return;
        }
        let next = self.now_us + self.rng.range(50 * MS, 600 * MS);
        self.queue.push(next, Event::Partition);
        let pairs = Net::random_partition(&mut self.rng, &all_nodes());
        self.net.cut(&pairs);
        let heal = self.now_us + self.rng.range(10 * MS, 500 * MS);
        self.queue.push(heal, Event::Heal(pairs));
    }

    /// The writer that is not leading starts an election.
    fn chaos_kick(&mut self) -> Sim {
        if !self.in_chaos() {
            return Ok(());
        }
        let next = self.now_us + self.rng.range(100 * MS, 1000 * MS);
        self.queue.push(next, Event::Kick);
        let idle: Vec<usize> = (0..self.writers.len())
            .filter(|&i| !self.writers[i].writer.is_leader())
            .collect();
        if idle.is_empty() {
            return Ok(());
        }
        let i = self.rng.pick(&idle);
        if matches!(self.writers[i].writer.phase(), Phase::Fenced { .. }) {
            self.replace_writer(i);
        }
        self.writers[i].wants_lead = true;
        self.elect(i)
    }

    fn end_chaos(&mut self) -> Sim {
        let f = self.rng.below(self.writers.len() as u64) as usize;
        self.phase = RunPhase::Final { writer: f };
        self.net.heal_all();
        for id in REPLICAS {
            if self.replicas[&id].up_ref().is_none() {
                for writer in 0..self.writers.len() {
                    self.link_reset(writer, self.writers[writer].life, id);
                }
                let life = self.replicas[&id].life;
                self.restart(id, life)?;
            }
        }
        for (i, node) in self.writers.iter_mut().enumerate() {
            node.wants_lead = i == f;
            if i == f && node.next_elect_us.is_none() {
                node.next_elect_us = Some(self.now_us);
            }
        }
        Ok(())
    }

    // ---- the end ----

    fn done(&self) -> bool {
        let RunPhase::Final { writer } = self.phase else {
            return false;
        };
        let w = &self.writers[writer].writer;
        self.final_acked
            && w.is_leader()
            && self.replicas.values().all(|n| {
                n.up_ref()
                    .is_some_and(|r| r.commit() == w.commit() && r.end() == w.end())
            })
    }

    fn finish(mut self) -> Sim<Report> {
        let replicas: Vec<&Replica<MemStorage>> = self
            .replicas
            .values()
            .map(|n| n.up_ref().expect("every replica is up"))
            .collect();
        check::final_check(&self.checker, &replicas)?;
        self.report.acks = self.checker.acks.len();
        let committed = replicas[0].commit().0 as usize;
        let log = replicas[0]
            .storage()
            .read(Lsn::ZERO, committed)
            .map_err(|e| bug("reading", e))?;
        self.report.committed_bytes = committed as u64;
        self.report.log_crc32 = crc32fast::hash(&log);
        self.report.sim_ms = self.now_us / MS;
        Ok(self.report)
    }

    /// The state of every node, for a failure message.
    fn describe(&self) -> String {
        let mut s = String::new();
        for (id, n) in &self.replicas {
            match &n.state {
                ReplicaState::Up(r) => {
                    s += &format!(
                        "  replica {id}: up, term {} ({:?}) voter {} end {} flush {} commit {} behind {} history {:?}\n",
                        r.control().promised_term,
                        r.control().promised_writer,
                        r.control().voter,
                        r.end().0,
                        r.flush().0,
                        r.commit().0,
                        r.is_behind(),
                        r.control().history.entries()
                    )
                }
                ReplicaState::Down(d) => {
                    s += &format!("  replica {id}: down, disk end {}\n", d.end().0)
                }
            }
        }
        for (i, n) in self.writers.iter().enumerate() {
            s += &format!(
                "  writer {i} ({}) life {}: {:?} term {} commit {} end {} wants_lead {}\n",
                n.id,
                n.life,
                n.writer.phase(),
                n.writer.term(),
                n.writer.commit().0,
                n.writer.end().0,
                n.wants_lead
            );
        }
        s
    }

    fn trace_event(&self, event: &Event) {
        let what = match event {
            Event::Deliver(env) => format!(
                "{:?} -> {:?}{}: {}",
                env.from,
                env.to,
                if self.net.connected(env.from, env.to) {
                    ""
                } else {
                    " (cut)"
                },
                env.msg.describe()
            ),
            Event::SyncDone { id, ticket, .. } => format!("sync done r{id} to {}", ticket.end.0),
            Event::Restart { id, .. } => format!("restart r{id}"),
            Event::LinkReset {
                writer, replica, ..
            } => format!("writer {writer} lost its link to r{replica}"),
            Event::Heal(pairs) => format!("heal {pairs:?}"),
            Event::WriterTick(_) | Event::ReplicaTick(_) | Event::Submit | Event::Read => return,
            Event::Crash => "crash?".into(),
            Event::Wipe => "wipe".into(),
            Event::Partition => "partition?".into(),
            Event::Kick => "kick".into(),
            Event::EndChaos => format!("end of chaos\n{}", self.describe()),
        };
        eprintln!("[{:>6}.{:03}] {what}", self.now_us / MS, self.now_us % MS);
    }
}

impl ReplicaNode {
    fn up_ref(&self) -> Option<&Replica<MemStorage>> {
        match &self.state {
            ReplicaState::Up(r) => Some(r),
            ReplicaState::Down(_) => None,
        }
    }
}

/// Where the bytes that survive a crash end.
fn durable_end(storage: &MemStorage) -> Lsn {
    Lsn(storage.end().0 - storage.volatile_len() as u64)
}

/// Invariant (5) as it happens: a replica's commit LSN is a batch end.
fn check_commit_is_batch_end(r: &Replica<MemStorage>) -> Sim {
    let commit = r.commit();
    let log = r
        .storage()
        .read(Lsn::ZERO, commit.0 as usize)
        .map_err(|e| bug("reading", e))?;
    if log.len() as u64 != commit.0 {
        return Err(format!(
            "replica {}: commit {} above its log",
            r.id(),
            commit.0
        ));
    }
    decode_batches(&log, Lsn::ZERO).map(|_| ()).map_err(|e| {
        format!(
            "replica {}: commit LSN {} is not a batch end: {e}",
            r.id(),
            commit.0
        )
    })
}

/// A transaction's worth of row changes: mostly small, some larger than
/// an append, now and then one record larger than an append.
pub fn random_batch(rng: &mut Rng, now_us: u64) -> Batch {
    let (records, lo, hi) = match rng.below(100) {
        0..=4 => (rng.range(3, 12), 300, 3000),
        5..=6 => (1, 4200, 9000),
        _ => (rng.range(1, 4), 8, 400),
    };
    let mut b = BatchBuilder::new();
    for _ in 0..records {
        let mut payload = vec![0; rng.range(lo, hi) as usize];
        rng.fill(&mut payload);
        b.push(&Record::RowChange { payload })
            .expect("far below the record size limit");
    }
    b.commit(now_us)
}
