//! What every part of idgard shares about data, and nothing else (serde only; it builds for
//! `wasm32-wasip2` too): the entry wire format connectors emit ([`wire`]), the rows format SQL
//! queries answer in ([`rows`]), the frames an export
//! upload is made of ([`frames`]), the connector contract's types as the host, the agent and the
//! server pass them around ([`contract`]), and valid names ([`names`]).
//!
//! The SDK re-exports [`wire`] to connector authors; the protocol re-exports [`contract`] (as
//! `model`) and [`frames`]; the host and the server use them directly, so that neither needs
//! the other's crates.

pub mod contract;
pub mod errors;
pub mod frames;
pub mod names;
pub mod rows;
pub mod wire;
