//! A provider's descriptors read by gRPC server reflection (`grpc.reflection.v1`), once,
//! when a connector is registered or changed through the admin API: the file that declares
//! the service, with its dependencies, as a `FileDescriptorSet` the connector then keeps.

use prost::Message;
use prost_reflect::prost_types::{FileDescriptorProto, FileDescriptorSet};
use std::time::Duration;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// The encoded `FileDescriptorSet` that declares `service` (e.g. `cadastre.v1.CadastreService`)
/// at `endpoint`, asked by reflection; why not, in words for the provider agency.
pub async fn descriptor_set(
    endpoint: &str,
    service: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    if endpoint.starts_with("https://") {
        return Err(
            "reflection over TLS is not supported yet: upload the provider's grpc.descriptor_set"
                .into(),
        );
    }
    let channel = super::grpc::channel(endpoint, timeout, None)?;
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(service.to_owned())),
    };
    let ask = async {
        let mut answers = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        answers
            .message()
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .ok_or_else(|| "the provider closed the stream without an answer".to_owned())
    };
    let answer = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    let files = match answer.message_response {
        Some(MessageResponse::FileDescriptorResponse(f)) => f.file_descriptor_proto,
        Some(MessageResponse::ErrorResponse(e)) => {
            return Err(format!("the provider says: {}", e.error_message));
        }
        _ => return Err("the provider answered something other than descriptors".into()),
    };
    // The pool that reads the set takes its files in any order.
    let file = files
        .iter()
        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the provider sent a descriptor that does not decode: {e}"))?;
    Ok(FileDescriptorSet { file }.encode_to_vec())
}
