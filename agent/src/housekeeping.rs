//! What the agent puts in order before it serves: the open-file limit its concurrent runs need,
//! and files earlier versions left behind.

use std::path::Path;

/// Raises the open-descriptor limit to its hard maximum, and says when concurrent runs could
/// take all of it: each run may hold its connection's `max_handles`, and the agent needs room
/// of its own for connections to the server, spool files and the compiled cache.
pub(crate) fn raise_descriptor_limit(max_tasks: u32) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some_and(|max| limit.current < Some(max)) {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open-file limit: {e}");
        }
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let needed = u64::from(max_tasks) * u64::from(idgard_host::Limits::default().max_handles) + 512;
    if current < needed {
        tracing::warn!(
            "the open-file limit is {current}: {max_tasks} concurrent runs with the default \
             max_handles and the agent's own files need about {needed}; raise it (LimitNOFILE) \
             or lower max_tasks"
        );
    }
}

/// Removes order files earlier versions of the agent left in `work/orders/<connection>/`: orders
/// now reach a connector only as the call's argument, and those files could hold passwords.
pub(crate) fn forget_order_files(orders: &Path) {
    let Ok(connections) = std::fs::read_dir(orders) else {
        return;
    };
    for file in connections
        .flatten()
        .filter_map(|c| std::fs::read_dir(c.path()).ok())
        .flatten()
        .flatten()
    {
        let name = file.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("task-")
            && name.ends_with(".json")
            && let Err(e) = std::fs::remove_file(file.path())
        {
            tracing::warn!(file = %file.path().display(), "cannot remove an old order file: {e}");
        }
    }
}
