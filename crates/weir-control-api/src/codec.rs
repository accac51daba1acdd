//! The gRPC codec of the `Mesh` service: prost, with buffers sized for this protocol.
//!
//! tonic's default codec gives every stream an 8 KiB encode and an 8 KiB decode buffer, kept
//! for the stream's life. A control plane holds one stream per sidecar whose messages are
//! small (Hello, ACK, a flow report; a snapshot of a few KiB, sent rarely), so at 5,000
//! sidecars those two buffers alone were 80 MB. Buffers start at 512 bytes and grow to the
//! largest message seen.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Where a stream's encode and decode buffers start.
const BUFFER_BYTES: usize = 512;
/// Encoded messages are flushed to the transport once this much is buffered (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with small starting buffers; named by the generated code (`codec_path`).
#[derive(Debug, Clone, Copy)]
pub struct MeshCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for MeshCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for MeshCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}
