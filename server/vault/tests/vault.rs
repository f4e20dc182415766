//! The vault against its own promises: what it seals opens only with its ring, every alteration
//! is caught, rotation keeps old data readable while new data uses the new key.

use idgard_vault::{CHUNK, Keyring, SealedFile, SealedWriter};
use std::io::Write;

fn ring() -> (tempfile::TempDir, Keyring) {
    let dir = tempfile::tempdir().unwrap();
    let (ring, created) = Keyring::open_or_create(&dir.path().join("keys")).unwrap();
    assert!(created);
    (dir, ring)
}

#[test]
fn a_value_opens_with_its_ring_only_and_every_altered_byte_is_caught() {
    let (_d, a) = ring();
    let (_e, b) = ring();
    let sealed = idgard_vault::seal(&a, b"Pa55-w0rd of Ms Dupont").unwrap();
    assert!(idgard_vault::is_sealed(&sealed));
    assert!(!sealed.windows(6).any(|w| w == b"Dupont"));
    assert_eq!(
        idgard_vault::open(&a, &sealed).unwrap(),
        b"Pa55-w0rd of Ms Dupont"
    );
    assert_ne!(
        sealed,
        idgard_vault::seal(&a, b"Pa55-w0rd of Ms Dupont").unwrap()
    );
    let e = idgard_vault::open(&b, &sealed).unwrap_err();
    assert_eq!(e.code(), "vault.damaged", "{e}");
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(idgard_vault::open(&a, &bad).is_err(), "byte {i} altered");
    }
    assert!(idgard_vault::open(&a, &sealed[..sealed.len() - 1]).is_err());
    assert!(idgard_vault::open(&a, b"IGV1").is_err());
    assert!(idgard_vault::open(&a, b"plain text").is_err());
}

#[test]
fn text_values_round_trip() {
    let (_d, a) = ring();
    let t = idgard_vault::seal_text(&a, "s3cret é").unwrap();
    assert!(idgard_vault::is_sealed_text(&t) && !t.contains("s3cret"));
    assert_eq!(idgard_vault::open_text(&a, &t).unwrap(), "s3cret é");
    assert!(idgard_vault::open_text(&a, "sealed:v2:!!").is_err());
}

#[test]
fn rotation_keeps_old_data_readable_and_seals_new_data_under_the_new_key() {
    let (d, a) = ring();
    let old = idgard_vault::seal(&a, b"before").unwrap();
    let path = d.path().join("old.sealed");
    let mut w = SealedWriter::new(&a, std::fs::File::create(&path).unwrap()).unwrap();
    w.write_all(b"an old file").unwrap();
    w.finish().unwrap();
    assert_eq!(a.rotate().unwrap(), 2);
    let new = idgard_vault::seal(&a, b"after").unwrap();
    assert_eq!(&old[4..8], &1u32.to_be_bytes());
    assert_eq!(&new[4..8], &2u32.to_be_bytes());
    assert_eq!(idgard_vault::open(&a, &old).unwrap(), b"before");
    assert_eq!(
        SealedFile::open(&a, &path).unwrap().read_all().unwrap(),
        b"an old file"
    );
    let listed: Vec<(u32, bool)> = a.list().iter().map(|k| (k.id, k.current)).collect();
    assert_eq!(listed, [(1, false), (2, true)]);
    assert!(a.list().iter().all(|k| k.bits == 3072));

    // Another process on the same folder opens what the new key sealed (it reads the folder
    // again on meeting a key it does not hold) and seals under it once it looked again.
    let (_, elsewhere) = (0, Keyring::open(&d.path().join("keys")).unwrap());
    assert_eq!(idgard_vault::open(&elsewhere, &new).unwrap(), b"after");

    // Without the old key's file, the old value names what is missing.
    std::fs::remove_file(d.path().join("keys/key-1.pem")).unwrap();
    let fresh = Keyring::open(&d.path().join("keys")).unwrap();
    let e = idgard_vault::open(&fresh, &old).unwrap_err();
    assert_eq!(e.code(), "vault.unknown_key");
    assert!(e.to_string().contains("key-1.pem"), "{e}");
}

