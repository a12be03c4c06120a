//! EventStoreDB / KurrentDB adapter (work in progress).

use async_trait::async_trait;

use super::{
    AppendOutcome, EventStore, ExpectedRevision, NewEvent, Position, RecordedEvent, StoreError,
    Subscription,
};

/// The event store port over an EventStoreDB node or cluster.
pub struct EsdbStore {}

impl EsdbStore {
    /// Connects with any connection string the `eventstore` client accepts.
    pub async fn connect(_url: &str) -> Result<EsdbStore, StoreError> {
        Err(StoreError::Unavailable(
            "the EventStoreDB adapter is not built yet".into(),
        ))
    }
}

#[async_trait]
impl EventStore for EsdbStore {
    async fn append(
        &self,
        _stream: &str,
        _expected: ExpectedRevision,
        _events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        unimplemented!()
    }
    async fn read_stream(&self, _stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        unimplemented!()
    }
    async fn read_all(
        &self,
        _from: Position,
        _max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        unimplemented!()
    }
    async fn subscribe_all(&self, _from: Position) -> Result<Box<dyn Subscription>, StoreError> {
        unimplemented!()
    }
    async fn head(&self) -> Result<Position, StoreError> {
        unimplemented!()
    }
}
