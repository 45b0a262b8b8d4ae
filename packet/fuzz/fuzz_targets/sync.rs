//! Decode and verify arbitrary bytes as a sync message, with the key the
//! seeds are signed with (id 1). Must never panic. A message that passes
//! `new_checked` is canonical: written again from its header and records,
//! it is the same bytes up to the trailer; one whose tag verifies is the
//! same bytes altogether, fails with a tag bit changed, and goes through
//! the replay guard.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use xvs_packet::sync::{
    AuthKey, EpochGuard, MaxLen, MessageBuilder, Packet, SyncError, TRAILER_LEN,
};

/// The key `gen_corpus.py` signs the seeds with.
const KEY: &[u8] = b"xvs-fuzz-sync-message-key-32byte";

fuzz_target!(|data: &[u8]| {
    let packet = match Packet::new_checked(data) {
        Ok(p) => p,
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };
    let key = AuthKey::new(1, KEY).expect("a 32-byte key");
    let header = packet.header();
    let records: Vec<_> = packet.records().collect();
    assert_eq!(records.len(), usize::from(packet.record_count()));
    black_box(format!("{header:?} {records:?}"));
    let verified = packet.verify(&key);
    match verified {
        Ok(()) => {}
        Err(SyncError::UnknownKey(id)) => assert_ne!(id, 1),
        Err(e) => assert_eq!(e, SyncError::BadTag),
    }
    // Written again: the same bytes but for the trailer.
    let Ok(max_len) = MaxLen::new(data.len().max(MaxLen::MIN)) else {
        return;
    };
    let mut again = vec![0u8; data.len()];
    let mut builder = MessageBuilder::new(&mut again, max_len, &header).expect("a valid header");
    for r in &records {
        assert!(builder.push(r), "the records fit as they did");
    }
    let len = builder.sign(&key);
    assert_eq!(len, data.len());
    let signed = len - TRAILER_LEN;
    assert_eq!(&again[..signed], &data[..signed], "canonical encoding");
    if verified.is_ok() {
        assert_eq!(again, data, "a verified message signs to the same bytes");
        let mut guard = EpochGuard::new();
        let _ = black_box(guard.check(&header, header.peer_epoch));
        let last = again.len() - 1;
        again[last] ^= 1;
        let tampered = Packet::new_checked(&again[..]).expect("same shape");
        assert_eq!(tampered.verify(&key), Err(SyncError::BadTag));
    }
});
