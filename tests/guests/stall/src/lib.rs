//! A connector whose `describe` never returns: it models a component that hangs while the host
//! loads it. The host's tests check that loading such a package times out with a clear error
//! instead of blocking whoever loads it.

use idgard_sdk::{Connector, ConnectorInfo, Error, Settings};

pub struct Stall;

impl Connector for Stall {
    fn describe() -> ConnectorInfo {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(u64::MAX / 4));
        }
    }

    fn test_connection(_settings: &Settings) -> Result<(), Error> {
        Ok(())
    }
}

idgard_sdk::export!(Stall);
