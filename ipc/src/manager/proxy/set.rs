//! Python's `manager.set()` (Python 3.14): members kept by the manager,
//! compared as their encoded bytes, in the order they were added. On the
//! server a set is a dict whose values are empty.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::protocol::{Kind, Op, Reply};
use super::super::ManagerError;
use super::super::Payload;
use super::dict::{DictKeys, Pages};
use super::{encode, expect_bool, expect_count, expect_done, expect_list, proxy, unexpected};

proxy! {
    /// Python's `manager.set()`, typed: members `T`, compared as their
    /// encoded bytes (as a [`Dict`](super::Dict)'s keys), in the order
    /// they were added.
    Set [T] = Kind::Set
}

impl<T: Serialize + DeserializeOwned> Set<T> {
    /// `s.add(member)`.
    pub fn add(&self, member: &T) -> Result<(), ManagerError> {
        self.target
            .done(Op::Set(encode(member)?, Payload::default()))
    }

    /// `s.discard(member)`: whether it was a member.
    pub fn discard(&self, member: &T) -> Result<bool, ManagerError> {
        match self.target.call(Op::Pop(encode(member)?))? {
            Reply::Value(was) => Ok(was.is_some()),
            other => Err(unexpected(other)),
        }
    }

    /// `s.remove(member)`: as `discard`, where Python raises `KeyError`
    /// for a member that is not there ([`ManagerError::NotFound`]).
    pub fn remove(&self, member: &T) -> Result<(), ManagerError> {
        match self.discard(member)? {
            true => Ok(()),
            false => Err(ManagerError::NotFound),
        }
    }

    /// `member in s`.
    pub fn contains(&self, member: &T) -> Result<bool, ManagerError> {
        self.target.boolean(Op::Contains(encode(member)?))
    }

    /// `len(s)`.
    pub fn len(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// `len(s) == 0`.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// `s.clear()`.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.target.done(Op::Clear)
    }

