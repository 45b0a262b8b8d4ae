//! Decode and verify arbitrary bytes as a load report, with the fixed key
//! the seeds are signed with (id 1). Must never panic; a report that
//! verifies must encode back to the same bytes, and a changed tag must
//! then fail.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use xvs_packet::load_report::{REPORT_LEN, ReportError, ReportKey, ReportPacket};

/// The key `gen_corpus.py` signs the seeds with.
const KEY: &[u8] = b"xvs-fuzz-load-report-key-32bytes";

fuzz_target!(|data: &[u8]| {
    let packet = match ReportPacket::new_checked(data) {
        Ok(p) => p,
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };
    assert_eq!(data.len(), REPORT_LEN);
    let key = ReportKey::new(packet.key_id(), KEY).expect("a long enough key");
    let report = match packet.verify(&key) {
        Ok(r) => r,
        Err(e) => {
            assert!(matches!(e, ReportError::BadTag | ReportError::BadField), "{e:?}");
            return;
        }
    };
    black_box(format!("{report:?}"));
    let mut again = [0u8; REPORT_LEN];
    assert_eq!(report.encode(&key, &mut again), Ok(REPORT_LEN));
    assert_eq!(&again[..], data, "a verified report encodes to the same bytes");
    again[REPORT_LEN - 1] ^= 1;
    let tampered = ReportPacket::new_checked(&again[..]).expect("same header");
    assert_eq!(tampered.verify(&key), Err(ReportError::BadTag));
});
