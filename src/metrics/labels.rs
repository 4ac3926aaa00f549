//! The fixed label values. Every label is one of these enums, a site name
//! or a rule index: never a key, host or URL, so the series count stays
//! bounded whatever clients send.

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum!(
    /// How a request was answered.
    Outcome {
        /// The bucket answered (a 404 no rule covers included).
        Hit => "hit",
        /// Served from the origin (or a fill of it).
        Mirror => "mirror",
        /// The origin has no such object either: 404.
        OriginMiss => "origin_miss",
        Redirect => "redirect",
        /// The bucket failed (5xx, unreachable, refused) and no rule took over.
        BucketError => "bucket_error",
        /// Refused before any upstream: bad key, method, host, header size.
        Rejected => "rejected",
        /// The client left before the answer was complete.
        ClientAbort => "client_abort",
        Error => "error",
    }
);

label_enum!(
    /// First digit of the status sent.
    StatusClass {
        C1xx => "1xx", C2xx => "2xx", C3xx => "3xx", C4xx => "4xx", C5xx => "5xx",
    }
);

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status {
            0..=199 => StatusClass::C1xx,
            200..=299 => StatusClass::C2xx,
            300..=399 => StatusClass::C3xx,
            400..=499 => StatusClass::C4xx,
            _ => StatusClass::C5xx,
        }
    }
}

label_enum!(
    /// One origin GET (or HEAD), by how it ended.
    OriginResult {
        Ok => "ok",
        NotFound => "not_found",
        /// Any other status the rule does not serve (403, 5xx, ...).
        BadStatus => "bad_status",
        ConnectError => "connect_error",
        Timeout => "timeout",
        /// The body ended early or the connection broke mid-body.
        Truncated => "truncated",
        Md5Mismatch => "md5_mismatch",
    }
);

label_enum!(
    /// How a write-back ended.
    WriteBackResult {
        Stored => "stored",
        /// The bucket failed (5xx, network, signing).
        Failed => "failed",
        /// The bucket answered 4xx (permissions, quota, bad request).
        Refused => "refused",
        /// The bucket already had the key (`If-None-Match: *`): not written.
        Exists => "exists",
        /// The source stopped before its end (client gone on the plain
        /// path, or the bucket too slow for the tee).
        Abandoned => "abandoned",
        /// The origin fetch failed, so the upload was aborted.
        Aborted => "aborted",
        LengthMismatch => "length_mismatch",
        Md5Mismatch => "md5_mismatch",
        /// Not attempted: the origin's body has no length framing (its
        /// end is the connection closing, or another transfer coding),
        /// so a cut body could not be told from a whole one.
        Unframed => "unframed",
    }
);

label_enum!(
    /// Requests origin-pull makes to a bucket.
    BucketOp {
        Get => "get",
        Head => "head",
        Put => "put",
        CreateMultipart => "create_multipart",
        UploadPart => "upload_part",
        CompleteMultipart => "complete_multipart",
        AbortMultipart => "abort_multipart",
        Probe => "probe",
    }
);