    /// `s.pop()`: a member, removed (the one added last; `None`: the set
    /// is empty, where Python raises `KeyError`).
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        match self.target.call(Op::PopItem)? {
            Reply::Items(items) => items
                .first()
                .map(|(member, _)| super::decode(member))
                .transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// `s.update(members)` (`s |= members`), in one round trip per 64 Ki.
    pub fn update<'a>(&self, members: impl IntoIterator<Item = &'a T>) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let ops = additions(members)?;
        self.target
            .batch(ops)?
            .into_iter()
            .try_for_each(expect_done)
    }

    /// `s.difference_update(members)` (`s -= members`).
    pub fn difference_update<'a>(
        &self,
        members: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let ops = members
            .into_iter()
            .map(|m| Ok(Op::Pop(encode(m)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        for reply in self.target.batch(ops)? {
            match reply {
                Reply::Value(_) => {}
                other => return Err(unexpected(other)),
            }
        }
        Ok(())
    }

    /// `s.intersection_update(others)` (`s &= others`): keeps only the
    /// members among `others`, in one step on the server.
    pub fn intersection_update<'a>(
        &self,
        others: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let keys = others.into_iter().map(encode).collect::<Result<_, _>>()?;
        self.target.done(Op::RetainKeys(keys))
    }

    /// `s.symmetric_difference_update(others)` (`s ^= others`): each of
    /// `others` removed if a member, added if not, in one step.
    pub fn symmetric_difference_update<'a>(
        &self,
        others: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let mut keys: Vec<Vec<u8>> = others.into_iter().map(encode).collect::<Result<_, _>>()?;
        // Python's `^=` takes a set: a member named twice counts once.
        keys.sort();
        keys.dedup();
        self.target.done(Op::ToggleKeys(keys))
    }

    /// `s.issuperset(others)`: whether every one of `others` is a member
    /// (asked in one round trip).
    pub fn is_superset<'a>(
        &self,
        others: impl IntoIterator<Item = &'a T>,
    ) -> Result<bool, ManagerError>
    where
        T: 'a,
    {
        Ok(self.memberships(others)?.into_iter().all(|m| m))
    }

    /// `s.isdisjoint(others)`: whether none of `others` is a member.
    pub fn is_disjoint<'a>(
        &self,
        others: impl IntoIterator<Item = &'a T>,
    ) -> Result<bool, ManagerError>
    where
        T: 'a,
    {
        Ok(!self.memberships(others)?.into_iter().any(|m| m))
    }

    /// Whether each of `others` is a member, in one round trip.
    fn memberships<'a>(
        &self,
        others: impl IntoIterator<Item = &'a T>,
    ) -> Result<Vec<bool>, ManagerError>
    where
        T: 'a,
    {
        let ops = others
            .into_iter()
            .map(|m| Ok(Op::Contains(encode(m)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.target
            .batch(ops)?
            .into_iter()
            .map(|r| match r {
                Reply::Bool(b) => Ok(b),
                other => Err(unexpected(other)),
            })
            .collect()
    }

    /// Every member, in the order they were added, in one round trip
    /// (`set(s)`, `s.copy()`; `union`, `intersection`, `issubset` and the
    /// rest of Python's read-only methods are then Rust's).
    pub fn members(&self) -> Result<Vec<T>, ManagerError> {
        self.target.list(Op::Keys)
    }

    /// `for member in s`, a page at a time; a member added or removed
    /// meanwhile ends it with [`ManagerError::ChangedDuringIteration`].
    pub fn iter(&self) -> DictKeys<'_, T> {
        DictKeys::new(Pages::new(&self.target, false))
    }
}

/// The same calls awaited, for async code: each goes on one of the
/// process's connections for awaited calls (see
/// [`Dict::get_async`](super::Dict::get_async)), so a round trip never
/// holds the executor's thread. A member is encoded where the call is
/// first polled.
impl<T: Serialize + DeserializeOwned> Set<T> {
    /// [`add`](Self::add), awaited.
    pub async fn add_async(&self, member: &T) -> Result<(), ManagerError> {
        let op = Op::Set(encode(member)?, Payload::default());
        expect_done(self.target.call_async(op).await?)
    }

    /// [`discard`](Self::discard), awaited: whether it was a member.
    pub async fn discard_async(&self, member: &T) -> Result<bool, ManagerError> {
        match self.target.call_async(Op::Pop(encode(member)?)).await? {
            Reply::Value(was) => Ok(was.is_some()),
            other => Err(unexpected(other)),
        }
    }

    /// [`remove`](Self::remove), awaited.
    pub async fn remove_async(&self, member: &T) -> Result<(), ManagerError> {
        match self.discard_async(member).await? {
            true => Ok(()),
            false => Err(ManagerError::NotFound),
        }
    }

    /// [`contains`](Self::contains), awaited.
    pub async fn contains_async(&self, member: &T) -> Result<bool, ManagerError> {
        let op = Op::Contains(encode(member)?);
        expect_bool(self.target.call_async(op).await?)
    }

    /// [`len`](Self::len), awaited.
    pub async fn len_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Len).await?)
    }

    /// [`clear`](Self::clear), awaited.
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::Clear).await?)
    }

    /// [`members`](Self::members), awaited.
    pub async fn members_async(&self) -> Result<Vec<T>, ManagerError> {
        expect_list(self.target.call_async(Op::Keys).await?)
    }

    /// [`update`](Self::update), awaited, 64 Ki members to a round trip.
    pub async fn update_async<'a>(
        &self,
        members: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let ops = additions(members)?;
        self.target
            .batch_async(ops)
            .await?
            .into_iter()
            .try_for_each(expect_done)
    }
}

/// The ops that add `members`.
fn additions<'a, T: Serialize + 'a>(
    members: impl IntoIterator<Item = &'a T>,
) -> Result<Vec<Op>, ManagerError> {
    members
        .into_iter()
        .map(|m| Ok(Op::Set(encode(m)?, Payload::default())))
        .collect()
}
