//! Lists and fixed-length arrays. `sort` is atomic: the list is read with
//! its version, sorted here by `T`'s own order, and swapped back only if
//! nobody changed it meanwhile (else read again).

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::protocol::{Kind, Op, Reply};
use super::super::ManagerError;
use super::{
    decode_owned, encode, expect_bool, expect_count, expect_done, expect_int, expect_kept_list,
    expect_kept_value, expect_list, expect_value, proxy, unexpected,
};

proxy! {
    /// Python's `manager.list()`, typed: items `T`. Values are compared as
    /// their encoded bytes (`remove`, `index`, `count`).
    List [T] = Kind::List
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// `l.append(v)`.
    pub fn append(&self, value: &T) -> Result<(), ManagerError> {
        self.target.done(Op::Append(self.target.to_store(value)?))
    }

    /// `l.append(v)`, awaited (see [`Dict::get_async`](super::Dict::get_async)).
    pub fn append_async(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = self.target.to_store(value).map(Op::Append);
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// `l[i]`, awaited (see [`Dict::get_async`](super::Dict::get_async)).
    pub async fn get_async(&self, index: u64) -> Result<Option<T>, ManagerError>
    where
        T: Send + 'static,
    {
        expect_kept_value(self.target.call_async(Op::At(index)).await?).await
    }

    /// `l.pop()`, awaited (see [`Dict::get_async`](super::Dict::get_async)).
    pub async fn pop_async(&self) -> Result<Option<T>, ManagerError> {
        expect_value(self.target.call_async(Op::PopAt(None)).await?)
    }

    /// `len(l)`, awaited (see [`Dict::get_async`](super::Dict::get_async)).
    pub async fn len_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Len).await?)
    }

    /// `list(l)`, awaited (see [`Dict::get_async`](super::Dict::get_async);
    /// items of a megabyte or more in all are decoded on a thread of ours).
    pub async fn to_vec_async(&self) -> Result<Vec<T>, ManagerError>
    where
        T: Send + 'static,
    {
        expect_kept_list(self.target.call_async(Op::Slice(0, u64::MAX)).await?).await
    }

    /// `l.extend(values)`, awaited, in one round trip (each value encoded
    /// where it is called).
    pub fn extend_async<'a>(
        &self,
        values: impl IntoIterator<Item = &'a T>,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_
    where
        T: 'a,
    {
        let op = values
            .into_iter()
            .map(encode)
            .collect::<Result<_, _>>()
            .map(Op::Extend);
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// `l.insert(i, v)`, awaited.
    pub fn insert_async(
        &self,
        index: u64,
        value: &T,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = self.target.to_store(value).map(|v| Op::Insert(index, v));
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// `l[i] = v`, awaited.
    pub fn set_async(
        &self,
        index: u64,
        value: &T,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = self.target.to_store(value).map(|v| Op::SetAt(index, v));
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// `l.pop(i)`, awaited.
    pub async fn pop_at_async(&self, index: u64) -> Result<Option<T>, ManagerError> {
        expect_value(self.target.call_async(Op::PopAt(Some(index))).await?)
    }

    /// `l[range]`, awaited.
    pub async fn slice_async(&self, range: std::ops::Range<u64>) -> Result<Vec<T>, ManagerError> {
        expect_list(
            self.target
                .call_async(Op::Slice(range.start, range.end))
                .await?,
        )
    }

    /// `l.remove(v)`, awaited: whether it was there.
    pub fn remove_async(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<bool, ManagerError>> + Send + '_ {
        let op = encode(value).map(Op::Remove);
        async move { expect_bool(self.target.call_async(op?).await?) }
    }

    /// `l.index(v)`, awaited.
    pub fn index_async(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<Option<u64>, ManagerError>> + Send + '_ {
        let op = encode(value).map(Op::IndexOf);
        async move {
            let i = expect_int(self.target.call_async(op?).await?)?;
            Ok(u64::try_from(i).ok())
        }
    }

    /// `l.count(v)`, awaited.
    pub fn count_async(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<u64, ManagerError>> + Send + '_ {
        let op = encode(value).map(Op::Count);
        async move { expect_count(self.target.call_async(op?).await?) }
    }

    /// `l.clear()`, awaited.
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::Clear).await?)
    }

    /// `l.extend(values)`, in one round trip.
    pub fn extend<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let values = values.into_iter().map(encode).collect::<Result<_, _>>()?;
        self.target.done(Op::Extend(values))
    }

    /// `l.insert(i, v)` (past the end: at the end).
    pub fn insert(&self, index: u64, value: &T) -> Result<(), ManagerError> {
        self.target
            .done(Op::Insert(index, self.target.to_store(value)?))
    }

    /// `l[i]`, or `None` past the end.
    pub fn get(&self, index: u64) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::At(index))
    }

    /// `l[i] = v` (an error past the end).
    pub fn set(&self, index: u64, value: &T) -> Result<(), ManagerError> {
        self.target
            .done(Op::SetAt(index, self.target.to_store(value)?))
    }

    /// `l.pop()`: the last item.
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::PopAt(None))
    }

    /// `l.pop(i)`.
    pub fn pop_at(&self, index: u64) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::PopAt(Some(index)))
    }

    /// `l[range]` (clamped to the list, as Python's slices).
    pub fn slice(&self, range: std::ops::Range<u64>) -> Result<Vec<T>, ManagerError> {
        self.target.list(Op::Slice(range.start, range.end))
    }

    /// `list(l)`.
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.slice(0..u64::MAX)
    }

    /// `l.remove(v)`: whether it was there.
    pub fn remove(&self, value: &T) -> Result<bool, ManagerError> {
        self.target.boolean(Op::Remove(encode(value)?))
    }

    /// `l.index(v)`, `None` if absent.
    pub fn index(&self, value: &T) -> Result<Option<u64>, ManagerError> {
        let i = self.target.int(Op::IndexOf(encode(value)?))?;
        Ok(u64::try_from(i).ok())
    }

    /// `l.count(v)`.
    pub fn count(&self, value: &T) -> Result<u64, ManagerError> {
        self.target.count(Op::Count(encode(value)?))
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// `l.clear()`.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.target.done(Op::Clear)
    }

    /// `l.sort()`, by `T`'s order, atomically.
    pub fn sort(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        self.rewrite(|items| items.sort())
    }

    /// `l.sort(key=f)`, atomically.
    pub fn sort_by_key<Key: Ord>(
        &self,
        mut key: impl FnMut(&T) -> Key,
    ) -> Result<(), ManagerError> {
        self.rewrite(|items| items.sort_by_key(|t| key(t)))
    }

    /// Applies `change` to the whole list as one atomic step: retried on a
    /// fresh copy whenever someone changed the list in between.
    pub fn rewrite(&self, mut change: impl FnMut(&mut Vec<T>)) -> Result<(), ManagerError> {
        loop {
            let (version, bytes) = match self.target.call(Op::Snapshot)? {
                Reply::Versioned(version, bytes) => (version, bytes),
                other => return Err(unexpected(other)),
            };
            let mut items = bytes
                .into_iter()
                .map(decode_owned)
                .collect::<Result<Vec<T>, _>>()?;
            change(&mut items);
            let bytes = items.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
            if self.target.boolean(Op::ReplaceIf(version, bytes))? {
                return Ok(());
            }
        }
    }
}

