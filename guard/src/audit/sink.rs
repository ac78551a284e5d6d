//! Audit lines go through a bounded channel to one writer thread, so a request never
//! waits on the stdout pipe and lines never interleave. A full channel makes requests
//! wait rather than drop audit lines: losing the trail is worse than slowing down.

use std::io::Write;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

const QUEUE: usize = 16 * 1024;

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
            let mut out = std::io::BufWriter::new(out);
            while let Some(line) = rx.blocking_recv() {
                let mut result = out.write_all(&line);
                while let Ok(more) = rx.try_recv() {
                    result = result.and_then(|()| out.write_all(&more));
                }
                if let Err(e) = result.and_then(|()| out.flush()) {
                    tracing::error!(error = %e, "audit trail write failed");
                }
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
