//! An audit store in memory, for unit tests: it keeps what it is given, and can be made to
//! fail, or to hang, on demand.

use super::record::{AuditEntry, Chained, Checkpoint, Signer};
use super::store::{Archive, AuditStore, Query, StoreError};
use async_trait::async_trait;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A store in memory that can be made to fail, or to hang, on demand.
#[derive(Default)]
pub(crate) struct MemoryStore {
    pub records: Mutex<Vec<Chained>>,
    pub checkpoints: Mutex<Vec<Checkpoint>>,
    pub failing: AtomicBool,
    pub hang: AtomicBool,
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn head(&self, _: &str) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        Ok(self.records.lock().unwrap().last().map(|r| (r.seq, r.hash)))
    }
    async fn append(
        &self,
        records: Vec<Chained>,
        cp: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError("disk on fire".into()));
        }
        self.records.lock().unwrap().extend(records);
        self.checkpoints.lock().unwrap().extend(cp.cloned());
        Ok(())
    }
    async fn append_at_head(
        &self,
        _: &str,
        _: &AuditEntry,
        _: Option<&Signer>,
    ) -> Result<Chained, StoreError> {
        Err(StoreError("not used".into()))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn instances(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
    async fn count(&self, _: &str) -> Result<i64, StoreError> {
        Ok(0)
    }
    async fn scan(&self, _: &str, _: i64, _: usize) -> Result<Vec<Chained>, StoreError> {
        Ok(vec![])
    }
    async fn checkpoints(&self, _: &str) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(vec![])
    }
    async fn query(&self, _: &Query) -> Result<Vec<Chained>, StoreError> {
        Ok(vec![])
    }
    async fn archives(&self, _: &str) -> Result<Vec<Archive>, StoreError> {
        Ok(vec![])
    }
    async fn expired(&self, _: &str, _: i64, _: usize) -> Result<Vec<Chained>, StoreError> {
        Ok(vec![])
    }
    async fn archived(&self, _: &Archive) -> Result<(), StoreError> {
        Ok(())
    }
}
