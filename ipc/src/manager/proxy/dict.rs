//! Dicts, namespaces and single values, with the updates Python's manager
//! cannot make atomic (`fetch_add`, `update_with`, `compare_and_set`) and
//! objects nested at a key (`list_at`, `dict_at`), whose changes everyone
//! sees (the answer to `d['k'].append(x)` changing a copy).

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::protocol::{KeyHolds, Kind, Op, Reply, Update};
use super::super::ManagerError;
use super::{
    decode, decode_owned, decoded_off_thread, encode, expect_bool, expect_count, expect_done,
    expect_int, expect_kept_list, expect_kept_value, expect_list, expect_value, proxy, unexpected,
    List, Made, Target, OFF_THREAD_BYTES,
};

proxy! {
    custom_debug
    /// Python's `manager.Namespace()`: named fields of any serde type, and
    /// `i64` counters updated on the server. Its `Debug` asks the manager
    /// for the field names (`Namespace(#3) { count, name }`).
    Namespace [] = Kind::Namespace
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Namespace(#{}) ", self.target.id)?;
        // A Debug must not hang on a stopped manager.
        let quick = self.clone().with_timeout(std::time::Duration::from_secs(1));
        match quick.fields() {
            Ok(fields) if fields.is_empty() => write!(f, "{{}}"),
            Ok(fields) => write!(f, "{{ {} }}", fields.join(", ")),
            Err(e) => write!(f, "{{ <{e}> }}"),
        }
    }
}

/// A namespace's field names, from their bytes.
fn field_names(reply: Reply) -> Result<Vec<String>, ManagerError> {
    match reply {
        Reply::Keys(keys) => Ok(keys
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect()),
        other => Err(unexpected(other)),
    }
}

/// Whether a `Pop` took something out.
fn was_there(reply: Reply) -> Result<bool, ManagerError> {
    match reply {
        Reply::Value(v) => Ok(v.is_some()),
        other => Err(unexpected(other)),
    }
}

impl Namespace {
    /// The names of the fields set, in the order they were first set.
    pub fn fields(&self) -> Result<Vec<String>, ManagerError> {
        field_names(self.target.call(Op::Keys)?)
    }

    /// [`fields`](Self::fields), awaited.
    pub async fn fields_async(&self) -> Result<Vec<String>, ManagerError> {
        field_names(self.target.call_async(Op::Keys).await?)
    }

    /// `del ns.name`: whether it was set (Python raises `AttributeError`
    /// when it was not).
    pub fn delete(&self, name: &str) -> Result<bool, ManagerError> {
        was_there(self.target.call(Op::Pop(name.as_bytes().to_vec()))?)
    }

    /// [`delete`](Self::delete), awaited.
    pub async fn delete_async(&self, name: &str) -> Result<bool, ManagerError> {
        let op = Op::Pop(name.as_bytes().to_vec());
        was_there(self.target.call_async(op).await?)
    }

    /// The field `name`, if set.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        self.target.value(Op::Get(name.as_bytes().to_vec()))
    }

    /// Sets the field `name` (`ns.name = value`).
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ManagerError> {
        self.target.done(Op::Set(
            name.as_bytes().to_vec(),
            self.target.to_store(value)?,
        ))
    }

    /// Adds `delta` to the `i64` field `name` (0 if unset) on the server,
    /// atomically: the answer to `ns.count += 1` racing. The new value.
    pub fn fetch_add(&self, name: &str, delta: i64) -> Result<i64, ManagerError> {
        self.target
            .int(Op::FetchAdd(name.as_bytes().to_vec(), delta))
    }

    /// Applies `update` to the `i64` field `name` (0 if unset), atomically.
    pub fn update_with(&self, name: &str, update: Update) -> Result<i64, ManagerError> {
        self.target
            .int(Op::UpdateWith(name.as_bytes().to_vec(), update))
    }

    /// [`get`](Self::get), awaited (see [`Dict::get_async`]).
    pub fn get_async<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<T>, ManagerError>> + Send + '_ {
        let op = Op::Get(name.as_bytes().to_vec());
        async move { expect_kept_value(self.target.call_async(op).await?).await }
    }

    /// [`set`](Self::set), awaited (see [`Dict::get_async`]).
    pub fn set_async<T: Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = self
            .target
            .to_store(value)
            .map(|v| Op::Set(name.as_bytes().to_vec(), v));
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// [`fetch_add`](Self::fetch_add), awaited (see [`Dict::get_async`]).
    pub async fn fetch_add_async(&self, name: &str, delta: i64) -> Result<i64, ManagerError> {
        let op = Op::FetchAdd(name.as_bytes().to_vec(), delta);
        expect_int(self.target.call_async(op).await?)
    }
}

