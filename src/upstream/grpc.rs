//! The `grpc` connector: a unary call built from a request template against the method's
//! descriptor, its reply decoded dynamically and read as proto3 JSON (proto field names).

use super::connector::{Call, Payload, UpstreamError};
use super::credentials::Credentials;
use super::spec::{ConnectorConfig, ConnectorKind, ConnectorTls};
use super::template::Vars;
use crate::domain::record::proto_json;
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost_reflect::DynamicMessage;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A lazily connecting channel to the provider, over TLS (checked against the configured
/// CA, presenting the client certificate when one is set) when `tls` is given.
pub fn channel(
    endpoint: &str,
    timeout: Duration,
    tls: Option<&ConnectorTls>,
) -> Result<Channel, String> {
    let mut channel = Channel::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout);
    if let Some(tls) = tls {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        channel = channel.tls_config(config).map_err(|e| e.to_string())?;
    }
    Ok(channel.connect_lazy())
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
    credentials: &Credentials,
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
    let path = method
        .parse::<http::uri::PathAndQuery>()
        .map_err(|e| UpstreamError::Unavailable(format!("method path: {e}")))?;
    let body = Bytes::from(message.encode_to_vec());
    let mut retried = false;
    let reply = loop {
        grpc.ready()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("connect: {e}")))?;
        let mut req = tonic::Request::new(body.clone());
        req.set_timeout(config.timeout);
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(call.traceparent) {
            req.metadata_mut().insert("traceparent", v);
        }
        let used = credentials.metadata(req.metadata_mut()).await?;
        match grpc.unary(req, path.clone(), RawCodec).await {
            Ok(r) => break r.into_inner(),
            // An OAuth2 token the provider no longer takes: once more with a new one.
            Err(status)
                if status.code() == tonic::Code::Unauthenticated && used.is_some() && !retried =>
            {
                credentials.reject(used.as_deref().unwrap_or(""));
                retried = true;
            }
            Err(status) => return status_error(&status, config.timeout),
        }
    };
    let decoded = DynamicMessage::decode(output.clone(), reply).map_err(|e| {
        UpstreamError::BadResponse(format!("reply is not a {}: {e}", output.full_name()))
    })?;
    proto_json(&decoded)
        .map(Some)
        .map_err(UpstreamError::BadResponse)
}

/// A gRPC status as the connector's failure (`NOT_FOUND` is "no such record").
fn status_error(status: &tonic::Status, timeout: Duration) -> Result<Payload, UpstreamError> {
    match status.code() {
        tonic::Code::NotFound => Ok(None),
        tonic::Code::DeadlineExceeded => Err(UpstreamError::Timeout(timeout)),
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
    }
}
