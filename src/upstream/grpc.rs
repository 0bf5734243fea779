//! The `grpc` connector: a unary call built from a request template against the method's
//! descriptor, its reply decoded dynamically and read as proto3 JSON (proto field names).

use super::connector::{Call, Payload, UpstreamError};
use super::credentials::Credentials;
use super::spec::{ConnectorConfig, ConnectorKind, ConnectorTls};
use super::template::JsonTemplate;
use super::template::Vars;
use crate::config::Errors;
use crate::config::raw::RawGrpc;
use crate::domain::dataset::descriptors;
use crate::domain::record::proto_json;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost_reflect::DescriptorPool;
use prost_reflect::DynamicMessage;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The `grpc` kind of a connector: its method found in the provider's uploaded descriptors
/// (or in the gateway's own), and its request template checked against the method's input
/// message, field by field, when the change is made.
pub fn kind_from_settings(key: &str, grpc: RawGrpc, e: &mut Errors<'_>) -> Option<ConnectorKind> {
    if grpc.reflection {
        e.add(
            format!("{key}.grpc.reflection"),
            "descriptors are read by reflection through the admin API, which stores them as grpc.descriptor_set; in a connectors file, set descriptor_set",
        );
        return None;
    }
    let uploaded = match &grpc.descriptor_set {
        None => None,
        Some(text) => {
            let decoded = BASE64
                .decode(text.trim())
                .map_err(|_| "is not Base64".to_owned())
                .and_then(|bytes| {
                    DescriptorPool::decode(bytes.as_slice())
                        .map_err(|err| format!("is not a usable FileDescriptorSet: {err}"))
                });
            match decoded {
                Ok(pool) => Some(pool),
                Err(m) => {
                    e.add(format!("{key}.grpc.descriptor_set"), m);
                    return None;
                }
            }
        }
    };
    let pool = uploaded.as_ref().unwrap_or_else(|| descriptors());
    let method = grpc.method.split_once('/').and_then(|(service, method)| {
        pool.get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    });
    let Some(method) = method else {
        let known: Vec<String> = pool
            .services()
            .flat_map(|s| {
                let service = s.full_name().to_owned();
                s.methods()
                    .map(move |m| format!("{service}/{}", m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let whose = if uploaded.is_some() {
            "the uploaded descriptors"
        } else {
            "the gateway's compiled descriptors (upload the provider's as grpc.descriptor_set)"
        };
        e.add(
            format!("{key}.grpc.method"),
            format!(
                "{:?} is not a method of {whose}; they have: {}",
                grpc.method,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        );
        return None;
    };
    let json = serde_json::to_value(&grpc.request).unwrap_or_default();
    check_template_fields(&format!("{key}.grpc.request"), &json, &method.input(), e);
    let request = JsonTemplate::parse(&json)
        .map_err(|m| e.add(format!("{key}.grpc.request"), m.to_string()))
        .ok()?;
    Some(ConnectorKind::Grpc {
        method: format!("/{}", grpc.method),
        request,
        input: method.input(),
        output: method.output(),
    })
}

/// Every field a request template names exists in the message, at every level.
fn check_template_fields(
    key: &str,
    template: &serde_json::Value,
    message: &prost_reflect::MessageDescriptor,
    e: &mut Errors<'_>,
) {
    let Some(fields) = template.as_object() else {
        return;
    };
    for (name, value) in fields {
        let field = message
            .get_field_by_name(name)
            .or_else(|| message.get_field_by_json_name(name));
        match field.map(|f| f.kind()) {
            None => e.add(
                format!("{key}.{name}"),
                format!(
                    "{} has no field {name:?}; it has: {}",
                    message.full_name(),
                    message
                        .fields()
                        .map(|f| f.name().to_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(prost_reflect::Kind::Message(inner)) => {
                check_template_fields(&format!("{key}.{name}"), value, &inner, e)
            }
            Some(_) => {}
        }
    }
}

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
        separator: config.key_separator,
        part_names: &config.key_parts,
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
