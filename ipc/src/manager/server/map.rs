//! Dicts, namespaces and single values on the server: encoded keys to
//! encoded values, in insertion order as Python's dicts (a key set again
//! keeps its place; removed and set again, it goes last), a key possibly
//! holding a nested object (`dict.list_at(key)`) instead of a value.
//! Counters (`fetch_add`, `update_with`) are the one thing the server
//! decodes: an `i64`.
//!
//! Each key has a place number; an index from place to key keeps the
//! order, so a removal costs a logarithm, not a shift of every later key.

use std::collections::{BTreeMap, HashMap};

use super::super::protocol::{Op, Reply, Update};
use super::super::Payload;
use super::step::{refuse, Step};
use super::MAX_ITEMS;

pub(super) enum Slot {
    /// Shared with the replies that carry it: a `get` sends the value
    /// itself rather than a copy.
    Value(Payload),
    /// The id of an object kept at this key.
    Nested(u64),
}

#[derive(Default)]
pub(super) struct Map {
    /// Each key's place and what it holds.
    entries: HashMap<Vec<u8>, (u64, Slot)>,
    /// Places in insertion order, to their keys.
    order: BTreeMap<u64, Vec<u8>>,
    next_place: u64,
    /// Moves with every key added or removed: an iteration begun at another
    /// version is told that the dict changed under it (Python's
    /// "dictionary changed size during iteration").
    version: u64,
    /// Bytes of its keys and values (the server's byte budget counts them).
    bytes: usize,
    /// Nested objects whose key was overwritten or cleared: for the server
    /// to free ([`Map::take_orphans`]).
    orphans: Vec<u64>,
}

/// The most items, and about the most bytes, one page of an iteration
/// carries.
const PAGE: usize = 1024;
const PAGE_BYTES: usize = 1 << 20;

const NESTED: &str = "that key holds a nested object (reach it with its proxy)";

impl Map {
    /// A single value (`manager.value(v)`): the empty key.
    pub fn cell(value: Vec<u8>) -> Self {
        let mut map = Map::default();
        map.put(Vec::new(), Slot::Value(Payload::from(value).stored()));
        map
    }

    /// Bytes of its keys and values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What is at `key`.
    pub fn slot(&self, key: &[u8]) -> Option<&Slot> {
        self.entries.get(key).map(|(_, slot)| slot)
    }

    /// Keeps object `id` at `key` (a free key).
    pub fn insert_nested(&mut self, key: Vec<u8>, id: u64) {
        self.put(key, Slot::Nested(id));
    }

    /// Sets `key`: in its place if it has one, else last.
    fn put(&mut self, key: Vec<u8>, slot: Slot) {
        let added = key.len() + slot_bytes(&slot);
        match self.entries.get_mut(&key) {
            Some((_, old)) => {
                let old = std::mem::replace(old, slot);
                self.bytes = self.bytes.saturating_sub(key.len() + slot_bytes(&old));
                if let Slot::Nested(n) = old {
                    self.orphans.push(n);
                }
            }
            None => {
                let place = self.next_place;
                self.next_place += 1;
                self.version = self.version.wrapping_add(1);
                self.order.insert(place, key.clone());
                self.entries.insert(key, (place, slot));
            }
        }
        self.bytes = self.bytes.saturating_add(added);
    }

    /// `d[key] = value`; a new key past the most a dict holds is refused.
    pub fn insert(&mut self, key: Vec<u8>, value: Payload) -> Step {
        if self.entries.len() >= MAX_ITEMS && !self.entries.contains_key(&key) {
            return refuse(format!("a dict holds at most {MAX_ITEMS} keys"));
        }
        self.put(key, Slot::Value(value.stored()));
        Reply::Done.into()
    }

    fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let (place, old) = self.entries.remove(key)?;
        self.order.remove(&place);
        self.version = self.version.wrapping_add(1);
        self.bytes = self.bytes.saturating_sub(key.len() + slot_bytes(&old));
        Some(old)
    }

    /// Keys and what they hold, in insertion order.
    fn in_order(&self) -> impl Iterator<Item = (&Vec<u8>, &Slot)> {
        self.order
            .values()
            .filter_map(|key| self.entries.get(key).map(|(_, slot)| (key, slot)))
    }

    /// Python's `popitem()`: the key set last, and its value.
    fn pop_last(&mut self) -> Step {
        let Some((_, key)) = self.order.last_key_value() else {
            return Reply::Items(Vec::new()).into();
        };
        let key = key.clone();
        if let Some(Slot::Nested(_)) = self.slot(&key) {
            return refuse("the last key holds a nested object (pop it with its proxy)");
        }
        match self.remove(&key) {
            Some(Slot::Value(v)) => Reply::Items(vec![(key, v)]).into(),
            _ => Reply::Items(Vec::new()).into(),
        }
    }

    /// One page of an iteration: the keys (and values, nested objects as
    /// `None`) after place `after`, while the dict is still at `version`.
    fn page(&self, after: Option<u64>, version: Option<u64>, with_values: bool) -> Step {
        if version.is_some_and(|v| v != self.version) {
            return Reply::Changed.into();
        }
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut items = Vec::new();
        let mut last = None;
        let mut bytes = 0usize;
        for (&place, key) in self.order.range(start..).take(PAGE) {
            // A page stays far below any frame cap, whatever the values.
            if bytes >= PAGE_BYTES {
                break;
            }
            let value = match self.slot(key) {
                Some(Slot::Value(v)) if with_values => Some(v.to_vec()),
                _ => None,
            };
            bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            items.push((key.clone(), value));
            last = Some(place);
        }
        Reply::Page {
            version: self.version,
            last,
            items,
        }
        .into()
    }

    pub fn op(&mut self, op: &Op) -> Step {
        match op {
            Op::Get(key) => match self.slot(key) {
                None => Reply::Value(None).into(),
                Some(Slot::Value(v)) => Reply::Value(Some(v.clone())).into(),
                Some(Slot::Nested(_)) => refuse(NESTED),
            },
            Op::Set(key, value) => self.insert(key.clone(), value.clone()),
            Op::Pop(key) => match self.slot(key) {
                Some(Slot::Nested(_)) => refuse(NESTED),
                _ => match self.remove(key) {
                    Some(Slot::Value(v)) => Reply::Value(Some(v)).into(),
                    _ => Reply::Value(None).into(),
                },
            },
            Op::Contains(key) => Reply::Bool(self.entries.contains_key(key)).into(),
            Op::SetDefault(key, value) => match self.slot(key) {
                Some(Slot::Value(v)) => Reply::Value(Some(v.clone())).into(),
                Some(Slot::Nested(_)) => refuse(NESTED),
                None => match self.insert(key.clone(), value.clone().into()) {
                    Step::Reply(Reply::Done) => Reply::Value(Some(value.clone().into())).into(),
                    other => other,
                },
            },
            Op::Len => Reply::Len(self.entries.len() as u64).into(),
            Op::Keys => {
                Reply::Keys(self.order.values().cloned().map(Payload::from).collect()).into()
            }
            Op::Values => Reply::Keys(self.values().map(|(_, v)| v.clone()).collect()).into(),
            Op::Items => {
                Reply::Items(self.values().map(|(k, v)| (k.clone(), v.clone())).collect()).into()
            }
            Op::Clear => {
                self.orphans.extend(self.nested());
                self.entries.clear();
                self.order.clear();
                self.version = self.version.wrapping_add(1);
                self.bytes = 0;
                Reply::Done.into()
            }
            Op::PopItem => self.pop_last(),
            Op::RetainKeys(keep) => {
                let keep: std::collections::HashSet<&[u8]> =
                    keep.iter().map(Vec::as_slice).collect();
                let doomed: Vec<Vec<u8>> = self
                    .order
                    .values()
                    .filter(|k| !keep.contains(k.as_slice()))
                    .cloned()
                    .collect();
                for key in doomed {
                    if let Some(Slot::Nested(n)) = self.remove(&key) {
                        self.orphans.push(n);
                    }
                }
                Reply::Done.into()
            }
            Op::ToggleKeys(keys) => {
                for key in keys {
                    match self.slot(key) {
                        Some(Slot::Nested(_)) => return refuse(NESTED),
                        Some(Slot::Value(_)) => {
                            self.remove(key);
                        }
                        None => {
                            if let Step::Reply(Reply::Error(e)) =
                                self.insert(key.clone(), Payload::default())
                            {
                                return refuse(e);
                            }
                        }
                    }
                }
                Reply::Done.into()
            }
            Op::Page {
                after,
                version,
                values,
            } => self.page(*after, *version, *values),
            Op::FetchAdd(key, delta) => self.update(key, Update::Add(*delta)),
            Op::UpdateWith(key, update) => self.update(key, *update),
            Op::CompareAndSet { key, expected, new } => {
                let now = match self.slot(key) {
                    None => None,
                    Some(Slot::Value(v)) => Some(&**v),
                    Some(Slot::Nested(_)) => return refuse(NESTED),
                };
                if now != expected.as_deref() {
                    return Reply::Bool(false).into();
                }
                match new {
                    None => {
                        self.remove(key);
                    }
                    Some(v) => {
                        if let Step::Reply(Reply::Error(e)) =
                            self.insert(key.clone(), v.clone().into())
                        {
                            return refuse(e);
                        }
                    }
                }
                Reply::Bool(true).into()
            }
            _ => refuse("not an operation on a dict"),
        }
    }

    /// Every key and what it holds, in insertion order.
    pub fn in_order_slots(&self) -> impl Iterator<Item = (&Vec<u8>, &Slot)> {
        self.in_order()
    }

    /// The objects nested at its keys.
    pub fn nested(&self) -> Vec<u64> {
        self.entries
            .values()
            .filter_map(|(_, slot)| match slot {
                Slot::Nested(n) => Some(*n),
                Slot::Value(_) => None,
            })
            .collect()
    }

    /// Nested objects no key holds any more.
    pub fn take_orphans(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.orphans)
    }

    /// The plain values, with their keys (nested objects are not values).
    fn values(&self) -> impl Iterator<Item = (&Vec<u8>, &Payload)> {
        self.in_order().filter_map(|(k, slot)| match slot {
            Slot::Value(v) => Some((k, v)),
            Slot::Nested(_) => None,
        })
    }

    fn update(&mut self, key: &[u8], update: Update) -> Step {
        let now = match self.slot(key) {
            None => 0,
            // The whole value, not a prefix that happens to decode.
            Some(Slot::Value(bytes)) => match postcard::take_from_bytes::<i64>(bytes) {
                Ok((n, [])) => n,
                _ => return refuse("the value there is not an i64"),
            },
            Some(Slot::Nested(_)) => return refuse(NESTED),
        };
        let new = update.apply(now);
        match postcard::to_allocvec(&new) {
            Ok(bytes) => match self.insert(key.to_vec(), bytes.into()) {
                Step::Reply(Reply::Done) => Reply::Int(new).into(),
                other => other,
            },
            Err(e) => refuse(e.to_string()),
        }
    }
}

/// Bytes a slot's value takes (a nested object's are its own).
fn slot_bytes(slot: &Slot) -> usize {
    match slot {
        Slot::Value(v) => v.len(),
        Slot::Nested(_) => 0,
    }
}
