//! The talk's format: each message followed by `\r\n`, nothing else. No ids,
//! no control records; a stream that must end (lag, shutdown) just ends.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;

pub(crate) fn encode(msg: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.body.len() + 2);
    b.put_slice(&msg.body);
    b.put_slice(b"\r\n");
    b.freeze()
}
