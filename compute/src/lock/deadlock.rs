//! Cycle search in the wait-for graph.
//!
//! The graph is never stored: the manager passes a function giving a
//! transaction's current blockers (read from the lock table), so edges are
//! always as fresh as the queues. This module only walks it; it must not
//! depend on how locks are stored.

use std::collections::HashSet;

use super::TxnId;

/// True when some path of wait-for edges leads from `start` back to `start`.
/// Visits each transaction once, so it ends on any graph.
pub(super) fn closes_cycle(start: TxnId, mut blockers: impl FnMut(TxnId) -> Vec<TxnId>) -> bool {
    let mut seen = HashSet::from([start]);
    let mut stack = vec![start];
    while let Some(txn) = stack.pop() {
        for next in blockers(txn) {
            if next == start {
                return true;
            }
            if seen.insert(next) {
                stack.push(next);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reachability by repeated squaring of the adjacency matrix: the model.
    fn on_cycle(n: usize, edges: &[(usize, usize)], start: usize) -> bool {
        let mut reach = vec![vec![false; n]; n];
        for &(a, b) in edges {
            reach[a][b] = true;
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    reach[i][j] = reach[i][j] || (reach[i][k] && reach[k][j]);
                }
            }
        }
        reach[start][start]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn finds_cycles_like_the_closure(
            n in 1usize..8,
            raw in proptest::collection::vec((0usize..8, 0usize..8), 0..16),
            start in 0usize..8,
        ) {
            let edges: Vec<(usize, usize)> =
                raw.into_iter().map(|(a, b)| (a % n, b % n)).collect();
            let start = start % n;
            let found = closes_cycle(start as TxnId, |t| {
                edges.iter().filter(|e| e.0 as TxnId == t).map(|e| e.1 as TxnId).collect()
            });
            prop_assert_eq!(found, on_cycle(n, &edges, start));
        }
    }

    #[test]
    fn three_step_cycle() {
        let graph = |t: TxnId| match t {
            1 => vec![2],
            2 => vec![3],
            3 => vec![1],
            _ => vec![],
        };
        assert!(closes_cycle(1, graph));
        assert!(!closes_cycle(4, graph));
        assert!(!closes_cycle(1, |t| if t == 1 { vec![2] } else { vec![] }));
    }
}
