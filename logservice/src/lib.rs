//! `strata-logservice`: one replica of Strata's quorum-replicated WAL, and
//! the writer-side client.
