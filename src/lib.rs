//! InstaView's webhooks service on AWS Lambda, one binary per function: the webhooks API
//! (`create-webhook`: `/webhooks` and each webhook's routes), the event pipeline that sends
//! signed events to the webhooks' receivers (`fanout`, `deliver`) and the scheduled sweeper
//! (`reconcile`); plus the operator's tool (`webhooks-admin`).
//!
//! A request flows one way: API Gateway event → request, route ([`http`]) → parse ([`domain`])
//! → authorise and act ([`service`]) → store ([`store`]) → answer ([`http`]). Errors map to
//! answers in one place ([`error`]). Events flow through [`pipeline`], which signs and sends
//! with [`delivery`].

pub mod admin;
pub mod aws;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod emf;
pub mod error;
pub mod http;
pub mod pipeline;
pub mod reconcile;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time_budget;