proxy! {
    /// Python's `manager.dict()`, typed: keys `K`, values `V`, kept in
    /// insertion order as Python's dicts (a key set again keeps its place;
    /// removed and set again, it goes last). Keys are compared as their
    /// encoded bytes: `1.0` and `1.00` are one key, but `0.0` and `-0.0`,
    /// equal in Python, are two, and each `NaN` with the same bits is one.
    Dict [K, V] = Kind::Dict
}

/// The futures of a proxy's `_async` calls: a round trip on a connection
/// of the process's own for awaited calls, opened on a thread of ours, so
/// the executor's thread never waits for the manager (see the README's
/// Async). Calls that wait on the server (a queue's `get`, a lock's
/// `acquire`) go on connections of their own.
/// Cancel-safe: dropped before its request went out, a call did nothing;
/// after, the manager carries it out (a `set` is made, a `pop`'s value is
/// gone), as any request already sent. The proxy's `with_timeout` does not
/// bound them: put them in the executor's timeout. A value is encoded
/// where its call is made; a large one then goes out from where it lies,
/// and one of a megabyte or more that a `get_async` reads is decoded on a
/// thread of its own (a `pop_async`'s, taken out of the manager, is
/// decoded where the future is polled, so that no drop loses it).
impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// `d.get(key)`, awaited: [`get`](Self::get) for async code, with no
    /// runtime of ours (any executor polls it).
    ///
    /// ```
    /// use std::future::Future;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let manager = outlast_ipc::manager::Manager::start()?;
    /// let d = manager.dict::<String, u64>()?;
    /// d.set(&"a".into(), &1)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(waker);
    /// let mut get = std::pin::pin!(d.get_async(&"a".into()));
    /// // Under an executor: `d.get_async(&key).await?`.
    /// let got = loop {
    ///     if let std::task::Poll::Ready(got) = get.as_mut().poll(&mut cx) {
    ///         break got?;
    ///     }
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// };
    /// assert_eq!(got, Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_async(
        &self,
        key: &K,
    ) -> impl Future<Output = Result<Option<V>, ManagerError>> + Send + '_
    where
        V: Send + 'static,
    {
        let op = encode(key).map(Op::Get);
        async move { expect_kept_value(self.target.call_async(op?).await?).await }
    }

    /// `d[key] = value`, awaited (see [`get_async`](Self::get_async)).
    pub fn set_async(
        &self,
        key: &K,
        value: &V,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = encode(key).and_then(|k| Ok(Op::Set(k, self.target.to_store(value)?)));
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// `d.pop(key, None)`, awaited (see [`get_async`](Self::get_async)).
    pub fn pop_async(
        &self,
        key: &K,
    ) -> impl Future<Output = Result<Option<V>, ManagerError>> + Send + '_ {
        let op = encode(key).map(Op::Pop);
        async move { expect_value(self.target.call_async(op?).await?) }
    }

    /// `key in d`, awaited (see [`get_async`](Self::get_async)).
    pub fn contains_async(
        &self,
        key: &K,
    ) -> impl Future<Output = Result<bool, ManagerError>> + Send + '_ {
        let op = encode(key).map(Op::Contains);
        async move { expect_bool(self.target.call_async(op?).await?) }
    }

    /// `len(d)`, awaited (see [`get_async`](Self::get_async)).
    pub async fn len_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Len).await?)
    }

    /// `d.setdefault(key, value)`, awaited: the value now at `key`.
    pub fn setdefault_async(
        &self,
        key: &K,
        value: &V,
    ) -> impl Future<Output = Result<V, ManagerError>> + Send + '_ {
        let op = encode(key).and_then(|k| Ok(Op::SetDefault(k, encode(value)?)));
        async move {
            expect_value(self.target.call_async(op?).await?)?
                .ok_or_else(|| ManagerError::Protocol("setdefault gave nothing".into()))
        }
    }

    /// [`compare_and_set`](Self::compare_and_set), awaited.
    pub fn compare_and_set_async(
        &self,
        key: &K,
        expected: Option<&V>,
        new: Option<&V>,
    ) -> impl Future<Output = Result<bool, ManagerError>> + Send + '_ {
        let op = (|| {
            Ok(Op::CompareAndSet {
                key: encode(key)?,
                expected: expected.map(encode).transpose()?,
                new: new.map(encode).transpose()?,
            })
        })();
        async move { expect_bool(self.target.call_async(op?).await?) }
    }

    /// `list(d.values())`, awaited.
    pub async fn values_async(&self) -> Result<Vec<V>, ManagerError> {
        expect_list(self.target.call_async(Op::Values).await?)
    }

    /// [`popitem`](Self::popitem), awaited.
    pub async fn popitem_async(&self) -> Result<Option<(K, V)>, ManagerError> {
        match self.target.call_async(Op::PopItem).await? {
            Reply::Items(items) => match items.into_iter().next() {
                Some((k, v)) => Ok(Some((decode(&k)?, decode_owned(v)?))),
                None => Ok(None),
            },
            other => Err(unexpected(other)),
        }
    }

    /// `d.clear()`, awaited.
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::Clear).await?)
    }

    /// `list(d.keys())`, awaited (see [`get_async`](Self::get_async); keys
    /// of a megabyte or more in all are decoded on a thread of ours).
    pub async fn keys_async(&self) -> Result<Vec<K>, ManagerError>
    where
        K: Send + 'static,
    {
        expect_kept_list(self.target.call_async(Op::Keys).await?).await
    }

    /// `list(d.items())`, awaited (see [`get_async`](Self::get_async);
    /// items of a megabyte or more in all are decoded on a thread of ours).
    pub async fn items_async(&self) -> Result<Vec<(K, V)>, ManagerError>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        match self.target.call_async(Op::Items).await? {
            Reply::Items(items)
                if items.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                    >= OFF_THREAD_BYTES =>
            {
                decoded_off_thread(move || items_of(Reply::Items(items))).await
            }
            reply => items_of(reply),
        }
    }

    /// `d.update(items)`, awaited, in one round trip (see
    /// [`get_async`](Self::get_async)).
    pub fn update_async<'a>(
        &'a self,
        items: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + 'a
    where
        K: 'a,
        V: 'a,
    {
        let ops = items
            .into_iter()
            .map(|(k, v)| Ok(Op::Set(encode(k)?, encode(v)?.into())))
            .collect::<Result<Vec<_>, ManagerError>>();
        async move {
            self.target
                .batch_async(ops?)
                .await?
                .into_iter()
                .try_for_each(expect_done)
        }
    }

    /// Many `d.get(key)`, awaited, in one round trip (see
    /// [`get_async`](Self::get_async)).
    pub fn get_many_async<'a>(
        &'a self,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> impl Future<Output = Result<Vec<Option<V>>, ManagerError>> + Send + 'a
    where
        K: 'a,
    {
        let ops = keys
            .into_iter()
            .map(|k| Ok(Op::Get(encode(k)?)))
            .collect::<Result<Vec<_>, ManagerError>>();
        async move {
            self.target
                .batch_async(ops?)
                .await?
                .into_iter()
                .map(expect_value)
                .collect()
        }
    }

    /// [`fetch_add`](Self::fetch_add), awaited (see
    /// [`get_async`](Self::get_async)).
    pub fn fetch_add_async(
        &self,
        key: &K,
        delta: i64,
    ) -> impl Future<Output = Result<i64, ManagerError>> + Send + '_ {
        let op = encode(key).map(|k| Op::FetchAdd(k, delta));
        async move { expect_int(self.target.call_async(op?).await?) }
    }

    /// `d.get(key)`.
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        self.target.value(Op::Get(encode(key)?))
    }

    /// `d[key] = value`.
    pub fn set(&self, key: &K, value: &V) -> Result<(), ManagerError> {
        self.target
            .done(Op::Set(encode(key)?, self.target.to_store(value)?))
    }

    /// `d.pop(key, None)`.
    pub fn pop(&self, key: &K) -> Result<Option<V>, ManagerError> {
        self.target.value(Op::Pop(encode(key)?))
    }

    /// `key in d`.
    pub fn contains(&self, key: &K) -> Result<bool, ManagerError> {
        self.target.boolean(Op::Contains(encode(key)?))
    }

    /// `d.setdefault(key, value)`: the value at `key`, `value` set first if
    /// there was none (one atomic step).
    pub fn setdefault(&self, key: &K, value: &V) -> Result<V, ManagerError> {
        self.target
            .value(Op::SetDefault(encode(key)?, encode(value)?))?
            .ok_or_else(|| ManagerError::Protocol("setdefault gave nothing".into()))
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// `list(d.keys())`, in insertion order, in one round trip.
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.target.list(Op::Keys)
    }

    /// `list(d.values())`, in insertion order (nested objects are not values).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.target.list(Op::Values)
    }

    /// `d.popitem()`: the key set last and its value, removed (`None`: the
    /// dict is empty, where Python raises `KeyError`).
    pub fn popitem(&self) -> Result<Option<(K, V)>, ManagerError> {
        match self.target.call(Op::PopItem)? {
            Reply::Items(items) => match items.into_iter().next() {
                Some((k, v)) => Ok(Some((decode(&k)?, decode_owned(v)?))),
                None => Ok(None),
            },
            other => Err(unexpected(other)),
        }
    }

    /// `for key in d`: the keys in insertion order, fetched a page (up to
    /// 1,024 keys) at a time. A key added or removed meanwhile, by anyone,
    /// ends it with [`ManagerError::ChangedDuringIteration`], as Python's
    /// "dictionary changed size during iteration"; a value set again does
    /// not.
    pub fn iter(&self) -> DictKeys<'_, K> {
        DictKeys::new(Pages::new(&self.target, false))
    }

    /// `for key, value in d.items()`, a page at a time, as [`iter`](Self::iter)
    /// (nested objects are left out).
    pub fn iter_items(&self) -> DictItems<'_, K, V> {
        DictItems {
            pages: Pages::new(&self.target, true),
            kind: PhantomData,
        }
    }

    /// Every key with what it holds, in insertion order: its value, or the
    /// object nested there ([`Nested`], whose proxy you take by its kind),
    /// as Python's `d.items()` gives nested proxies.
    pub fn entries(&self) -> Result<Vec<(K, Entry<V>)>, ManagerError> {
        match self.target.call(Op::Entries)? {
            Reply::Entries(entries) => entries
                .into_iter()
                .map(|(k, held)| {
                    let entry = match held {
                        KeyHolds::Value(v) => Entry::Value(decode(&v)?),
                        KeyHolds::Nested(id, kind) => Entry::Nested(Nested {
                            target: self.target.nested_at(id),
                            kind,
                        }),
                    };
                    Ok((decode(&k)?, entry))
                })
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// `list(d.items())`, in insertion order (nested objects are left out:
    /// [`entries`](Self::entries) has them).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        items_of(self.target.call(Op::Items)?)
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.target.done(Op::Clear)
    }

    /// `d.update(items)`, in one round trip.
    pub fn update<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<(), ManagerError>
    where
        K: 'a,
        V: 'a,
    {
        let ops = items
            .into_iter()
            .map(|(k, v)| Ok(Op::Set(encode(k)?, encode(v)?.into())))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.target
            .batch(ops)?
            .into_iter()
            .try_for_each(expect_done)
    }

    /// Many `d.get(key)`, in one round trip.
    pub fn get_many<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> Result<Vec<Option<V>>, ManagerError>
    where
        K: 'a,
    {
        let ops = keys
            .into_iter()
            .map(|k| Ok(Op::Get(encode(k)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        self.target
            .batch(ops)?
            .into_iter()
            .map(expect_value)
            .collect()
    }

    /// Adds `delta` to the `i64` value at `key` (0 if absent) on the server.
    pub fn fetch_add(&self, key: &K, delta: i64) -> Result<i64, ManagerError> {
        self.target.int(Op::FetchAdd(encode(key)?, delta))
    }

    /// Applies `update` to the `i64` value at `key` (0 if absent),
    /// atomically; the new value.
    pub fn update_with(&self, key: &K, update: Update) -> Result<i64, ManagerError> {
        self.target.int(Op::UpdateWith(encode(key)?, update))
    }

    /// Sets `key` to `new` (`None`: removes it) only if it holds `expected`
    /// (`None`: absent) now, compared as encoded bytes; whether it did.
    pub fn compare_and_set(
        &self,
        key: &K,
        expected: Option<&V>,
        new: Option<&V>,
    ) -> Result<bool, ManagerError> {
        self.target.boolean(Op::CompareAndSet {
            key: encode(key)?,
            expected: expected.map(encode).transpose()?,
            new: new.map(encode).transpose()?,
        })
    }

    /// The list kept at `key` (made empty if the key is free): its changes
    /// happen on the server, for everyone, unlike a value fetched, changed
    /// and forgotten (`d[k].append(x)` in Python changes a copy).
    pub fn list_at<T>(&self, key: &K) -> Result<List<T>, ManagerError> {
        Ok(List::made(self.target.nested(encode(key)?, Kind::List)?))
    }

    /// The dict kept at `key` (made empty if the key is free).
    pub fn dict_at<K2, V2>(&self, key: &K) -> Result<Dict<K2, V2>, ManagerError> {
        Ok(Dict::made(self.target.nested(encode(key)?, Kind::Dict)?))
    }
}

/// What a key of a [`Dict`] holds ([`Dict::entries`]).
#[derive(Debug)]
pub enum Entry<V> {
    Value(V),
    Nested(Nested),
}

/// An object nested at a dict's key: its kind, and its proxy once you
/// name the proxy's type.
#[derive(Debug)]
pub struct Nested {
    target: Target,
    kind: Kind,
}

impl Nested {
    /// What it is, as the manager says.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// Its proxy as a `P` (`Dict<K, V>`, `List<T>`, ...):
    /// [`ManagerError::WrongKind`] if it is another kind of object.
    pub fn into_proxy<P: super::Proxy>(self) -> Result<P, ManagerError> {
        if !P::default_kind().same_kind(&self.kind) {
            return Err(ManagerError::WrongKind(format!(
                "the nested object is a {:?}, not a {:?}",
                self.kind,
                P::default_kind()
            )));
        }
        Ok(P::made(self.target))
    }
}

/// An encoded key, and its encoded value (`None`: a nested object, or
/// values not asked for).
type RawItem = (Vec<u8>, Option<Vec<u8>>);

/// A dict's pages, fetched as an iteration needs them.
pub(super) struct Pages<'a> {
    target: &'a Target,
    values: bool,
    /// The dict's version when the first page came.
    version: Option<u64>,
    /// The place of the last key fetched.
    after: Option<u64>,
    ready: VecDeque<RawItem>,
    done: bool,
}

impl<'a> Pages<'a> {
    pub(super) fn new(target: &'a Target, values: bool) -> Self {
        Pages {
            target,
            values,
            version: None,
            after: None,
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// The next key (and value), fetching a page when none is left.
    fn next_raw(&mut self) -> Option<Result<RawItem, ManagerError>> {
        while self.ready.is_empty() {
            if self.done {
                return None;
            }
            let op = Op::Page {
                after: self.after,
                version: self.version,
                values: self.values,
            };
            match self.target.call(op) {
                Ok(Reply::Page {
                    version,
                    last,
                    items,
                }) => {
                    self.version = Some(version);
                    match last {
                        Some(place) => self.after = Some(place),
                        None => self.done = true,
                    }
                    self.ready.extend(items);
                }
                Ok(Reply::Changed) => {
                    self.done = true;
                    return Some(Err(ManagerError::ChangedDuringIteration));
                }
                Ok(other) => {
                    self.done = true;
                    return Some(Err(unexpected(other)));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// A dict's keys, in insertion order ([`Dict::iter`]).
pub struct DictKeys<'a, K> {
    pages: Pages<'a>,
    kind: PhantomData<fn() -> K>,
}

impl<'a, K> DictKeys<'a, K> {
    pub(super) fn new(pages: Pages<'a>) -> Self {
        DictKeys {
            pages,
            kind: PhantomData,
        }
    }
}

impl<K: DeserializeOwned> Iterator for DictKeys<'_, K> {
    type Item = Result<K, ManagerError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.pages.next_raw()?.and_then(|(k, _)| decode(&k)))
    }
}

/// A dict's keys and values, in insertion order ([`Dict::iter_items`]).
pub struct DictItems<'a, K, V> {
    pages: Pages<'a>,
    kind: PhantomData<fn() -> (K, V)>,
}

impl<K: DeserializeOwned, V: DeserializeOwned> Iterator for DictItems<'_, K, V> {
    type Item = Result<(K, V), ManagerError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.pages.next_raw()? {
                Ok((k, Some(v))) => return Some(decode(&k).and_then(|k| Ok((k, decode(&v)?)))),
                // A nested object: not a value.
                Ok((_, None)) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The pairs an `Items` reply carries.
fn items_of<K: DeserializeOwned, V: DeserializeOwned>(
    reply: Reply,
) -> Result<Vec<(K, V)>, ManagerError> {
    match reply {
        Reply::Items(items) => items
            .into_iter()
            .map(|(k, v)| Ok((decode(&k)?, decode_owned(v)?)))
            .collect(),
        other => Err(unexpected(other)),
    }
}

proxy! {
    /// Python's `manager.Value(typecode, v)`, typed: one value of type `T`.
    Value [T] = Kind::Value(Vec::new())
}

impl<T: Serialize + DeserializeOwned> Value<T> {
    /// `v.value`.
    pub fn get(&self) -> Result<T, ManagerError> {
        self.target
            .value(Op::Get(Vec::new()))?
            .ok_or_else(|| ManagerError::Server("the value was never set".into()))
    }

    /// `v.value = x`.
    pub fn set(&self, value: &T) -> Result<(), ManagerError> {
        self.target
            .done(Op::Set(Vec::new(), self.target.to_store(value)?))
    }

    /// [`get`](Self::get), awaited (see [`Dict::get_async`]).
    pub async fn get_async(&self) -> Result<T, ManagerError>
    where
        T: Send + 'static,
    {
        expect_kept_value(self.target.call_async(Op::Get(Vec::new())).await?)
            .await?
            .ok_or_else(|| ManagerError::Server("the value was never set".into()))
    }

    /// [`set`](Self::set), awaited (see [`Dict::get_async`]).
    pub fn set_async(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<(), ManagerError>> + Send + '_ {
        let op = self.target.to_store(value).map(|v| Op::Set(Vec::new(), v));
        async move { expect_done(self.target.call_async(op?).await?) }
    }

    /// Sets it to `new` only if it is `expected` now; whether it did.
    pub fn compare_and_set(&self, expected: &T, new: &T) -> Result<bool, ManagerError> {
        self.target.boolean(Op::CompareAndSet {
            key: Vec::new(),
            expected: Some(encode(expected)?),
            new: Some(encode(new)?),
        })
    }
}

impl Value<i64> {
    /// Adds `delta` on the server, atomically; the new value.
    pub fn fetch_add(&self, delta: i64) -> Result<i64, ManagerError> {
        self.target.int(Op::FetchAdd(Vec::new(), delta))
    }

    /// Applies `update` on the server, atomically; the new value.
    pub fn update_with(&self, update: Update) -> Result<i64, ManagerError> {
        self.target.int(Op::UpdateWith(Vec::new(), update))
    }

    /// [`fetch_add`](Self::fetch_add), awaited (see [`Dict::get_async`]).
    pub async fn fetch_add_async(&self, delta: i64) -> Result<i64, ManagerError> {
        expect_int(
            self.target
                .call_async(Op::FetchAdd(Vec::new(), delta))
                .await?,
        )
    }
}
