//! The protocol's basic encodings: little-endian fixed-width integers,
//! length-encoded integers and strings, NUL-terminated strings.
//!
//! Invariants: every reading helper checks the remaining length first and
//! returns [`Malformed`] on short or impossible input; nothing here panics
//! on bytes that came from a client. Writing helpers append to a `Vec<u8>`
//! and cannot fail. This module depends on nothing else in the crate.

/// A payload that does not parse as the command it claims to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed packet: {0}")]
pub(crate) struct Malformed(pub &'static str);

/// A cursor over one packet's payload.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.buf.len() {
            return Err(Malformed("payload too short"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u24(&mut self) -> Result<u32, Malformed> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length-encoded integer; 0xFB (NULL) and 0xFF are not integers.
    pub(crate) fn lenenc_int(&mut self) -> Result<u64, Malformed> {
        match self.u8()? {
            b @ 0..=0xFA => Ok(u64::from(b)),
            0xFC => Ok(u64::from(self.u16()?)),
            0xFD => Ok(u64::from(self.u24()?)),
            0xFE => self.u64(),
            _ => Err(Malformed("bad length-encoded integer")),
        }
    }

    /// A length-encoded string.
    pub(crate) fn lenenc_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.lenenc_int()?;
        let len = usize::try_from(len).map_err(|_| Malformed("string too long"))?;
        self.take(len)
    }

    /// Bytes up to a NUL, which is consumed; a missing NUL is malformed.
    pub(crate) fn nul_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or(Malformed("missing NUL terminator"))?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }

    /// Bytes up to a NUL or to the end of the payload.
    pub(crate) fn nul_or_rest(&mut self) -> &'a [u8] {
        match self.nul_bytes() {
            Ok(s) => s,
            Err(_) => self.rest(),
        }
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    if v < 0xFB {
        out.push(v as u8);
    } else if v <= 0xFFFF {
        out.push(0xFC);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= 0xFF_FFFF {
        out.push(0xFD);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn put_nul_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lenenc_boundaries() {
        for (v, len) in [
            (0u64, 1usize),
            (250, 1),
            (251, 3),
            (0xFFFF, 3),
            (0x1_0000, 4),
            (0xFF_FFFF, 4),
            (0x100_0000, 9),
            (u64::MAX, 9),
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn short_input_is_malformed() {
        assert!(Reader::new(&[0xFC, 1]).lenenc_int().is_err());
        assert!(Reader::new(&[0xFB]).lenenc_int().is_err());
        assert!(Reader::new(&[0xFF]).lenenc_int().is_err());
        assert!(Reader::new(&[5, b'a']).lenenc_bytes().is_err());
        assert!(Reader::new(b"abc").nul_bytes().is_err());
        assert!(Reader::new(&[1, 2, 3]).u32().is_err());
        let mut r = Reader::new(b"ab\0cd");
        assert_eq!(r.nul_bytes(), Ok(&b"ab"[..]));
        assert_eq!(r.nul_or_rest(), b"cd");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn lenenc_round_trip(v in any::<u64>(), s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            put_lenenc_bytes(&mut out, &s);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc_int(), Ok(v));
            prop_assert_eq!(r.lenenc_bytes(), Ok(&s[..]));
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while r.remaining() > 0 {
                if r.lenenc_bytes().is_err() && r.nul_bytes().is_err() {
                    let _ = r.u8();
                }
            }
            prop_assert_eq!(r.remaining(), 0);
        }
    }
}
