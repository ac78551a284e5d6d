//! Concurrent calls of the bucket script, sent as one. Request tasks hand their call to
//! one task, which takes every call waiting when it wakes and sends them as one EVALSHA
//! over several keys ([`Link::bucket`]): under load a wake-up, a write, a script run and
//! a reply serve many requests instead of one. Redis runs a script atomically, so each
//! user's call is as atomic as alone (more: the batch is); the split-brain bound, the
//! deadline and the failure modes are those of a single call, and a failed batch fails
//! each of its calls, which the breaker counts. Only for standalone and Sentinel: in a
//! Cluster the keys of one call must share a slot.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::LimiterError;
use super::redis::{BucketCall, Link, Reply, unavailable};

/// Calls per batch, at most: beyond this a batch's reply waits on its own size.
const MAX_BATCH: usize = 64;
/// Batches on the wire at once. One would leave the connection idle while a reply
/// travels; a few keep it busy and the batches full.
const MAX_IN_FLIGHT: usize = 4;

struct Pending {
    call: BucketCall,
    reply: oneshot::Sender<Result<Reply, LimiterError>>,
}

/// The queue of one backend's bucket calls; its task starts with the first call (a
/// runtime is there then) and ends with the backend.
#[derive(Default)]
pub(super) struct Batches {
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl Batches {
    pub(super) async fn call(&self, link: &Arc<Link>, call: BucketCall) -> Result<Reply, LimiterError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(run(link.clone(), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        queue.send(Pending { call, reply }).map_err(|_| unavailable("the batching task has stopped"))?;
        answer.await.map_err(|_| unavailable("the batching task dropped the call"))?
    }
}

async fn run(link: Arc<Link>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = queue.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(first) = next else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    let Ok(pending) = queue.try_recv() else { break };
                    batch.push(pending);
                }
                in_flight.push(send(&link, batch));
            }
            Some(()) = in_flight.next() => {}
        }
    }
    while in_flight.next().await.is_some() {}
}

/// Sends one batch and gives each caller its reply, or the batch's error.
async fn send(link: &Link, batch: Vec<Pending>) {
    let (calls, replies): (Vec<BucketCall>, Vec<_>) = batch.into_iter().map(|p| (p.call, p.reply)).unzip();
    match link.bucket(&calls).await {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                // A caller that went away (its request was dropped) needs no answer.
                let _ = reply.send(Ok(answer));
            }
        }
        Err(LimiterError::Unavailable(why)) => {
            for reply in replies {
                let _ = reply.send(Err(LimiterError::Unavailable(why.clone())));
            }
        }
    }
}
