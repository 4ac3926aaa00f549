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

/// What an operation does with the key's file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Read,
    /// A single PUT.
    Put,
    /// A multipart upload's steps (its metadata file names the upload).
    Multipart,
}

impl Guarded {
    async fn admit(&self, bucket: &str, key: &str, access: Access) -> S3Result<()> {
        if bucket != self.bucket {
            return Err(s3_error!(NoSuchBucket));
        }
        if let Err(e) = crate::key::check_file_key(key) {
            return Err(s3_error!(InvalidArgument, "{e}"));
        }
        let (dir, key_owned, name) = (self.dir.clone(), key.to_string(), self.bucket.clone());
        let checked = tokio::task::spawn_blocking(move || {
            if !stays_inside(&dir, &key_owned) {
                return Err(Unfit::Outside);
            }
            fits(&dir, &name, &key_owned, access)
        })
        .await
        .unwrap_or(Err(Unfit::Outside));
        match checked {
            Ok(()) => Ok(()),
            Err(Unfit::Outside) => {
                log::warn!("embedded bucket `{bucket}`: refused key {key:?}: it leads outside the bucket folder");
                Err(s3_error!(
                    AccessDenied,
                    "the key leads outside the bucket folder"
                ))
            }
            // What cannot be a file here cannot have been stored: a miss
            // (the rules act on it), never s3s-fs's 500.
            Err(_) if access == Access::Read => Err(s3_error!(NoSuchKey)),
            Err(Unfit::TooLong(max)) => Err(s3_error!(
                KeyTooLongError,
                "the embedded bucket stores keys of at most {max} bytes (file name limits)"
            )),
            Err(Unfit::Folder) => Err(s3_error!(
                InvalidArgument,
                "the key names a folder of the embedded bucket, or a file above it: a file system \
                 cannot hold both `a` and `a/b`"
            )),
        }
    }
}

/// Why a key cannot be a file of the embedded bucket.
#[derive(Debug, PartialEq, Eq)]
enum Unfit {
    Outside,
    /// Over the longest key s3s-fs can name files for (the bound given).
    TooLong(usize),
    /// A folder, or a file where a folder of the key's path would be.
    Folder,
}

/// Longest file name (Linux `NAME_MAX`, most file systems).
const NAME_MAX: usize = 255;

/// Whether `key` can be a file of bucket `bucket` in `dir`. s3s-fs keeps
/// each object's headers beside it in
/// `.bucket-<b64 bucket>.object-<b64 key>[.upload-<uuid>].metadata.json`:
/// a key whose name would pass `NAME_MAX` got its data file written and
/// its metadata refused (a 500), and the object lost its headers for good
/// (the retry found the data file and stopped). A multipart upload's
/// name carries its upload id too, so large objects (over 8 MiB) take
/// shorter keys than a single PUT does.
fn fits(dir: &Path, bucket: &str, key: &str, access: Access) -> Result<(), Unfit> {
    let b64 = |n: usize| (4 * n).div_ceil(3);
    let upload = if access == Access::Multipart {
        ".upload-".len() + 36
    } else {
        0
    };
    let fixed = ".bucket-".len() + ".object-".len() + upload + ".metadata.json".len();
    let room = NAME_MAX.saturating_sub(fixed + b64(bucket.len()));
    let max = room * 3 / 4;
    if key.len() > max || key.split('/').any(|seg| seg.len() > NAME_MAX) {
        return Err(Unfit::TooLong(max));
    }
    let path = dir.join(key);
    if path.is_dir() {
        return Err(Unfit::Folder);
    }
    if access != Access::Read {
        let mut above = path.parent();
        while let Some(p) = above.filter(|p| p.starts_with(dir) && *p != dir) {
            // Followed through symlinks, as `stays_inside` (which ran
            // first, and refused dangling ones) judged them.
            if p.exists() && !p.is_dir() {
                return Err(Unfit::Folder);
            }
            above = p.parent();
        }
    }
    Ok(())
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
    ($($op:ident($input:ty) -> $output:ty, $access:ident;)*) => {
        #[async_trait::async_trait]
        impl S3 for Guarded {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.admit(&req.input.bucket, &req.input.key, Access::$access).await?;
                    self.inner.$op(req).await
                }
            )*
        }
    };
}

guarded! {
    get_object(GetObjectInput) -> GetObjectOutput, Read;
    head_object(HeadObjectInput) -> HeadObjectOutput, Read;
    put_object(PutObjectInput) -> PutObjectOutput, Put;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput, Multipart;
    upload_part(UploadPartInput) -> UploadPartOutput, Multipart;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput, Multipart;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput, Multipart;
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

    #[test]
    fn keys_that_cannot_be_files() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/b.txt"), "x").unwrap();
        let (r, w, m) = (Access::Read, Access::Put, Access::Multipart);
        assert_eq!(fits(&dir, "assets", "a/new.txt", w), Ok(()));
        assert_eq!(fits(&dir, "assets", "a/b.txt", r), Ok(()));
        // A folder, or a file where the key needs a folder.
        assert_eq!(fits(&dir, "assets", "a", r), Err(Unfit::Folder));
        assert_eq!(fits(&dir, "assets", "a", w), Err(Unfit::Folder));
        assert_eq!(fits(&dir, "assets", "a/b.txt/c", m), Err(Unfit::Folder));
        // Bucket "assets" (6 bytes, 8 in base64), a single PUT: 255 - 30
        // - 8 = 217 base64 characters, 162 key bytes; a multipart upload
        // (44 more for the upload id): 173, 129 bytes.
        for (access, max) in [(w, 162), (r, 162), (m, 129)] {
            assert_eq!(fits(&dir, "assets", &"k".repeat(max), access), Ok(()));
            let long = "k".repeat(max + 1);
            assert_eq!(
                fits(&dir, "assets", &long, access),
                Err(Unfit::TooLong(max))
            );
        }
    }
}
