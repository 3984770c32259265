//! The API and its stores against the local AWS emulator (moto), started by the tests
//! themselves on first use (one server for this binary; `concurrency` has its own): what each
//! route leaves in DynamoDB and Secrets Manager, the stores' conformance (memory and DynamoDB,
//! the same cases), concurrency, faults, round trips and the logs.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod concurrency;
mod conformance;
mod faults;
mod logs;
mod round_trips;
mod stored;
