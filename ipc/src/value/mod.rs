//! Typed shared state: [`Value<T>`] and [`Array<T>`] (with a robust lock),
//! [`RawValue<T>`] and [`RawArray<T>`] (without), for plain-old-data `T`
//! (`bytemuck::Pod`). Python's `Value('d', 0.0)` is `Value::new(0.0f64)`,
//! `Array('i', range(10))` is `Array::from_iter(0..10i32)`. Integer values
//! also have lock-free atomic `fetch_add` / `compare_exchange`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use outlast_ipc::value::{Array, Value};
//! let counter = Value::new(0u64)?;
//! counter.fetch_add(5);
//! *counter.lock().map_err(|e| e.to_string())? += 1;
//! assert_eq!(counter.get()?, 6);
//! let squares = Array::from_iter((0..4i32).map(|i| i * i))?;
//! squares.lock().map_err(|e| e.to_string())?[3] = -1;
//! assert_eq!(squares.to_vec()?, [0, 1, 4, -1]);
//! # Ok(())
//! # }
//! ```

mod array;
mod atomic;
mod scalar;

pub use array::{Array, ArrayGuard, RawArray};
pub use atomic::AtomicInt;
pub use scalar::{RawValue, Value, ValueGuard};

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::{SharedMemory, ShmError};
use crate::sync::robust::RobustMutex;

/// What precedes the elements: the lock, and what the elements are.
#[repr(C)]
pub(crate) struct ArrayState {
    mutex: RobustMutex,
    elem_size: AtomicU64,
    len: AtomicU64,
}

impl ShmState for ArrayState {
    const TAG: u64 = 0x4950_4341_5252_5902; // "IPCARRY" v2
}

/// Elements of `T` in a shared segment, behind a robust mutex.
pub(crate) struct Elements<T> {
    cell: ShmCell<ArrayState>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Elements<T> {
    fn clone(&self) -> Self {
        Elements {
            cell: self.cell.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

// SAFETY: the elements are plain data in shared memory; access from any
// thread goes through the mutex or through raw volatile copies.
unsafe impl<T: Pod> Send for Elements<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Sync for Elements<T> {}

impl<T: Pod> Elements<T> {
    const ALIGN_OK: () = assert!(
        std::mem::align_of::<T>() <= 64,
        "T must be aligned to 64 bytes or less"
    );

    fn bytes_for(len: usize) -> Result<usize, ShmError> {
        len.checked_mul(std::mem::size_of::<T>())
            .ok_or(ShmError::WrongSize {
                expected: usize::MAX,
                found: 0,
            })
    }

    /// Elements copied from `values`, in a fresh anonymous segment.
    fn from_slice(values: &[T]) -> Result<Self, ShmError> {
        let bytes = Self::bytes_for(values.len())?;
        Self::init(ShmCell::new(bytes.max(1), |_, _| {}), values)
    }

    /// Elements copied from `values`, in a given (fresh) segment.
    fn from_slice_in(shm: SharedMemory, values: &[T]) -> Result<Self, ShmError> {
        let bytes = Self::bytes_for(values.len())?;
        Self::init(ShmCell::new_in(shm, bytes.max(1), |_, _| {}), values)
    }

    fn init(cell: Result<ShmCell<ArrayState>, ShmError>, values: &[T]) -> Result<Self, ShmError> {
        let () = Self::ALIGN_OK;
        let cell = cell?;
        let state = cell.state();
        state.mutex.init(false)?;
        state
            .elem_size
            .store(std::mem::size_of::<T>() as u64, Ordering::Release);
        state.len.store(values.len() as u64, Ordering::Release);
        // SAFETY: the extra area holds at least `values.len()` elements, is
        // 64-byte aligned (T needs at most 64), and no one else sees it yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                cell.extra_ptr().cast::<T>(),
                values.len(),
            );
        }
        Ok(Elements {
            cell,
            len: values.len(),
            _t: PhantomData,
        })
    }

    /// Elements in a segment made elsewhere, checked against `T`.
    fn from_cell(cell: ShmCell<ArrayState>) -> Result<Self, ShmError> {
        let () = Self::ALIGN_OK;
        let state = cell.state();
        let elem_size = state.elem_size.load(Ordering::Acquire) as usize;
        if elem_size != std::mem::size_of::<T>() {
            return Err(ShmError::WrongType {
                expected: std::mem::size_of::<T>(),
                found: elem_size,
            });
        }
        let len = usize::try_from(state.len.load(Ordering::Acquire)).unwrap_or(usize::MAX);
        let needed = Self::bytes_for(len)?;
        if needed > cell.extra_len() {
            return Err(ShmError::WrongSize {
                expected: needed,
                found: cell.extra_len(),
            });
        }
        Ok(Elements {
            cell,
            len,
            _t: PhantomData,
        })
    }

    fn ptr(&self) -> *mut T {
        self.cell.extra_ptr().cast::<T>()
    }

    fn mutex(&self) -> &RobustMutex {
        &self.cell.state().mutex
    }

    fn segment(&self) -> &SharedMemory {
        self.cell.segment()
    }
}

impl<T> std::fmt::Debug for Elements<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elements").field("len", &self.len).finish()
    }
}

impl<T> Serialize for Elements<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.cell.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Elements<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cell = ShmCell::<ArrayState>::deserialize(deserializer)?;
        Elements::from_cell(cell).map_err(D::Error::custom)
    }
}

/// Opens a named segment made by `Array::create_named` / `Value::create_named`.
fn open_named<T: Pod>(name: &str) -> Result<Elements<T>, ShmError> {
    Elements::from_cell(ShmCell::from_segment(SharedMemory::open(name)?)?)
}
