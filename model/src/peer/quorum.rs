//! Majority arithmetic, kept apart so the planted `commit-on-half` bug has one place to bite.

/// The number of servers that form a majority of `cluster_size` (§5.2).
pub fn majority(cluster_size: usize) -> usize {
    cluster_size / 2 + 1
}

/// The highest index stored on a majority: with every server's match index given (the leader's
/// own included), the value that at least `quorum` of them reach.
pub fn quorum_index(mut match_indexes: Vec<u64>, quorum: usize) -> u64 {
    assert!(
        quorum >= 1 && quorum <= match_indexes.len(),
        "quorum {quorum} out of range for {} servers",
        match_indexes.len()
    );
    match_indexes.sort_unstable_by(|a, b| b.cmp(a));
    match_indexes[quorum - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_small_clusters() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn quorum_index_is_reached_by_a_majority() {
        assert_eq!(quorum_index(vec![5, 1, 3], 2), 3);
        assert_eq!(quorum_index(vec![5, 5, 0], 2), 5);
        assert_eq!(quorum_index(vec![0, 0, 7], 2), 0);
        assert_eq!(quorum_index(vec![4], 1), 4);
        assert_eq!(quorum_index(vec![9, 2, 7, 1, 3], 3), 3);
    }

    #[test]
    #[should_panic(expected = "quorum 4 out of range")]
    fn quorum_larger_than_cluster_is_misuse() {
        quorum_index(vec![1, 2, 3], 4);
    }
}
