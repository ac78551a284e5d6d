//! Audit lines go through a bounded channel to one writer thread, so a request never
//! waits on the stdout pipe and lines never interleave. The writer drains the channel on
//! its own schedule (every [`DRAIN_EVERY`]) instead of sleeping on it: a request queues
//! its line without waking a thread, and the writer writes a batch per pass. A full
//! channel makes requests wait rather than drop audit lines: losing the trail is worse
//! than slowing down. Lines keep their order; the last ones are written when every
//! sender is gone.

use std::io::Write;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

const QUEUE: usize = 16 * 1024;
/// How long a line may wait in the queue: short against a log shipper's own batching,
/// long against the time a request takes.
const DRAIN_EVERY: Duration = Duration::from_millis(5);

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Vec<u8>>,
}

/// The writer thread; join it after the last sink is dropped to flush every line.
pub struct AuditWriter {
    handle: JoinHandle<()>,
}

impl AuditSink {
    /// Starts the writer on `out` (stdout in the binary, a buffer in tests).
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(Self, AuditWriter)> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let handle = std::thread::Builder::new().name("audit-writer".into()).spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            loop {
                let mut result = Ok(());
                let mut wrote = false;
                let open = loop {
                    match rx.try_recv() {
                        Ok(line) => {
                            result = result.and_then(|()| out.write_all(&line));
                            wrote = true;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break true,
                        Err(mpsc::error::TryRecvError::Disconnected) => break false,
                    }
                };
                if wrote && let Err(e) = result.and_then(|()| out.flush()) {
                    tracing::error!(error = %e, "audit trail write failed");
                }
                if !open {
                    return;
                }
                std::thread::sleep(DRAIN_EVERY);
            }
        })?;
        Ok((Self { tx }, AuditWriter { handle }))
    }

    pub async fn write(&self, line: &impl serde::Serialize) {
        if let Some(bytes) = encode(line) {
            Self::send(&self.tx, bytes).await;
        }
    }

    /// Queues a line from code that cannot wait (a `Drop`): a task of its own waits for
    /// room, holding the queue open, so the writer still flushes it at shutdown.
    pub fn write_detached(&self, line: &impl serde::Serialize) {
        if let Some(bytes) = encode(line) {
            let tx = self.tx.clone();
            tokio::spawn(async move { Self::send(&tx, bytes).await });
        }
    }

    async fn send(tx: &mpsc::Sender<Vec<u8>>, bytes: Vec<u8>) {
        if tx.send(bytes).await.is_err() {
            tracing::error!("audit writer has stopped; line lost");
        }
    }
}

fn encode(line: &impl serde::Serialize) -> Option<Vec<u8>> {
    match serde_json::to_vec(line) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            Some(bytes)
        }
        Err(e) => {
            tracing::error!(error = %e, "audit line did not serialize");
            None
        }
    }
}

impl AuditWriter {
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("audit writer thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_lines_than_the_queue_holds_are_all_written_in_order() {
        let out = Shared::default();
        let (sink, writer) = AuditSink::start(out.clone()).unwrap();
        let per_task = QUEUE;
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    for n in 0..per_task {
                        sink.write(&serde_json::json!({"task": task, "n": n})).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        drop(sink);
        tokio::task::spawn_blocking(move || writer.join()).await.unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut next = [0u64; 4];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let task = v["task"].as_u64().unwrap() as usize;
            assert_eq!(v["n"].as_u64().unwrap(), next[task], "task {task} out of order");
            next[task] += 1;
        }
        assert_eq!(next, [per_task as u64; 4], "every line written");
    }
}
