//! Connectors built against the frozen contract 0.2.0.
//!
//! 0.3.0 only added the `sql` import to 0.2.0: every type of 0.2.0 is, field for field and case
//! for case, the same type in 0.3.0. The component model checks types by structure, so a 0.2.0
//! connector is linked and called with the 0.3.0 types directly: its imports
//! (`host@0.2.0`, `network@0.2.0`) are defined here over the host's 0.3.0 functions, and its
//! exports are looked up by name. Wasmtime checks every signature when the connector is
//! pre-instantiated, so a mismatch is a load error, never a wrong value.

use super::{imports, net, wit};
use crate::call::{Answer, Call};
use crate::state::RunState;
use wasmtime::component::{ComponentNamedList, InstancePre, Lift, Linker, Lower};
use wasmtime::{AsContextMut, Store};

/// The interface a 0.2.0 connector exports.
const EXPORTS: &str = "idgard:connector/connector@0.2.0";

/// Defines the 0.2.0 imports (`host`, `network`) in the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    // Types only: the instance is named, its types are checked by structure.
    linker.instance("idgard:connector/types@0.2.0")?;
    let mut host = linker.instance("idgard:connector/host@0.2.0")?;
    host.func_wrap(
        "log",
        |mut s, (level, message): (imports::Level, String)| {
            imports::Host::log(s.data_mut(), level, message)
        },
    )?;
    host.func_wrap(
        "progress",
        |mut s, (done, total, message): (u64, Option<u64>, String)| {
            imports::Host::progress(s.data_mut(), done, total, message)
        },
    )?;
    host.func_wrap("secret", |mut s, (name,): (String,)| {
        imports::Host::secret(s.data_mut(), name).map(|v| (v,))
    })?;
    host.func_wrap("emit", |mut s, (batch,): (Vec<u8>,)| {
        imports::Host::emit(s.data_mut(), batch)
    })?;
    let mut network = linker.instance("idgard:connector/network@0.2.0")?;
    network.func_wrap("granted", |mut s, (): ()| {
        net::Host::granted(s.data_mut()).map(|v| (v,))
    })?;
    network.func_wrap("resolve", |mut s, (name,): (String,)| {
        net::Host::resolve(s.data_mut(), name).map(|v| (v,))
    })?;
    Ok(())
}

/// Makes one call into a 0.2.0 connector.
pub(crate) async fn invoke(
    store: &mut Store<RunState>,
    pre: &InstancePre<RunState>,
    call: Call,
) -> wasmtime::Result<Answer> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let exports = instance
        .get_export_index(&mut *store, None, EXPORTS)
        .ok_or_else(|| wasmtime::format_err!("no export `{EXPORTS}`"))?;
    Ok(match call {
        Call::Describe => {
            let (info,) = call_export::<(), (wit::ConnectorInfo,)>(
                store,
                &instance,
                &exports,
                "describe",
                (),
            )
            .await?;
            Answer::Info(info)
        }
        Call::Test(s) => Answer::Tested(
            call_export::<(&str,), (Result<(), wit::Error>,)>(
                store,
                &instance,
                &exports,
                "test-connection",
                (&s,),
            )
            .await?
            .0,
        ),
        Call::Schema(s) => Answer::Schema(
            call_export::<(&str,), (Result<Vec<wit::EntitySchema>, wit::Error>,)>(
                store,
                &instance,
                &exports,
                "schema",
                (&s,),
            )
            .await?
            .0,
        ),
        Call::Export(s, request) => {
            store.data_mut().exporting = true;
            Answer::Exported(
                call_export::<(&str, &wit::ExportRequest), (Result<wit::ExportSummary, wit::Error>,)>(
                    store,
                    &instance,
                    &exports,
                    "export",
                    (&s, &request),
                )
                .await?
                .0,
            )
        }
        Call::Fulfill(s, orders) => Answer::Fulfilled(
            call_export::<(&str, &[wit::Order]), (Result<Vec<wit::OrderResult>, wit::Error>,)>(
                store,
                &instance,
                &exports,
                "fulfill",
                (&s, &orders),
            )
            .await?
            .0,
        ),
    })
}

/// Calls one function of the connector's exported interface with the 0.3.0 types.
async fn call_export<P, R>(
    store: &mut Store<RunState>,
    instance: &wasmtime::component::Instance,
    exports: &wasmtime::component::ComponentExportIndex,
    name: &str,
    params: P,
) -> wasmtime::Result<R>
where
    P: ComponentNamedList + Lower + Send + Sync,
    R: ComponentNamedList + Lift + Send + Sync + 'static,
{
    let index = instance
        .get_export_index(store.as_context_mut(), Some(exports), name)
        .ok_or_else(|| wasmtime::format_err!("`{EXPORTS}` exports no `{name}`"))?;
    let func = instance.get_typed_func::<P, R>(store.as_context_mut(), &index)?;
    func.call_async(store.as_context_mut(), params).await
}

/// Checks that a 0.2.0 component exports the connector interface.
pub(crate) fn exported(pre: InstancePre<RunState>) -> wasmtime::Result<InstancePre<RunState>> {
    pre.component()
        .get_export_index(None, EXPORTS)
        .ok_or_else(|| wasmtime::format_err!("no export `{EXPORTS}`"))?;
    Ok(pre)
}
