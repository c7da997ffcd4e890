//! The live stream: the last N events with sequence numbers, broadcast to subscribers
//! (feature `stream`).
//!
//! [`LiveStream`] is a [`Hook`] (and can be fed directly with [`publish`](LiveStream::publish)).
//! Each event gets the next sequence number (strictly increasing) and goes into a
//! bounded ring of the last [`DEFAULT_CAPACITY`] events and into a bounded
//! broadcast channel. Publishing never blocks: the ring drops its oldest event, and the channel
//! overwrites what a slow subscriber has not read yet.
//!
//! A [`Subscription`] starts with a replay from the ring (everything after a sequence number,
//! as SSE's `Last-Event-ID` asks, or the last `n` events) and then follows live. A subscriber
//! that falls behind the channel is resynchronised from the ring, so it misses nothing while
//! its position is still in the ring; if it fell further behind, it is **told** with
//! [`Received::Missed`] (and counted in
//! [`axi_deploy_stream_events_missed_total`](crate::names::STREAM_EVENTS_MISSED_METRIC)),
//! then continues with the oldest event still kept.
//!
//! Sequence numbers carry on across restarts of the process: by default the first one is
//! the Unix time of the stream's creation in milliseconds × 1,000, plus 1 (below 2^53, so
//! JavaScript reads them exactly, until the year 2255), so a stream started later numbers
//! its events above those of an earlier run as long as that run published fewer than 1,000
//! events per millisecond it lived and the clock was not set back between the two by more
//! than the earlier run lasted (then the new numbers start lower; the server still treats
//! an id of the earlier run as not its own). A browser that reconnects to the restarted
//! service with the `Last-Event-ID` of the previous run gets every event of the new run
//! kept, rather than only those numbered above its old id; what the previous run published
//! after that id and before it stopped is not known to the new run and is not reported as
//! missed (the deployment history has it). [`LiveStreamBuilder::first_seq`] sets the start.
//!
//! ```
//! use axi_obs_deploy::stream::{LiveStream, Received, Replay};
//! use axi_obs_deploy::{Event, EventKind};
//! use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let stream = LiveStream::new();
//! let dref = DeploymentRef {
//!     id: "d1".into(), project: "shop".into(), environment: "prod".into(),
//!     version: "1".into(), started_at: from_unix_ms(0),
//! };
//! let first = stream.publish(Event::new(dref.clone(), 0, from_unix_ms(0), EventKind::Succeeded));
//! let mut sub = stream.subscribe(Replay::After(0)); // everything kept, then live
//! stream.publish(Event::new(dref, 1, from_unix_ms(1), EventKind::Succeeded));
//! let Some(Received::Event(item)) = sub.recv().await else { panic!() };
//! assert_eq!(item.seq(), first);
//! let Some(Received::Event(item)) = sub.recv().await else { panic!() };
//! assert_eq!(item.seq(), first + 1);
//! # });
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::event::Event;
use crate::hook::{Hook, HookError};
use crate::names;

/// Default number of events kept for replay.
pub const DEFAULT_CAPACITY: usize = 1_000;

/// Default capacity of the broadcast channel, in events: how far a subscriber may fall behind
/// before it is resynchronised from the ring.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 1_024;

/// One event as the stream carries it: its sequence number, the event and its JSON form
/// (rendered once, shared by every subscriber).
#[derive(Clone, Debug)]
pub struct StreamItem {
    seq: u64,
    event: Arc<Event>,
    json: Arc<str>,
}

impl StreamItem {
    /// The sequence number: strictly increasing within one [`LiveStream`], and from one run
    /// of the process to the next unless the clock was set back (see the
    /// [module documentation](self)).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event's JSON form (schema 1, one line).
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// Where a [`Subscription`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Every kept event with a sequence number above this one, then live (SSE
    /// `Last-Event-ID`). A number this stream did not give (one of an earlier run of the
    /// process, below its first, or ahead of its last) replays everything kept.
    After(u64),
    /// The last `n` kept events, then live.
    Last(usize),
}

/// What [`Subscription::recv`] gives.
#[derive(Clone, Debug)]
pub enum Received {
    /// The next event.
    Event(StreamItem),
    /// The subscriber fell behind the replay window: `count` events were dropped from the
    /// ring before it read them. The next event is the oldest one still kept.
    Missed {
        /// How many events were missed.
        count: u64,
    },
}

/// Counts of what went through a [`LiveStream`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Events published.
    pub published: u64,
    /// Subscriptions alive now.
    pub subscribers: usize,
    /// Events subscribers missed (summed over subscribers).
    pub missed: u64,
}

