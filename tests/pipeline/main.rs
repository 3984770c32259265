//! The event pipeline and the reconciler against the local AWS emulator (moto: DynamoDB,
//! Secrets Manager, SQS), started on first use, and real receivers on 127.0.0.1. The logic of
//! fan-out, deliver, retry and recover is tested in-process in `src/pipeline/tests.rs`; these
//! are the adapters' and the end-to-end tests.

#[path = "../support/mod.rs"]
mod support;

mod handlers;
mod reconcile;
