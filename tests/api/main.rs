//! The API through its handler with in-memory stores, real receivers on 127.0.0.1 and no
//! emulator: the contract row by row, the rest of the API, the test ping and rotation, the
//! delivery log's routes, the sample events, properties and the receivers' snippet. `make check`
//! runs this binary.

#[path = "../support/mod.rs"]
mod support;

mod deliveries;
mod delivery;
mod delivery_log;
mod events;
mod handler;
mod properties;
mod published_events;
mod receivers;
mod webhooks;
