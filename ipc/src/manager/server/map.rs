//! Dicts, namespaces and single values on the server: encoded keys to
//! encoded values, in key order, a key possibly holding a nested object
//! (`dict.list_at(key)`) instead of a value. Counters (`fetch_add`,
//! `update_with`) are the one thing the server decodes: an `i64`.

use std::collections::BTreeMap;

use super::super::protocol::{Op, Reply, Update};
use super::step::{refuse, Step};
use super::MAX_ITEMS;

pub(super) enum Slot {
    Value(Vec<u8>),
    /// The id of an object kept at this key.
    Nested(u64),
}

#[derive(Default)]
pub(super) struct Map {
    entries: BTreeMap<Vec<u8>, Slot>,
    /// Bytes of its keys and values (the server's byte budget counts them).
    bytes: usize,
}

const NESTED: &str = "that key holds a nested object (reach it with its proxy)";

impl Map {
    /// A single value (`manager.value(v)`): the empty key.
    pub fn cell(value: Vec<u8>) -> Self {
        let mut map = Map {
            bytes: value.len(),
            ..Map::default()
        };
        map.entries.insert(Vec::new(), Slot::Value(value));
        map
    }

    /// Bytes of its keys and values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What is at `key`.
    pub fn slot(&self, key: &[u8]) -> Option<&Slot> {
        self.entries.get(key)
    }

    /// Keeps object `id` at `key` (a free key).
    pub fn insert_nested(&mut self, key: Vec<u8>, id: u64) {
        self.bytes = self.bytes.saturating_add(key.len());
        self.entries.insert(key, Slot::Nested(id));
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Step {
        if self.entries.len() >= MAX_ITEMS && !self.entries.contains_key(&key) {
            return refuse(format!("a dict holds at most {MAX_ITEMS} keys"));
        }
        let added = key.len() + value.len();
        if let Some(old) = self.entries.insert(key.clone(), Slot::Value(value)) {
            self.bytes = self.bytes.saturating_sub(key.len() + slot_bytes(&old));
        }
        self.bytes = self.bytes.saturating_add(added);
        Reply::Done.into()
    }

    fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let old = self.entries.remove(key)?;
        self.bytes = self.bytes.saturating_sub(key.len() + slot_bytes(&old));
        Some(old)
    }

    pub fn op(&mut self, op: &Op) -> Step {
        match op {
            Op::Get(key) => match self.entries.get(key) {
                None => Reply::Value(None).into(),
                Some(Slot::Value(v)) => Reply::Value(Some(v.clone())).into(),
                Some(Slot::Nested(_)) => refuse(NESTED),
            },
            Op::Set(key, value) => self.insert(key.clone(), value.clone()),
            Op::Pop(key) => match self.entries.get(key) {
                Some(Slot::Nested(_)) => refuse(NESTED),
                _ => match self.remove(key) {
                    Some(Slot::Value(v)) => Reply::Value(Some(v)).into(),
                    _ => Reply::Value(None).into(),
                },
            },
            Op::Contains(key) => Reply::Bool(self.entries.contains_key(key)).into(),
            Op::SetDefault(key, value) => match self.entries.get(key) {
                Some(Slot::Value(v)) => Reply::Value(Some(v.clone())).into(),
                Some(Slot::Nested(_)) => refuse(NESTED),
                None => match self.insert(key.clone(), value.clone()) {
                    Step::Reply(Reply::Done) => Reply::Value(Some(value.clone())).into(),
                    other => other,
                },
            },
            Op::Len => Reply::Len(self.entries.len() as u64).into(),
            Op::Keys => Reply::Keys(self.entries.keys().cloned().collect()).into(),
            Op::Values => Reply::Keys(self.values().map(|(_, v)| v.clone()).collect()).into(),
            Op::Items => {
                Reply::Items(self.values().map(|(k, v)| (k.clone(), v.clone())).collect()).into()
            }
            Op::Clear => {
                self.entries.clear();
                self.bytes = 0;
                Reply::Done.into()
            }
            Op::FetchAdd(key, delta) => self.update(key, Update::Add(*delta)),
            Op::UpdateWith(key, update) => self.update(key, *update),
            Op::CompareAndSet { key, expected, new } => {
                let now = match self.entries.get(key) {
                    None => None,
                    Some(Slot::Value(v)) => Some(v),
                    Some(Slot::Nested(_)) => return refuse(NESTED),
                };
                if now != expected.as_ref() {
                    return Reply::Bool(false).into();
                }
                match new {
                    None => {
                        self.remove(key);
                    }
                    Some(v) => {
                        if let Step::Reply(Reply::Error(e)) = self.insert(key.clone(), v.clone()) {
                            return refuse(e);
                        }
                    }
                }
                Reply::Bool(true).into()
            }
            _ => refuse("not an operation on a dict"),
        }
    }

    /// The plain values, with their keys (nested objects are not values).
    fn values(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.entries.iter().filter_map(|(k, slot)| match slot {
            Slot::Value(v) => Some((k, v)),
            Slot::Nested(_) => None,
        })
    }

    fn update(&mut self, key: &[u8], update: Update) -> Step {
        let now = match self.entries.get(key) {
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
            Ok(bytes) => match self.insert(key.to_vec(), bytes) {
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
