//! The response's framing as the client's HTTP version allows.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// An HTTP/1.0 client cannot decode chunked transfer coding (RFC 9112
/// §6.1: a server must not send it to a 1.0 request), but Pingora
/// re-frames a body of unknown length (a chunked or close-delimited
/// origin, the fill peer's unknown-length stream) as chunked for every
/// client. For a 1.0 client the chunking is taken off: the body is
/// delimited by closing the connection, as nginx sends it. A body with
/// another transfer coding under the chunks (`gzip, chunked`) is left as
/// it is: taking the header off would hand the client coded bytes.
pub fn for_client_version(session: &mut Session, resp: &mut ResponseHeader) {
    if session.req_header().version != http::Version::HTTP_10 {
        return;
    }
    let only_chunked = resp
        .headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    if only_chunked {
        resp.remove_header(&http::header::TRANSFER_ENCODING);
        // The end of the body is the end of the connection.
        session.set_keepalive(None);
    }
}
