//! Lists and fixed-length arrays on the server. Every change bumps a
//! version, so a client can sort (or rewrite) a list atomically: read it
//! with its version, swap in the result only if nobody changed it since.
//! Items are moved in from the request that brings them and shared with
//! the replies that read them: a 100 MB item is not copied on the server.

use super::super::protocol::{Op, Reply};
use super::super::Payload;
use super::step::{refuse, Step};
use super::MAX_ITEMS;

pub(super) struct List {
    items: Vec<Payload>,
    /// Bytes of its items (the server's byte budget counts them).
    bytes: usize,
    version: u64,
    /// An array: its length never changes.
    fixed: bool,
}

impl List {
    pub fn new(items: Vec<Vec<u8>>, fixed: bool) -> Self {
        let items: Vec<Payload> = items.into_iter().map(stored).collect();
        List {
            bytes: total(&items),
            items,
            version: 0,
            fixed,
        }
    }

    /// Bytes of its items.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes of item `i` (0 if there is none).
    pub fn len_at(&self, i: u64) -> usize {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.items.get(i))
            .map_or(0, |item| item.len())
    }

    /// Carries `op` out, moving the items it brings out of it: a list
    /// never waits, so the op is not needed again.
    pub fn op(&mut self, op: &mut Op) -> Step {
        let step = self.apply(op);
        let reads = matches!(
            op,
            Op::At(_) | Op::Slice(..) | Op::IndexOf(_) | Op::Count(_) | Op::Len | Op::Snapshot
        );
        // Only a change bumps the version (a failed swap must not make the
        // next one fail too).
        let unchanged = matches!(step, Step::Reply(Reply::Error(_) | Reply::Bool(false)));
        if !reads && !unchanged {
            self.version = self.version.wrapping_add(1);
        }
        step
    }

    fn apply(&mut self, op: &mut Op) -> Step {
        let len = self.items.len();
        let index = |i: u64| usize::try_from(i).ok().filter(|&i| i < len);
        let resizes = matches!(
            op,
            Op::Append(_)
                | Op::Extend(_)
                | Op::Insert(..)
                | Op::PopAt(_)
                | Op::Remove(_)
                | Op::Clear
        );
        if self.fixed && resizes {
            return refuse("an array's length is fixed");
        }
        let room = |n: usize| len.saturating_add(n) <= MAX_ITEMS;
        match op {
            Op::Append(_) | Op::Insert(..) if !room(1) => {
                refuse(format!("a list holds at most {MAX_ITEMS} items"))
            }
            Op::Extend(vs) if !room(vs.len()) => {
                refuse(format!("a list holds at most {MAX_ITEMS} items"))
            }
            Op::Append(v) => {
                self.bytes = self.bytes.saturating_add(v.len());
                self.items.push(std::mem::take(v).stored());
                Reply::Done.into()
            }
            Op::Extend(vs) => {
                self.bytes = vs.iter().fold(self.bytes, |n, v| n.saturating_add(v.len()));
                self.items
                    .extend(std::mem::take(vs).into_iter().map(stored));
                Reply::Done.into()
            }
            Op::Insert(i, v) => {
                let at = usize::try_from(*i).unwrap_or(usize::MAX).min(len);
                self.bytes = self.bytes.saturating_add(v.len());
                self.items.insert(at, std::mem::take(v).stored());
                Reply::Done.into()
            }
            Op::At(i) => Reply::Value(index(*i).map(|i| self.items[i].clone())).into(),
            Op::SetAt(i, v) => match index(*i) {
                Some(i) => {
                    self.bytes = self.bytes.saturating_sub(self.items[i].len()) + v.len();
                    self.items[i] = std::mem::take(v).stored();
                    Reply::Done.into()
                }
                None => refuse(format!("index {i} out of range")),
            },
            Op::PopAt(at) => {
                let popped = match at {
                    None => self.items.pop(),
                    Some(i) => index(*i).map(|i| self.items.remove(i)),
                };
                if let Some(v) = &popped {
                    self.bytes = self.bytes.saturating_sub(v.len());
                }
                Reply::Value(popped).into()
            }
            Op::Slice(start, end) => {
                let start = usize::try_from(*start).unwrap_or(len).min(len);
                let end = usize::try_from(*end).unwrap_or(len).clamp(start, len);
                Reply::Keys(self.items[start..end].to_vec()).into()
            }
            Op::Remove(v) => match self.items.iter().position(|x| **x == *v) {
                Some(i) => {
                    let removed = self.items.remove(i);
                    self.bytes = self.bytes.saturating_sub(removed.len());
                    Reply::Bool(true).into()
                }
                None => Reply::Bool(false).into(),
            },
            Op::IndexOf(v) => match self.items.iter().position(|x| **x == *v) {
                Some(i) => Reply::Int(i as i64).into(),
                None => Reply::Int(-1).into(),
            },
            Op::Count(v) => {
                Reply::Len(self.items.iter().filter(|x| ***x == *v).count() as u64).into()
            }
            Op::Len => Reply::Len(len as u64).into(),
            Op::Clear => {
                self.items.clear();
                self.bytes = 0;
                Reply::Done.into()
            }
            Op::Snapshot => Reply::Versioned(self.version, self.items.clone()).into(),
            Op::ReplaceIf(version, items) => {
                if *version != self.version {
                    return Reply::Bool(false).into();
                }
                if items.len() > MAX_ITEMS || (self.fixed && items.len() != len) {
                    return refuse("the new contents do not fit");
                }
                self.items = std::mem::take(items).into_iter().map(stored).collect();
                self.bytes = total(&self.items);
                Reply::Bool(true).into()
            }
            _ => refuse("not an operation on a list"),
        }
    }
}

/// Bytes of `items`.
fn total(items: &[Payload]) -> usize {
    items.iter().map(|item| item.len()).sum()
}

/// Bytes brought by a request, as the list keeps them (shared with the
/// replies that read them).
fn stored(bytes: Vec<u8>) -> Payload {
    Payload::from(bytes).stored()
}
