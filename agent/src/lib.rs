//! The idgard agent: polls a server over HTTPS and runs its tasks through sandboxed connectors,
//! inside a protected network; also the connector author's tools (`connector run`, `connector
//! new`). One module per concern:
//!
//! | module | what it does |
//! | --- | --- |
//! | `config` | the configuration file |
//! | `enrol` | trading a one-time token for credentials |
//! | `client` | calls to the server: TLS pinning, tokens, retries |
//! | `daemon` | the service: polling, heartbeats, logs, cancellation |
//! | `housekeeping` | before serving: the open-file limit, files earlier versions left |
//! | `launch` | runs launched from the web UI: the signed token, the allow-list, the answer |
//! | `stop` | signals and the shutdown grace; a second signal stops at once |
//! | `registry` | the connections served and their loaded connectors, reloaded on change |
//! | `overlap` | refusing connections whose folders overlap |
//! | `execute` | running a task's operation through the host |
//! | `observer` | what a run produces: entries to the spool, logs to a bounded queue |
//! | `fulfil` | fulfilling the server's orders batch by batch |
//! | `spool` | what survives a restart until the server has it |
//! | `sealed` | the key ring sealing what is kept on disk; stored secrets; `secret`, `keys` |
//! | `delivery` | uploads and completions, retried |
//! | `packages` | connector packages the server delivers: download, check, install |
//! | `signing` | the author's tools for signed packages: `connector keygen`, `sign`, `verify` |
//! | `run`, `output`, `template` | the author's tools |

pub mod client;
pub mod config;
mod daemon;
mod delivery;
mod enrol;
mod execute;
mod figures;
mod fulfil;
mod housekeeping;
mod launch;
mod observer;
mod output;
mod overlap;
mod packages;
mod registry;
pub mod run;
pub mod sealed;
pub mod signing;
mod spool;
mod stop;
pub mod template;

pub use config::AgentConfig;
pub use daemon::run as serve;
pub use enrol::enrol;