#[test]
fn an_empty_key_folder_is_refused_and_a_foreign_file_named_like_a_key_too() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(Keyring::open(d.path()).unwrap_err().code(), "vault.no_keys");
    std::fs::write(d.path().join("key-1.pem"), "not a key").unwrap();
    let e = Keyring::open(d.path()).unwrap_err();
    assert_eq!(e.code(), "vault.bad_key");
    assert!(e.to_string().contains("key-1.pem"), "{e}");
}

fn sealed_file(
    ring: &Keyring,
    dir: &std::path::Path,
    plain: &[u8],
    pieces: usize,
) -> std::path::PathBuf {
    let path = dir.join(format!("f-{}-{pieces}", plain.len()));
    let mut w = SealedWriter::new(ring, std::fs::File::create(&path).unwrap()).unwrap();
    for piece in plain.chunks(pieces.max(1)) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn a_sealed_file_reads_at_any_offset_whatever_its_length() {
    let (d, a) = ring();
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = sealed_file(&a, d.path(), &plain, 1000);
        let mut f = SealedFile::open(&a, &path).unwrap();
        assert_eq!(f.len(), len as u64);
        assert_eq!(f.read_all().unwrap(), plain, "length {len}");
        for (at, n) in [(0usize, 10usize), (CHUNK - 5, 10), (len / 2, 3 * CHUNK / 2)] {
            if at + n <= len {
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, at as u64).unwrap();
                assert_eq!(buf, plain[at..at + n]);
            }
        }
        let mut past = vec![0u8; 1];
        assert!(f.read_exact_at(&mut past, len as u64).is_err());
    }
}

#[test]
fn a_sealed_file_cut_short_or_altered_does_not_open() {
    let (d, a) = ring();
    let plain = vec![b'x'; 2 * CHUNK + 100];
    let path = sealed_file(&a, d.path(), &plain, 4096);
    let whole = std::fs::read(&path).unwrap();
    // Cut at the end of a chunk: what is left looks whole but its last chunk is not marked last.
    let header = whole.len() - (plain.len() + 3 * 16);
    for cut in [
        header + CHUNK + 16,
        header + 2 * (CHUNK + 16),
        whole.len() - 1,
        header,
    ] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let opened = SealedFile::open(&a, &path).and_then(|mut f| f.read_all());
        assert!(opened.is_err(), "cut at {cut}");
    }
    let mut bad = whole.clone();
    bad[header + CHUNK + 20] ^= 0x80;
    std::fs::write(&path, &bad).unwrap();
    let mut f = SealedFile::open(&a, &path).unwrap();
    let mut buf = vec![0u8; 10];
    f.read_exact_at(&mut buf, 0).unwrap();
    let e = f.read_exact_at(&mut buf, CHUNK as u64 + 5).unwrap_err();
    assert!(e.to_string().contains("chunk 1"), "{e}");
    // Two chunks swapped.
    let mut swapped = whole.clone();
    let (c0, c1) = (
        header..header + CHUNK + 16,
        header + CHUNK + 16..header + 2 * (CHUNK + 16),
    );
    let first = whole[c0.clone()].to_vec();
    swapped[c0].copy_from_slice(&whole[c1.clone()]);
    swapped[c1].copy_from_slice(&first);
    std::fs::write(&path, &swapped).unwrap();
    assert!(SealedFile::open(&a, &path).unwrap().read_all().is_err());
}

#[test]
fn small_files_are_written_whole_and_read_back() {
    let (d, a) = ring();
    let path = d.path().join("spool").join("task-1.json");
    idgard_vault::write_file(&a, &path, b"{\"surname\":\"Dupont\"}").unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"Dupont"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        idgard_vault::read_file(&a, &path).unwrap(),
        b"{\"surname\":\"Dupont\"}"
    );
    std::fs::write(&path, b"{\"plain\":1}").unwrap();
    assert!(idgard_vault::read_file(&a, &path).is_err());
}
