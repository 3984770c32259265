//! InstaView's webhook-registration API: `POST /webhooks` on AWS Lambda.
//!
//! Data flows one way: request → parse ([`domain`]) → authorise ([`service`]) → store
//! ([`store`]) → respond ([`http`]). Errors map to answers in one place ([`error`]).

pub mod admin;
pub mod aws;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod emf;
pub mod error;
pub mod http;
pub mod http_event;
pub mod pipeline;
pub mod reconcile;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time_budget;
