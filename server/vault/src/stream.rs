//! A sealed file of any size: `IGF1`, the key's number, the file's own wrapped data key, then
//! chunks of [`CHUNK`] plaintext bytes, each sealed with its index in the nonce and the last one
//! marked, so that chunks cannot be reordered, dropped or cut off unseen. Any chunk opens alone,
//! so the file reads at any offset (an upload resumed in the middle).

use crate::keyring::DataKey;
use crate::{Error, Keyring, Result, header, parse_header};
use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"IGF1";
const TAG_LEN: usize = 16;
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 << 10;

fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[NONCE_LEN - 1] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Writes a sealed file in a stream; [`SealedWriter::finish`] seals the last chunk (a file
/// never finished does not open).
pub struct SealedWriter<W: Write> {
    out: W,
    key: DataKey,
    header: Vec<u8>,
    buf: Vec<u8>,
    index: u64,
}

impl<W: Write> SealedWriter<W> {
    /// A writer sealing into `out` under a fresh data key of the ring's current key.
    pub fn new(ring: &Keyring, mut out: W) -> Result<Self> {
        let key = ring.new_data_key()?;
        let header = header(MAGIC, key.key_id, &key.wrapped);
        out.write_all(&header)
            .map_err(|e| Error::io(Path::new("(sealed file)"), e))?;
        Ok(Self {
            out,
            key,
            header,
            buf: Vec::with_capacity(CHUNK + TAG_LEN),
            index: 0,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> std::io::Result<()> {
        self.key
            .aead
            .seal_in_place_append_tag(
                nonce(self.index, last),
                Aad::from(&self.header[..]),
                &mut self.buf,
            )
            .map_err(|_| std::io::Error::other("cannot seal a chunk"))?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Seals what is left as the last chunk and hands back the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let len = data.len();
        while !data.is_empty() {
            if self.buf.len() == CHUNK {
                // More is coming: this chunk is not the last.
                self.seal_chunk(false)?;
            }
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(len)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A sealed file opened for reading at any offset.
pub struct SealedFile {
    file: std::fs::File,
    path: PathBuf,
    key: Arc<LessSafeKey>,
    header: Vec<u8>,
    chunks: u64,
    len: u64,
    /// The last chunk opened: its index and plaintext.
    cached: Option<(u64, Vec<u8>)>,
}

impl SealedFile {
    /// Opens `path`, unwrapping its data key.
    pub fn open(ring: &Keyring, path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut head = vec![0u8; (size.min(10 + 4096)) as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(path, e))?;
        let damaged = |why: String| Error::Damaged(format!("{}: {why}", path.display()));
        let (key_id, wrapped, header_len) =
            parse_header(MAGIC, &head).map_err(|e| damaged(e.to_string()))?;
        let key = ring.unwrap(key_id, wrapped)?;
        let body = size - header_len as u64;
        let sealed_chunk = (CHUNK + TAG_LEN) as u64;
        let chunks = body.div_ceil(sealed_chunk).max(1);
        let last = body - (chunks - 1) * sealed_chunk;
        if last < TAG_LEN as u64 {
            return Err(damaged("cut short".into()));
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            key,
            header: head[..header_len].to_vec(),
            chunks,
            len: (chunks - 1) * CHUNK as u64 + last - TAG_LEN as u64,
            cached: None,
        })
    }

    /// Plaintext length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunk(&mut self, index: u64) -> Result<&[u8]> {
        if self.cached.as_ref().is_none_or(|(i, _)| *i != index) {
            let sealed_chunk = (CHUNK + TAG_LEN) as u64;
            let start = self.header.len() as u64 + index * sealed_chunk;
            let plain = if index + 1 == self.chunks {
                self.len - index * CHUNK as u64
            } else {
                CHUNK as u64
            };
            let mut data = vec![0u8; plain as usize + TAG_LEN];
            self.file
                .read_exact_at(&mut data, start)
                .map_err(|e| Error::io(&self.path, e))?;
            let last = index + 1 == self.chunks;
            let n = self
                .key
                .open_in_place(nonce(index, last), Aad::from(&self.header[..]), &mut data)
                .map_err(|_| {
                    Error::Damaged(format!(
                        "{}: chunk {index} was altered, moved or cut off",
                        self.path.display()
                    ))
                })?
                .len();
            data.truncate(n);
            self.cached = Some((index, data));
        }
        Ok(&self.cached.as_ref().expect("just filled").1)
    }

    /// Fills `buf` with the plaintext at `offset`.
    pub fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(Error::Damaged(format!(
                "{}: {} bytes at {offset} go past its {} bytes",
                self.path.display(),
                buf.len(),
                self.len
            )));
        }
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / CHUNK as u64;
            let within = (at % CHUNK as u64) as usize;
            let chunk = self.chunk(index)?;
            let n = (chunk.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// The whole plaintext.
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.len as usize];
        self.read_exact_at(&mut out, 0)?;
        Ok(out)
    }
}
