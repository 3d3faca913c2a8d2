//! The resume token: what an interrupted receive tells the sender so that it can send only what
//! follows the checkpoint. A printable string, `tsn1-` + base64url (no padding) of a JSON body and
//! the first 16 bytes of its BLAKE3 hash. It is not a secret; the hash only makes a token damaged in
//! copying (a changed or missing character) fail loudly. The sender never trusts it for what to
//! read: it re-derives every identity from the sources it is given and refuses a token whose
//! identities differ (docs/STREAM.md §7).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::RecvError;
use crate::error::Result;
use crate::stream::native::{Header, Identity, Mode};

const PREFIX: &str = "tsn1-";
const HASH_LEN: usize = 16;
/// A token longer than this is refused before it is decoded.
const MAX_LEN: usize = 16 << 10;

/// What a token binds: the interrupted stream, the snapshots it was made from, and where to start.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The interrupted stream's `stream_id`.
    pub of: String,
    /// Always `native`.
    pub format: String,
    pub mode: Mode,
    pub volume_size: u64,
    pub block_size: u64,
    pub source: Identity,
    pub base: Option<Identity>,
    /// The target offset the receive got to: the resumed stream carries only what lies past it.
    pub from_offset: u64,
}

impl Token {
    /// The token of a receive of `h` checkpointed at `from_offset`.
    pub fn of_header(h: &Header, from_offset: u64) -> Token {
        Token {
            of: h.stream_id.clone(),
            format: "native".into(),
            mode: h.mode,
            volume_size: h.volume_size,
            block_size: h.block_size,
            source: h.source.clone(),
            base: h.base.clone(),
            from_offset,
        }
    }

    pub fn encode(&self) -> String {
        let mut b = serde_json::to_vec(self).unwrap_or_default();
        let hash = blake3::hash(&b);
        b.extend_from_slice(&hash.as_bytes()[..HASH_LEN]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(b))
    }

    pub fn decode(s: &str) -> Result<Token> {
        let bad = |what: &str| RecvError::Token(what.to_string()).into();
        let s = s.trim();
        if s.len() > MAX_LEN {
            return Err(bad("it is longer than any token recv prints"));
        }
        let Some(body) = s.strip_prefix(PREFIX) else {
            return Err(bad("it does not start with \"tsn1-\" (print it again with `recv --resume-token`)"));
        };
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not the base64url text recv printed (a character was changed or cut)"))?;
        if raw.len() <= HASH_LEN {
            return Err(bad("it is truncated"));
        }
        let (json, hash) = raw.split_at(raw.len() - HASH_LEN);
        if &blake3::hash(json).as_bytes()[..HASH_LEN] != hash {
            return Err(bad("its checksum does not match (the token was changed or cut)"));
        }
        let t: Token = serde_json::from_slice(json).map_err(|e| bad(&format!("its content is not a token: {e}")))?;
        if t.format != "native" {
            return Err(bad(&format!("it names the {} format; only native streams resume", t.format)));
        }
        if t.from_offset > t.volume_size {
            return Err(bad("its offset lies past its volume size"));
        }
        Ok(t)
    }

    /// Whether a stream made now from `h`'s sources is the interrupted stream's continuation: the
    /// same snapshots (pool, thin ids, creation times, transactions, mapped blocks, LV UUIDs), the
    /// same volume size, block size and mode. `None` if so; else what differs, in words.
    pub fn mismatch(&self, h: &Header) -> Option<String> {
        if self.mode != h.mode {
            return Some(format!("the token is of a {:?} stream, this send is {:?}", self.mode, h.mode));
        }
        if self.volume_size != h.volume_size {
            return Some(format!("volume size {} differs from the token's {}", h.volume_size, self.volume_size));
        }
        if self.block_size != h.block_size {
            return Some(format!("block size {} differs from the token's {}", h.block_size, self.block_size));
        }
        if !exactly(&self.source, &h.source) {
            return Some(format!("the source is {}, the token's was {}", h.source.describe(), self.source.describe()));
        }
        match (&self.base, &h.base) {
            (Some(a), Some(b)) if !exactly(a, b) => {
                Some(format!("the base is {}, the token's was {}", b.describe(), a.describe()))
            }
            (Some(_), None) | (None, Some(_)) => Some("one of the token and the send has a base, the other not".into()),
            _ => None,
        }
    }
}

/// The same snapshot, every identifying field equal (the LVM UUIDs too, known or not).
pub(crate) fn exactly(a: &Identity, b: &Identity) -> bool {
    a.same_snapshot(b) && a.snap_time == b.snap_time && a.lv_uuid == b.lv_uuid && a.vg_uuid == b.vg_uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        let source =
            Identity { pool_uuid: "00".repeat(16), thin_id: 2, transaction: 5, creation_time: 3, ..Default::default() };
        Token {
            of: "ab".repeat(16),
            format: "native".into(),
            mode: Mode::Full,
            volume_size: 1 << 30,
            block_size: 65536,
            source,
            base: None,
            from_offset: 123 << 20,
        }
    }

    #[test]
    fn a_token_round_trips_and_every_changed_character_is_refused() {
        let t = token();
        let s = t.encode();
        assert!(s.starts_with("tsn1-") && s.bytes().all(|b| b.is_ascii_graphic()), "{s}");
        assert_eq!(Token::decode(&s).unwrap(), t);
        for i in PREFIX.len()..s.len() {
            let mut b = s.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let e = Token::decode(std::str::from_utf8(&b).unwrap()).unwrap_err().to_string();
            assert!(e.starts_with("resume token refused"), "{e}");
        }
        assert!(Token::decode(&s[..s.len() - 3]).is_err(), "a truncated token is accepted");
        assert!(Token::decode("zfs1-abc").is_err());
    }

    #[test]
    fn a_recreated_snapshot_or_another_size_does_not_match() {
        let t = token();
        let h = Header {
            version: 1,
            stream_id: "cd".repeat(16),
            mode: Mode::Full,
            volume_size: t.volume_size,
            block_size: t.block_size,
            created: 0,
            sender: String::new(),
            source: t.source.clone(),
            base: None,
            data_bytes: None,
            resume: None,
        };
        assert_eq!(t.mismatch(&h), None);
        let mut r = h.clone();
        r.source.creation_time += 1;
        assert!(t.mismatch(&r).unwrap().contains("the token's was"));
        let mut r = h.clone();
        r.source.lv_uuid = Some("x".into());
        assert!(t.mismatch(&r).is_some(), "an LV UUID the token lacks");
        let mut r = h.clone();
        r.volume_size += 4096;
        assert!(t.mismatch(&r).unwrap().contains("volume size"));
        let mut r = h;
        r.mode = Mode::Incremental;
        assert!(t.mismatch(&r).is_some());
    }
}
