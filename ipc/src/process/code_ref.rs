//! [`CodeRef`]: the address of a function of this binary, as it travels to
//! a child: an offset from an anchor function, which is the same in a
//! forked child and in a spawned exec of the same executable (ASLR moves
//! the whole image, not the distance between two functions). This is how
//! a [`Process`](crate::Process) finds its entry; a pool sends the
//! function each task calls the same way.

use serde::{Deserialize, Serialize};

use super::entry::{code_address, code_offset};

/// A function address that can cross into a child of this binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeRef(i64);

impl CodeRef {
    /// The reference of a function pointer (cast it: `f as *const ()`).
    pub fn new(function: *const ()) -> Self {
        CodeRef(code_offset(function as usize))
    }

    /// The address in this process.
    ///
    /// # Safety
    /// The address is only a function if the reference was made by
    /// [`new`](Self::new) in a process running this same executable (a
    /// parent, say): a reference decoded from bytes anyone else wrote is
    /// any address at all. Cast it back only to the type it was made from.
    pub unsafe fn address(self) -> *const () {
        code_address(self.0) as *const ()
    }
}
