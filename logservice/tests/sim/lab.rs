//! A hand-driven cluster for scenario tests: no randomness, no clock of its
//! own. A test says which replicas a writer reaches; messages are delivered
//! at once and in order, answers go straight back, and a replica's sync
//! completes at once (unless the test turns that off to leave bytes
//! unsynced for a crash).

use std::collections::{BTreeMap, VecDeque};

use strata_logservice::msg::{AppendOutcome, ReplicaId};
use strata_logservice::replica::Replica;
use strata_logservice::storage::{MemStorage, Storage, SyncJob};
use strata_logservice::writer::{Outgoing, Writer};
use strata_wal::{Batch, BatchBuilder, Lsn, Record};

use super::world::{CLUSTER, REPLICAS, writer_config};

pub const ALL: &[ReplicaId] = &REPLICAS;

pub struct Lab {
    up: BTreeMap<ReplicaId, Replica<MemStorage>>,
    down: BTreeMap<ReplicaId, MemStorage>,
    next_incarnation: u64,
    pub now_ms: u64,
    /// Complete every sync at once; off, written bytes stay volatile.
    pub auto_sync: bool,
}

pub type LabResult<T = ()> = Result<T, String>;

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    /// Three new, empty replicas.
    pub fn new() -> Lab {
        let mut lab = Lab {
            up: BTreeMap::new(),
            down: BTreeMap::new(),
            next_incarnation: 100,
            now_ms: 0,
            auto_sync: true,
        };
        for id in REPLICAS {
            lab.open(id, MemStorage::new());
        }
        lab
    }

    fn open(&mut self, id: ReplicaId, disk: MemStorage) {
        self.next_incarnation += 1;
        let r = Replica::open(disk, id, CLUSTER, self.next_incarnation).expect("opening a replica");
        self.up.insert(id, r);
    }

    pub fn writer(&self, id: &str) -> Writer {
        Writer::new(writer_config(id))
    }

    pub fn replica(&self, id: ReplicaId) -> &Replica<MemStorage> {
        &self.up[&id]
    }

    pub fn replica_mut(&mut self, id: ReplicaId) -> &mut Replica<MemStorage> {
        self.up.get_mut(&id).expect("a live replica")
    }

    /// The whole log a replica holds (written, durable or not).
    pub fn log(&self, id: ReplicaId) -> Vec<u8> {
        let s = self.up[&id].storage();
        s.read(Lsn::ZERO, s.end().0 as usize)
            .expect("reading MemStorage")
    }

    pub fn sync(r: &mut Replica<MemStorage>) -> LabResult {
        while let Some((job, ticket)) = r.begin_sync() {
            job.run().map_err(|e| e.to_string())?;
            r.storage_mut().sync_to(ticket.end);
            r.finish_sync(ticket).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Delivers one message of `w`'s to its replica, if `reach` has it and
    /// it is up; returns what `w` sends on the answer. `Err` is a replica's
    /// error (the request is not answered).
    pub fn step(
        &mut self,
        w: &mut Writer,
        o: Outgoing,
        reach: &[ReplicaId],
    ) -> LabResult<Vec<Outgoing>> {
        let to = match &o {
            Outgoing::Elect(r, _) | Outgoing::Append(r, _) | Outgoing::Fetch(r, _) => *r,
        };
        let auto_sync = self.auto_sync;
        let Some(r) = self.up.get_mut(&to).filter(|_| reach.contains(&to)) else {
            return Ok(Vec::new());
        };
        let err = |e: strata_logservice::LogError| format!("replica {to}: {e}");
        Ok(match o {
            Outgoing::Elect(_, req) => w.on_promise(r.elect(&req).map_err(err)?),
            Outgoing::Append(_, req) => {
                let mut resp = r.append(&req).map_err(err)?;
                if auto_sync && resp.outcome == AppendOutcome::Accepted {
                    Self::sync(r)?;
                    resp = r.ack();
                }
                w.on_append_response(resp)
            }
            Outgoing::Fetch(_, req) => match r.fetch(&req) {
                Ok(resp) => w.on_fetch_response(to, resp),
                Err(_) => {
                    w.on_fetch_error();
                    Vec::new()
                }
            },
        })
    }

    /// Delivers `out` and everything it leads to, then what `w` sends when
    /// pumped, until it has nothing more to say.
    pub fn run(&mut self, w: &mut Writer, out: Vec<Outgoing>, reach: &[ReplicaId]) -> LabResult {
        let mut queue: VecDeque<Outgoing> = out.into();
        for _ in 0..100 {
            while let Some(o) = queue.pop_front() {
                queue.extend(self.step(w, o, reach)?);
            }
            queue.extend(w.pump(self.now_ms));
            if queue.is_empty() {
                return Ok(());
            }
        }
        Err("the writer never went quiet".into())
    }

    /// Lets time pass for `w`: heartbeats and retransmissions go out.
    pub fn tick(&mut self, w: &mut Writer, reach: &[ReplicaId], ms: u64) -> LabResult {
        self.now_ms += ms;
        let out = w.pump(self.now_ms);
        self.run(w, out, reach)
    }

    /// Runs an election of `w` among `reach`; whether `w` now leads.
    pub fn elect(&mut self, w: &mut Writer, reach: &[ReplicaId]) -> LabResult<bool> {
        let out = w.start_election(self.now_ms);
        self.run(w, out, reach)?;
        Ok(w.is_leader())
    }

    /// Submits `batch` and runs; returns its LSN (committed or not).
    pub fn submit(&mut self, w: &mut Writer, batch: &Batch, reach: &[ReplicaId]) -> LabResult<Lsn> {
        let lsn = w.submit(batch).map_err(|e| format!("submit: {e:?}"))?;
        self.run(w, Vec::new(), reach)?;
        Ok(lsn)
    }

    /// A replica copies committed log from `peer` until it has all of it.
    pub fn catch_up(&mut self, id: ReplicaId, peer: ReplicaId) -> LabResult {
        for _ in 0..1000 {
            let req = self.up[&id].catch_up_request(4 << 10);
            let resp = self.up[&peer]
                .fetch(&req)
                .map_err(|e| format!("replica {peer}: {e}"))?;
            let r = self.up.get_mut(&id).expect("up");
            let more = r
                .apply_peer_fetch(&resp)
                .map_err(|e| format!("replica {id}: {e}"))?;
            if self.auto_sync {
                Self::sync(r)?;
            }
            if !more {
                return Ok(());
            }
        }
        Err("catching up never ended".into())
    }

    /// The replica's process dies; of its unsynced bytes the first `keep`
    /// survive, the last of them torn if `tear`.
    pub fn crash(&mut self, id: ReplicaId, keep: usize, tear: bool) {
        let mut r = self.up.remove(&id).expect("crashing a live replica");
        let mut disk = std::mem::take(r.storage_mut());
        disk.crash(keep, tear);
        self.down.insert(id, disk);
    }

    pub fn restart(&mut self, id: ReplicaId) {
        let disk = self.down.remove(&id).expect("restarting a crashed replica");
        self.open(id, disk);
    }

    /// The replica comes back on a new, empty disk.
    pub fn wipe(&mut self, id: ReplicaId) {
        self.up.remove(&id);
        self.down.remove(&id);
        self.open(id, MemStorage::new());
    }
}

/// A batch of `records` row changes of `bytes` each, marked with `tag`.
pub fn batch(tag: u8, records: usize, bytes: usize) -> Batch {
    let mut b = BatchBuilder::new();
    for i in 0..records {
        let payload = vec![tag.wrapping_add(i as u8); bytes];
        b.push(&Record::RowChange { payload })
            .expect("a small record");
    }
    b.commit(u64::from(tag))
}

/// Whether the log `log` holds `batch` ending at `lsn`.
pub fn holds(log: &[u8], batch: &Batch, lsn: Lsn) -> bool {
    let start = lsn.0 as usize - batch.len();
    let mut placed = Vec::new();
    batch.stamp_into(&mut placed, Lsn(start as u64));
    log.len() >= lsn.0 as usize && log[start..lsn.0 as usize] == placed[..]
}
