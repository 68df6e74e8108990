//! Property tests of the frame codec: every value round-trips, and no
//! corruption of bytes or lengths panics or allocates past the maximum.

use outlast_ipc::codec::{decode_frame, encode_frame, DecodeError};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tests::peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAllocation = peak_alloc::PeakAllocation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Point { x: i64, y: i64 },
    Named(String),
    Many(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    id: u64,
    tag: Option<String>,
    bytes: Vec<u8>,
    shapes: Vec<Shape>,
    ratio: f64,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        (any::<i64>(), any::<i64>()).prop_map(|(x, y)| Shape::Point { x, y }),
        ".{0,40}".prop_map(Shape::Named),
        prop::collection::vec(any::<u32>(), 0..20).prop_map(Shape::Many),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        prop::option::of(".{0,30}"),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(shape(), 0..8),
        any::<f64>().prop_filter("NaN is never equal to itself", |f| !f.is_nan()),
    )
        .prop_map(|(id, tag, bytes, shapes, ratio)| Message {
            id,
            tag,
            bytes,
            shapes,
            ratio,
        })
}

const MAX: usize = 64 * 1024;

proptest! {
    #[test]
    fn values_round_trip(m in message()) {
        let frame = encode_frame(&m, MAX).expect("encodes");
        let (back, used) = decode_frame::<Message>(&frame, MAX).expect("decodes");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, m);
    }

    #[test]
    fn corrupted_bytes_never_panic(m in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut frame = encode_frame(&m, MAX).expect("encodes");
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte | 1;
        }
        peak_alloc::reset();
        // Any outcome is fine but a panic; a decoded value must be a whole frame.
        if let Ok((_, used)) = decode_frame::<Message>(&frame, MAX) {
            prop_assert!(used <= frame.len());
        }
        prop_assert!(peak_alloc::peak() <= 2 * MAX, "allocated past the maximum");
    }

    #[test]
    fn wild_lengths_are_refused_before_allocating(len in (MAX as u32 + 1)..=u32::MAX, tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut frame = len.to_le_bytes().to_vec();
        frame.extend(tail);
        peak_alloc::reset();
        let result = decode_frame::<Message>(&frame, MAX);
        let is_too_large = matches!(result, Err(DecodeError::TooLarge { .. }));
        prop_assert!(is_too_large);
        prop_assert!(peak_alloc::peak() < 4096);
    }

    #[test]
    fn truncation_is_reported(m in message(), cut in any::<prop::sample::Index>()) {
        let frame = encode_frame(&m, MAX).expect("encodes");
        let keep = cut.index(frame.len());
        let is_truncated = matches!(decode_frame::<Message>(&frame[..keep], MAX), Err(DecodeError::Truncated { .. }));
        prop_assert!(is_truncated);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        peak_alloc::reset();
        let _ = decode_frame::<Message>(&bytes, MAX);
        let _ = decode_frame::<(String, Vec<u64>, Option<Shape>)>(&bytes, MAX);
        prop_assert!(peak_alloc::peak() <= 2 * MAX);
    }
}
