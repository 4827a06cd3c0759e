//! HTTP/1.1 pieces shared by every hand-written client in the worker: the Docker Engine API
//! client, the link's CONNECT proxy handshake and the OTLP push all parse responses with one
//! sans-IO codec.

pub mod codec;
