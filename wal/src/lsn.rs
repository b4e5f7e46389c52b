//! Log sequence numbers and page identifiers.
//!
//! An [`Lsn`] is a byte position in the one logical WAL stream. A record's
//! LSN is the position just past its end; `Lsn(0)` means "nothing". LSNs only
//! grow. A [`PageId`] names one 8 KiB page: space 0 is the catalog, every
//! table and index has a space of its own.

use std::fmt;

/// A byte position in the WAL stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// "Nothing": before the first record.
    pub const ZERO: Lsn = Lsn(0);
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// The position `bytes` further on.
    ///
    /// Panics on overflow: a 64-bit byte position cannot overflow in practice
    /// (16 EiB of WAL), so wrapping would mean a corrupted value upstream.
    pub fn advance(self, bytes: u64) -> Lsn {
        Lsn(self
            .0
            .checked_add(bytes)
            .expect("LSN overflow: 16 EiB of WAL"))
    }

    /// Bytes from `earlier` to `self`; zero if `earlier` is later.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    /// Printed as Postgres and Neon print them: high and low 32 bits in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// One page: `(space, page_no)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId {
    pub space: u32,
    pub page_no: u32,
}

impl PageId {
    pub const fn new(space: u32, page_no: u32) -> PageId {
        PageId { space, page_no }
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.space, self.page_no)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_displays_as_two_hex_halves() {
        assert_eq!(Lsn(0x1_0000_00ff).to_string(), "1/FF");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
    }

    #[test]
    fn bytes_since_saturates() {
        assert_eq!(Lsn(10).bytes_since(Lsn(4)), 6);
        assert_eq!(Lsn(4).bytes_since(Lsn(10)), 0);
    }
}
