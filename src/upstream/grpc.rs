//! The `grpc` connector: a unary call built from a request template against the method's
//! descriptor, its reply decoded dynamically and read as proto3 JSON (proto field names).

use super::connector::{Call, Payload, UpstreamError};
use super::spec::{ConnectorConfig, ConnectorKind};
use super::template::Vars;
use crate::domain::record::proto_json;
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost_reflect::DynamicMessage;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// A lazily connecting channel to the provider.
pub fn channel(
    endpoint: &str,
    timeout: Duration,
) -> Result<Channel, tonic::codegen::http::uri::InvalidUri> {
    Ok(Channel::from_shared(endpoint.to_owned())?
        .connect_timeout(timeout)
        .connect_lazy())
}

/// Passes already-encoded messages through: the connector encodes and decodes itself,
/// against descriptors known only at run time.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

pub async fn call(
    channel: Channel,
    config: &ConnectorConfig,
    call: &Call<'_>,
) -> Result<Payload, UpstreamError> {
    let ConnectorKind::Grpc {
        method,
        request,
        input,
        output,
    } = &config.kind
    else {
        return Err(UpstreamError::Unavailable("not a grpc connector".into()));
    };
    let vars = Vars {
        key: call.key,
        request_id: call.request_id,
        context: call.context,
        auth_user: "",
    };
    let message =
        DynamicMessage::deserialize(input.clone(), request.render(&vars)).map_err(|e| {
            UpstreamError::Unavailable(format!(
                "request template does not fit {}: {e}",
                input.full_name()
            ))
        })?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| UpstreamError::Unavailable(format!("connect: {e}")))?;
    let path = method
        .parse::<http::uri::PathAndQuery>()
        .map_err(|e| UpstreamError::Unavailable(format!("method path: {e}")))?;
    let mut req = tonic::Request::new(Bytes::from(message.encode_to_vec()));
    req.set_timeout(config.timeout);
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(call.traceparent) {
        req.metadata_mut().insert("traceparent", v);
    }
    let reply = match grpc.unary(req, path, RawCodec).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return match status.code() {
                tonic::Code::NotFound => Ok(None),
                tonic::Code::DeadlineExceeded => Err(UpstreamError::Timeout(config.timeout)),
                tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied
                | tonic::Code::InvalidArgument => Err(UpstreamError::Refused(format!(
                    "grpc {:?}: {}",
                    status.code(),
                    status.message()
                ))),
                code => Err(UpstreamError::Unavailable(format!(
                    "grpc {code:?}: {}",
                    status.message()
                ))),
            };
        }
    };
    let decoded = DynamicMessage::decode(output.clone(), reply).map_err(|e| {
        UpstreamError::BadResponse(format!("reply is not a {}: {e}", output.full_name()))
    })?;
    proto_json(&decoded)
        .map(Some)
        .map_err(UpstreamError::BadResponse)
}
