//! [`Imap::next_async`] and [`ImapUnordered::next_async`]: a lazy map's
//! next result as a `std::future::Future`, for any executor.
//!
//! The future takes the result if it is there, in the polling thread (a
//! result of a megabyte or more is decoded on a thread of its own, see
//! `offload`); otherwise it leaves its waker with the pool, whose thread wakes it
//! when that result settles (or any of an unordered map's does), as it
//! wakes an awaited [`AsyncResult`](super::AsyncResult). It pulls input
//! items as `next` does, keeping the same bounded window in flight.
//! Dropped before it is ready, it has taken nothing: the next call gets
//! that result.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::imap::{Imap, ImapUnordered};
use super::offload::NextResult;
use super::TaskError;

impl<T, R, I> Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    /// The next result in input order, as a future: `next` for async
    /// code, with no runtime of ours. `None` once every item's result was
    /// given. Cancel-safe: dropped before it is ready, it has taken
    /// nothing.
    ///
    /// ```
    /// use outlast::pool::{Pool, PoolError};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// // Under tokio or any executor: results as they come, in order.
    /// async fn sum_of_squares(pool: &Pool) -> Result<u64, PoolError> {
    ///     let mut results = pool.imap(square, 0..1_000u64);
    ///     let mut sum = 0;
    ///     while let Some(result) = results.next_async().await {
    ///         sum += result.map_err(|error| PoolError::Task { index: 0, error })?;
    ///     }
    ///     Ok(sum)
    /// }
    /// ```
    pub fn next_async(&mut self) -> ImapNext<'_, T, R, I> {
        ImapNext { imap: self }
    }
}

impl<T, R, I> ImapUnordered<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    /// The next result to finish, as a future: `next` for async code.
    /// `None` once every item's result was given. Cancel-safe: dropped
    /// before it is ready, it has taken nothing.
    pub fn next_async(&mut self) -> ImapUnorderedNext<'_, T, R, I> {
        ImapUnorderedNext { imap: self }
    }
}

/// The future of [`Imap::next_async`].
#[must_use = "a future takes nothing unless it is awaited"]
pub struct ImapNext<'a, T, R, I> {
    imap: &'a mut Imap<T, R, I>,
}

/// The future of [`ImapUnordered::next_async`].
#[must_use = "a future takes nothing unless it is awaited"]
pub struct ImapUnorderedNext<'a, T, R, I> {
    imap: &'a mut ImapUnordered<T, R, I>,
}

impl<T, R, I> Future for ImapNext<'_, T, R, I>
where
    T: Serialize,
    R: DeserializeOwned + Send + 'static,
    I: Iterator<Item = T>,
{
    type Output = Option<Result<R, TaskError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let imap = &mut self.get_mut().imap;
        outlast_ipc::coop::cooperative(cx, |cx| imap.poll_next(cx.waker()))
    }
}

impl<T, R, I> Future for ImapUnorderedNext<'_, T, R, I>
where
    T: Serialize,
    R: DeserializeOwned + Send + 'static,
    I: Iterator<Item = T>,
{
    type Output = Option<Result<R, TaskError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let imap = &mut self.get_mut().imap;
        outlast_ipc::coop::cooperative(cx, |cx| imap.poll_next(cx.waker()))
    }
}

impl<T, R, I> std::fmt::Debug for ImapNext<'_, T, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapNext").finish_non_exhaustive()
    }
}

impl<T, R, I> std::fmt::Debug for ImapUnorderedNext<'_, T, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUnorderedNext").finish_non_exhaustive()
    }
}
