//! The simulated cloud behind the provider ports (being written).