/// Builds a [`LiveStream`].
#[derive(Debug)]
#[must_use]
pub struct LiveStreamBuilder {
    capacity: NonZeroUsize,
    channel_capacity: NonZeroUsize,
    first_seq: Option<u64>,
}

/// The largest first sequence number: numbers stay below 2^53, exact in JavaScript.
const MAX_FIRST_SEQ: u64 = (1 << 53) - (1 << 40);

/// The default first sequence number: Unix milliseconds now × 1,000, plus 1.
fn clock_first_seq() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    ms.saturating_mul(1_000)
        .saturating_add(1)
        .min(MAX_FIRST_SEQ)
}

impl LiveStreamBuilder {
    /// Events kept for replay. Defaults to [`DEFAULT_CAPACITY`].
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Broadcast channel capacity, in events. Defaults to [`DEFAULT_CHANNEL_CAPACITY`].
    pub fn channel_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.channel_capacity = capacity;
        self
    }

    /// The sequence number of the first event (at least 1). Defaults to the clock's Unix
    /// time in milliseconds × 1,000, plus 1, so numbers grow from one run of the process to
    /// the next (see the [module documentation](self)).
    pub fn first_seq(mut self, seq: u64) -> Self {
        self.first_seq = Some(seq.clamp(1, MAX_FIRST_SEQ));
        self
    }

    /// The stream (no thread, no task: publishing and receiving do all the work).
    pub fn build(self) -> LiveStream {
        let (tx, _) = broadcast::channel(self.channel_capacity.get());
        let first_seq = self.first_seq.unwrap_or_else(clock_first_seq);
        LiveStream {
            inner: Arc::new(Inner {
                ring: Mutex::new(Ring {
                    items: VecDeque::with_capacity(self.capacity.get().min(4096)),
                    capacity: self.capacity.get(),
                    first_seq,
                    next_seq: first_seq,
                    tx: Some(tx),
                }),
                subscribers: AtomicUsize::new(0),
                missed: AtomicU64::new(0),
            }),
        }
    }
}

/// The live stream; clones share it. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct LiveStream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: Mutex<Ring>,
    subscribers: AtomicUsize,
    missed: AtomicU64,
}

#[derive(Debug)]
struct Ring {
    items: VecDeque<StreamItem>,
    capacity: usize,
    /// The number of the stream's first event.
    first_seq: u64,
    next_seq: u64,
    /// `None` once closed.
    tx: Option<broadcast::Sender<StreamItem>>,
}

impl Ring {
    /// A receiver and the backlog after `cursor`, taken together under the ring's lock so
    /// that nothing falls between them; plus how many events after `cursor` are gone.
    fn attach(&self, cursor: u64) -> (Option<broadcast::Receiver<StreamItem>>, Backlog) {
        let rx = self.tx.as_ref().map(broadcast::Sender::subscribe);
        let oldest = self.items.front().map_or(self.next_seq, StreamItem::seq);
        let missed = oldest.saturating_sub(cursor.saturating_add(1));
        let skip = self.items.partition_point(|i| i.seq <= cursor);
        let items = self.items.iter().skip(skip).cloned().collect();
        (rx, Backlog { items, missed })
    }

    fn cursor_for(&self, replay: Replay) -> u64 {
        let start = self.first_seq - 1;
        let last = self.next_seq - 1;
        match replay {
            Replay::After(seq) if (start..=last).contains(&seq) => seq,
            // Not a number of this stream (an earlier run's, or ahead): everything kept.
            Replay::After(_) => start,
            Replay::Last(n) => {
                let n = n.min(self.items.len());
                if n == 0 {
                    last
                } else {
                    self.items[self.items.len() - n].seq - 1
                }
            }
        }
    }
}

struct Backlog {
    items: VecDeque<StreamItem>,
    missed: u64,
}

