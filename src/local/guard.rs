//! Keeps every request of the embedded bucket inside the bucket's folder.
//!
//! s3s-fs maps a key to `<root>/<bucket>/<key>` by joining paths, so an
//! absolute key (`/etc/passwd`, sent as `GET //etc/passwd`) replaces the
//! whole path, and it follows symlinks it finds. This wrapper sits
//! between s3s and s3s-fs: it passes on only the operations the proxy
//! uses (reads, PUT, multipart upload), only for our bucket, only for keys
//! that pass the proxy's own key check, and only when the path, symlinks
//! resolved, stays in the folder. Everything else is s3s's default answer
//! (NotImplemented), so copy sources, listings and bucket operations never
//! reach the file system.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub struct Guarded {
    pub inner: s3s_fs::FileSystem,
    /// The only bucket served.
    pub bucket: String,
    /// The bucket's folder, canonical (symlinks resolved).
    pub dir: PathBuf,
}

impl Guarded {
    async fn admit(&self, bucket: &str, key: &str) -> S3Result<()> {
        if bucket != self.bucket {
            return Err(s3_error!(NoSuchBucket));
        }
        if let Err(e) = crate::key::check_file_key(key) {
            return Err(s3_error!(InvalidArgument, "{e}"));
        }
        let (dir, key_owned) = (self.dir.clone(), key.to_string());
        let inside = tokio::task::spawn_blocking(move || stays_inside(&dir, &key_owned))
            .await
            .unwrap_or(false);
        if !inside {
            log::warn!("embedded bucket `{bucket}`: refused key {key:?}: it leads outside the bucket folder");
            return Err(s3_error!(
                AccessDenied,
                "the key leads outside the bucket folder"
            ));
        }
        Ok(())
    }
}

/// Whether `dir/key` resolves to a place inside `dir` (canonical), also
/// for a key that does not exist yet (a write): then its nearest existing
/// ancestor decides. A dangling symlink on the way is refused, since a
/// write would create its target wherever it points.
pub fn stays_inside(dir: &Path, key: &str) -> bool {
    let mut p = dir.join(key);
    loop {
        match p.canonicalize() {
            Ok(real) => return real.starts_with(dir),
            // Not there (yet): what is above it decides.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                if p.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
                    return false;
                }
                if !p.pop() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// Each listed operation is checked with `admit`, then done by s3s-fs.
macro_rules! guarded {
    ($($op:ident($input:ty) -> $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for Guarded {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.admit(&req.input.bucket, &req.input.key).await?;
                    self.inner.$op(req).await
                }
            )*
        }
    };
}

guarded! {
    get_object(GetObjectInput) -> GetObjectOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    put_object(PutObjectInput) -> PutObjectOutput;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_are_caught() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let dir = root.join("bucket");
        let other = root.join("other");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("secret.txt"), "s").unwrap();
        std::fs::write(dir.join("sub/ok.txt"), "o").unwrap();
        std::os::unix::fs::symlink(&other, dir.join("out")).unwrap();
        std::os::unix::fs::symlink(other.join("secret.txt"), dir.join("s.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), dir.join("dangling")).unwrap();
        std::os::unix::fs::symlink(dir.join("sub"), dir.join("in")).unwrap();
        for key in [
            "sub/ok.txt",
            "sub/new.txt",
            "new/deep/x",
            "in/ok.txt",
            "sub/ok.txt/x",
        ] {
            assert!(stays_inside(&dir, key), "{key}");
        }
        for key in [
            "out/secret.txt",
            "out/new.txt",
            "s.txt",
            "dangling",
            "dangling/x",
        ] {
            assert!(!stays_inside(&dir, key), "{key}");
        }
    }
}
