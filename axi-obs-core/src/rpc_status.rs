//! The part of a gRPC error status's details (`grpc-status-details-bin`, a
//! `google.rpc.Status`) that OTLP exporters read: `google.rpc.RetryInfo`, the server's word
//! that a retry can succeed and when. Decoded with `prost` from the few fields needed, so no
//! `google.rpc` crate is built for it.

use std::time::Duration;

use prost::Message;

/// `google.rpc.Status`: its code and details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(message, repeated, tag = "3")]
    details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay of the `google.rpc.RetryInfo` in a gRPC status's `details`, if they hold one (a
/// `RetryInfo` without a delay: zero); beyond an hour is past any export deadline anyway.
pub fn retry_info(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|a| a.type_url.ends_with("/google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(info.value.as_slice())
        .ok()?
        .retry_delay
        .unwrap_or_default();
    let secs = u64::try_from(delay.seconds).unwrap_or(0).min(3600);
    let nanos = u32::try_from(delay.nanos).unwrap_or(0).min(999_999_999);
    Some(Duration::new(secs, nanos))
}

/// Status details (a `google.rpc.Status` of `code`) holding a `RetryInfo` of `delay`: what a
/// server sends with `RESOURCE_EXHAUSTED` when a retry can succeed. For test receivers.
pub fn with_retry_info(code: i32, delay: Duration) -> Vec<u8> {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    RpcStatus {
        code,
        details: vec![RpcAny {
            type_url: RETRY_INFO.into(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips_and_anything_else_is_none() {
        let d = Duration::from_millis(1500);
        assert_eq!(retry_info(&with_retry_info(8, d)), Some(d));
        assert_eq!(retry_info(&[]), None);
        assert_eq!(retry_info(b"\xff\xff"), None);
        let other = RpcStatus {
            code: 8,
            details: vec![RpcAny {
                type_url: "type.googleapis.com/google.rpc.QuotaFailure".into(),
                value: Vec::new(),
            }],
        };
        assert_eq!(retry_info(&other.encode_to_vec()), None);
    }
}
