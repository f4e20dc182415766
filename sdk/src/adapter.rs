//! Glue between the generated bindings and [`Connector`]: parses settings, runs the exporter,
//! logs panics. Native tests go through the same functions.

use crate::bindings::exports::idgard::connector::connector::Guest;
use crate::{
    Connector, ConnectorInfo, EntitySchema, Error, ExportRequest, ExportSummary, Exporter, Order,
    OrderResult, Settings,
};
use std::marker::PhantomData;

/// Implements the component's exports for a [`Connector`].
pub struct Adapter<C>(PhantomData<C>);

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            crate::log::write(crate::Level::Error, &format!("connector panicked: {info}"));
            previous(info);
        }));
    });
}

pub(crate) fn test_connection<C: Connector>(settings: &str) -> Result<(), Error> {
    install_panic_hook();
    C::test_connection(&Settings::parse_json(settings)?)
}

pub(crate) fn schema<C: Connector>(settings: &str) -> Result<Vec<EntitySchema>, Error> {
    install_panic_hook();
    C::schema(&Settings::parse_json(settings)?)
}

pub(crate) fn export<C: Connector>(
    settings: &str,
    request: &ExportRequest,
) -> Result<ExportSummary, Error> {
    install_panic_hook();
    let settings = Settings::parse_json(settings)?;
    let mut out = Exporter::new(request.batch_size);
    let cursor = C::export(&settings, request, &mut out)?;
    let (entries, rejected) = out.finish();
    Ok(ExportSummary {
        cursor,
        entries,
        rejected,
    })
}

pub(crate) fn fulfill<C: Connector>(
    settings: &str,
    orders: Vec<Order>,
) -> Result<Vec<OrderResult>, Error> {
    install_panic_hook();
    C::fulfill(&Settings::parse_json(settings)?, orders)
}

impl<C: Connector> Guest for Adapter<C> {
    fn describe() -> ConnectorInfo {
        C::describe()
    }
    fn test_connection(settings: String) -> Result<(), Error> {
        test_connection::<C>(&settings)
    }
    fn schema(settings: String) -> Result<Vec<EntitySchema>, Error> {
        schema::<C>(&settings)
    }
    fn export(settings: String, request: ExportRequest) -> Result<ExportSummary, Error> {
        export::<C>(&settings, &request)
    }
    fn fulfill(settings: String, orders: Vec<Order>) -> Result<Vec<OrderResult>, Error> {
        fulfill::<C>(&settings, orders)
    }
}