impl Default for LiveStream {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveStream {
    /// A stream with the default capacities.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder with the default capacities.
    pub fn builder() -> LiveStreamBuilder {
        LiveStreamBuilder {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            channel_capacity: NonZeroUsize::new(DEFAULT_CHANNEL_CAPACITY)
                .unwrap_or(NonZeroUsize::MIN),
            first_seq: None,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `event` with the next sequence number, which it returns; never blocks (the ring
    /// drops its oldest event; slow subscribers fall behind).
    pub fn publish(&self, event: Event) -> u64 {
        let json: Arc<str> = event.to_json().into();
        let mut ring = self.ring();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let item = StreamItem {
            seq,
            event: Arc::new(event),
            json,
        };
        if ring.items.len() == ring.capacity {
            ring.items.pop_front();
        }
        ring.items.push_back(item.clone());
        if let Some(tx) = &ring.tx {
            // An error only means there is no subscriber right now.
            let _ = tx.send(item);
        }
        seq
    }

    /// A subscription starting at `replay`.
    pub fn subscribe(&self, replay: Replay) -> Subscription {
        let ring = self.ring();
        let cursor = ring.cursor_for(replay);
        let (rx, backlog) = ring.attach(cursor);
        drop(ring);
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            stream: self.clone(),
            rx,
            backlog: backlog.items,
            missed: backlog.missed,
            cursor,
        }
    }

    /// The kept events with a sequence number above `seq`, oldest first.
    pub fn snapshot_after(&self, seq: u64) -> Vec<StreamItem> {
        let ring = self.ring();
        let skip = ring.items.partition_point(|i| i.seq <= seq);
        ring.items.iter().skip(skip).cloned().collect()
    }

    /// The sequence number of the last event published (one below
    /// [`first_seq`](LiveStreamBuilder::first_seq) before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring().next_seq - 1
    }

    /// What went through so far.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            published: {
                let ring = self.ring();
                ring.next_seq - ring.first_seq
            },
            subscribers: self.inner.subscribers.load(Ordering::Relaxed),
            missed: self.inner.missed.load(Ordering::Relaxed),
        }
    }

    /// Ends every subscription once it has read what was published before (for a graceful
    /// shutdown: SSE responses end, so the server can stop). Events published afterwards are
    /// still kept for replay but reach no subscriber.
    pub fn close(&self) {
        self.ring().tx = None;
    }
}

impl Hook for LiveStream {
    fn name(&self) -> &str {
        "stream"
    }

    fn on_event(&mut self, event: &Event) -> Result<(), HookError> {
        self.publish(event.clone());
        Ok(())
    }
}

/// A subscriber's view of a [`LiveStream`]: the replay, then live events. Dropping it
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    stream: LiveStream,
    rx: Option<broadcast::Receiver<StreamItem>>,
    backlog: VecDeque<StreamItem>,
    /// Events known missed, to report before the next event.
    missed: u64,
    /// The highest sequence number handed out (or deliberately skipped).
    cursor: u64,
}

impl Subscription {
    /// The next event, or a [`Received::Missed`] notice; `None` once the stream is
    /// [closed](LiveStream::close) and everything before was read. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Received> {
        loop {
            if self.missed > 0 {
                let count = std::mem::take(&mut self.missed);
                self.stream.inner.missed.fetch_add(count, Ordering::Relaxed);
                metrics::counter!(names::STREAM_EVENTS_MISSED_METRIC).increment(count);
                return Some(Received::Missed { count });
            }
            if let Some(item) = self.backlog.pop_front() {
                self.cursor = item.seq;
                return Some(Received::Event(item));
            }
            let rx = self.rx.as_mut()?;
            match rx.recv().await {
                // Already handed out from the backlog.
                Ok(item) if item.seq <= self.cursor => {}
                Ok(item) => {
                    self.cursor = item.seq;
                    return Some(Received::Event(item));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.resync(),
                Err(broadcast::error::RecvError::Closed) => self.rx = None,
            }
        }
    }

