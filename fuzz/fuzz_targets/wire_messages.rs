//! Every MQTT message decoder of the wire protocol, on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use passage_wire::{
    CapacityAlert, CountAck, CountRecord, DecisionKeyUpload, EnrolRequest, EnrolResponse, EraseRequest, GalleryIndex,
    MatchRequest, MatchResponse,
};

fuzz_target!(|data: &[u8]| {
    let _ = CountRecord::decode(data);
    let _ = CountAck::decode(data);
    let _ = CapacityAlert::decode(data);
    let _ = EraseRequest::decode(data);
    let _ = GalleryIndex::decode(data);
    let _ = MatchRequest::decode(data);
    let _ = MatchResponse::decode(data);
    let _ = EnrolRequest::decode(data);
    let _ = EnrolResponse::decode(data);
    let _ = DecisionKeyUpload::decode(data);
});
