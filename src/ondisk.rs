//! Little-endian on-disk values: the one trait every fixed-size on-disk struct and btree value
//! implements, and `on_disk!`, which writes a struct's unpack and pack from one list of its fields
//! and their byte offsets, so each layout is declared once (as the kernel's packed structs are).

use byteorder::{ByteOrder, LittleEndian as LE};

/// A value with a fixed little-endian encoding of `SIZE` bytes. `unpack` and `pack` take a slice
/// that starts at the value and holds at least `SIZE` bytes (callers slice checked blocks).
pub trait OnDisk: Sized {
    const SIZE: usize;
    fn unpack(b: &[u8]) -> Self;
    fn pack(&self, b: &mut [u8]);
}

macro_rules! int {
    ($t:ty, $read:ident, $write:ident) => {
        impl OnDisk for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn unpack(b: &[u8]) -> Self {
                LE::$read(b)
            }
            fn pack(&self, b: &mut [u8]) {
                LE::$write(b, *self)
            }
        }
    };
}

int!(u32, read_u32, write_u32);
int!(u64, read_u64, write_u64);

/// Raw bytes (a uuid, a stream id), stored as they are.
impl<const N: usize> OnDisk for [u8; N] {
    const SIZE: usize = N;
    fn unpack(b: &[u8]) -> Self {
        let mut a = [0u8; N];
        a.copy_from_slice(&b[..N]);
        a
    }
    fn pack(&self, b: &mut [u8]) {
        b[..N].copy_from_slice(self)
    }
}

/// `on_disk!(Type, size, { field @ offset, ... })`: implements [`OnDisk`] for a struct whose every
/// field is itself `OnDisk`, each stored at its offset; bytes between fields are left alone.
macro_rules! on_disk {
    ($t:ident, $size:expr, { $($field:ident @ $off:expr),+ $(,)? }) => {
        impl $crate::ondisk::OnDisk for $t {
            const SIZE: usize = $size;
            fn unpack(b: &[u8]) -> Self {
                $t { $($field: $crate::ondisk::OnDisk::unpack(&b[$off..])),+ }
            }
            fn pack(&self, b: &mut [u8]) {
                $($crate::ondisk::OnDisk::pack(&self.$field, &mut b[$off..]);)+
            }
        }
    };
}
pub(crate) use on_disk;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pair {
        a: u32,
        b: u64,
        id: [u8; 2],
    }
    on_disk!(Pair, 16, { a @ 0, b @ 4, id @ 14 });

    #[test]
    fn fields_land_at_their_offsets_little_endian_and_gaps_stay_untouched() {
        let p = Pair { a: 0x0403_0201, b: 0x0c0b_0a09_0807_0605, id: [0xee, 0xff] };
        let mut b = [0xaau8; 16];
        p.pack(&mut b);
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xaa, 0xaa, 0xee, 0xff]);
        assert_eq!(Pair::unpack(&b), p);
        assert_eq!(Pair::SIZE, 16);
    }
}