    /// The highest sequence number handed out so far (or skipped as missed).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// After falling behind the channel: a fresh receiver and the ring's events after the
    /// cursor.
    fn resync(&mut self) {
        let ring = self.stream.ring();
        let (rx, backlog) = ring.attach(self.cursor);
        drop(ring);
        self.rx = rx;
        self.backlog = backlog.items;
        self.missed = backlog.missed;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream
            .inner
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;
    use crate::event::{DeploymentRef, from_unix_ms};

    fn ev(n: u32) -> Event {
        let d = DeploymentRef {
            id: "d".into(),
            project: "p".into(),
            environment: "e".into(),
            version: "1".into(),
            started_at: from_unix_ms(0),
        };
        Event::new(d, n, from_unix_ms(i64::from(n)), EventKind::Succeeded)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    async fn take(sub: &mut Subscription, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            match sub.recv().await.unwrap() {
                Received::Event(i) => out.push(i.seq().to_string()),
                Received::Missed { count } => out.push(format!("missed {count}")),
            }
        }
        out
    }

    /// Numbered from 1, for readable expectations.
    fn stream(ring: usize, channel: usize) -> LiveStream {
        LiveStream::builder()
            .capacity(NonZeroUsize::new(ring).unwrap())
            .channel_capacity(NonZeroUsize::new(channel).unwrap())
            .first_seq(1)
            .build()
    }

    #[test]
    fn a_restarted_stream_numbers_on_and_replays_its_whole_run_to_old_clients() {
        rt().block_on(async {
            let old = LiveStream::new();
            let mut old_last = 0;
            for n in 0..3 {
                old_last = old.publish(ev(n));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
            // The process restarted and published more than the old run had before the
            // client came back: numbered from 1 each run, `After(3)` would skip 1..=3.
            let new = LiveStream::new();
            let first = new.publish(ev(10));
            assert!(first > old_last, "{first} after {old_last}");
            assert!(first < 1 << 53, "exact in JavaScript: {first}");
            for n in 11..15 {
                new.publish(ev(n));
            }
            let mut sub = new.subscribe(Replay::After(old_last));
            let want: Vec<String> = (first..first + 5).map(|s| s.to_string()).collect();
            assert_eq!(take(&mut sub, 5).await, want);
            assert_eq!(new.stats().published, 5);
            // Only this run's events dropped from the ring count as missed.
            let small = LiveStream::builder()
                .capacity(NonZeroUsize::new(2).unwrap())
                .first_seq(1_000)
                .build();
            for n in 0..5 {
                small.publish(ev(n));
            }
            let mut sub = small.subscribe(Replay::After(10));
            assert_eq!(take(&mut sub, 3).await, ["missed 3", "1003", "1004"]);
        });
    }

    #[test]
    fn ring_keeps_the_last_n_with_increasing_sequence_numbers() {
        let s = stream(3, 8);
        let seqs: Vec<u64> = (0..5).map(|n| s.publish(ev(n))).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let kept: Vec<u64> = s.snapshot_after(0).iter().map(StreamItem::seq).collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(s.snapshot_after(4).len(), 1);
        assert_eq!(s.last_seq(), 5);
    }

    #[test]
    fn replay_after_then_live_without_gap_or_duplicate() {
        rt().block_on(async {
            let s = stream(10, 4);
            for n in 0..4 {
                s.publish(ev(n));
            }
            let mut sub = s.subscribe(Replay::After(2));
            s.publish(ev(4));
            assert_eq!(take(&mut sub, 3).await, ["3", "4", "5"]);
            let mut last2 = s.subscribe(Replay::Last(2));
            assert_eq!(take(&mut last2, 2).await, ["4", "5"]);
            let mut fresh = s.subscribe(Replay::Last(0));
            s.publish(ev(5));
            assert_eq!(take(&mut fresh, 1).await, ["6"]);
        });
    }

    #[test]
    fn slow_subscriber_is_resynchronised_from_the_ring_then_told_what_it_missed() {
        rt().block_on(async {
            // Channel of 2, ring of 5: falling 6 behind the channel is recovered from the
            // ring; falling 10 behind loses 5 and says so.
            let s = stream(5, 2);
            let mut sub = s.subscribe(Replay::Last(0));
            for n in 0..5 {
                s.publish(ev(n));
            }
            assert_eq!(take(&mut sub, 5).await, ["1", "2", "3", "4", "5"]);
            for n in 5..15 {
                s.publish(ev(n));
            }
            assert_eq!(
                take(&mut sub, 6).await,
                ["missed 5", "11", "12", "13", "14", "15"]
            );
            assert_eq!(s.stats().missed, 5);
            // Publishing never waited for the subscriber.
            assert_eq!(s.stats().published, 15);
        });
    }

    #[test]
    fn last_event_id_older_than_the_ring_reports_the_gap() {
        rt().block_on(async {
            let s = stream(3, 8);
            for n in 0..6 {
                s.publish(ev(n));
            }
            let mut sub = s.subscribe(Replay::After(1));
            assert_eq!(take(&mut sub, 4).await, ["missed 2", "4", "5", "6"]);
        });
    }

    #[test]
    fn last_event_id_ahead_of_the_stream_replays_everything_kept() {
        rt().block_on(async {
            let s = stream(3, 8);
            s.publish(ev(0));
            s.publish(ev(1));
            let mut sub = s.subscribe(Replay::After(900));
            assert_eq!(take(&mut sub, 2).await, ["1", "2"]);
        });
    }

    #[test]
    fn close_ends_subscriptions_after_what_was_published() {
        rt().block_on(async {
            let s = stream(3, 8);
            let mut sub = s.subscribe(Replay::Last(0));
            s.publish(ev(0));
            s.close();
            assert_eq!(take(&mut sub, 1).await, ["1"]);
            assert!(sub.recv().await.is_none());
            assert_eq!(s.stats().subscribers, 1);
            drop(sub);
            assert_eq!(s.stats().subscribers, 0);
        });
    }
}
