//! The guest's `wasi:filesystem`, as wasmtime-wasi implements it, behind a guard that holds a run
//! to its disk quota and refuses symbolic links.
//!
//! The guard counts what a run *writes* (bytes through every write path, file growth through
//! `set-size`, and each file, folder or link it creates), not what stays on disk: a connector
//! that writes and deletes in a loop is stopped as surely as one that fills the disk. Past a
//! quota the guest traps and the run fails naming the limit. Symbolic links can only be made
//! when one of the run's read-write grants allows it: a link planted in a shared folder could
//! otherwise redirect a later run, or the host, outside every grant.

use crate::limits::LimitHit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, ErrorCode, Filesize,
    HostDescriptor, HostDirectoryEntryStream, MetadataHashValue, NewTimestamp, OpenFlags,
    PathFlags,
};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, FsError, FsResult, OutputStream, Pollable, StreamError,
    StreamResult,
};
use wasmtime_wasi::{ResourceTable, async_trait};

/// What one run may write, and what it wrote so far.
#[derive(Debug)]
pub(crate) struct Quota {
    max_bytes: u64,
    max_files: u64,
    symlinks: bool,
    bytes: AtomicU64,
    files: AtomicU64,
    hit: Mutex<Option<(LimitHit, String)>>,
}

impl Quota {
    pub(crate) fn new(max_bytes: u64, max_files: u64, symlinks: bool) -> Self {
        Self {
            max_bytes,
            max_files,
            symlinks,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            hit: Mutex::new(None),
        }
    }

    /// The quota that stopped the run, if one did.
    pub(crate) fn hit(&self) -> Option<(LimitHit, String)> {
        self.hit.lock().expect("quota").clone()
    }

    fn exceeded(&self, limit: LimitHit, detail: String) -> wasmtime::Error {
        let mut hit = self.hit.lock().expect("quota");
        hit.get_or_insert((limit, detail));
        wasmtime::format_err!("{limit} exceeded")
    }

    fn charge_bytes(&self, n: u64) -> wasmtime::Result<()> {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if total > self.max_bytes {
            return Err(self.exceeded(
                LimitHit::Disk,
                format!(
                    "wrote more than {} MiB to its folders",
                    self.max_bytes >> 20
                ),
            ));
        }
        Ok(())
    }

    fn charge_file(&self) -> wasmtime::Result<()> {
        if self.files.fetch_add(1, Ordering::Relaxed) + 1 > self.max_files {
            return Err(self.exceeded(
                LimitHit::Files,
                format!(
                    "created more than {} files, folders and links",
                    self.max_files
                ),
            ));
        }
        Ok(())
    }
}

/// The filesystem view of one call: wasmtime-wasi's, plus the run's quota.
pub(crate) struct GuardedFs<'a> {
    pub(crate) inner: WasiFilesystemCtxView<'a>,
    pub(crate) quota: std::sync::Arc<Quota>,
}

/// Marks [`GuardedFs`] as the data `wasi:filesystem/types` is linked with.
pub(crate) struct Guarded;

impl HasData for Guarded {
    type Data<'a> = GuardedFs<'a>;
}

fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

/// Replaces a file stream in the table with one that charges the quota for what goes through.
fn counted(
    table: &mut ResourceTable,
    stream: Resource<DynOutputStream>,
    quota: &std::sync::Arc<Quota>,
) -> FsResult<Resource<DynOutputStream>> {
    let inner = table.delete(stream)?;
    let counted: DynOutputStream = Box::new(Counted {
        inner,
        quota: quota.clone(),
    });
    Ok(table.push(counted)?)
}

impl types::Host for GuardedFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        self.inner.convert_error_code(err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.inner.filesystem_error_code(err)
    }
}

impl HostDescriptor for GuardedFs<'_> {
    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        self.quota
            .charge_bytes(buf.len() as u64)
            .map_err(FsError::trap)?;
        self.inner.write(fd, buf, offset).await
    }

    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: Filesize) -> FsResult<()> {
        let now = self.inner.stat(borrow(&fd)).await?.size;
        if size > now {
            self.quota.charge_bytes(size - now).map_err(FsError::trap)?;
        }
        self.inner.set_size(fd, size).await
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.inner.write_via_stream(fd, offset)?;
        counted(self.inner.table, stream, &self.quota)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = self.inner.append_via_stream(fd)?;
        counted(self.inner.table, stream, &self.quota)
    }

    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        if oflags.contains(OpenFlags::CREATE) {
            let exists = self
                .inner
                .stat_at(borrow(&fd), PathFlags::empty(), path.clone())
                .await
                .is_ok();
            if !exists {
                self.quota.charge_file().map_err(FsError::trap)?;
            }
        }
        self.inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.quota.charge_file().map_err(FsError::trap)?;
        self.inner.create_directory_at(fd, path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        if !self.quota.symlinks {
            return Err(ErrorCode::NotPermitted.into());
        }
        self.quota.charge_file().map_err(FsError::trap)?;
        self.inner.symlink_at(fd, src_path, dest_path).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.quota.charge_file().map_err(FsError::trap)?;
        self.inner
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await
    }

    // Everything else is wasmtime-wasi's own behaviour.

    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorType> {
        self.inner.get_type(fd).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.inner.read(fd, len, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorStat> {
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        self.inner.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        self.inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        self.inner.readlink_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.inner.remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.inner.rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.inner.unlink_file_at(fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<MetadataHashValue> {
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        self.inner.metadata_hash_at(fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for GuardedFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}

/// A file's output stream that charges the quota before each write.
struct Counted {
    inner: DynOutputStream,
    quota: std::sync::Arc<Quota>,
}

impl Counted {
    fn charge(&self, n: usize) -> StreamResult<()> {
        self.quota.charge_bytes(n as u64).map_err(StreamError::Trap)
    }
}

#[async_trait]
impl Pollable for Counted {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[async_trait]
impl OutputStream for Counted {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.charge(bytes.len())?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn blocking_write_and_flush(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.charge(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await
    }

    fn write_zeroes(&mut self, nelem: usize) -> StreamResult<()> {
        self.charge(nelem)?;
        self.inner.write_zeroes(nelem)
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}
