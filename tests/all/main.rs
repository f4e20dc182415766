//! End-to-end tests of the connector platform: the real host running the real CSV connector and
//! the misbehaving test guest. One binary (one engine, shared by every test, as in the agent).

mod ad;
mod ad_orders;
mod agent_sandbox;
mod at_rest;
mod client;
mod connections;
mod csv;
mod directory;
mod harness;
mod hostile;
mod http_host;
mod launches;
mod layering;
mod ldap;
mod limits;
mod liveness;
mod loading;
mod mail;
mod memory;
mod metrics;
mod mtls;
mod packages;
mod partitions;
mod pipeline;
mod refusals;
mod replicas;
mod sandbox;
mod scim;
mod signin;
mod sql;
mod sql_host;
mod sso;
mod support;
mod system;
mod ui;