proxy! {
    /// Python's `manager.Array(typecode, seq)`, typed: a fixed number of `T`s.
    Array [T] = Kind::Array(Vec::new())
}

impl<T: Serialize + DeserializeOwned> Array<T> {
    /// `a[i]`, or `None` past the end.
    pub fn get(&self, index: u64) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::At(index))
    }

    /// `a[i] = v` (an error past the end).
    pub fn set(&self, index: u64, value: &T) -> Result<(), ManagerError> {
        self.target
            .done(Op::SetAt(index, self.target.to_store(value)?))
    }

    /// `len(a)`.
    pub fn len(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// `len(a) == 0`.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// `a[range]`.
    pub fn slice(&self, range: std::ops::Range<u64>) -> Result<Vec<T>, ManagerError> {
        self.target.list(Op::Slice(range.start, range.end))
    }

    /// `a[:]`.
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.slice(0..u64::MAX)
    }

    /// `a[i]`, awaited (a large item decoded off the executor's thread).
    pub async fn get_async(&self, index: u64) -> Result<Option<T>, ManagerError>
    where
        T: Send + 'static,
    {
        expect_kept_value(self.target.call_async(Op::At(index)).await?).await
    }

    /// `a[i] = v`, awaited.
    pub fn set_async(
        &self,
        index: u64,
        value: &T,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = self.target.to_store(value).map(|v| Op::SetAt(index, v));
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// `len(a)`, awaited.
    pub async fn len_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Len).await?)
    }

    /// `a[range]`, awaited (items of a megabyte or more in all are decoded
    /// on a thread of ours).
    pub async fn slice_async(&self, range: std::ops::Range<u64>) -> Result<Vec<T>, ManagerError>
    where
        T: Send + 'static,
    {
        let reply = self.target.call_async(Op::Slice(range.start, range.end));
        expect_kept_list(reply.await?).await
    }

    /// `a[:]`, awaited.
    pub async fn to_vec_async(&self) -> Result<Vec<T>, ManagerError>
    where
        T: Send + 'static,
    {
        self.slice_async(0..u64::MAX).await
    }
}
