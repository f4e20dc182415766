//! The data folder and the database files are the server's own, whatever mode the folder was
//! created with (a systemd `StateDirectory=` is 0755), and files left readable are taken back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn database_files_are_the_servers_own_whatever_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = idgard_server::config::Config {
        data_dir: data.clone(),
        ..Default::default()
    };
    let e = idgard_server::open(&config).await.unwrap();
    e.queue.add_agent("a").await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in [
        "idgard.db",
        "idgard.db-wal",
        "idgard.db-shm",
        "idgard.db.key",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    e.queue.db.pool.close().await;
    e.queue.db.read.close().await;

    // Left readable by someone else: taken back at the next start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("idgard.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = idgard_server::open(&config).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("idgard.db")), 0o600);
    assert_eq!(e.queue.agent_id("a").await.unwrap(), 1);
}
