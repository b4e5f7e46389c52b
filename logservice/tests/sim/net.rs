//! The simulated network: who is reachable, and what happens to a message
//! on the way (delay, loss, duplication).
//!
//! A message is addressed to one *life* of its destination and comes from
//! one life of its sender: a node that crashes, restarts or is replaced
//! starts a new life, and nothing sent to or by an earlier life is
//! delivered any more. That is what gRPC over TCP gives: a restart breaks
//! every connection, and bytes queued on a dead connection are gone. Within
//! a life, messages are delayed independently, so they may be reordered.

use std::collections::BTreeMap;

use strata_logservice::msg::{
    AppendRequest, AppendResponse, ElectRequest, FetchRequest, FetchResponse, Promise, ReplicaId,
};

use super::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Replica(ReplicaId),
    /// A writer, by its index in the world.
    Writer(usize),
}

#[derive(Clone, Debug)]
pub enum Msg {
    Elect(ElectRequest),
    Append(AppendRequest),
    Fetch(FetchRequest),
    Promise(Promise),
    AppendResp(AppendResponse),
    /// `None`: the replica refused (its promise moved on).
    FetchResp(Option<FetchResponse>),
    /// A lagging replica asks a peer for committed log.
    PeerFetch(FetchRequest),
    PeerFetchResp(Option<FetchResponse>),
}

impl Msg {
    /// A short description for traces.
    pub fn describe(&self) -> String {
        match self {
            Msg::Elect(r) => format!("Elect(t{} {})", r.term, r.writer_id),
            Msg::Append(r) => format!(
                "Append(t{} prev t{} [{}, {}) data t{} commit {})",
                r.term,
                r.prev_term,
                r.start.0,
                r.end().0,
                r.data_term,
                r.commit_lsn.0
            ),
            Msg::Fetch(r) | Msg::PeerFetch(r) => {
                format!("Fetch(t{} from {} max {})", r.term, r.start.0, r.max_bytes)
            }
            Msg::Promise(p) => format!(
                "Promise(r{} granted {} t{} voter {} flush {} commit {} end {} {:?})",
                p.replica_id,
                p.granted,
                p.promised_term,
                p.voter,
                p.flush_lsn.0,
                p.commit_lsn.0,
                p.end_lsn.0,
                p.history.entries()
            ),
            Msg::AppendResp(r) => format!(
                "AppendResp(r{} t{} {:?} flush {} end {})",
                r.replica_id, r.promised_term, r.outcome, r.flush_lsn.0, r.end_lsn.0
            ),
            Msg::FetchResp(r) | Msg::PeerFetchResp(r) => match r {
                Some(r) => format!(
                    "FetchResp(from {} {} bytes commit {} t{})",
                    r.start.0,
                    r.data.len(),
                    r.commit_lsn.0,
                    r.promised_term
                ),
                None => "FetchResp(refused)".into(),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct Envelope {
    pub from: Node,
    pub from_life: u64,
    pub to: Node,
    pub to_life: u64,
    pub msg: Msg,
}

pub struct Net {
    pub drop_p: f64,
    pub dup_p: f64,
    pub min_delay_us: u64,
    pub max_delay_us: u64,
    /// Cut links (each pair ordered), counted: partitions may overlap.
    cuts: BTreeMap<(Node, Node), u32>,
}

fn link(a: Node, b: Node) -> (Node, Node) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Net {
    pub fn new() -> Net {
        Net {
            drop_p: 0.05,
            dup_p: 0.03,
            min_delay_us: 100,
            max_delay_us: 20_000,
            cuts: BTreeMap::new(),
        }
    }

    pub fn connected(&self, a: Node, b: Node) -> bool {
        !self.cuts.contains_key(&link(a, b))
    }

    pub fn cut(&mut self, pairs: &[(Node, Node)]) {
        for &(a, b) in pairs {
            *self.cuts.entry(link(a, b)).or_default() += 1;
        }
    }

    pub fn heal(&mut self, pairs: &[(Node, Node)]) {
        for &(a, b) in pairs {
            let l = link(a, b);
            if let Some(n) = self.cuts.get_mut(&l) {
                *n -= 1;
                if *n == 0 {
                    self.cuts.remove(&l);
                }
            }
        }
    }

    pub fn heal_all(&mut self) {
        self.cuts.clear();
    }

    /// The delays of the copies of one message: none if it is lost, two if
    /// it is duplicated.
    pub fn fate(&self, rng: &mut Rng) -> Vec<u64> {
        if rng.chance(self.drop_p) {
            return Vec::new();
        }
        let copies = if rng.chance(self.dup_p) { 2 } else { 1 };
        (0..copies)
            .map(|_| rng.range(self.min_delay_us, self.max_delay_us))
            .collect()
    }

    /// A random partition of `nodes`: one node cut off, one link cut, or a
    /// split into two sides. Returns the links it cuts.
    pub fn random_partition(rng: &mut Rng, nodes: &[Node]) -> Vec<(Node, Node)> {
        let mut pairs = Vec::new();
        match rng.below(3) {
            0 => {
                let alone = rng.pick(nodes);
                for &n in nodes {
                    if n != alone {
                        pairs.push((alone, n));
                    }
                }
            }
            1 => {
                let a = rng.pick(nodes);
                let b = rng.pick(nodes);
                if a != b {
                    pairs.push((a, b));
                }
            }
            _ => {
                let side: Vec<bool> = nodes.iter().map(|_| rng.chance(0.5)).collect();
                for (i, &a) in nodes.iter().enumerate() {
                    for (j, &b) in nodes.iter().enumerate().skip(i + 1) {
                        if side[i] != side[j] {
                            pairs.push((a, b));
                        }
                    }
                }
            }
        }
        pairs
    }
}
