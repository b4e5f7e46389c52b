//! The append stream's own transport: length-prefixed protobuf frames on a
//! plain TCP connection, on the same port as the gRPC service.
//!
//! A departure from "everything over gRPC" (docs/logservice.md says why):
//! a commit's round trip through HTTP/2 passes through about ten task
//! hand-offs (the client's body pipe and connection tasks, the server's
//! connection and stream tasks, and back), each a thread wake-up that costs
//! more than the work. Here the writer's driver task writes frames straight
//! into each replica's socket and reads the answers from it; the replica
//! runs one task per connection that reads, appends, fsyncs and answers.
//! The messages are the same `AppendRequest` / `AppendResponse` as the
//! gRPC `Append` stream, which the server still serves.
//!
//! A connection opens with [`MAGIC`]; the server tells it from HTTP/2 (whose
//! preface starts `PRI * HTTP/2.0`) by its first eight bytes. Then frames,
//! each a little-endian `u32` length and that many bytes:
//!
//! - writer → replica: an encoded `AppendRequest`;
//! - replica → writer: a tag byte, then for [`TAG_RESPONSE`] an encoded
//!   `AppendResponse`, for [`TAG_ERROR`] a little-endian `i32` gRPC status
//!   code and a UTF-8 message, after which the replica closes the stream.

use bytes::{Bytes, BytesMut};
use prost::Message;
use strata_proto::logservice as pb;

use crate::error::{LogError, Result};
use crate::server::MAX_MESSAGE_BYTES;
use crate::sniff::{self, Malformed};

/// The first bytes of an append connection: "STRATA", transport version 1,
/// 'A' for append.
pub const MAGIC: &[u8; 8] = b"STRATA\x01A";

pub use crate::sniff::{TAG_ERROR, TAG_OK as TAG_RESPONSE};

/// The largest frame either side accepts: a full-size message and room for
/// its other fields.
pub const MAX_FRAME_BYTES: usize = MAX_MESSAGE_BYTES + (64 << 10);

/// Appends one frame holding `msg` to `out`.
pub fn put_request(out: &mut BytesMut, msg: &pb::AppendRequest) {
    sniff::put_frame(out, msg);
}

/// Appends one response frame to `out`: the acknowledgement, or the error
/// that ends the stream.
pub fn put_response(
    out: &mut BytesMut,
    resp: &std::result::Result<pb::AppendResponse, tonic::Status>,
) {
    sniff::put_answer(out, resp);
}

/// Takes the next whole frame's body off the front of `buf`, if it holds
/// one. A length beyond [`MAX_FRAME_BYTES`] is an error: the peer is not
/// speaking this protocol, or is broken.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>> {
    crate::sniff::take_frame(buf, MAX_FRAME_BYTES).map_err(|len| {
        LogError::BadRequest(format!(
            "append frame of {len} bytes is above the limit of {MAX_FRAME_BYTES}"
        ))
    })
}

/// Decodes a writer's frame.
pub fn decode_request(frame: Bytes) -> std::result::Result<pb::AppendRequest, tonic::Status> {
    pb::AppendRequest::decode(frame)
        .map_err(|e| tonic::Status::invalid_argument(format!("undecodable append frame: {e}")))
}

/// Decodes a replica's frame: its acknowledgement, or the error it ended
/// the stream with.
pub fn decode_response(frame: Bytes) -> Result<pb::AppendResponse> {
    match sniff::decode_answer(frame) {
        Ok(answer) => answer.map_err(LogError::from),
        Err(Malformed::Empty) => Err(LogError::BadRequest("empty append response frame".into())),
        Err(Malformed::Undecodable(e)) => Err(LogError::BadRequest(format!(
            "undecodable append response: {e}"
        ))),
        Err(Malformed::UnknownTag(tag)) => Err(LogError::BadRequest(format!(
            "append response frame with unknown tag {tag}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    fn request(data: Vec<u8>, term: u64) -> pb::AppendRequest {
        pb::AppendRequest {
            cluster_id: "c".into(),
            term,
            prev_term: term - 1,
            start_lsn: 4096,
            data_term: term,
            data: data.into(),
            commit_lsn: 100,
            trim_floor_lsn: 0,
        }
    }

    proptest! {
        /// Frames written back to back come out whole and in order, however
        /// the bytes arrive in pieces.
        #[test]
        fn frames_survive_any_split(
            sizes in proptest::collection::vec(0usize..3000, 1..6),
            cut in proptest::collection::vec(1usize..700, 1..40),
        ) {
            let mut wire = BytesMut::new();
            let sent: Vec<_> = sizes.iter().enumerate()
                .map(|(i, n)| request(vec![i as u8; *n], i as u64 + 1))
                .collect();
            for m in &sent {
                put_request(&mut wire, m);
            }
            let mut wire = wire.freeze();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut cuts = cut.iter().cycle();
            while !wire.is_empty() {
                let n = (*cuts.next().unwrap()).min(wire.len());
                buf.extend_from_slice(&wire.split_to(n));
                while let Some(frame) = take_frame(&mut buf).unwrap() {
                    got.push(decode_request(frame).unwrap());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, sent);
        }
    }

    #[test]
    fn a_response_and_an_error_round_trip() {
        let resp = pb::AppendResponse {
            replica_id: 2,
            promised_term: 7,
            outcome: pb::append_response::Outcome::Gap as i32,
            flush_lsn: 10,
            end_lsn: 20,
            history: vec![pb::TermEntry {
                term: 7,
                start_lsn: 4,
            }],
            message: String::new(),
        };
        let mut buf = BytesMut::new();
        put_response(&mut buf, &Ok(resp.clone()));
        put_response(
            &mut buf,
            &Err(tonic::Status::invalid_argument("append: impossible terms")),
        );
        let first = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!(decode_response(first).unwrap(), resp);
        let second = take_frame(&mut buf).unwrap().unwrap();
        match decode_response(second) {
            Err(LogError::BadRequest(msg)) => assert_eq!(msg, "append: impossible terms"),
            other => panic!("expected the replica's error, got {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_or_unknown_frame_is_refused() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(MAX_FRAME_BYTES as u32 + 1);
        assert!(matches!(take_frame(&mut buf), Err(LogError::BadRequest(_))));
        assert!(matches!(
            decode_response(Bytes::from_static(&[9, 1, 2])),
            Err(LogError::BadRequest(_))
        ));
        assert!(decode_request(Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
    }
}
