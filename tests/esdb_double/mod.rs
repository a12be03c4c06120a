//! In-process EventStoreDB test double (being written).
