//! The live-tail fan-out: every batch, once durable and visible to queries,
//! is handed to each subscriber's bounded queue. Publishing never waits: a
//! full queue drops its oldest batches and counts their records, so a slow
//! or stuck subscriber cannot slow ingest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use datafusion::arrow::record_batch::RecordBatch;

use crate::{Signal, lock};

#[derive(Default)]
pub(crate) struct Fanout {
    subscribers: Mutex<[Vec<Weak<Queue>>; 3]>,
    /// Live subscribers of all signals: publishing skips the lock at zero.
    live: AtomicUsize,
}

struct Queue {
    state: Mutex<QueueState>,
    ready: tokio::sync::Notify,
    max_rows: usize,
    fanout: Weak<Fanout>,
}

#[derive(Default)]
struct QueueState {
    batches: VecDeque<RecordBatch>,
    rows: usize,
    dropped: u64,
}

impl Fanout {
    pub(crate) fn subscribe(self: &Arc<Self>, signal: Signal, max_rows: usize) -> Subscription {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            ready: tokio::sync::Notify::new(),
            max_rows: max_rows.max(1),
            fanout: Arc::downgrade(self),
        });
        let mut subs = lock(&self.subscribers);
        let list = &mut subs[signal.index()];
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&queue));
        self.live.fetch_add(1, Ordering::Relaxed);
        Subscription { queue }
    }

    /// Hands `batch` to every subscriber of `signal`.
    pub(crate) fn publish(&self, signal: Signal, batch: &RecordBatch) {
        if self.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        let queues: Vec<Arc<Queue>> = lock(&self.subscribers)[signal.index()]
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for q in queues {
            let mut s = lock(&q.state);
            s.rows += batch.num_rows();
            s.batches.push_back(batch.clone());
            // Keep the newest: a tail shows what is happening now.
            while s.rows > q.max_rows && s.batches.len() > 1 {
                if let Some(old) = s.batches.pop_front() {
                    s.rows -= old.num_rows();
                    s.dropped += old.num_rows() as u64;
                }
            }
            drop(s);
            q.ready.notify_one();
        }
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

/// One subscriber's queue; dropping it unsubscribes.
pub struct Subscription {
    queue: Arc<Queue>,
}

impl Subscription {
    /// Waits for batches, then takes all that are queued, with the number of
    /// records dropped since the last call because the queue was full.
    pub async fn recv(&self) -> (Vec<RecordBatch>, u64) {
        loop {
            {
                let mut s = lock(&self.queue.state);
                if !s.batches.is_empty() || s.dropped > 0 {
                    let batches: Vec<RecordBatch> = s.batches.drain(..).collect();
                    s.rows = 0;
                    return (batches, std::mem::take(&mut s.dropped));
                }
            }
            self.queue.ready.notified().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(f) = self.queue.fanout.upgrade() {
            f.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: i32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from_iter_values(0..n))])
            .expect("batch")
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_them() {
        let f = Arc::new(Fanout::default());
        let sub = f.subscribe(Signal::Logs, 10);
        let other = f.subscribe(Signal::Spans, 10);
        for _ in 0..5 {
            f.publish(Signal::Logs, &batch(4));
        }
        let (batches, dropped) = sub.recv().await;
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 8);
        assert_eq!(dropped, 12);
        assert_eq!(f.subscribers(), 2);
        drop(other);
        assert_eq!(f.subscribers(), 1);
        // Later batches arrive whole, with no drops reported again.
        f.publish(Signal::Logs, &batch(3));
        let (batches, dropped) = sub.recv().await;
        assert_eq!((batches.len(), dropped), (1, 0));
        drop(sub);
        assert_eq!(f.subscribers(), 0);
        f.publish(Signal::Logs, &batch(3));
    }
}
