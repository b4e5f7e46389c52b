//! Properties of record framing: every record round trips at any LSN, and
//! damaged bytes (a flipped byte, a cut, noise) are always an error, never a
//! wrong record and never a panic.

use proptest::prelude::*;
use proptest::sample::Index;
use strata_wal::proptest_util::{arb_batch_records, arb_lsn, arb_record};
use strata_wal::record::{self, BatchBuilder, RecordIter, decode_batches};
use strata_wal::{Batch, Lsn, Record, RecordKind, WalError};

/// `records` as one committed batch, placed in the stream at `start`.
fn stamped_batch(records: &[Record], start: Lsn, timestamp_us: u64) -> (Batch, Vec<u8>) {
    let mut builder = BatchBuilder::new();
    for r in records {
        builder.push(r).expect("generated records are small");
    }
    let batch = builder.commit(timestamp_us);
    let mut bytes = Vec::new();
    batch.stamp_into(&mut bytes, start);
    (batch, bytes)
}

fn encoded(record: &Record, start: Lsn) -> Vec<u8> {
    let mut buf = Vec::new();
    record
        .encode(&mut buf, start)
        .expect("generated records are small");
    buf
}

const PAGE_KINDS: [RecordKind; 7] = [
    RecordKind::Init,
    RecordKind::Insert,
    RecordKind::Delete,
    RecordKind::Replace,
    RecordKind::Truncate,
    RecordKind::SetLink,
    RecordKind::FullImage,
];

proptest! {
    #[test]
    fn every_record_round_trips_at_any_lsn(record in arb_record(), start in arb_lsn()) {
        let mut buf = Vec::new();
        let lsn = record.encode(&mut buf, start).unwrap();
        let framed = record::decode(&buf, start).unwrap();
        prop_assert_eq!((framed.start, framed.lsn, framed.len()), (start, lsn, buf.len()));
        prop_assert_eq!(lsn, start.advance(buf.len() as u64));
        prop_assert_eq!(framed.kind, record.kind());
        prop_assert_eq!(framed.page, record.page());
        prop_assert_eq!(framed.decode().unwrap(), record);
    }

    #[test]
    fn every_batch_round_trips_at_any_lsn(
        records in arb_batch_records(),
        start in arb_lsn(),
        timestamp_us in any::<u64>(),
    ) {
        let (batch, bytes) = stamped_batch(&records, start, timestamp_us);
        let decoded = decode_batches(&bytes, start).unwrap();
        prop_assert_eq!(decoded.len(), 1);
        prop_assert_eq!(decoded[0].commit_lsn, start.advance(batch.len() as u64));
        let mut got: Vec<Record> = decoded[0].records.iter().map(|(_, r)| r.clone()).collect();
        prop_assert_eq!(got.pop(), Some(Record::Commit { timestamp_us }));
        prop_assert_eq!(got, records);
        let relative = Batch::from_relative_bytes(batch.relative_bytes().to_vec()).unwrap();
        prop_assert_eq!(relative, batch);
    }

    #[test]
    fn a_flipped_byte_in_a_record_is_detected(
        record in arb_record(),
        start in arb_lsn(),
        at in any::<Index>(),
        mask in 1..=255u8,
    ) {
        let mut buf = encoded(&record, start);
        let i = at.index(buf.len());
        buf[i] ^= mask;
        prop_assert!(record::decode(&buf, start).is_err(), "flip at byte {} went unnoticed", i);
    }

    #[test]
    fn a_flipped_byte_in_a_batch_is_detected(
        records in arb_batch_records(),
        start in arb_lsn(),
        at in any::<Index>(),
        mask in 1..=255u8,
    ) {
        let (_, mut bytes) = stamped_batch(&records, start, 7);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        prop_assert!(decode_batches(&bytes, start).is_err(), "flip at byte {} went unnoticed", i);
        prop_assert!(Batch::from_relative_bytes(bytes).is_err());
    }

    #[test]
    fn a_cut_record_is_truncated(record in arb_record(), start in arb_lsn(), cut in any::<Index>()) {
        let buf = encoded(&record, start);
        let keep = cut.index(buf.len());
        let err = record::decode(&buf[..keep], start).unwrap_err();
        prop_assert!(matches!(err, WalError::Truncated { at, .. } if at == start), "{:?}", err);
    }

    #[test]
    fn a_cut_batch_is_an_error(records in arb_batch_records(), start in arb_lsn(), cut in any::<Index>()) {
        let (_, bytes) = stamped_batch(&records, start, 7);
        // No bytes at all are no batch, not a broken one.
        let keep = 1 + cut.index(bytes.len() - 1);
        let err = decode_batches(&bytes[..keep], start).unwrap_err();
        let tail_error = matches!(err, WalError::Truncated { .. } | WalError::IncompleteBatch { .. });
        prop_assert!(tail_error, "{:?}", err);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), start in arb_lsn()) {
        let _ = record::decode(&bytes, start);
        for r in RecordIter::new(&bytes, start) {
            let _ = r.and_then(|r| r.decode());
        }
        let _ = decode_batches(&bytes, start);
        let _ = record::scan(&bytes, start);
        let _ = Batch::from_relative_bytes(bytes);
    }

    /// Bodies inside valid frames reach the body decoders: each decodes to
    /// the op that encodes back to it, or is a `BadBody` naming the record.
    #[test]
    fn random_page_bodies_decode_canonically_or_fail(
        kind in proptest::sample::select(&PAGE_KINDS[..]),
        body in proptest::collection::vec(any::<u8>(), 0..40),
        start in arb_lsn(),
    ) {
        let mut buf = Vec::new();
        record::encode_raw(&mut buf, start, kind, Default::default(), &body).unwrap();
        match record::decode(&buf, start).unwrap().decode() {
            Ok(Record::Page { op, .. }) => {
                let mut again = Vec::new();
                op.encode_body(&mut again);
                prop_assert_eq!(again, body);
            }
            Ok(other) => prop_assert!(false, "a page kind decoded to {:?}", other),
            Err(err) => {
                let named = matches!(err, WalError::BadBody { at, kind: k, .. } if at == start && k == kind);
                prop_assert!(named, "{:?}", err);
            }
        }
    }
}
