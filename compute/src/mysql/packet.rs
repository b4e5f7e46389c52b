//! Packet framing: a 3-byte little-endian payload length and a 1-byte
//! sequence id before each fragment; a payload of 16 MiB - 1 bytes or more
//! is split into full fragments followed by a shorter (possibly empty) one.
//!
//! Invariants: [`decode`] tells *incomplete* (`Ok(None)`: read more bytes)
//! from *invalid* (`Err`: a fragment out of sequence, or a payload longer
//! than the limit, detected from the headers before its bytes arrive, so
//! a reader's buffer never holds more than one limit-sized packet). It never
//! panics. [`encode`] is its inverse. Depends on nothing else in the crate.

/// Largest fragment payload; a fragment this long is continued by another.
pub(crate) const MAX_FRAGMENT: usize = 0xFF_FFFF;

/// A whole logical packet found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Packet {
    pub payload: Vec<u8>,
    /// The sequence id the next packet (either way) carries.
    pub next_seq: u8,
    /// Bytes of the buffer this packet took.
    pub consumed: usize,
}

/// Framing that cannot be a valid packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("packet of at least {len} bytes exceeds max_allowed_packet")]
    TooLarge { len: usize },
    #[error("got packet {got}, expected {expected}")]
    OutOfOrder { expected: u8, got: u8 },
}

/// Decodes the packet at the front of `buf`, whose first fragment must
/// carry sequence id `seq`, and whose payload may be at most `max_payload`
/// bytes.
pub(crate) fn decode(
    buf: &[u8],
    seq: u8,
    max_payload: usize,
) -> Result<Option<Packet>, FrameError> {
    let mut fragments = Vec::new();
    let mut pos = 0usize;
    let mut expected = seq;
    let mut total = 0usize;
    loop {
        let Some(header) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if header[3] != expected {
            return Err(FrameError::OutOfOrder {
                expected,
                got: header[3],
            });
        }
        total += len;
        if total > max_payload {
            return Err(FrameError::TooLarge { len: total });
        }
        let start = pos + 4;
        if buf.len() < start + len {
            return Ok(None);
        }
        fragments.push(start..start + len);
        pos = start + len;
        expected = expected.wrapping_add(1);
        if len < MAX_FRAGMENT {
            break;
        }
    }
    let mut payload = Vec::with_capacity(total);
    for range in fragments {
        payload.extend_from_slice(&buf[range]);
    }
    Ok(Some(Packet {
        payload,
        next_seq: expected,
        consumed: pos,
    }))
}

/// Appends `payload` framed from sequence id `seq`; returns the next id.
pub(crate) fn encode(payload: &[u8], mut seq: u8, out: &mut Vec<u8>) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAGMENT);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAGMENT {
            return seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_packet_round_trip() {
        let mut out = Vec::new();
        assert_eq!(encode(b"hello", 7, &mut out), 8);
        assert_eq!(out, b"\x05\x00\x00\x07hello");
        let p = decode(&out, 7, 100).expect("valid").expect("complete");
        assert_eq!(p.payload, b"hello");
        assert_eq!((p.next_seq, p.consumed), (8, 9));
    }

    #[test]
    fn large_payloads_split_and_join() {
        for len in [
            MAX_FRAGMENT - 1,
            MAX_FRAGMENT,
            MAX_FRAGMENT + 10,
            2 * MAX_FRAGMENT,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            let next = encode(&payload, 255, &mut out);
            let fragments = len / MAX_FRAGMENT + 1;
            assert_eq!(out.len(), len + 4 * fragments, "len {len}");
            assert_eq!(next, 255u8.wrapping_add(fragments as u8));
            let p = decode(&out, 255, usize::MAX)
                .expect("valid")
                .expect("complete");
            assert_eq!(p.payload.len(), len);
            assert!(p.payload == payload);
            assert_eq!(p.next_seq, next);
            // Any strict prefix is incomplete.
            for cut in [0, 3, 4, MAX_FRAGMENT, out.len() - 1] {
                assert_eq!(decode(&out[..cut], 255, usize::MAX), Ok(None), "cut {cut}");
            }
        }
    }

    #[test]
    fn exact_multiple_ends_with_empty_fragment() {
        let payload = vec![1u8; MAX_FRAGMENT];
        let mut out = Vec::new();
        encode(&payload, 0, &mut out);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 1]);
        assert_eq!(decode(&out[..out.len() - 4], 0, usize::MAX), Ok(None));
    }

    #[test]
    fn invalid_framing() {
        assert_eq!(
            decode(b"\x01\x00\x00\x03x", 0, 100),
            Err(FrameError::OutOfOrder {
                expected: 0,
                got: 3
            })
        );
        // Too large is known from the header alone.
        assert_eq!(
            decode(b"\x65\x00\x00\x00", 0, 100),
            Err(FrameError::TooLarge { len: 101 })
        );
        assert_eq!(decode(b"\x64\x00\x00\x00", 0, 100), Ok(None));
        // A continuation fragment out of sequence.
        let mut out = vec![0xFF, 0xFF, 0xFF, 0];
        out.extend(std::iter::repeat_n(0u8, MAX_FRAGMENT));
        out.extend_from_slice(&[0, 0, 0, 5]);
        assert!(matches!(
            decode(&out, 0, usize::MAX),
            Err(FrameError::OutOfOrder {
                expected: 1,
                got: 5
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), seq in any::<u8>(), max in 0usize..100) {
            if let Ok(Some(p)) = decode(&bytes, seq, max) {
                prop_assert!(p.consumed <= bytes.len());
                prop_assert!(p.payload.len() <= max);
            }
        }

        #[test]
        fn round_trip_then_mutate(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            seq in any::<u8>(),
            flip in any::<(usize, u8)>(),
        ) {
            let mut out = Vec::new();
            let next = encode(&payload, seq, &mut out);
            let p = decode(&out, seq, 1 << 20).expect("valid").expect("complete");
            prop_assert_eq!(&p.payload, &payload);
            prop_assert_eq!(p.next_seq, next);
            prop_assert_eq!(p.consumed, out.len());
            let i = flip.0 % out.len();
            out[i] ^= flip.1 | 1;
            if let Ok(Some(p)) = decode(&out, seq, 1 << 20) {
                prop_assert!(p.consumed <= out.len());
            }
        }
    }
}
