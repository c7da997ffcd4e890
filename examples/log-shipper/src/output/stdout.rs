//! JSON lines on standard output (or any writer), for debugging and for piping into other
//! tools. A batch is acknowledged once written and flushed.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Delivered, Output, SendError, SendFuture, record_json};
use crate::record::Record;

/// Writes each record as one JSON object per line (see [`record_json`](super::record_json)).
pub struct JsonLines {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

impl JsonLines {
    /// To standard output.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    /// To any writer.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// The lines a batch becomes.
    pub fn encode(batch: &[Record]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(batch.len() * 256);
        for r in batch {
            // A map of strings and JSON values always serializes.
            if serde_json::to_writer(&mut buf, &record_json(r)).is_ok() {
                buf.push(b'\n');
            }
        }
        buf
    }
}

impl Output for JsonLines {
    fn kind(&self) -> &'static str {
        "stdout"
    }

    fn send<'a>(&'a mut self, batch: &'a [Record]) -> SendFuture<'a> {
        let buf = Self::encode(batch);
        let out = self.out.clone();
        Box::pin(async move {
            // Writing may block (a full pipe): off the runtime's threads.
            let result = tokio::task::spawn_blocking(move || {
                let mut w = out.lock().unwrap_or_else(PoisonError::into_inner);
                w.write_all(&buf)?;
                w.flush()
            })
            .await;
            match result {
                Ok(Ok(())) => Ok(Delivered::default()),
                Ok(Err(e)) => Err(SendError::Retryable {
                    message: format!("cannot write: {e}"),
                    retry_after: None,
                }),
                Err(e) => Err(SendError::Retryable {
                    message: format!("writer task failed: {e}"),
                    retry_after: None,
                }),
            }
        })
    }
}
